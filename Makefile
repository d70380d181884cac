# make demo   install what is missing, then identify a photo through the local mail hub
# make test   install what is missing, then run the test suite
# make bench  print the speed and accuracy figures quoted in the README
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Dovecot for the local mail hub; Xvfb and xdotool drive the camera window in
# tests; DejaVu renders accented names on the camera window; libpython3.11-testsuite
# holds CPython's email test corpus (tests/corpora.py, tests/test_hostile.py).
APT_PACKAGES := dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd xvfb xdotool fonts-dejavu-core \
                libpython3.11-testsuite
STAMP  := $(VENV)/.installed
PHOTO  ?= tests/photos/tiger.png

.PHONY: install demo test bench clean-hub

install: $(STAMP)

$(STAMP): requirements.txt requirements/client.txt requirements/no-deps.txt
	@dpkg -s $(APT_PACKAGES) >/dev/null 2>&1 || \
	  ( $(SUDO) apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $(APT_PACKAGES) )
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -r requirements/no-deps.txt
	touch $@

demo: $(STAMP)
	$(PY) -m animalid.demo $(PHOTO)

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/classifier_speed.py
	$(PY) benchmarks/roundtrip.py

clean-hub:
	rm -rf .mailhub
