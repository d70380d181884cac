# make demo   install what is missing, then identify a photo through the local mail hub
# make test   install what is missing, then check the import contracts and run the test suite
# make test-unit  the fast tests alone (pytest -m unit)
# make bench  print the speed and accuracy figures quoted in the README
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Dovecot for the local mail hub; Xvfb and xdotool drive the camera window in
# tests; DejaVu renders accented names on the camera window; libpython3.11-testsuite
# holds CPython's email test corpus (tests/e2e/corpora.py, tests/e2e/test_hostile.py).
# swaks and neomutt (send; swaks's TLS needs the two Perl SSL modules) and
# fetchmail (reads) are the third-party mail clients tests/e2e/test_phone_mail.py
# drives against the hub with certificate checks on; libheif-examples' heif-enc
# makes the iPhone-style HEIC photo there. postgresql: the tests start a private
# PostgreSQL server in a temporary folder for the servers' shared ledger
# (tests/e2e/test_workers.py, tests/unit/test_ledger.py; animalid/testing/postgres.py).
APT_PACKAGES := dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd xvfb xdotool fonts-dejavu-core \
                libpython3.11-testsuite swaks libnet-ssleay-perl libio-socket-ssl-perl fetchmail neomutt \
                libheif-examples postgresql
STAMP  := $(VENV)/.installed
PHOTO  ?= tests/photos/tiger.png

.PHONY: install demo test test-unit bench clean-hub

install: $(STAMP)

$(STAMP): requirements.txt requirements/client.txt requirements/no-deps.txt pyproject.toml
	@dpkg -s $(APT_PACKAGES) >/dev/null 2>&1 || \
	  ( $(SUDO) apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $(APT_PACKAGES) )
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -r requirements/no-deps.txt
	# The package itself, editable: tests and benchmarks import it, never a path.
	$(PIP) install -q --no-deps -e .
	$(PY) -m animalid.cli.export
	touch $@

demo: $(STAMP)
	$(PY) -m animalid.demo $(PHOTO)

# The import contracts first (pyproject.toml), then every test.
test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

# The fast tests alone: no mail hub, no network model, no window.
test-unit: $(STAMP)
	$(PY) -m pytest -q -m unit

bench: $(STAMP)
	$(PY) benchmarks/classifier_speed.py
	$(PY) benchmarks/roundtrip.py

clean-hub:
	rm -rf .mailhub
