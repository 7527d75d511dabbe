#!/bin/sh
# A Debian 13 (trixie) root with its stock Wireshark 4.4 (Lua 5.4), to run tcpstall's tests and
# demo analyses there AS ROOT, the case where 4.2+ differs most from Debian 12's 4.0 (issue 17).
#
#   sh .ci/debian13.sh build        make (or reuse) the root: debootstrap, tshark, a venv
#   sh .ci/debian13.sh test         build, then inside the root, as root: pytest + the demo analyses
#   sh .ci/debian13.sh run CMD...   build, then CMD inside the root (in /src = this checkout)
#
# Runs on a Debian/Ubuntu host as root (installs debootstrap with apt-get when missing). The root
# lives in build/debian13 (git-ignored; DEBIAN13_ROOT overrides); it is rebuilt when its recipe
# (RECIPE, PACKAGES) or pyproject.toml changes. The system's Wireshark configuration stays
# stock: tcpstall has to cope with it.
# Inside, the checkout is bind-mounted at /src in a private mount namespace (unshare -m), so the
# mounts of /proc, /sys, /dev and the checkout vanish with the last process, also on failure.
set -eu
cd "$(dirname "$0")/.."
SRC=$(pwd)
ROOT=${DEBIAN13_ROOT:-$SRC/build/debian13}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
VENV=/opt/tcpstall-venv                # inside the root (the checkout's .venv is the host's)
STAMP=$ROOT/.tcpstall-root              # what the root was built from: a change rebuilds it
RECIPE=1                                # bump when build() changes
PACKAGES="tshark tcpreplay python3 python3-venv"   # tcpreplay: tcprewrite for the NAT test
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
    checksum="recipe $RECIPE, $PACKAGES, pyproject.toml $(sha256sum < "$SRC/pyproject.toml" | cut -c1-16)"
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$checksum" ]; then
        return 0
    fi
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

# The README's commands on the demo captures, each run in the root (Wireshark 4.4, as root) and on
# the host (4.0): the output must be the same. tshark commands from README run as `nobody` in the
# root, as README tells root users of 4.2+ (tcpstall's own commands need nothing).
README_COMMANDS='tcpstall analyze sample_captures/heartbeat-loss-server.pcapng
tcpstall analyze sample_captures/small-rcvbuf-nohs-client.pcapng
tcpstall analyze -o tcp_retries2:6 sample_captures/peer-vanishes-client.pcapng
tcpstall analyze --json sample_captures/heartbeat-loss-server.pcapng --log sample_captures/heartbeat-loss-receiver.log
tcpstall correlate sample_captures/heartbeat-loss-client.pcapng sample_captures/heartbeat-loss-server.pcapng --log sample_captures/heartbeat-loss-sender.log@A --log sample_captures/heartbeat-loss-receiver.log@B
tcpstall correlate --json sample_captures/heartbeat-loss-client.pcapng sample_captures/heartbeat-loss-server.pcapng
tshark -r sample_captures/heartbeat-loss-server.pcapng -X lua_script:plugins/tcpstall.lua -2 -Y tcpstall -T fields -e frame.number -e tcpstall.hol.hold_ms -e tcpstall.retrans.trigger -e _ws.expert.message
tshark -r sample_captures/heartbeat-loss-server.pcapng -X lua_script:plugins/tcpstall.lua -q -z tcpstall
tshark -r sample_captures/peer-vanishes-client.pcapng -X lua_script:plugins/tcpstall.lua -o tcpstall.tcp_retries2:6 -Y tcpstall.retries.approaching'

compare_readme_commands() {
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
    host_bin=$SRC/.venv/bin
    echo "$README_COMMANDS" | {
        n=0
        while IFS= read -r cmd; do
            n=$((n + 1))
            case "$cmd" in tshark*) as_user="runuser -u nobody --" ;; *) as_user="" ;; esac
            # shellcheck disable=SC2086  # the command's words are meant to split
            in_root $as_user $cmd > "$out/$n.debian13" 2>"$out/$n.debian13.err" \
                || { echo "FAILED in the root: $cmd"; cat "$out/$n.debian13.err"; exit 1; }
            # shellcheck disable=SC2086
            PATH="$host_bin:$PATH" $cmd > "$out/$n.host" 2>"$out/$n.host.err" \
                || { echo "FAILED on the host: $cmd"; cat "$out/$n.host.err"; exit 1; }
            if cmp -s "$out/$n.host" "$out/$n.debian13"; then
                echo "same output on $(wc -l < "$out/$n.host") lines, 4.0 and 4.4: $cmd"
            else
                echo "DIFFERENT output on 4.0 (host, <) and 4.4 (debian13, >): $cmd"
                diff "$out/$n.host" "$out/$n.debian13" | head -n 20
                exit 1
            fi
        done
    }
}

