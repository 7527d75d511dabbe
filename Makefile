# One-command set-up and run on a fresh Debian 12 (as root): `sh bootstrap.sh demo|test`
# (bootstrap.sh only adds make and python3-venv when missing, then runs these targets).
# Every target installs what it needs first; nothing is assumed to be on the machine.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
TCPSTALL := $(VENV)/bin/tcpstall
SAMPLES := sample_captures
APT_PACKAGES := tshark tcpdump nftables ethtool iproute2 python3-venv \
                wireshark-qt xvfb xdotool imagemagick chromium tcpreplay
# one tool per package above, to decide whether apt-get is needed at all
APT_TOOLS := tshark editcap dumpcap tcpdump nft ethtool ip wireshark Xvfb xdotool import chromium tcprewrite

.PHONY: demo test test-host test-debian13 setup os-deps venv lab bench-data bench fuzz clean

# The main job on the bundled captures: one capture of each incident, then the two-capture
# story of the heartbeat loss with both applications' logs (and an HTML ladder to open).
demo: setup
	$(TCPSTALL) doctor
	$(TCPSTALL) analyze $(SAMPLES)/heartbeat-loss-server.pcapng
	$(TCPSTALL) analyze $(SAMPLES)/small-rcvbuf-nohs-client.pcapng
	$(TCPSTALL) analyze -o tcp_retries2:6 $(SAMPLES)/peer-vanishes-client.pcapng
	$(TCPSTALL) correlate $(SAMPLES)/heartbeat-loss-client.pcapng $(SAMPLES)/heartbeat-loss-server.pcapng \
	  --log $(SAMPLES)/heartbeat-loss-sender.log@A --log $(SAMPLES)/heartbeat-loss-receiver.log@B \
	  --html demo-heartbeat-loss.html
	@echo; echo "open demo-heartbeat-loss.html in a browser for the ladder diagram"

# The suite on this machine's tshark (Debian 12: 4.0), then in a Debian 13 root with its stock
# Wireshark 4.4, as root (.ci/debian13.sh: debootstrap, the suite, the README commands and the
# plugin's output on every capture compared with 4.0). Both need root, as CI runs them.
# On a fresh machine the Debian 13 root (~3.5 min, mostly downloads) is built while the host's
# parallel suite runs, never beside the lab and GUI tests, whose timing a busy machine disturbs.
HOST_SUITE := $(PY) -m pytest -q -m "not lab and not gui"
HOST_LAB_GUI := $(PY) -m pytest -q -m "lab or gui" -n 0
DEBIAN13_SUITE := sh .ci/debian13.sh test

test: setup
	@mkdir -p build
	@sh .ci/debian13.sh build >build/debian13-build.log 2>&1 & build=$$!; \
	$(HOST_SUITE); rc=$$?; \
	wait $$build || { cat build/debian13-build.log; echo "debian13: building the root failed"; exit 1; }; \
	exit $$rc
	$(HOST_LAB_GUI)
	$(DEBIAN13_SUITE)

test-host: setup
	$(HOST_SUITE)
	$(HOST_LAB_GUI)

test-debian13: setup
	$(DEBIAN13_SUITE)

setup: os-deps $(VENV)/.installed

# apt-get only when a tool is missing, non-interactively; tshark's debconf question about
# non-root capture is preseeded so the install never waits for an answer.
os-deps:
	@missing=""; \
	for tool in $(APT_TOOLS); do command -v $$tool >/dev/null || missing=1; done; \
	python3 -c 'import venv, ensurepip' 2>/dev/null || missing=1; \
	if [ -n "$$missing" ]; then \
	  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

# Regenerate the committed captures (root, network namespaces).
lab: setup
	$(PY) lab/run.py --all

# The large bulk-loss pair for benchmarks (not committed).
bench-data: setup
	$(PY) lab/run.py bulk-loss many-conns --out bench/data

bench: setup
	$(PY) -m bench

fuzz: setup
	$(PY) -m bench.fuzz --cases 1000 --seed 1

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
