"""Facts fixed by the knowledge-base audit (docs/kb-audit.md) and the consistency rules it applied.

Reads animal_image.json directly with json + pathlib, so it does not depend on the package layout.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

KB_NAME = "animal_image.json"
NO_ASSESSMENT = {"Domesticated", "NE"}


def _repo_root() -> Path:
    """The nearest directory above this file that holds the knowledge base."""
    here = Path(__file__).resolve().parent
    for directory in (here, *here.parents):
        if (directory / KB_NAME).is_file():
            return directory
    raise FileNotFoundError(f"no {KB_NAME} above {here}")


KB_PATH = _repo_root() / KB_NAME


@pytest.fixture(scope="module")
def raw() -> dict:
    return json.loads(KB_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def classes(raw) -> dict:
    return raw["classes"]


def test_provenance_is_recorded(raw):
    source = raw.get("conservation_source")
    assert isinstance(source, str) and "IUCN" in source
    assert "conservation_assessed" in raw["about"]


def test_every_entry_has_an_assessment_year_exactly_when_it_has_a_category(classes):
    assert len(classes) == 398
    for index, entry in classes.items():
        assert "conservation_assessed" in entry, index
        keys = list(entry)
        assert keys[keys.index("conservation") + 1] == "conservation_assessed", index
        year = entry["conservation_assessed"]
        if entry["conservation"] in NO_ASSESSMENT:
            assert year is None, index
        else:
            assert type(year) is int and 1994 <= year <= 2026, (index, year)


AUDITED = [
    # (index, label, field, expected)
    (373, "macaque", "dangerous", True),          # herpes B virus transmitted by bites
    (78, "tick", "dangerous", True),              # Lyme disease and other tick-borne infections
    (107, "jellyfish", "dangerous", True),        # box jellies and some other jellyfish can kill
    (107, "jellyfish", "venomous", True),
    (328, "sea urchin", "venomous", True),        # group entry; some urchins have venomous spines
    (393, "anemone fish", "conservation", "LC"),  # Amphiprion ocellaris assessed LC in 2021
    (393, "anemone fish", "conservation_assessed", 2021),
    (51, "triceratops", "conservation", "NE"),    # fossil: IUCN EX only covers extinctions since 1500
    (69, "trilobite", "conservation", "NE"),
    (333, "hamster", "conservation", "Domesticated"),  # the class is the pet hamster
    (1, "goldfish", "conservation", "Domesticated"),   # the class is the domestic goldfish
    (309, "bee", "conservation", "NE"),           # honey bee: only a European regional DD assessment
    (386, "African elephant", "conservation", "EN"),   # savanna elephant, 2021 split
    (386, "African elephant", "conservation_assessed", 2021),
    (388, "giant panda", "conservation", "VU"),   # downlisted from EN in 2016
    (388, "giant panda", "conservation_assessed", 2016),
    (109, "brain coral", "conservation_assessed", 2022),  # uplisted to CR in the 2022 coral update
    (60, "night snake", "scientific_name", "Hypsiglena chlorophaea"),  # US night snakes after the 2008 split
    (60, "night snake", "class_rank", "genus"),
    (136, "European gallinule", "common_name", "Western swamphen (purple swamphen)"),
]


@pytest.mark.parametrize("index,label,field,expected", AUDITED,
                         ids=[f"{i}-{f}" for i, _, f, _ in AUDITED])
def test_audited_fact(classes, index, label, field, expected):
    entry = classes[str(index)]
    assert entry["label"] == label
    assert entry[field] == expected


def test_fossil_taxa_are_not_evaluated_rather_than_extinct(classes):
    assert not [k for k, e in classes.items() if e["conservation"] in {"EX", "EW"}]
    for index in ("51", "69"):
        assert "fossil" in (classes[index]["description"] + classes[index]["habitat"]).lower()


def test_breeds_and_domestic_forms_are_domesticated(classes):
    for index, entry in classes.items():
        if entry["class_rank"] == "breed":
            assert entry["conservation"] == "Domesticated", index


def test_forest_elephant_status_is_stated(classes):
    assert "forest elephant" in classes["386"]["description"]
    assert "Critically Endangered" in classes["386"]["description"]


# A description may mention venom without the animal being venomous only when it says why.
VENOM_EXPLAINED = re.compile(r"non-venomous|no venom|not venomous|resist", re.I)


def test_venom_in_description_means_venomous_or_explained(classes):
    bad = [k for k, e in classes.items()
           if re.search(r"venom", e["description"], re.I)
           and not e["venomous"] and not VENOM_EXPLAINED.search(e["description"])]
    assert not bad


def test_venomous_entries_say_how_the_venom_is_delivered(classes):
    bad = [k for k, e in classes.items()
           if e["venomous"] and not re.search(r"venom|sting|bite|fang", e["description"], re.I)]
    assert not bad


def test_descriptions_that_say_it_can_kill_people_carry_a_flag(classes):
    deadly = re.compile(r"\b(fatal|can kill|killed people|kills more people|kill a person|kill people)\b", re.I)
    bad = [k for k, e in classes.items()
           if deadly.search(e["description"]) and not (e["dangerous"] or e["poisonous"])]
    assert not bad


def test_disease_transmitted_by_bites_makes_an_animal_dangerous(classes):
    transmits = re.compile(r"transmit\w*[^.;]*\b(disease|virus|infection)", re.I)
    bad = [k for k, e in classes.items() if transmits.search(e["description"]) and not e["dangerous"]]
    assert not bad
