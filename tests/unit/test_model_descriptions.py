"""Model descriptions (models/*.json): single networks, ensembles, views, their combination.

No network is loaded: descriptions are parsed and the combination is checked
on chosen logits.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from animalid.errors import ModelError
from animalid.recognition.model import VIEWS, EnsembleSpec, ModelSpec, combine, softmax
from animalid.testing.harness import ROOT

MODELS = ROOT / "models"


def test_the_shipped_modes_describe_networks_views_and_thresholds():
    fast, balanced, full = (EnsembleSpec.load(MODELS / f"{m}.json") for m in ("fast", "balanced", "full"))
    assert [m.spec.architecture for m in fast.members] == ["efficientnet_lite:efficientnet-lite2"]
    assert fast.views == ["pad"]  # the single pass from before the ensemble
    assert [m.spec.crop for m in balanced.members] == [240, 260]
    assert balanced.views == ["pad", "pad-mirror"] and balanced.combine == "logits"
    assert [m.spec.crop for m in full.members] == [224, 240, 260] and full.views == list(VIEWS)
    for mode in (fast, balanced, full):
        assert set(mode.thresholds) == {"species", "genus", "family", "order", "class", "phylum"}
        assert all(m.spec.weights_sha256 for m in mode.members)


def test_the_configured_model_is_a_shipped_mode():
    from animalid.config import load_config

    path = load_config(ROOT / "config.ini").section("classifier").get_path("model")
    assert path.resolve().parent == MODELS.resolve() and path.stem in ("fast", "balanced", "full")


def test_a_single_network_is_a_one_member_ensemble_seen_through_its_fit():
    single = EnsembleSpec.load(MODELS / "efficientnet_lite2.json")
    assert len(single.members) == 1 and single.views == ["pad"]
    # Today's single pass: the same measured thresholds as models/fast.json.
    assert single.thresholds == EnsembleSpec.load(MODELS / "fast.json").thresholds
    assert EnsembleSpec.load(MODELS / "efficientnet_lite0.json").thresholds == {}
    assert isinstance(ModelSpec.load(MODELS / "efficientnet_lite2.json"), ModelSpec)
    assert isinstance(ModelSpec.load(MODELS / "balanced.json"), EnsembleSpec)


def write(tmp_path, **description) -> str:
    base = {"members": [{"model": str(MODELS / "efficientnet_lite0.json")}], "views": ["pad"]}
    base.update(description)
    path = tmp_path / "mode.json"
    path.write_text(json.dumps(base))
    return path


@pytest.mark.parametrize("description, message", [
    ({"views": ["pad", "sideways"]}, "views must be"),
    ({"views": []}, "views must be"),
    ({"members": []}, "non-empty list"),
    ({"members": [{"weight": 1}]}, "needs a 'model'"),
    ({"members": [{"model": str(MODELS / "efficientnet_lite0.json"), "weight": 0}]}, "above 0"),
    ({"members": [{"model": str(MODELS / "balanced.json")}]}, "itself an ensemble"),
    ({"combine": "median"}, "combine must be"),
    ({"temperature": 0}, "temperature must be above 0"),
    ({"thresholds": {"subspecies": 0.5}}, "thresholds must map ranks"),
    ({"thresholds": {"family": 1.5}}, "thresholds must map ranks"),
])
def test_bad_ensemble_descriptions_are_explained(tmp_path, description, message):
    with pytest.raises(ModelError, match=message):
        EnsembleSpec.load(write(tmp_path, **description))


def test_views_can_be_overridden_and_are_checked():
    balanced = EnsembleSpec.load(MODELS / "balanced.json")
    assert balanced.with_views(["crop", "crop-mirror"]).views == ["crop", "crop-mirror"]
    with pytest.raises(ModelError):
        balanced.with_views(["upside-down"])


def test_combine_averages_views_equally_and_members_by_weight():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 4, 10))  # members, views, images, classes
    by_probabilities = combine(logits, [1.0, 3.0], "probabilities")
    expected = 0.25 * softmax(logits[0]).mean(axis=0) + 0.75 * softmax(logits[1]).mean(axis=0)
    assert np.allclose(by_probabilities, expected)
    by_logits = combine(logits, [1.0, 3.0], "logits", temperature=2.0)
    assert np.allclose(by_logits, softmax((0.25 * logits[0].mean(axis=0) + 0.75 * logits[1].mean(axis=0)) / 2.0))
    assert np.allclose(by_logits.sum(axis=1), 1.0) and by_logits.shape == (4, 10)


def test_one_member_and_one_view_is_a_plain_softmax():
    logits = np.array([[[[1.0, 2.0, 3.0]]]])
    for method in ("probabilities", "logits"):
        assert np.allclose(combine(logits, [1.0], method), softmax(logits[0, 0]))
