# make demo   install what is missing (Python packages, Dovecot), then identify a photo
#             through the local mail hub
# make test   install what is missing (also the tests' Debian packages), then check the
#             import contracts and run the test suite
# make test-unit  the fast tests alone (pytest -m unit: tests/unit)
# make bench  print the speed figures quoted in docs/speed.md
# make install  everything the targets above need
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages, in two sets so that the demo installs only what it uses.
# APT_DEMO: Dovecot, the local mail hub's IMAP, POP3 and LMTP server (make demo, make bench).
APT_DEMO := dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd
# APT_PACKAGES: everything the tests use, the demo's set included. Xvfb and xdotool
# drive the camera window; DejaVu renders accented names on it; libpython3.11-testsuite
# holds CPython's email test corpus (tests/e2e/corpora.py, tests/e2e/test_hostile.py).
# swaks and neomutt (send; swaks's TLS needs the two Perl SSL modules) and
# fetchmail (reads) are the third-party mail clients tests/e2e/test_phone_mail.py
# drives against the hub with certificate checks on; libheif-examples' heif-enc
# makes the iPhone-style HEIC photo there. postgresql: the tests start a private
# PostgreSQL server in a temporary folder for the servers' shared ledger
# (tests/e2e/test_workers.py, tests/e2e/test_ledger_postgres.py; animalid/testing/postgres.py).
# chromium and chromium-driver: a real headless browser loads the operations page
# (tests/e2e/test_operations_page.py through Selenium; animalid/testing/browser.py).
APT_PACKAGES := $(APT_DEMO) xvfb xdotool fonts-dejavu-core libpython3.11-testsuite \
                swaks libnet-ssleay-perl libio-socket-ssl-perl fetchmail neomutt \
                libheif-examples postgresql chromium chromium-driver
# One stamp per set: the Python packages with the demo's Debian packages, then the tests' own.
STAMP      := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-tests
PHOTO  ?= tests/photos/tiger.png

# $(call apt_install,PACKAGES): apt-get install whichever of PACKAGES is missing.
define apt_install
@dpkg -s $(1) >/dev/null 2>&1 || \
  ( $(SUDO) apt-get update -q && \
    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $(1) )
endef

.PHONY: install demo test test-unit bench clean-hub

install: $(STAMP) $(TEST_STAMP)

$(STAMP): requirements.txt requirements/client.txt requirements/no-deps.txt pyproject.toml
	$(call apt_install,$(APT_DEMO))
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -r requirements/no-deps.txt
	# The package itself, editable: tests and benchmarks import it, never a path.
	$(PIP) install -q --no-deps -e .
	$(PY) -m animalid.cli.export
	touch $@

$(TEST_STAMP): $(STAMP) Makefile
	$(call apt_install,$(APT_PACKAGES))
	touch $@

demo: $(STAMP)
	$(PY) -m animalid.demo $(PHOTO)

# The import contracts first (pyproject.toml), then every test.
test: $(TEST_STAMP)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

# The fast tests alone (tests/unit): no mail hub, no network weights, no window.
test-unit: $(TEST_STAMP)
	$(PY) -m pytest -q -m unit

bench: $(STAMP)
	$(PY) benchmarks/classifier_speed.py
	$(PY) benchmarks/roundtrip.py

clean-hub:
	rm -rf .mailhub
