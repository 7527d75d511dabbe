#!/bin/bash
# minilab: namespaces tsh-a -- tsh-r -- tsh-b; run.sh runs the forwarder (fwd.py) in tsh-r
set -e
A=tsh-a; R=tsh-r; B=tsh-b
for n in $A $R $B; do ip netns del $n 2>/dev/null || true; ip netns add $n; ip -n $n link set lo up; done
ip link add tshva type veth peer name tshvra
ip link add tshvb type veth peer name tshvrb
ip link set tshva netns $A; ip link set tshvra netns $R
ip link set tshvb netns $B; ip link set tshvrb netns $R
ip -n $A addr add 10.77.1.1/24 dev tshva; ip -n $R addr add 10.77.1.254/24 dev tshvra
ip -n $B addr add 10.77.2.1/24 dev tshvb; ip -n $R addr add 10.77.2.254/24 dev tshvrb
for x in "$A tshva" "$R tshvra" "$R tshvrb" "$B tshvb"; do set -- $x; ip -n $1 link set $2 up; ip netns exec $1 ethtool -K $2 tso off gso off gro off >/dev/null 2>&1 || true; done
ip -n $A route add default via 10.77.1.254; ip -n $B route add default via 10.77.2.254
ip netns exec $R sysctl -qw net.ipv4.ip_forward=0   # fwd.py is the only path
# checksum offload off too: the userspace forwarder copies frames verbatim
for x in "$A tshva" "$B tshvb" "$R tshvra" "$R tshvrb"; do set -- $x; ip netns exec $1 ethtool -K $2 tx off rx off >/dev/null 2>&1 || true; done
