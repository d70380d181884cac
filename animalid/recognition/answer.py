"""From class probabilities to an answer people can trust.

``AnswerBuilder`` turns the probability vector into one answer of the output
contract (see README, "Output contract"). It adds probabilities up the
taxonomy and claims the deepest rank that is confident enough ("Dog, wolf or
fox: family Canidae, 64%"; "Big cat: genus Panthera"). A claimed taxon that
one class stands for and holds is called by that class's name ("Weevil:
order Coleoptera"). Beside a broader claim it names the most likely animal
(``most_likely``) and says whether that animal is far enough ahead to lead the
headline (``lead``: "Tiger (Panthera tigris), 64%; at least family Felidae").
It says "no animal recognised" when the animal classes hold little of the
most likely classes, and "Could not identify" when no rank reaches the
minimum.

The readable text form lives in ``animalid.contract``. This module is plain
Python (no PyTorch), but it belongs to recognition: it knows the taxonomy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from animalid.recognition.knowledge import RANKS, Entry, KnowledgeBase

from ..contract import COULD_NOT_IDENTIFY, NO_ANIMAL

# A candidate this large a share of the claimed taxon decides the warning
# flags: better to warn about a possible venomous snake than to miss it.
FLAG_SHARE = 0.10
# A claimed taxon that is a class's own (the deepest rank that class denotes)
# and holds it for at least this share of the taxon's probability is called by
# that class's name: "Weevil", not "Beetle"; "Gazelle", not "Bovid".
DOMINANT_SHARE = 0.90


@dataclass
class AnswerRules:
    """Thresholds from config.ini [classifier]; see README, "Accuracy"."""

    rank_threshold: float = 0.5
    min_confidence: float = 0.20
    animal_threshold: float = 0.35
    # Whether the picture shows an animal at all is judged on the most likely
    # classes only (0 = all): otherwise a flat output (a blank wall) adds up
    # hundreds of 0.1% animal classes to "an animal, 25%".
    animal_candidates: int = 50
    # Optional stricter or looser thresholds for single ranks.
    rank_thresholds: dict[str, float] = field(default_factory=dict)
    # The most likely animal leads the headline when it has at least
    # lead_probability and lead_ratio times the runner-up's.
    lead_probability: float = 0.5
    lead_ratio: float = 3.0

    def threshold(self, rank: str) -> float:
        return max(self.rank_thresholds.get(rank, self.rank_threshold), self.min_confidence)


class AnswerBuilder:
    """Builds contract answers for one knowledge base and class list."""

    def __init__(self, kb: KnowledgeBase, labels: Sequence[str], rules: AnswerRules,
                 top_k: int = 3):
        self.kb = kb
        self.labels = list(labels)
        self.rules = rules
        self.top_k = top_k
        self.animal_indices = [i for i in range(len(self.labels)) if i in kb]
        self.other_indices = [i for i in range(len(self.labels)) if i not in kb]
        self._lineages = {i: kb.entries[i].lineage() for i in self.animal_indices}

    def build(self, file: str, probabilities: Sequence[float]) -> dict:
        probs = [float(p) for p in probabilities]
        alternatives = self._alternatives(probs)
        animal_mass = sum(probs[i] for i in self.animal_indices)
        if self._candidate_animal_mass(probs) < self.rules.animal_threshold:
            return self._not_an_animal(file, probs, animal_mass, alternatives)
        claim = self._deepest_confident_claim(probs)
        if claim is None:
            return self._could_not_identify(file, probs, alternatives)
        rank, taxon, mass = claim
        return self._claim_answer(file, probs, rank, taxon, mass, alternatives)

    # -- deciding -----------------------------------------------------------

    def _candidate_animal_mass(self, probs: list[float]) -> float:
        """The animal classes' share of the ``animal_candidates`` most likely classes."""
        count = self.rules.animal_candidates
        if not count or count >= len(probs):
            return sum(probs[i] for i in self.animal_indices)
        candidates = sorted(range(len(probs)), key=probs.__getitem__, reverse=True)[:count]
        return sum(probs[i] for i in candidates if i in self.kb)

    def _taxon_masses(self, probs: list[float]) -> dict[tuple[str, str], float]:
        masses: dict[tuple[str, str], float] = {}
        for index, lineage in self._lineages.items():
            for node in lineage:
                masses[node] = masses.get(node, 0.0) + probs[index]
        return masses

    def _deepest_confident_claim(self, probs: list[float]):
        if not self.kb.has_taxonomy:
            best = max(self.animal_indices, key=lambda i: probs[i])
            if probs[best] >= self.rules.threshold("species"):
                return "species", self.kb.entries[best].scientific_name, probs[best]
            return None
        masses = self._taxon_masses(probs)
        for rank in reversed(RANKS):
            candidates = [(mass, taxon) for (r, taxon), mass in masses.items() if r == rank]
            if not candidates:
                continue
            mass, taxon = max(candidates)
            if mass >= self.rules.threshold(rank):
                return rank, taxon, mass
        return None

    def _members(self, rank: str, taxon: str) -> list[int]:
        if not self.kb.has_taxonomy:
            return [i for i in self.animal_indices if self.kb.entries[i].scientific_name == taxon]
        return [i for i, lineage in self._lineages.items() if (rank, taxon) in lineage]

    # -- answers ------------------------------------------------------------

    def _claim_answer(self, file, probs, rank, taxon, mass, alternatives) -> dict:
        members = sorted(self._members(rank, taxon), key=lambda i: probs[i], reverse=True)
        top = self.kb.entries[members[0]]
        flagged = [self.kb.entries[i] for i in members if probs[i] >= FLAG_SHARE * mass]
        if self._names_the_class(top, rank, taxon, probs[top.index], mass, len(members)):
            common_name = top.common_name
        else:
            common_name = self.kb.taxon_common_name(taxon)
        answer = {
            "file": file,
            "scientific_name": taxon,
            "common_name": common_name,
            "description": top.description,
            "habitat": top.habitat,
            "endangered": top.endangered,
            "dangerous": any(entry.dangerous for entry in flagged),
            "poisonous": any(entry.poisonous for entry in flagged),
            "venomous": any(entry.venomous for entry in flagged),
            "probability": _percent(mass),
            "rank": rank,
            "taxonomy": _taxonomy_down_to(top, rank),
            "alternatives": alternatives,
        }
        if common_name != top.common_name:
            answer["most_likely"] = _summary(top, probs[top.index])
            answer["lead"] = self._leads(top.index, probs)
        return answer

    def _names_the_class(self, top: Entry, rank: str, taxon: str, top_mass: float, mass: float,
                         members: int) -> bool:
        """Whether the claimed taxon is called by its most likely class's own name.

        Only when the taxon is the one that class itself denotes (a breed's
        species, the order "weevil" stands for) and that class holds (nearly)
        all of the taxon's probability: the name then claims no more than the
        rank and scientific name do.
        """
        if not self.kb.has_taxonomy:
            return rank == "species"
        lineage = self._lineages[top.index]
        own = bool(lineage) and lineage[-1] == (rank, taxon)
        return own and (members == 1 or top_mass >= DOMINANT_SHARE * mass)

    def _leads(self, best: int, probs: list[float]) -> bool:
        """Whether the most likely animal is well enough ahead to open the headline."""
        runner_up = max((probs[i] for i in self.animal_indices if i != best), default=0.0)
        return (max(probs[i] for i in self.animal_indices) == probs[best]
                and probs[best] >= self.rules.lead_probability
                and probs[best] >= self.rules.lead_ratio * runner_up)

    def _could_not_identify(self, file, probs, alternatives) -> dict:
        best = max(range(len(probs)), key=lambda i: probs[i])
        return self._abstention(file, COULD_NOT_IDENTIFY, probs[best], alternatives)

    def _not_an_animal(self, file, probs, animal_mass, alternatives) -> dict:
        others = self.other_indices
        best = max(others, key=lambda i: probs[i]) if others else None
        answer = self._abstention(file, NO_ANIMAL, 1.0 - animal_mass, alternatives)
        if best is not None:
            answer["looks_like"] = {"label": self.labels[best], "probability": _percent(probs[best])}
        return answer

    def _abstention(self, file, name, probability, alternatives) -> dict:
        return {
            "file": file, "scientific_name": "", "common_name": name, "description": "",
            "habitat": "", "endangered": "", "dangerous": False, "poisonous": False,
            "venomous": False, "probability": _percent(probability), "rank": "none",
            "taxonomy": {rank: None for rank in RANKS}, "alternatives": alternatives,
        }

    def _alternatives(self, probs: list[float]) -> list[dict]:
        ranked = sorted(range(len(probs)), key=lambda i: probs[i], reverse=True)[: self.top_k]
        out = []
        for index in ranked:
            entry = self.kb.get(index)
            if entry is not None:
                out.append(_summary(entry, probs[index]))
            else:
                out.append({"common_name": self.labels[index], "scientific_name": "",
                            "probability": _percent(probs[index])})
        return out


def _summary(entry: Entry, probability: float) -> dict:
    return {"common_name": entry.common_name, "scientific_name": entry.scientific_name,
            "probability": _percent(probability)}


def _taxonomy_down_to(entry: Entry, rank: str) -> dict:
    depth = RANKS.index(rank)
    return {r: (entry.taxonomy.get(r) if i <= depth else None) for i, r in enumerate(RANKS)}


def _percent(probability: float) -> float:
    return round(100.0 * min(max(probability, 0.0), 1.0), 1)
