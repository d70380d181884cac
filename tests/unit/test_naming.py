"""Names that name the animal: every class, at high confidence, is answered by its own name.

No network: the AnswerBuilder is built from the knowledge base, its labels and
each mode's measured rules (models/*.json thresholds plus config.ini), and fed
a probability vector with 0.97 on one class.
"""

from __future__ import annotations

import pytest

from animalid.cli import settings as edge
from animalid.config import load_config
from animalid.contract import headline
from animalid.recognition.answer import AnswerBuilder
from animalid.recognition.classifier import rules_for
from animalid.recognition.knowledge import load_knowledge_base
from animalid.recognition.model import EnsembleSpec
from animalid.testing.harness import ROOT

MODES = ("fast", "balanced", "full")
KB = load_knowledge_base(ROOT / "animal_image.json")
LABELS = [KB.entries[i].label if i in KB else f"object {i}" for i in range(1000)]


@pytest.fixture(scope="module", params=MODES)
def builder(request):
    rules = rules_for(EnsembleSpec.load(ROOT / "models" / f"{request.param}.json"),
                      edge.answer_rules(load_config(ROOT / "config.ini").section("classifier")))
    return AnswerBuilder(KB, LABELS, rules, top_k=3)


def sure_of(index: int, p: float = 0.97) -> list[float]:
    vector = [(1.0 - p) / 999] * 1000
    vector[index] = p
    return vector


def test_the_knowledge_base_has_all_398_animal_classes():
    assert sorted(KB.entries) == list(range(398))


def test_every_class_at_high_confidence_is_answered_by_its_own_name(builder):
    broader = []
    for index, entry in sorted(KB.entries.items()):
        answer = builder.build(entry.label, sure_of(index))
        name = entry.common_name[:1].upper() + entry.common_name[1:]
        if (answer["common_name"] != entry.common_name or "most_likely" in answer
                or not headline(answer).startswith(name)):
            broader.append(f"{index} {entry.label}: {headline(answer)}")
    assert not broader, f"{len(broader)} classes answered by a broader name:\n" + "\n".join(broader)


def test_the_claim_stays_the_taxon_the_class_stands_for(builder):
    # Named by the class, the answer still claims only what the class denotes.
    for index, entry in KB.entries.items():
        answer = builder.build(entry.label, sure_of(index))
        rank, taxon = entry.lineage()[-1]
        assert (answer["rank"], answer["scientific_name"]) == (rank, taxon), entry.label


@pytest.mark.parametrize("label, name, rank", [
    ("weevil", "Weevil", "order"), ("tiger beetle", "Tiger beetle", "family"),
    ("crayfish", "Crayfish", "order"), ("hermit crab", "Hermit crab", "order"),
    ("gazelle", "Gazelle", "family"), ("porcupine", "Porcupine", "order"),
])
def test_the_issues_examples(builder, label, name, rank):
    index = next(i for i, e in KB.entries.items() if e.label == label)
    answer = builder.build(label, sure_of(index))
    assert (answer["common_name"], answer["rank"]) == (name, rank)
