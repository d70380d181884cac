"""Shared fixtures: the real classifier, loaded once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = Path(__file__).resolve().parent / "photos"


@pytest.fixture(scope="session")
def classifier():
    from animalid.config import load_config
    from animalid.recognition.classifier import Classifier

    return Classifier.from_config(load_config(ROOT / "config.ini"))


@pytest.fixture(scope="session")
def photos() -> Path:
    return PHOTOS
