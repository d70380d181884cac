"""Schema and consistency of animal_image.json, the knowledge base behind every answer."""

from __future__ import annotations

import json
import re

import pytest

from animalid.recognition.knowledge import CLASS_RANKS, IUCN_CATEGORIES, RANKS, load_knowledge_base
from animalid.testing.harness import ROOT

KB_PATH = ROOT / "animal_image.json"
ANIMAL_CLASSES = range(398)
ENTRY_KEYS = {"label", "common_name", "scientific_name", "class_rank", "taxonomy", "description",
              "habitat", "conservation", "conservation_assessed", "dangerous", "poisonous", "venomous"}
BINOMIAL = re.compile(r"^[A-Z][a-z]+ [a-z]+(-[a-z]+)?( [a-z]+)?$")
DOG_BREEDS = range(151, 269)


@pytest.fixture(scope="module")
def raw() -> dict:
    return json.loads(KB_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def classes(raw) -> dict:
    return raw["classes"]


def test_every_animal_class_has_exactly_one_entry_in_order(raw, classes):
    assert raw["format"] == "animalid-kb/1"
    assert list(classes) == [str(i) for i in ANIMAL_CLASSES]


def test_labels_match_the_network_class_names(classes):
    from torchvision.models import EfficientNet_B0_Weights

    names = EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"]
    mismatched = [k for k, e in classes.items() if e["label"] != names[int(k)]]
    assert not mismatched


@pytest.mark.parametrize("index", [str(i) for i in ANIMAL_CLASSES])
def test_entry_schema(classes, index):
    entry = classes[index]
    assert set(entry) == ENTRY_KEYS
    for key in ("label", "common_name", "description", "habitat"):
        assert isinstance(entry[key], str) and entry[key].strip(), key
    assert BINOMIAL.match(entry["scientific_name"]), entry["scientific_name"]
    assert entry["class_rank"] in CLASS_RANKS
    assert entry["conservation"] in IUCN_CATEGORIES
    for flag in ("dangerous", "poisonous", "venomous"):
        assert isinstance(entry[flag], bool), flag
    taxonomy = entry["taxonomy"]
    assert list(taxonomy) == list(RANKS)
    assert all(isinstance(taxonomy[r], str) and taxonomy[r] for r in RANKS)
    assert taxonomy["species"] == entry["scientific_name"]
    assert entry["scientific_name"].split()[0] == taxonomy["genus"]
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", entry["description"].strip()) if s]
    assert 1 <= len(sentences) <= 3, entry["description"]


def test_dog_breeds_are_one_domestic_species(classes):
    for index in DOG_BREEDS:
        entry = classes[str(index)]
        assert entry["scientific_name"] == "Canis lupus familiaris", index
        assert entry["class_rank"] == "breed"
        assert entry["conservation"] == "Domesticated"


def test_taxonomy_is_a_tree(classes):
    """Each taxon has one parent, or probabilities would be added up wrongly."""
    parent: dict[tuple[str, str], tuple[str, str]] = {}
    for index, entry in classes.items():
        lineage = [(rank, entry["taxonomy"][rank]) for rank in RANKS]
        for child, up in zip(lineage[1:], lineage):
            seen = parent.setdefault(child, up)
            assert seen == up, f"class {index}: {child} under {up}, elsewhere under {seen}"


def test_higher_taxa_that_answers_can_name_have_common_names(raw, classes):
    kb = load_knowledge_base(KB_PATH)
    needed = {taxon for entry in kb.entries.values() for rank, taxon in entry.lineage()
              if rank != "species"}
    missing = sorted(needed - set(raw["taxa"]))
    assert not missing


def test_flags_on_well_known_animals(classes):
    by_label = {e["label"]: e for e in classes.values()}
    assert by_label["tiger"]["dangerous"] and by_label["tiger"]["conservation"] == "EN"
    assert by_label["Indian cobra"]["venomous"]
    assert by_label["puffer"]["poisonous"]
    assert by_label["scorpion"]["venomous"]
    assert not by_label["goldfish"]["dangerous"]
