"""The modes (models/fast.json, balanced.json, full.json) with the real weights on the committed photos:
test-time views, the ensemble's combination, and answers that lead with the animal."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from animalid.cli import settings as edge
from animalid.config import load_config
from animalid.contract import headline
from animalid.errors import ConfigError
from animalid.recognition.images import load_image
from animalid.recognition.model import EnsembleSpec, combine
from animalid.testing.harness import PHOTOS, ROOT

MODES = ("fast", "balanced", "full")


@pytest.fixture(scope="module")
def modes() -> dict:
    config = load_config(ROOT / "config.ini")
    # The PyTorch backend (its networks are inspected below); tests/e2e/test_onnx_backend.py
    # checks the ONNX backend against it.
    return {mode: edge.classifier(config, spec=EnsembleSpec.load(ROOT / "models" / f"{mode}.json"),
                                  backend="torch")
            for mode in MODES}


def answer_of(classifier, name: str, data=None) -> dict:
    [answer] = classifier.classify([(name, data if data is not None else (PHOTOS / name).read_bytes())])
    return answer


def named_animal(answer: dict) -> str:
    return (answer.get("most_likely") or answer)["scientific_name"]


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_names_the_demo_tiger_first(modes, mode):
    answer = answer_of(modes[mode], "tiger.png")
    assert headline(answer).startswith("Tiger (Panthera tigris), ")
    assert answer["taxonomy"]["family"] == "Felidae" and answer["rank"] in ("species", "genus", "family")
    assert named_animal(answer) == "Panthera tigris"


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_answers_the_dog_and_the_bison(modes, mode):
    dog, bison = answer_of(modes[mode], "dog.png"), answer_of(modes[mode], "bison.png")
    assert dog["taxonomy"]["family"] == "Canidae" and named_animal(dog) == "Canis lupus familiaris"
    # The bison class stands for the genus Bison: named "Bison" when it holds its genus.
    assert bison["taxonomy"]["family"] == "Bovidae" and named_animal(bison) in ("Bison bison", "Bison")


def test_the_default_headline_is_honest_about_what_it_claims(classifier):
    answer = answer_of(classifier, "tiger.png")
    assert (answer["rank"], answer["scientific_name"]) == ("family", "Felidae")  # what is claimed
    assert answer["lead"]["common_name"] == answer["most_likely"]["common_name"] == "Tiger"
    lead, claim = headline(answer).split("; ")
    assert lead == f"Tiger (Panthera tigris), {answer['lead']['probability']:g}%"
    assert claim.startswith("at least family Felidae: ")


def test_each_member_sees_every_view_and_the_mirror_is_the_flipped_picture(modes):
    full = modes["full"]
    assert full.spec.views == ["pad", "pad-mirror", "crop", "crop-mirror"]
    assert len(full.networks) == 3
    image = load_image(PHOTOS / "tiger.png")
    for (_network, views_of), member in zip(full.networks, full.spec.members):
        pad, pad_mirror, crop, crop_mirror = views_of(image)
        size = member.spec.crop
        assert pad.shape == crop.shape == (3, size, size)
        assert np.array_equal(pad_mirror.numpy(), pad.flip(-1).numpy())
        assert np.array_equal(crop_mirror.numpy(), crop.flip(-1).numpy())
        assert not np.allclose(pad.numpy(), crop.numpy())
    logits = full.logits([image, load_image(PHOTOS / "dog.png")])
    assert logits.shape == (3, 4, 2, 1000)


def test_answers_come_from_the_combined_outputs(modes):
    balanced = modes["balanced"]
    image = load_image(PHOTOS / "bison.png")
    probs = combine(balanced.logits([image]), balanced.weights, "logits", balanced.spec.temperature)[0]
    answer = answer_of(balanced, "bison.png")
    top = int(np.argmax(probs))
    assert answer["alternatives"][0]["probability"] == round(100 * probs[top], 1)
    # Averaging logits is not averaging probabilities: the description's choice is used.
    assert balanced.spec.combine == "logits"


def test_the_networks_are_loaded_once(modes, monkeypatch):
    import animalid.recognition.classifier as classifier_module

    def no_more_loading(*args, **kwargs):
        raise AssertionError("a network was loaded again while classifying")

    monkeypatch.setattr(classifier_module, "load_network", no_more_loading)
    assert answer_of(modes["full"], "tiger.png")["taxonomy"]["family"] == "Felidae"


def test_a_phone_sized_photo_is_reduced_first_and_answered_alike(modes):
    balanced = modes["balanced"]
    buffer = io.BytesIO()
    Image.open(PHOTOS / "tiger.png").convert("RGB").resize((4032, 3024)).save(buffer, "JPEG", quality=90)
    big = load_image(buffer.getvalue())
    reduced = balanced.shrink(big)
    assert max(reduced.size) < 1000 and min(reduced.size) >= 2 * 260
    answer = answer_of(balanced, "big.jpg", buffer.getvalue())
    assert headline(answer).startswith("Tiger") and answer["taxonomy"]["family"] == "Felidae"




def test_config_chooses_the_model_and_the_views(tmp_path):
    path = tmp_path / "settings.ini"
    path.write_text(f"[classifier]\nmodel = {ROOT / 'models' / 'full.json'}\nviews = pad, crop\n"
                    f"knowledge_base = {ROOT / 'animal_image.json'}\n")
    classifier = edge.classifier(load_config(path))
    assert len(classifier.spec.members) == 3 and classifier.spec.views == ["pad", "crop"]
    assert classifier.builder.rules.threshold("family") == classifier.spec.thresholds["family"]
    assert headline(answer_of(classifier, "tiger.png")).startswith("Tiger")

    path.write_text(f"[classifier]\nmodel = {ROOT / 'models' / 'fast.json'}\nfamily_threshold = 0.99\n"
                    f"knowledge_base = {ROOT / 'animal_image.json'}\n")
    assert edge.classifier(load_config(path)).builder.rules.threshold("family") == 0.99

    path.write_text(f"[classifier]\nviews = pad, sideways\nknowledge_base = {ROOT / 'animal_image.json'}\n")
    with pytest.raises(ConfigError, match="views: 'sideways' is not one of"):
        edge.classifier(load_config(path))


@pytest.mark.parametrize("args", [(), ("--model", "models/fast.json"), ("--model", "models/full.json")])
def test_classifier_py_opens_the_demo_photo_with_tiger(args):
    result = subprocess.run([sys.executable, "classifier.py", *args, "tests/photos/tiger.png"], cwd=ROOT,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("tests/photos/tiger.png: Tiger (Panthera tigris), ")
