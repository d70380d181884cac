"""Shared fixtures: the real classifier, loaded once per test session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = Path(__file__).resolve().parent / "photos"
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def classifier():
    from animalid.config import load_config
    from classifier import Classifier

    return Classifier.from_config(load_config(ROOT / "config.ini"))


@pytest.fixture(scope="session")
def photos() -> Path:
    return PHOTOS
