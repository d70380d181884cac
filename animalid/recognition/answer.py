"""From class probabilities to an answer people can trust.

``AnswerBuilder`` turns the probability vector into one answer of the output
contract (see README, "Output contract"). In order:

1. **One species, one line.** Classes of one species (120 dog breeds, five
   domestic cats, both wolves, tusker and African elephant) are merged into one
   *unit* before anything is judged; non-animal classes that imply an animal
   (``scene_evidence``: horse cart, dogsled, muzzle ...) add their probability to
   that animal's taxon.
2. **The claim.** Probabilities are added up the taxonomy and the deepest rank
   that is confident enough is claimed ("Dog, wolf or fox: family Canidae,
   64%"). A taxon that the vocabulary barely covers (two classes of the ~1,700
   carps and minnows) needs more: its threshold rises with log10(species in the
   taxon / classes in the vocabulary) (``coverage_slope``).
3. **The lead.** What the headline opens with (``lead``): the most likely unit
   when it is well ahead ("Tiger (Panthera tigris), 64%"), its look-alike group
   when the unit commonly stands for animals outside the vocabulary ("Seal or
   sea lion (Pinnipedia), 62%; most like Sea lion") unless it is very sure, or
   else the claim itself.

The top-level names and facts describe the claim; the lead carries its own.
The readable text form lives in ``animalid.contract``. This module is plain
Python (no PyTorch), but it belongs to recognition: it knows the taxonomy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from animalid.recognition.knowledge import RANKS, Entry, KnowledgeBase, LookalikeGroup

from ..contract import COULD_NOT_IDENTIFY, NO_ANIMAL

# A candidate this large a share of the claimed taxon decides the warning
# flags: better to warn about a possible venomous snake than to miss it.
FLAG_SHARE = 0.10
# A claimed taxon that is a unit's own (the deepest rank that unit denotes)
# and holds it for at least this share of the taxon's probability is called by
# that unit's name: "Weevil", not "Beetle"; "Gazelle", not "Bovid".
DOMINANT_SHARE = 0.90

Node = tuple[str, str]  # (rank, taxon)


@dataclass
class AnswerRules:
    """Thresholds from config.ini [classifier]; see README, "Accuracy"."""

    rank_threshold: float = 0.5
    min_confidence: float = 0.20
    animal_threshold: float = 0.20  # config.DEFAULTS; tests/unit/test_backend_settings.py keeps them equal
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
    # A taxon's threshold rises by coverage_slope per factor of ten by which its
    # species outnumber the vocabulary's units in it, beyond a ratio of
    # 10**coverage_allowance (about 1 in 18), never above coverage_cap.
    # Measured on both dev sets: docs/accuracy.md ("Look-alike groups, coverage and scene evidence").
    coverage_slope: float = 0.30
    coverage_allowance: float = 1.25
    coverage_cap: float = 0.90
    # A unit with a look-alike group is named (and claimed deeper than its group)
    # only from this probability on; below it the group leads.
    named_probability: float = 0.90

    def threshold(self, rank: str) -> float:
        return max(self.rank_thresholds.get(rank, self.rank_threshold), self.min_confidence)


@dataclass(frozen=True)
class Unit:
    """The classes of one species (or of one group class): what is named as one animal."""

    key: str  # the scientific name the classes share
    classes: tuple[int, ...]
    lineage: tuple[Node, ...]
    common_name: str
    entry: Entry  # whose facts describe the unit

    @property
    def node(self) -> Node:
        # A knowledge base without taxonomy (the seed format) knows species only.
        return self.lineage[-1] if self.lineage else ("species", self.key)


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
        self.units = self._make_units()
        self.unit_of = {i: u for u, unit in enumerate(self.units) for i in unit.classes}
        self._nodes = sorted({node for unit in self.units for node in unit.lineage})
        self._scene = self._scene_targets()
        self._group_of = {u: g for u, unit in enumerate(self.units)
                          for g in kb.lookalike_groups if g.contains(unit.entry.taxonomy)}
        self._covered = self._coverage()
        self._node_units: dict[Node, list[int]] = {}
        for u, unit in enumerate(self.units):
            for node in unit.lineage:
                self._node_units.setdefault(node, []).append(u)

    # -- the vocabulary -----------------------------------------------------

    def _make_units(self) -> list[Unit]:
        by_key: dict[str, list[int]] = {}
        for index in self.animal_indices:
            by_key.setdefault(self.kb.entries[index].scientific_name, []).append(index)
        units = []
        for key, classes in by_key.items():
            deepest = max(classes, key=lambda i: (len(self._lineages[i]), -i))
            lineage = tuple(self._lineages[deepest])
            if len(classes) == 1:
                name = self.kb.entries[deepest].common_name
            else:
                name = self.kb.taxon_names.get(key) or self.kb.entries[deepest].common_name
            units.append(Unit(key, tuple(classes), lineage, name, self.kb.entries[deepest]))
        return units

    def _scene_targets(self) -> dict[int, tuple]:
        """Scene class -> the unit it implies (an int) or the lineage down to its taxon."""
        targets: dict[int, tuple] = {}
        for index, taxon in self.kb.scene_evidence.items():
            if index in self.kb or index >= len(self.labels):
                continue
            found = next((u for u, unit in enumerate(self.units) if unit.key == taxon), None)
            if found is not None:
                targets[index] = ("unit", found)
                continue
            for unit in self.units:
                names = [t for _, t in unit.lineage]
                if taxon in names:
                    targets[index] = ("nodes", unit.lineage[: names.index(taxon) + 1])
                    break
        return targets

    def _coverage(self) -> dict[Node, int]:
        covered: dict[Node, int] = {}
        for unit in self.units:
            for node in unit.lineage:
                covered[node] = covered.get(node, 0) + 1
        return covered

    def taxon_threshold(self, rank: str, taxon: str) -> float:
        """The rank's threshold, raised for a taxon the vocabulary covers thinly."""
        base = self.rules.threshold(rank)
        size = self.kb.taxon_sizes.get(taxon)
        covered = self._covered.get((rank, taxon), 0)
        if not size or not covered or size <= covered or not self.rules.coverage_slope:
            return base
        gap = math.log10(size / covered) - self.rules.coverage_allowance
        raised = base + self.rules.coverage_slope * max(gap, 0.0)
        return max(base, min(raised, self.rules.coverage_cap))

    # -- the evidence ---------------------------------------------------------

    def unit_probabilities(self, probs: list[float]) -> list[float]:
        out = [sum(probs[i] for i in unit.classes) for unit in self.units]
        for index, (kind, target) in self._scene.items():
            if kind == "unit":
                out[target] += probs[index]
        return out

    def node_masses(self, probs: list[float], units: list[float]) -> dict[Node, float]:
        masses: dict[Node, float] = {}
        for unit, p in zip(self.units, units):
            for node in unit.lineage:
                masses[node] = masses.get(node, 0.0) + p
        for index, (kind, target) in self._scene.items():
            if kind == "nodes":
                for node in target:
                    masses[node] = masses.get(node, 0.0) + probs[index]
        return masses

    def build(self, file: str, probabilities: Sequence[float]) -> dict:
        probs = [float(p) for p in probabilities]
        units = self.unit_probabilities(probs)
        alternatives = self._alternatives(probs, units)
        animal_mass = sum(probs[i] for i in self.animal_indices)
        if self._candidate_animal_mass(probs) < self.rules.animal_threshold:
            return self._not_an_animal(file, probs, animal_mass, alternatives)
        masses = self.node_masses(probs, units) if self.kb.has_taxonomy else {}
        claim = self._deepest_confident_claim(probs, units, masses)
        if claim is None:
            return self._could_not_identify(file, probs, alternatives)
        rank, taxon, mass = claim
        return self._claim_answer(file, probs, units, masses, rank, taxon, mass, alternatives)

    # -- deciding -----------------------------------------------------------

    def _candidate_animal_mass(self, probs: list[float]) -> float:
        """The animal (and animal-implying scene) classes' share of the most likely classes."""
        count = self.rules.animal_candidates
        if not count or count >= len(probs):
            candidates: Sequence[int] = range(len(probs))
        else:
            candidates = sorted(range(len(probs)), key=probs.__getitem__, reverse=True)[:count]
        return sum(probs[i] for i in candidates if i in self.kb or i in self._scene)

    def _deepest_confident_claim(self, probs, units, masses):
        if not self.kb.has_taxonomy:
            best = max(range(len(self.units)), key=units.__getitem__)
            if units[best] >= self.rules.threshold("species"):
                return "species", self.units[best].key, units[best]
            return None
        for rank in reversed(RANKS):
            passing = [(mass, taxon) for (r, taxon), mass in masses.items()
                       if r == rank and mass >= self.taxon_threshold(rank, taxon)]
            if not passing:
                continue
            mass, taxon = max(passing)
            if self._inside_a_group(rank, taxon, units) and mass < self.rules.named_probability:
                continue  # as deep as its look-alikes go: claim no deeper than the group
            return rank, taxon, mass
        return None

    def _inside_a_group(self, rank: str, taxon: str, units: list[float]) -> bool:
        """Whether the taxon's most likely unit has a look-alike group broader than the taxon."""
        members = self._node_units.get((rank, taxon), ())
        if not members:
            return False
        top = max(members, key=units.__getitem__)
        group = self._group_of.get(top)
        return group is not None and RANKS.index(rank) > _level(group)

    def _members(self, rank: str, taxon: str) -> list[int]:
        """Units inside the taxon."""
        if not self.kb.has_taxonomy:
            return [u for u, unit in enumerate(self.units) if unit.key == taxon]
        return [u for u, unit in enumerate(self.units) if (rank, taxon) in unit.lineage]

    # -- answers ------------------------------------------------------------

    def _claim_answer(self, file, probs, units, masses, rank, taxon, mass, alternatives) -> dict:
        members = sorted(self._members(rank, taxon), key=lambda u: units[u], reverse=True)
        top = self.units[members[0]]
        # Flags from single classes, not units: one dangerous breed among 120 does
        # not make every dog dangerous.
        flagged = [self.kb.entries[i] for u in members for i in self.units[u].classes
                   if probs[i] >= FLAG_SHARE * mass]
        named = self._names_the_unit(top, rank, taxon, units[members[0]], mass, len(members))
        common_name = top.common_name if named else self.kb.taxon_common_name(taxon)
        # The facts describe what the names name: the unit's own when the claim is
        # called by it (a species, "Weevil"); a broader claim has no facts of its own.
        facts = _unit_facts(top) if named else {"description": "", "habitat": "", "endangered": ""}
        answer = {
            "file": file,
            "scientific_name": taxon,
            "common_name": common_name,
            **facts,
            "dangerous": any(entry.dangerous for entry in flagged),
            "poisonous": any(entry.poisonous for entry in flagged),
            "venomous": any(entry.venomous for entry in flagged),
            "probability": _percent(mass),
            "rank": rank,
            "taxonomy": _taxonomy_down_to(top.entry, rank),
            "alternatives": alternatives,
        }
        # The most likely class of the claimed taxon (not of all: a tiger is not
        # offered beside a claim of even-toed ungulates).
        best_class = max((i for u in members for i in self.units[u].classes), key=probs.__getitem__)
        if not named or len(top.classes) > 1:
            answer["most_likely"] = _summary(self.kb.entries[best_class], probs[best_class])
        answer["lead"] = self._lead(answer, units, masses, named)
        return answer

    def _names_the_unit(self, top: Unit, rank: str, taxon: str, top_mass: float, mass: float,
                        members: int) -> bool:
        """Whether the claimed taxon is called by its most likely unit's own name.

        Only when the taxon is the one that unit itself denotes (a species, the
        order "weevil" stands for) and that unit holds (nearly) all of the
        taxon's probability: the name then claims no more than the rank and
        scientific name do.
        """
        if not self.kb.has_taxonomy:
            return rank == "species"
        own = top.node == (rank, taxon)
        return own and (members == 1 or top_mass >= DOMINANT_SHARE * mass)

    def _lead(self, answer: dict, units: list[float], masses: dict, named: bool) -> dict:
        """What the headline opens with: the favourite unit, its look-alike group, or the claim."""
        claim = {"common_name": answer["common_name"], "scientific_name": answer["scientific_name"],
                 "rank": answer["rank"], "probability": answer["probability"]}
        order = sorted(range(len(self.units)), key=units.__getitem__, reverse=True)
        best, runner_up = order[0], (units[order[1]] if len(order) > 1 else 0.0)
        unit, p = self.units[best], units[best]
        group = self._group_of.get(best)
        claim_node = (answer["rank"], answer["scientific_name"])
        inside = claim_node in unit.lineage
        if group is not None and p < self.rules.named_probability and self._group_within(group, claim_node):
            group_mass = sum(u for i, u in enumerate(units) if i in self._group_units(group))
            if group_mass >= self.rules.lead_probability:
                return {"common_name": group.common_name, "scientific_name": group.scientific_name,
                        "rank": group.rank, "probability": _percent(group_mass)}
            return claim
        if named and unit.node == claim_node:
            return {**claim, **_unit_facts(unit)}
        if (inside and p >= self.rules.lead_probability and p >= self.rules.lead_ratio * runner_up):
            rank, taxon = unit.node
            return {"common_name": unit.common_name, "scientific_name": taxon, "rank": rank,
                    "probability": _percent(p), **_unit_facts(unit)}
        return claim

    def _group_units(self, group: LookalikeGroup) -> set[int]:
        return {u for u, g in self._group_of.items() if g is group}

    def _group_within(self, group: LookalikeGroup, claim_node: Node) -> bool:
        """Whether the group is narrower than the claim (else the claim says as much)."""
        rank, _ = claim_node
        inside = self._group_units(group)
        return rank in RANKS and RANKS.index(rank) < _level(group) and \
            all(claim_node in self.units[u].lineage for u in inside)

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

    def _alternatives(self, probs: list[float], units: list[float]) -> list[dict]:
        """The most likely units (one line per species) and non-animal classes."""
        lines = [(units[u], ("unit", u)) for u in range(len(self.units))]
        lines += [(probs[i], ("class", i)) for i in self.other_indices]
        lines.sort(key=lambda item: item[0], reverse=True)
        out = []
        for p, (kind, index) in lines[: self.top_k]:
            if kind == "unit":
                unit = self.units[index]
                out.append({"common_name": unit.common_name, "scientific_name": unit.key,
                            "probability": _percent(p)})
            else:
                out.append({"common_name": self.labels[index], "scientific_name": "",
                            "probability": _percent(p)})
        return out


def _level(group: LookalikeGroup) -> float:
    """Where the group sits among RANKS: its rank's index, or for a rank between two
    (a clade, a superfamily) just above its broadest members' rank."""
    if group.rank in RANKS:
        return RANKS.index(group.rank)
    return min(RANKS.index(rank) for rank in group.members) - 0.5


def _unit_facts(unit: Unit) -> dict:
    """The facts of a unit: its class's own; for several classes (breeds, forms) only
    what they share, since a breed's description is not the species'."""
    entry = unit.entry
    if len(unit.classes) == 1:
        return {"description": entry.description, "habitat": entry.habitat, "endangered": entry.endangered}
    return {"description": "", "habitat": "", "endangered": entry.endangered}


def _summary(entry: Entry, probability: float) -> dict:
    return {"common_name": entry.common_name, "scientific_name": entry.scientific_name,
            "probability": _percent(probability)}


def _taxonomy_down_to(entry: Entry, rank: str) -> dict:
    depth = RANKS.index(rank)
    return {r: (entry.taxonomy.get(r) if i <= depth else None) for i, r in enumerate(RANKS)}


def _percent(probability: float) -> float:
    return round(100.0 * min(max(probability, 0.0), 1.0), 1)
