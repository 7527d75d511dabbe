#!/bin/sh
# A Debian 13 (trixie) root with its stock Wireshark 4.4 (Lua 5.4), to run tcpstall's tests and
# demo analyses there AS ROOT, the case where 4.2+ differs most from Debian 12's 4.0 (issue 17).
#
#   sh .ci/debian13.sh build        make (or reuse) the root: debootstrap, tshark, a venv
#   sh .ci/debian13.sh test         build, then inside the root, as root: pytest + the demo analyses
#   sh .ci/debian13.sh run CMD...   build, then CMD inside the root (in /src = this checkout)
#
# Runs on a Debian/Ubuntu host as root (installs debootstrap with apt-get when missing). The root
# lives in build/debian13 (git-ignored; DEBIAN13_ROOT overrides); it is rebuilt when this script
# changes. The system's Wireshark configuration stays stock: tcpstall has to cope with it.
# Inside, the checkout is bind-mounted at /src in a private mount namespace (unshare -m), so the
# mounts of /proc, /sys, /dev and the checkout vanish with the last process, also on failure.
set -eu
cd "$(dirname "$0")/.."
SRC=$(pwd)
ROOT=${DEBIAN13_ROOT:-$SRC/build/debian13}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
VENV=/opt/tcpstall-venv                # inside the root (the checkout's .venv is the host's)
STAMP=$ROOT/.tcpstall-root              # this script's checksum: a changed script rebuilds the root
PACKAGES="tshark python3 python3-venv"
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt     # the host's
ROOT_CA=/etc/ssl/certs/host-ca-certificates.crt   # its copy in the root (apt's ca-certificates
                                                  # regenerates ca-certificates.crt there)

say() { echo "debian13: $*" >&2; }

host_pip_setting() {   # the host's pip setting $1 (e.g. global.index-url), empty when unset
    python3 -m pip config get "$1" 2>/dev/null || true
}

# The pip configuration for the root: the host's CA bundle (copied in) and the host's index, when
# one is configured and reachable over the network (local file:// indexes do not exist inside).
write_pip_conf() {
    {
        echo "[global]"
        echo "cert = $ROOT_CA"
        idx=$(host_pip_setting global.index-url)
        case "$idx" in http*) echo "index-url = $idx" ;; esac
        extra=""
        for u in $(host_pip_setting global.extra-index-url); do
            case "$u" in http*) extra="$extra $u" ;; esac
        done
        [ -n "$extra" ] && echo "extra-index-url =$extra"
        trusted=$(host_pip_setting global.trusted-host)
        [ -n "$trusted" ] && echo "trusted-host = $trusted"
        true
    } > "$1"
}

# CMD inside the root, as root, with the checkout at /src and the root's venv first on PATH.
in_root() {
    unshare --mount --propagation private -- sh -eu -c '
        root=$1; src=$2; shift 2
        mkdir -p "$root/src"
        mount --bind "$src" "$root/src"
        mount -t proc proc "$root/proc"
        mount --rbind /sys "$root/sys"
        mount --rbind /dev "$root/dev"
        exec chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
            PATH='"$VENV"'/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            ${http_proxy:+http_proxy=$http_proxy} ${https_proxy:+https_proxy=$https_proxy} \
            sh -c "cd /src && exec \"\$@\"" sh "$@"
    ' sh "$ROOT" "$SRC" "$@"
}

build() {
    checksum=$(sha256sum "$SRC/.ci/debian13.sh" "$SRC/pyproject.toml" | sha256sum | cut -c1-16)
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$checksum" ]; then
        return 0
    fi
    [ "$(id -u)" = 0 ] || { say "needs root (debootstrap, chroot)"; exit 1; }
    if ! command -v debootstrap >/dev/null 2>&1; then
        say "installing debootstrap on the host"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    say "building $ROOT (debootstrap --variant=minbase trixie, about a minute)"
    rm -rf "$ROOT.new"
    mkdir -p "$(dirname "$ROOT")"
    debootstrap --variant=minbase trixie "$ROOT.new" "$MIRROR" >"$ROOT.new.log" 2>&1 \
        || { tail -n 20 "$ROOT.new.log" >&2; say "debootstrap failed (log: $ROOT.new.log)"; exit 1; }
    mkdir -p "$ROOT.new/etc/ssl/certs"
    cp "$CA_BUNDLE" "$ROOT.new$ROOT_CA"         # pip inside trusts what the host trusts
    write_pip_conf "$ROOT.new/etc/pip.conf"
    cp /etc/resolv.conf "$ROOT.new/etc/resolv.conf"
    rm -rf "$ROOT"
    mv "$ROOT.new" "$ROOT"
    rm -f "$ROOT.new.log"
    say "installing $PACKAGES in the root"
    in_root sh -euc '
        echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends '"$PACKAGES"' >/dev/null
        apt-get clean
        python3 -m venv '"$VENV"'
        '"$VENV"'/bin/pip install -q -e "/src[test]"
    '
    echo "$checksum" > "$STAMP"
    say "ready: $(in_root tshark -v | head -n 1)"
}

# The demo analyses (README: `sh bootstrap.sh demo`), each compared with the same command on the
# host's tshark: the findings must be the same (the timing columns of correlate are measured, not
# printed by tshark, and are the same too: both read the same packets).
DEMO_COMMANDS='analyze sample_captures/heartbeat-loss-server.pcapng
analyze sample_captures/small-rcvbuf-nohs-client.pcapng
analyze -o tcp_retries2:6 sample_captures/peer-vanishes-client.pcapng
correlate sample_captures/heartbeat-loss-client.pcapng sample_captures/heartbeat-loss-server.pcapng --log sample_captures/heartbeat-loss-sender.log@A --log sample_captures/heartbeat-loss-receiver.log@B'

demo_compare() {
    host_tcpstall=${HOST_TCPSTALL:-$SRC/.venv/bin/tcpstall}
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
    failed=0
    n=0
    echo "$DEMO_COMMANDS" | while IFS= read -r cmd; do
        n=$((n + 1))
        # shellcheck disable=SC2086  # word splitting of the command is intended
        in_root tcpstall $cmd > "$out/$n.debian13" 2>&1 || { echo "FAILED in the root: tcpstall $cmd"; cat "$out/$n.debian13"; exit 1; }
        # shellcheck disable=SC2086
        "$host_tcpstall" $cmd > "$out/$n.host" 2>&1 || { echo "FAILED on the host: tcpstall $cmd"; cat "$out/$n.host"; exit 1; }
        if cmp -s "$out/$n.host" "$out/$n.debian13"; then
            echo "same output on 4.0 and 4.4: tcpstall $cmd"
        else
            echo "DIFFERENT output on 4.0 (host) and 4.4 (debian13): tcpstall $cmd"
            diff "$out/$n.host" "$out/$n.debian13" | head -n 40
            exit 1
        fi
    done
}

case "${1:-}" in
    build) build ;;
    run) shift; build; in_root "$@" ;;
    test)
        build
        say "$(in_root tshark -v | head -n 1), running as $(in_root id -un)"
        in_root tcpstall doctor
        in_root python -m pytest -q -p no:cacheprovider -m "not lab and not gui"
        demo_compare
        ;;
    *) echo "usage: sh .ci/debian13.sh build | test | run CMD..." >&2; exit 2 ;;
esac
