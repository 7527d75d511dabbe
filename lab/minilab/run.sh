#!/bin/bash
# run.sh NAME DROPS MODE [DELAY_MS] [LATE] [DUPS]
#   DROPS/LATE/DUPS: comma lists of n-th client->server data packets (1-based) to drop / delay by
#   an extra 8 ms (reordering) / send twice (duplicate); '-' for none.
# Captures NAME-sender.pcapng (client side) and NAME-receiver.pcapng (server side) in the cwd.
# Needs root; run mk.sh first (namespaces tsh-a -- tsh-r -- tsh-b).
set -e; trap "kill \$P0 \$P1 \$P2 \$P3 2>/dev/null" EXIT
HERE=$(cd "$(dirname "$0")" && pwd)
NAME=$1; DROP=$2; MODE=$3; DELAY=${4:-10}; LATE=${5:--}; DUPS=${6:--}
A=tsh-a; R=tsh-r; B=tsh-b
ip netns exec $R sysctl -qw net.ipv4.ip_forward=0
ip netns exec $R python3 "$HERE/fwd.py" $DELAY "$DROP" "$LATE" "$DUPS" & P0=$!
ip netns exec $A dumpcap -q -i tshva -w "$PWD/$NAME-sender.pcapng" -f "tcp port 9000" >/dev/null 2>&1 & P1=$!
ip netns exec $B dumpcap -q -i tshvb -w "$PWD/$NAME-receiver.pcapng" -f "tcp port 9000" >/dev/null 2>&1 & P2=$!
sleep 1.5
ip netns exec $B python3 "$HERE/srv.py" & P3=$!
sleep 0.5
ip netns exec $A python3 "$HERE/cli.py" $MODE
sleep 1
kill $P3 2>/dev/null || true
sleep 0.5
kill -INT $P1 $P2; wait $P1 $P2 2>/dev/null || true
kill $P0