# install-plugins as root on 4.4: --global (loaded for root as it is), then the personal folder's
# layout with run_user_scripts_when_superuser = true (the one case where root loads the personal
# folder there): set in this disposable root only, removed after.
check_layout_as_root() {
    in_root sh -euc '
        trap "tcpstall install-plugins --global --uninstall > /dev/null" EXIT
        tcpstall install-plugins --global > /dev/null
        tshark -G plugins | grep -q "wireshark/plugins/tcpstall/tcpstall.lua" || { echo "--global copy not loaded as root"; exit 1; }
        tcpstall analyze sample_captures/heartbeat-loss-server.pcapng | grep -q "HOL-blocked delivery" \
            || { echo "tcpstall analyze fails with the --global copy"; exit 1; }
        echo "install-plugins --global: loaded by tshark as root, used by tcpstall analyze"
    '
    in_root sh -euc '
        init=$(tshark -G folders | sed -n "s/^Global Lua Plugins:[[:space:]]*//p")/init.lua
        trap "rm -f $init; rm -rf /tmp/layout-home" EXIT
        echo "run_user_scripts_when_superuser = true" > "$init"
        export HOME=/tmp/layout-home
        tcpstall install-plugins > /dev/null
        tshark -G plugins | grep -q "tcpstall/tcpstall.lua" || { echo "installed copy not loaded as root"; exit 1; }
        tshark -r sample_captures/heartbeat-loss-server.pcapng -q -z tcpstall 2>&1 | grep -q "HOL episodes" \
            || { echo "installed copy gives no -z tcpstall as root"; exit 1; }
        echo "installed copy (tcpstall/ layout) loads as root with run_user_scripts_when_superuser = true"
        # control, for the record: the old layout (tcpstall.lua at the top of the folder)
        old=/tmp/layout-home/.local/lib/wireshark/plugins
        tcpstall install-plugins --uninstall > /dev/null
        cp -r plugins/tcpstall.lua plugins/tcpstall "$old/"
        if tshark -r sample_captures/heartbeat-loss-server.pcapng -q -z tcpstall 2>&1 | grep -q "HOL episodes"; then
            echo "control: the old top-level layout loads too on this Wireshark"
        else
            echo "control: the old top-level layout does not load as root here ($(tshark -G plugins 2>&1 | grep -m1 "not found"))"
        fi
    '
}

compare_plugin_output() {
    in_root python .ci/plugin_output.py dump /tmp/plugin-output-debian13.txt &
    root_job=$!
    "$SRC/.venv/bin/python" .ci/plugin_output.py dump "$SRC/build/plugin-output-host.txt"
    wait "$root_job"
    "$SRC/.venv/bin/python" .ci/plugin_output.py compare "$SRC/build/plugin-output-host.txt" "$ROOT/tmp/plugin-output-debian13.txt"
}

case "${1:-}" in build|run|test) ;; *) echo "usage: sh .ci/debian13.sh build | test | run CMD..." >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { say "needs root (debootstrap, chroot, mounts); \`make test-host\` runs the suite on this machine alone"; exit 1; }

case "$1" in
    build) build ;;
    run) shift; build; in_root "$@" ;;
    test)
        t0=$(date +%s)
        build
        say "$(in_root tshark -v | head -n 1), as $(in_root id -un)"
        in_root tcpstall doctor
        in_root python -m pytest -q -p no:cacheprovider -m "not lab and not gui" -rs
        compare_readme_commands
        check_layout_as_root
        compare_plugin_output
        say "done in $(( $(date +%s) - t0 )) s"
        ;;
esac
