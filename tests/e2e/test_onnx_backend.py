"""The ONNX Runtime backend with the real weights and exports: export round trip, refusals of
stale exports, the auto fallback, no torch in the process, and the same answers as PyTorch."""

from __future__ import annotations

import io
import json
import logging
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from animalid.cli import settings as edge
from animalid.config import load_config
from animalid.errors import ModelError
from animalid.recognition.classifier import Classifier
from animalid.recognition.export import export_network, networks_of
from animalid.recognition.exports import (
    EXPORT_COMMAND,
    StaleExportError,
    check_export,
    export_files,
)
from animalid.recognition.images import load_image
from animalid.recognition.model import EnsembleSpec, ModelSpec
from animalid.testing.harness import PHOTOS, ROOT

pytestmark = pytest.mark.e2e
KB = ROOT / "animal_image.json"
PHOTO_NAMES = ("tiger.png", "dog.png", "bison.png")


@pytest.fixture(scope="module")
def exported() -> None:
    """The repository's exports, as `make install` leaves them (kept when valid)."""
    for description in ("fast", "balanced", "full"):
        for spec in networks_of(ROOT / "models" / f"{description}.json"):
            export_network(spec, KB)


@pytest.fixture(scope="module")
def backends(exported) -> dict:
    config = load_config(ROOT / "config.ini")
    return {backend: edge.classifier(config, backend=backend, device="cpu") for backend in ("onnx", "torch")}


@pytest.fixture
def lite0_copy(tmp_path) -> ModelSpec:
    """A network description of its own, in a folder of its own (no export yet)."""
    shutil.copy(ROOT / "models" / "efficientnet_lite0.json", tmp_path / "lite0.json")
    return ModelSpec.load(tmp_path / "lite0.json")


def test_export_round_trip_writes_a_checked_sidecar(lite0_copy):
    result = export_network(lite0_copy, KB)
    files = export_files(lite0_copy)
    assert result.made and result.path == files.onnx == lite0_copy.path.parent / "onnx" / "lite0.onnx"
    sidecar = json.loads(files.sidecar.read_text())
    assert sidecar["checkpoint_sha256"] == lite0_copy.weights_sha256
    assert sidecar["input_size"] == [3, 224, 224] and sidecar["opset"] == 17 and sidecar["num_classes"] == 1000
    assert sidecar["versions"]["torch"] and sidecar["versions"]["onnxruntime"]
    assert sidecar["max_logit_difference"] < 1e-3 and len(sidecar["labels"]) == 1000
    assert check_export(lite0_copy, 1000) == sidecar
    assert not export_network(lite0_copy, KB).made  # valid: kept

    classifier = Classifier(lite0_copy, KB, backend="onnx", device="cpu")
    [answer] = classifier.classify([("tiger.png", PHOTOS / "tiger.png")])
    assert classifier.backend == "onnx" and answer["taxonomy"]["family"] == "Felidae"


def test_stale_or_damaged_exports_are_refused_with_the_rebuild_command(lite0_copy):
    export_network(lite0_copy, KB)
    files = export_files(lite0_copy)
    rebuild = f"rebuild it: {EXPORT_COMMAND} --model {lite0_copy.path}"
    sidecar = json.loads(files.sidecar.read_text())

    files.sidecar.write_text(json.dumps({**sidecar, "checkpoint_sha256": "0" * 64}))
    with pytest.raises(StaleExportError, match="stale export: its checkpoint_sha256") as refused:
        Classifier(lite0_copy, KB, backend="onnx", device="cpu")
    assert str(refused.value).endswith(rebuild) and "\n" not in str(refused.value)

    files.sidecar.write_text(json.dumps(sidecar))
    bigger = ModelSpec.load(lite0_copy.path)
    bigger.crop = 256
    with pytest.raises(StaleExportError, match=r"its input_size is \[3, 224, 224\]"):
        check_export(bigger)

    files.onnx.write_bytes(files.onnx.read_bytes()[:-100])
    with pytest.raises(StaleExportError, match="damaged export") as refused:
        check_export(lite0_copy)
    assert str(refused.value).endswith(rebuild)

    files.onnx.unlink()
    with pytest.raises(StaleExportError, match="no ONNX export at"):
        check_export(lite0_copy)
    assert export_network(lite0_copy, KB).made  # the command named rebuilds it
    check_export(lite0_copy)


def test_auto_falls_back_to_pytorch_and_says_so_once(lite0_copy, caplog):
    with caplog.at_level(logging.INFO, logger="animalid"):
        classifier = Classifier(lite0_copy, KB, backend="auto", device="cpu")
    notices = [r for r in caplog.records if "classifying with PyTorch" in r.getMessage()]
    assert classifier.backend == "torch" and len(notices) == 1
    assert notices[0].levelno == logging.WARNING and f"{EXPORT_COMMAND} --model" in notices[0].getMessage()
    [answer] = classifier.classify([("tiger.png", PHOTOS / "tiger.png")])
    assert answer["taxonomy"]["family"] == "Felidae"
    with pytest.raises(ModelError, match="no ONNX export"):
        Classifier(lite0_copy, KB, backend="onnx", device="cpu")


