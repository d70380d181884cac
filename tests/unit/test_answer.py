"""The roll-up rules on chosen probabilities, with the real knowledge base."""

from __future__ import annotations

import pytest

from animalid.contract import headline, render_text
from animalid.recognition.answer import AnswerBuilder, AnswerRules
from animalid.recognition.knowledge import load_knowledge_base
from animalid.testing.harness import ROOT

RULES = AnswerRules(rank_threshold=0.5, min_confidence=0.2, animal_threshold=0.2,
                    rank_thresholds={"species": 0.9, "genus": 0.8, "family": 0.55})


@pytest.fixture(scope="module")
def builder():
    kb = load_knowledge_base(ROOT / "animal_image.json")
    labels = [kb.entries[i].label if i in kb else f"object {i}" for i in range(1000)]
    labels[620] = "laptop"
    return AnswerBuilder(kb, labels, RULES, top_k=3)


def index_of(builder, label: str) -> int:
    return next(i for i, entry in builder.kb.entries.items() if entry.label == label)


def probs(builder, **by_label) -> list[float]:
    vector = [0.0] * 1000
    for label, p in by_label.items():
        index = 620 if label == "laptop" else index_of(builder, label.replace("_", " "))
        vector[index] = p
    rest = (1.0 - sum(vector)) / 1000
    return [p + rest for p in vector]


def test_a_confident_species_is_named(builder):
    answer = builder.build("t.jpg", probs(builder, tiger=0.95))
    assert (answer["rank"], answer["scientific_name"], answer["common_name"]) == \
        ("species", "Panthera tigris", "Tiger")
    assert "most_likely" not in answer
    assert answer["dangerous"] and answer["endangered"] == "Endangered"


def test_breeds_add_up_to_a_dog_with_the_most_likely_breed(builder):
    answer = builder.build("d.jpg", probs(builder, malamute=0.40, Siberian_husky=0.30, Eskimo_dog=0.25))
    assert (answer["rank"], answer["scientific_name"], answer["common_name"]) == \
        ("species", "Canis lupus familiaris", "Dog")
    assert answer["most_likely"]["common_name"] == "Alaskan Malamute"
    assert headline(answer).startswith("Dog (Canis lupus familiaris), 95")


def test_unsure_between_big_cats_answers_the_genus(builder):
    answer = builder.build("c.jpg", probs(builder, lion=0.45, tiger=0.40))
    assert (answer["rank"], answer["scientific_name"]) == ("genus", "Panthera")
    assert answer["common_name"] == "Big cat"
    assert answer["taxonomy"]["species"] is None and answer["taxonomy"]["genus"] == "Panthera"


def test_a_venomous_candidate_raises_the_flag_even_if_not_the_top_one(builder):
    answer = builder.build("s.jpg", probs(builder, king_snake=0.5, Indian_cobra=0.2, green_mamba=0.1))
    assert answer["rank"] in ("family", "order")
    assert answer["venomous"] is True


def test_no_animal_says_what_it_looks_like(builder):
    answer = builder.build("l.jpg", probs(builder, laptop=0.9))
    assert answer["rank"] == "none" and answer["common_name"] == "No animal recognised"
    assert answer["looks_like"]["label"] == "laptop"
    assert "it looks like: laptop" in render_text(answer)


def test_below_min_confidence_at_every_rank_could_not_identify(builder):
    # Animal enough not to be "no animal", but split between two phyla.
    answer = builder.build("x.jpg", probs(builder, tiger=0.15, scorpion=0.15, laptop=0.65))
    assert answer["common_name"] == "Could not identify"
    assert answer["rank"] == "none" and answer["alternatives"]


# -- the headline leads with the animal, and claims no more than the answer ------

def test_a_clear_favourite_leads_the_headline_and_the_claim_follows(builder):
    # The demo tiger's shape: the tiger well ahead, its look-alike "tiger cat" behind.
    answer = builder.build("t.png", probs(builder, tiger=0.64, tiger_cat=0.11, Egyptian_cat=0.02))
    assert (answer["rank"], answer["scientific_name"]) == ("family", "Felidae")
    assert answer["lead"] is True and answer["most_likely"]["scientific_name"] == "Panthera tigris"
    line = headline(answer)
    assert line.startswith("Tiger (Panthera tigris), 64")
    # Only the claimed taxon is called certain; the tiger comes with its own probability.
    assert line.split("; ")[1].startswith("at least family Felidae: ")
    assert f"{answer['probability']:g}%" in line.split("; ")[1]


def test_without_a_clear_favourite_the_claim_leads_and_the_animal_is_a_possibility(builder):
    answer = builder.build("c.jpg", probs(builder, lion=0.45, tiger=0.40))
    assert answer["lead"] is False
    line = headline(answer)
    assert line.startswith("Big cat: genus Panthera, 85")
    assert line.endswith("; possibly Lion (Panthera leo), 45%")
    assert "at least" not in line


def test_a_favourite_breed_leads_and_the_species_is_what_is_certain(builder):
    answer = builder.build("d.jpg", probs(builder, Labrador_retriever=0.69, golden_retriever=0.12,
                                          Chesapeake_Bay_retriever=0.12))
    assert (answer["rank"], answer["scientific_name"]) == ("species", "Canis lupus familiaris")
    assert answer["common_name"] == "Dog" and answer["lead"] is True
    line = headline(answer)
    assert line.startswith(f"{answer['most_likely']['common_name']}, 69%; at least Dog (Canis lupus familiaris), ")


def test_a_favourite_outside_the_claimed_taxon_does_not_lead(builder):
    # The tiger is the single most likely animal, but pig and ox together make
    # the claim (even-toed ungulates): the tiger is neither put first nor offered.
    answer = builder.build("x.jpg", probs(builder, tiger=0.30, hog=0.28, ox=0.25))
    assert (answer["rank"], answer["scientific_name"]) == ("order", "Artiodactyla")
    assert answer["lead"] is False and "Tiger" not in headline(answer)


def test_a_class_that_holds_its_taxon_is_called_by_its_own_name(builder):
    # "weevil" stands for the order Coleoptera in the knowledge base (WordNet's
    # weevil covers several families); named "Beetle" it would not name the animal.
    answer = builder.build("w.jpg", probs(builder, weevil=0.97))
    assert (answer["rank"], answer["scientific_name"], answer["common_name"]) == ("order", "Coleoptera", "Weevil")
    assert "most_likely" not in answer and headline(answer) == "Weevil: order Coleoptera, 97%"


def test_a_class_that_does_not_hold_its_taxon_leaves_it_its_group_name(builder):
    answer = builder.build("g.jpg", probs(builder, gazelle=0.55, impala=0.35))
    assert answer["scientific_name"] == "Bovidae"
    assert answer["common_name"] == builder.kb.taxon_common_name("Bovidae")
    assert answer["most_likely"]["common_name"] == "Gazelle"


def test_a_flat_output_is_no_animal_even_though_its_tail_adds_up(builder):
    # A blank wall: every class near 0.1%. The 398 animal classes hold 40% of
    # it in total, but none is among the likely candidates.
    flat = [0.001] * 1000
    flat[620] = 0.004
    answer = builder.build("wall.jpg", flat)
    assert answer["rank"] == "none" and answer["common_name"] == "No animal recognised"
