"""Look-alike groups, merged species, scene evidence, coverage-aware claims and facts that
belong to what they describe (issue 19), on chosen probabilities with the real knowledge base.

No network: the AnswerBuilder of each mode (models/*.json thresholds plus
config.ini) is fed probability vectors.
"""

from __future__ import annotations

import pytest

from animalid.cli.settings import answer_rules
from animalid.config import load_config
from animalid.contract import LEAD_KEYS, headline, lead_of, lead_parts, render_text
from animalid.recognition.answer import AnswerBuilder
from animalid.recognition.classifier import rules_for
from animalid.recognition.knowledge import load_knowledge_base
from animalid.recognition.model import EnsembleSpec
from animalid.testing.harness import ROOT

KB = load_knowledge_base(ROOT / "animal_image.json")
LABELS = [KB.entries[i].label if i in KB else f"object {i}" for i in range(1000)]
SCENE = {"dogsled": 537, "muzzle": 676, "horse cart": 603, "oxcart": 690, "plow": 730}
for _label, _index in SCENE.items():
    LABELS[_index] = _label


@pytest.fixture(scope="module", params=("fast", "balanced", "full"))
def builder(request):
    rules = rules_for(EnsembleSpec.load(ROOT / "models" / f"{request.param}.json"),
                      answer_rules(load_config(ROOT / "config.ini").section("classifier")))
    return AnswerBuilder(KB, LABELS, rules, top_k=3)


def vector(**by_label: float) -> list[float]:
    out = [0.0] * 1000
    for label, p in by_label.items():
        out[LABELS.index(label.replace("_", " "))] = p
    rest = (1.0 - sum(out)) / 1000
    return [p + rest for p in out]


def sure_of(index: int, p: float) -> list[float]:
    out = [(1.0 - p) / 999] * 1000
    out[index] = p
    return out


def names_in(group_name: str) -> set[str]:
    return {group_name.lower()}


@pytest.mark.parametrize("p", (0.97, 0.75))
def test_every_class_headline_names_the_class_or_a_group_that_contains_it(builder, p):
    """Walk every class: the headline opens with the class, its species (breeds merged) or a
    group (a look-alike group or a claimed taxon) that contains the class."""
    bad = []
    for index, entry in sorted(KB.entries.items()):
        answer = builder.build(entry.label, sure_of(index, p))
        title, _, _ = lead_parts(answer)
        lead = lead_of(answer) or answer
        unit = builder.units[builder.unit_of[index]]
        names_class = title.lower() in (entry.common_name.lower(), unit.common_name.lower())
        group = next((g for g in KB.lookalike_groups if g.scientific_name == lead["scientific_name"]), None)
        contains = (group.contains(entry.taxonomy) if group is not None
                    else lead.get("rank") in entry.taxonomy and
                    entry.taxonomy[lead["rank"]] == lead["scientific_name"])
        if not (names_class or contains) or not headline(answer).startswith(title):
            bad.append(f"{index} {entry.label}: {headline(answer)}")
    assert not bad, f"{len(bad)} headlines name neither the class nor a group containing it:\n" + "\n".join(bad)


def test_the_lead_object_has_the_contract_keys(builder):
    answer = builder.build("t", vector(tiger=0.64, tiger_cat=0.11, Egyptian_cat=0.02))
    assert set(LEAD_KEYS) <= set(answer["lead"])
    assert answer["lead"]["common_name"] == "Tiger" and answer["lead"]["rank"] == "species"
    assert answer["most_likely"]["common_name"] == "Tiger"  # most_likely stays the top class
    assert headline(answer).startswith("Tiger (Panthera tigris), 64%")


def test_breeds_merge_into_one_species_before_anything_is_judged(builder):
    # No breed reaches 20%, yet the dog is 75%: the answer is a dog, not "Chordata".
    answer = builder.build("d", vector(Labrador_retriever=0.15, golden_retriever=0.15, beagle=0.15,
                                       basset=0.15, Chihuahua=0.15))
    lead = lead_of(answer) or answer
    assert lead["common_name"] == "Dog" and lead["scientific_name"] == "Canis lupus familiaris"
    assert answer["alternatives"][0]["common_name"] == "Dog"
    assert answer["alternatives"][0]["probability"] == pytest.approx(78.0, abs=0.5)  # 75% plus the 120 breeds' share of the rest