def test_a_custom_torchscript_checkpoint_exports_the_same_way(tmp_path):
    import torch

    class MeanColour(torch.nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3)) * 20

    torch.jit.script(MeanColour()).save(str(tmp_path / "colours.pt"))
    (tmp_path / "kb.json").write_text(json.dumps({
        name: {"commonName": name.title(), "description": f"A {name} thing.", "habitat": "Tests",
               "isEndangered": False, "isDangerous": False, "poisonous": False, "venomous": False}
        for name in ("red", "green", "blue")}))
    (tmp_path / "model.json").write_text(json.dumps({
        "architecture": "", "classes": "knowledge_base", "weights": {"format": "torchscript", "path": "colours.pt"},
        "input": {"resize": 40, "crop": 32, "mean": [0.5] * 3, "std": [0.5] * 3}}))
    spec = ModelSpec.load(tmp_path / "model.json")
    assert export_network(spec, tmp_path / "kb.json").made
    classifier = Classifier(spec, tmp_path / "kb.json", backend="onnx", device="cpu")
    buffer = io.BytesIO()
    Image.new("RGB", (50, 50), (0, 255, 0)).save(buffer, "PNG")
    [answer] = classifier.classify([("green.png", buffer.getvalue())])
    assert answer["common_name"] == "Green" and answer["probability"] > 90


def test_the_onnx_path_never_imports_torch(exported):
    code = (
        "import sys\n"
        "from classifier import Classifier\n"
        "from animalid.cli.classify import main\n"
        "from animalid.config import load_config\n"
        "from animalid.cli import settings as edge\n"
        "c = edge.classifier(load_config('config.ini'), backend='onnx')\n"
        "[a] = c.classify([('tiger.png', 'tests/photos/tiger.png')])\n"
        "assert a['taxonomy']['family'] == 'Felidae', a\n"
        "assert main(['--backend', 'onnx', '--json', 'tests/photos/dog.png']) == 0\n"
        "import animalid.server.service\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision'))\n"
        "print('LOADED', loaded)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout, result.stdout


def test_server_and_classifier_py_take_backend(exported):
    for program in ("classifier.py", "server.py"):
        result = subprocess.run([sys.executable, program, "--help"], check=False, cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert "--backend {auto,onnx,torch}" in result.stdout
    result = subprocess.run([sys.executable, "classifier.py", "--backend", "onnx", "--device", "cuda",
                             "tests/photos/tiger.png"], cwd=ROOT, check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "backend = onnx runs on the CPU" in result.stderr


def test_onnx_and_pytorch_logits_agree_on_the_test_photos(backends):
    images = [load_image(PHOTOS / name) for name in PHOTO_NAMES]
    onnx, reference = backends["onnx"].logits(images), backends["torch"].logits(images)
    assert onnx.shape == reference.shape == (2, 2, 3, 1000)
    # The networks alone agree to about 1e-5; what is left is the preprocessing's
    # rounding (Pillow's fixed point against torchvision's float, docs/speed.md).
    assert np.abs(onnx - reference).max() < 0.25
    assert (onnx.argmax(-1) == reference.argmax(-1)).all()
    onnx_answers = backends["onnx"].classify([(n, PHOTOS / n) for n in PHOTO_NAMES])
    torch_answers = backends["torch"].classify([(n, PHOTOS / n) for n in PHOTO_NAMES])
    for mine, theirs in zip(onnx_answers, torch_answers):
        assert (mine["scientific_name"], mine["rank"]) == (theirs["scientific_name"], theirs["rank"])
        assert abs(mine["probability"] - theirs["probability"]) <= 1.0
        # The lead names the same animal; its probability may differ by the same rounding.
        my_lead, their_lead = dict(mine.get("lead") or {}), dict(theirs.get("lead") or {})
        assert abs(my_lead.pop("probability", 0) - their_lead.pop("probability", 0)) <= 1.0
        assert my_lead == their_lead


@pytest.mark.parametrize("mode", ("fast", "balanced", "full"))
def test_every_mode_names_the_tiger_on_onnx(exported, mode):
    classifier = edge.classifier(load_config(ROOT / "config.ini"), backend="onnx",
                                        spec=EnsembleSpec.load(ROOT / "models" / f"{mode}.json"))
    [answer] = classifier.classify([("tiger.png", PHOTOS / "tiger.png")])
    assert classifier.backend == "onnx" and (answer.get("most_likely") or answer)["scientific_name"] == "Panthera tigris"
