#!/bin/sh
# Fresh Debian 12, as root: get make and Python's venv if missing, then run a Makefile target
# (which installs everything else itself). Usage: sh bootstrap.sh demo | test | lab | bench
set -eu
cd "$(dirname "$0")"
if ! command -v make >/dev/null 2>&1 || ! command -v python3 >/dev/null 2>&1 \
   || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq make python3 python3-venv >/dev/null
fi
exec make "$@"
