"""The animal knowledge base: facts about each class the network knows.

Two JSON formats are read:

* the project's own (``animal_image.json``): ``{"format": "animalid-kb/1",
  "classes": {"<class index>": {...}}, "taxa": {"<taxon>": "<common name>"}}``
  with common and scientific names, taxonomy, description, habitat, IUCN
  category and the dangerous / poisonous / venomous flags; optional tables
  ``taxon_sizes`` (species per taxon, for the coverage rule), ``scene_evidence``
  (non-animal classes that imply an animal) and ``lookalike_groups`` (groups
  named in place of a class that commonly stands for animals outside the
  vocabulary); see docs/accuracy.md ("Look-alike groups, coverage and scene evidence");
* the seed project's: an object keyed by class name whose key order is the
  class index, with commonName, description, habitat, isEndangered,
  isDangerous, poisonous and venomous. It has no taxonomy, so answers from it
  stay at the level of single classes.

Nothing here imports PyTorch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from animalid.errors import ModelError

RANKS = ("phylum", "class", "order", "family", "genus", "species")
CLASS_RANKS = RANKS + ("breed",)
IUCN_CATEGORIES = {
    "LC": "Least Concern",
    "NT": "Near Threatened",
    "VU": "Vulnerable",
    "EN": "Endangered",
    "CR": "Critically Endangered",
    "EW": "Extinct in the Wild",
    "EX": "Extinct",
    "DD": "Data Deficient",
    "NE": "Not Evaluated",
    "Domesticated": "Domesticated",
}
FORMAT = "animalid-kb/1"


@dataclass(frozen=True)
class Entry:
    """What the knowledge base says about one class of the network."""

    index: int
    label: str
    common_name: str
    scientific_name: str
    description: str = ""
    habitat: str = ""
    conservation: str | None = None
    endangered_text: str | None = None  # the seed format's yes/no, when no category
    dangerous: bool = False
    poisonous: bool = False
    venomous: bool = False
    class_rank: str = "species"
    taxonomy: dict = field(default_factory=dict)

    @property
    def endangered(self) -> str:
        if self.conservation:
            return IUCN_CATEGORIES.get(self.conservation, self.conservation)
        return self.endangered_text or "Unknown"

    def lineage(self) -> list[tuple[str, str]]:
        """(rank, taxon) pairs from phylum down to the rank this class denotes."""
        deepest = "species" if self.class_rank == "breed" else self.class_rank
        pairs = []
        for rank in RANKS:
            taxon = self.taxonomy.get(rank)
            if taxon:
                pairs.append((rank, taxon))
            if rank == deepest:
                break
        return pairs


@dataclass(frozen=True)
class LookalikeGroup:
    """A group named in place of a class that commonly stands for animals outside the vocabulary.

    ``members`` are the taxa (rank -> names) that make the group up, e.g.
    family Otariidae, Phocidae and Odobenidae for Pinnipedia; ``lookalikes``
    names the commonly photographed animals outside the vocabulary that the
    group's classes are known to catch.
    """

    scientific_name: str
    common_name: str
    rank: str
    members: dict
    lookalikes: str = ""

    def contains(self, taxonomy: dict) -> bool:
        return any(taxonomy.get(rank) in names for rank, names in self.members.items())


@dataclass
class KnowledgeBase:
    entries: dict[int, Entry]
    taxon_names: dict[str, str]
    path: Path | None = None
    # Species per taxon (Catalogue of Life-style counts; the file says where from).
    taxon_sizes: dict[str, int] = field(default_factory=dict)
    # Non-animal class index -> the taxon (a scientific name in some class's lineage) it implies.
    scene_evidence: dict[int, str] = field(default_factory=dict)
    lookalike_groups: list[LookalikeGroup] = field(default_factory=list)

    def __contains__(self, index: int) -> bool:
        return index in self.entries

    def get(self, index: int) -> Entry | None:
        return self.entries.get(index)

    def taxon_common_name(self, taxon: str) -> str:
        return self.taxon_names.get(taxon, taxon)

    @property
    def has_taxonomy(self) -> bool:
        return any(entry.taxonomy for entry in self.entries.values())


def read_json(path: Path, what: str):
    """Parse a JSON file, or raise ModelError naming the file and ``what`` it is."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: cannot read the {what}: {exc}") from None


def load_knowledge_base(path: str | Path) -> KnowledgeBase:
    path = Path(path)
    data = read_json(path, "knowledge base")
    if not isinstance(data, dict):
        raise ModelError(f"{path}: knowledge base must be a JSON object")
    if data.get("format") == FORMAT:
        return _parse_own(path, data)
    return _parse_seed(path, data)


def _parse_own(path: Path, data: dict) -> KnowledgeBase:
    entries = {}
    for key, raw in data.get("classes", {}).items():
        try:
            index = int(key)
            entries[index] = Entry(
                index=index,
                label=raw.get("label", ""),
                common_name=raw["common_name"],
                scientific_name=raw["scientific_name"],
                description=raw.get("description", ""),
                habitat=raw.get("habitat", ""),
                conservation=raw.get("conservation"),
                dangerous=bool(raw.get("dangerous", False)),
                poisonous=bool(raw.get("poisonous", False)),
                venomous=bool(raw.get("venomous", False)),
                class_rank=raw.get("class_rank", "species"),
                taxonomy=dict(raw.get("taxonomy", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{path}: class {key!r} is malformed ({exc})") from None
    try:
        sizes = {str(k): int(v) for k, v in data.get("taxon_sizes", {}).items() if not k.startswith("_")}
        scene = {int(k): str(v["implies"]) for k, v in data.get("scene_evidence", {}).items()}
        groups = [LookalikeGroup(g["scientific_name"], g["common_name"], g["rank"],
                                 {r: tuple(names) for r, names in g["members"].items()},
                                 g.get("lookalikes", ""))
                  for g in data.get("lookalike_groups", [])]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelError(f"{path}: taxon_sizes, scene_evidence or lookalike_groups is malformed ({exc})") from None
    return KnowledgeBase(entries, dict(data.get("taxa", {})), path, sizes, scene, groups)


def _parse_seed(path: Path, data: dict) -> KnowledgeBase:
    entries = {}
    for index, (name, raw) in enumerate(data.items()):
        if not isinstance(raw, dict):
            raise ModelError(f"{path}: entry {name!r} is not an object")
        endangered = raw.get("isEndangered")
        entries[index] = Entry(
            index=index,
            label=name,
            common_name=raw.get("commonName") or name,
            scientific_name=raw.get("scientificName") or name,
            description=raw.get("description", ""),
            habitat=raw.get("habitat", ""),
            endangered_text=None if endangered is None else ("Endangered" if endangered else "Not endangered"),
            dangerous=bool(raw.get("isDangerous", False)),
            poisonous=bool(raw.get("poisonous", False)),
            venomous=bool(raw.get("venomous", False)),
        )
    return KnowledgeBase(entries, {}, path)
