"""The classifier with the real EfficientNet-Lite2 weights on real photos."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from PIL import Image

from animalid.contract import CONTRACT_KEYS, lead_of, render_text
from animalid.errors import ModelError
from animalid.testing.harness import ROOT

TIGER, DOG, BISON = "tiger.png", "dog.png", "bison.png"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "classifier.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def as_bytes(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def named_animal(answer: dict) -> str:
    """The species an answer names, or names as most likely when it rolls up."""
    return (answer.get("most_likely") or answer)["scientific_name"]


def test_tiger_is_named_with_its_facts(classifier, photos):
    [answer] = classifier.classify([(TIGER, (photos / TIGER).read_bytes())])
    assert set(CONTRACT_KEYS) <= set(answer)
    assert named_animal(answer) == "Panthera tigris"
    assert answer["rank"] in ("species", "genus", "family")
    assert answer["dangerous"] is True
    # Issue 19: the facts go with what they describe: the tiger's with the lead (the
    # tiger), the top level's with the claim (the family, which has none of its own).
    assert (lead_of(answer) or answer)["endangered"] == "Endangered"
    assert 0 < answer["probability"] <= 100
    assert answer["taxonomy"]["family"] == "Felidae"
    assert answer["alternatives"][0]["scientific_name"] == "Panthera tigris"


def test_answers_keep_input_order_and_bad_items_get_errors(classifier, photos):
    items = [(DOG, photos / DOG), ("junk.jpg", b"not an image"), (TIGER, photos / TIGER)]
    answers = classifier.classify(items)
    assert [a["file"] for a in answers] == [DOG, "junk.jpg", TIGER]
    assert "error" in answers[1] and "not an image" in answers[1]["error"]
    assert answers[0]["taxonomy"]["family"] == "Canidae"
    assert named_animal(answers[0]) == "Canis lupus familiaris"
    assert named_animal(answers[2]) == "Panthera tigris"


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "CMYK"])
def test_other_image_modes_give_the_same_animal(classifier, photos, mode):
    tiger = Image.open(photos / TIGER).convert("RGB")
    data = as_bytes(tiger.convert(mode), "JPEG" if mode == "CMYK" else "PNG")
    [answer] = classifier.classify([(mode, data)])
    assert answer["taxonomy"]["family"] == "Felidae"


def test_exif_rotated_photo_is_turned_upright(classifier, photos):
    tiger = Image.open(photos / TIGER).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    data = as_bytes(tiger.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif.tobytes(), quality=95)
    [answer] = classifier.classify([("rotated", data)])
    assert named_animal(answer) == "Panthera tigris"


def test_non_animal_is_not_given_an_animal_name(classifier):
    # A flat grey card: nothing alive in it.
    [answer] = classifier.classify([("grey", as_bytes(Image.new("RGB", (300, 300), (128, 128, 128))))])
    assert answer["rank"] == "none"
    assert answer["common_name"] in ("Could not identify", "No animal recognised")


def test_text_form_reads_well(classifier, photos):
    [answer] = classifier.classify([(TIGER, photos / TIGER)])
    text = render_text(answer)
    assert text.startswith("tiger.png: ") and "Tiger" in text.splitlines()[0]
    assert "DANGEROUS" in text and "Alternatives:" in text


def test_cli_json_contract_in_input_order():
    result = run_cli("--json", "--top-k", "2", f"tests/photos/{BISON}", f"tests/photos/{TIGER}")
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    assert [a["file"] for a in answers] == [f"tests/photos/{BISON}", f"tests/photos/{TIGER}"]
    assert all(len(a["alternatives"]) == 2 for a in answers)


def test_cli_bad_files_get_one_line_each_and_the_rest_is_answered(tmp_path):
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes((ROOT / "tests/photos" / TIGER).read_bytes()[:500])
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")
    result = run_cli(str(truncated), f"tests/photos/{TIGER}", str(text_file), str(tmp_path / "absent.png"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 3
    assert "truncated.jpg" in errors[0] and "notes.txt" in errors[1] and "absent.png" in errors[2]
    assert "Panthera tigris" in result.stdout


def test_cli_help_explains_itself():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "--json" in result.stdout and "Could not identify" in result.stdout


def write_description(tmp_path, weights: str, fmt: str, classes) -> str:
    description = {
        "architecture": "", "classes": classes,
        "weights": {"format": fmt, "path": weights},
        "input": {"resize": 40, "crop": 32, "mean": [0.5] * 3, "std": [0.5] * 3},
    }
    path = tmp_path / "model.json"
    path.write_text(json.dumps(description))
    return str(path)


def test_custom_torchscript_model_with_seed_knowledge_base(tmp_path):
    """A user's own checkpoint: TorchScript plus a seed-format knowledge base."""
    import torch

    from animalid.recognition.classifier import Classifier
    from animalid.recognition.model import ModelSpec

    class MeanColour(torch.nn.Module):
        # Scores "red", "green", "blue" by the mean of each channel.
        def forward(self, x):
            return x.mean(dim=(2, 3)) * 20

    torch.jit.script(MeanColour()).save(str(tmp_path / "colours.pt"))
    seed = {name: {"commonName": name.title(), "description": f"A {name} thing.", "habitat": "Tests",
                   "isEndangered": name == "green", "isDangerous": name == "red",
                   "poisonous": False, "venomous": False}
            for name in ("red", "green", "blue")}
    (tmp_path / "kb.json").write_text(json.dumps(seed))
    spec = ModelSpec.load(write_description(tmp_path, "colours.pt", "torchscript", "knowledge_base"))
    classifier = Classifier(spec, tmp_path / "kb.json", device="cpu")
    [answer] = classifier.classify([("red.png", as_bytes(Image.new("RGB", (50, 50), (255, 0, 0))))])
    assert answer["common_name"] == "Red" and answer["dangerous"] is True
    assert answer["probability"] > 90


def test_pickled_model_needs_explicit_opt_in(tmp_path):
    import torch

    from animalid.recognition.classifier import Classifier
    from animalid.recognition.model import ModelSpec

    torch.save(torch.nn.Identity(), tmp_path / "model.pkl")
    spec = ModelSpec.load(write_description(tmp_path, "model.pkl", "pickle", ["a"]))
    with pytest.raises(ModelError, match="allow_pickle"):
        Classifier(spec, ROOT / "animal_image.json", device="cpu")


def test_damaged_weights_are_named(tmp_path):
    from animalid.recognition.classifier import Classifier
    from animalid.recognition.model import ModelSpec

    (tmp_path / "w.pth").write_bytes(b"garbage")
    spec = ModelSpec.load(write_description(tmp_path, "w.pth", "state_dict", "imagenet-1k"))
    spec.architecture = "efficientnet_lite:efficientnet-lite2"
    with pytest.raises(ModelError, match="w.pth"):
        Classifier(spec, ROOT / "animal_image.json", device="cpu")