def test_forms_of_one_species_are_one_alternative(builder):
    answer = builder.build("e", vector(African_elephant=0.253, tusker=0.218, Indian_elephant=0.1))
    first = answer["alternatives"][0]
    assert (first["scientific_name"], first["probability"]) == ("Loxodonta africana", pytest.approx(47.1, abs=0.2))
    assert sum(alt["scientific_name"] == "Loxodonta africana" for alt in answer["alternatives"]) == 1


def test_scene_classes_add_to_their_animal(builder):
    without = builder.build("s", vector(Siberian_husky=0.30, malamute=0.10))
    with_sled = builder.build("s", vector(Siberian_husky=0.30, malamute=0.10, dogsled=0.35))
    assert with_sled["alternatives"][0]["probability"] > without["alternatives"][0]["probability"] + 30
    assert (lead_of(with_sled) or with_sled)["scientific_name"] == "Canis lupus familiaris"


def test_a_class_with_look_alikes_leads_with_its_group(builder):
    answer = builder.build("s", vector(sea_lion=0.62))
    assert answer["lead"]["common_name"] == "Seal or sea lion"
    assert answer["lead"]["scientific_name"] == "Pinnipedia"
    line = headline(answer)
    assert line.startswith("Seal or sea lion (Pinnipedia), 62%; most like Sea lion")
    # The claim does not go deeper than the look-alikes: not "family Otariidae".
    assert answer["rank"] not in ("family", "genus", "species")


def test_a_very_sure_class_is_named_even_with_look_alikes(builder):
    index = LABELS.index("sea lion")
    answer = builder.build("s", sure_of(index, 0.97))
    assert headline(answer).startswith("Sea lion")


def test_a_thinly_covered_family_needs_more(builder):
    # Cyprinidae: two classes of ~1,700 species; Felidae: nine of 41.
    carp = builder.taxon_threshold("family", "Cyprinidae")
    cats = builder.taxon_threshold("family", "Felidae")
    base = builder.rules.threshold("family")
    assert carp > cats > base or (carp > base and cats >= base)
    answer = builder.build("f", vector(tench=0.30, goldfish=0.28))
    assert answer["scientific_name"] != "Cyprinidae"


def test_a_weak_guess_lends_the_answer_no_facts(builder):
    # The giraffe case: a broad claim with an impala at 6%. No impala facts anywhere.
    answer = builder.build("g", vector(impala=0.06, hartebeest=0.05, ox=0.05, hog=0.05, sorrel=0.05,
                                       tiger=0.04, brown_bear=0.04, gorilla=0.04, zebra=0.04))
    impala = KB.entries[LABELS.index("impala")]
    text = render_text(answer)
    assert impala.description not in text and impala.habitat not in text
    assert answer["description"] in ("", None) or answer["rank"] == "species"


def test_top_level_facts_describe_the_top_level_names(builder):
    answer = builder.build("t", vector(tiger=0.64, tiger_cat=0.11, Egyptian_cat=0.02))
    tiger = KB.entries[LABELS.index("tiger")]
    assert answer["common_name"] != "Tiger"  # the claim is the family
    assert answer["description"] != tiger.description
    assert answer["lead"]["description"] == tiger.description
    assert "Facts about:  Tiger (Panthera tigris)" in render_text(answer)


def test_answers_from_older_servers_still_render():
    old = {"file": "t", "scientific_name": "Felidae", "common_name": "Cat (wild or domestic)",
           "rank": "family", "probability": 77.3, "lead": True, "description": "", "habitat": "",
           "endangered": "", "taxonomy": {}, "alternatives": [],
           "most_likely": {"common_name": "Tiger", "scientific_name": "Panthera tigris", "probability": 64.0}}
    assert headline(old).startswith("Tiger (Panthera tigris), 64%; at least family Felidae")
    assert lead_parts(old) == ("Tiger", "Panthera tigris", 64.0)
