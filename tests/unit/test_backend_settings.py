"""The backend setting and the answer rules' one set of defaults (issue 16, items 1 and 6)."""

from __future__ import annotations

import pytest

from animalid.cli.settings import answer_rules
from animalid.config import DEFAULTS, load_config
from animalid.errors import ModelError
from animalid.recognition.answer import AnswerRules
from animalid.recognition.onnx_backend import BACKENDS, choose_backend
from animalid.testing.harness import ROOT


def test_answer_rules_in_code_are_the_config_defaults(tmp_path):
    # `from classifier import Classifier` without rules uses AnswerRules(); the
    # server and classifier.py read config.ini: both must answer alike.
    empty = tmp_path / "settings.ini"
    empty.write_text("")
    assert AnswerRules() == answer_rules(load_config(empty).section("classifier"))
    assert AnswerRules() == answer_rules(load_config(ROOT / "config.ini").section("classifier"))
    assert AnswerRules().animal_threshold == float(DEFAULTS["classifier"]["animal_threshold"])


def test_backend_default_is_auto_everywhere():
    assert DEFAULTS["classifier"]["backend"] == "auto"
    assert load_config(ROOT / "config.ini").section("classifier").get_choice("backend", BACKENDS) == "auto"


def test_backend_choice():
    assert choose_backend("torch", "cpu")[0] == "torch"
    assert choose_backend("auto", "cuda") == ("torch", "device = cuda: the GPU runs PyTorch")
    assert choose_backend("onnx", "cpu")[0] == "onnx"
    assert choose_backend("auto", "cpu")[0] == "onnx"


def test_onnx_backend_refuses_a_gpu_and_unknown_backends():
    with pytest.raises(ModelError, match="backend = onnx runs on the CPU"):
        choose_backend("onnx", "cuda")
    with pytest.raises(ModelError, match="backend must be one of auto, onnx, torch"):
        choose_backend("tensorrt", "cpu")


def test_a_bad_backend_in_config_ini_is_named(tmp_path):
    path = tmp_path / "settings.ini"
    path.write_text("[classifier]\nbackend = onxx\n")
    with pytest.raises(Exception, match=r"\[classifier\] backend"):
        load_config(path).section("classifier").get_choice("backend", BACKENDS)
