#!/usr/bin/env python3
"""Score the classifier's answers on labelled photos: both dev sets, every mode, side by side.

Each folder holds images and a ``truth.tsv`` (the format of the project's dev
photos: file, species, genus, family, order, class, phylum, imagenet_exact).
An answer claims a taxon at a rank; it is *correct* when the true animal
belongs to that taxon and *wrong* when it does not. "Could not identify" and
"no animal recognised" are abstentions, neither correct nor wrong. Where the
truth itself is only known down to some rank (``Corvus sp.``), a deeper claim
is judged at that rank.

The networks' logits for every photo, network and view are computed once and
kept in ``.cache/evaluate/`` (keyed by the photo's bytes, the weights and the
preprocessing), so every mode and every rule is scored from the cache in
seconds. Printed, for each set:

* each mode (``models/fast.json``, ``models/balanced.json``,
  ``models/full.json``) with its measured thresholds, beside the rule before this work;
* for the configured model, the rules the choice was made among: the seed
  project's (top-1 class, "Could not identify" below 20%), the previous
  thresholds, iNaturalist's and SpeciesNet's published rules;
* how often the headline's lead animal (docs/output.md) is right.

``--search`` fits each mode's temperature and grid-searches the thresholds
(the figures behind docs/accuracy.md). ``--backend onnx`` scores the ONNX
Runtime backend (its logits are cached apart); ``--compare-backends`` prints,
per mode and folder, how many answers (name, rank, lead) ONNX Runtime and its
Pillow/numpy preprocessing give exactly as PyTorch and torchvision do
(docs/speed.md, "Preprocessing").

    python benchmarks/evaluate.py [FOLDER ...] [--search] [--show-wrong] [--backend B] [--compare-backends]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import itertools
import json
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from animalid.cli import settings as edge
from animalid.config import load_config
from animalid.contract import lead_of
from animalid.recognition.answer import AnswerBuilder, AnswerRules
from animalid.recognition.knowledge import RANKS
from animalid.recognition.model import VIEWS, EnsembleSpec, Member, ModelSpec, combine

ROOT = Path(__file__).resolve().parent.parent
DEV_SETS = (ROOT.parent / "shared" / "dev-photos", ROOT.parent / "shared" / "dev-real")
CACHE = ROOT / ".cache" / "evaluate"
MODES = {"fast": ROOT / "models" / "fast.json", "balanced": ROOT / "models" / "balanced.json",
         "full": ROOT / "models" / "full.json"}
NETWORKS = [ROOT / "models" / f"efficientnet_lite{n}.json" for n in range(3)]
BINOMIAL = re.compile(r"^([A-Z][a-z]+ [a-z]+(?: [a-z]+)?)")
FINE_RANKS = ("species", "genus", "family")
# The thresholds before this work (config.ini until then).
PREVIOUS = dict(species=0.90, genus=0.80, family=0.55, order=0.55, **{"class": 0.50}, phylum=0.20)


@dataclass
class Tally:
    total: int = 0
    correct_species: int = 0
    correct_family_or_finer: int = 0
    correct_any: int = 0
    wrong: int = 0
    abstained: int = 0
    wrong_files: list = field(default_factory=list)

    def pct(self, n: int) -> float:
        return 100.0 * n / max(self.total, 1)

    def figures(self) -> tuple[float, float, float, float]:
        return (self.pct(self.correct_family_or_finer), self.pct(self.correct_species),
                self.pct(self.correct_any), self.pct(self.wrong))

    def cell(self) -> str:
        return "{:5.1f} {:5.1f} {:5.1f} {:5.1f}".format(*self.figures())


def read_truth(folder: Path) -> list[dict]:
    with open(folder / "truth.tsv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    for row in rows:
        match = BINOMIAL.match(row.get("species", "").strip())
        species = match.group(1) if match and " sp" not in match.group(1) else ""
        row["truth"] = {rank: (row.get(rank) or "").strip() for rank in RANKS[:-1]}
        row["truth"]["species"] = species
        row["exact"] = [int(i) for i in re.findall(r"\d+", row.get("imagenet_exact") or "")]
    return rows


def judge(answer: dict, truth: dict) -> tuple[str, str | None]:
    """('abstained'|'correct'|'wrong', deepest rank verified)."""
    if answer.get("rank", "none") == "none":
        return "abstained", None
    verified = None
    for rank in RANKS[: RANKS.index(answer["rank"]) + 1]:
        claimed = (answer["taxonomy"].get(rank) or "").strip()
        actual = truth.get(rank, "")
        if not actual or not claimed:
            break
        same = (actual == claimed or actual.startswith(claimed + " ")) if rank == "species" \
            else actual.lower() == claimed.lower()
        if not same:
            return "wrong", rank
        verified = rank
    return "correct", verified


def score(answers: list[dict], rows: list[dict]) -> Tally:
    tally = Tally(total=len(rows))
    for answer, row in zip(answers, rows):
        verdict, rank = judge(answer, row["truth"])
        if verdict == "abstained":
            tally.abstained += 1
        elif verdict == "wrong":
            tally.wrong += 1
            tally.wrong_files.append((row["file"], answer.get("scientific_name"), rank))
        else:
            tally.correct_any += 1
            if rank in FINE_RANKS:
                tally.correct_family_or_finer += 1
            if rank == "species":
                tally.correct_species += 1
    return tally


# -- the networks' outputs, cached ----------------------------------------------

def _key(spec: ModelSpec, view: str, backend: str = "torch") -> str:
    recipe = [spec.weights_sha256 or str(spec.weights_path), spec.architecture, spec.resize, spec.crop,
              spec.interpolation, spec.mean, spec.std, spec.pixel_scale, view, "reduced to 2x"]
    if backend != "torch":  # PyTorch's keys stay as they were
        recipe.append(backend)
    return hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:20]


def cached_logits(folder: Path, rows: list[dict], networks: list[ModelSpec], kb_path: Path,
                  backend: str = "torch") -> dict:
    """{(network description stem, view): logits (photos, classes)}, computing what the cache lacks."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(row["file"].encode() + hashlib.sha256((folder / row["file"]).read_bytes()).digest())
    path = CACHE / f"{folder.name}-{digest.hexdigest()[:16]}.npz"
    stored = dict(np.load(path)) if path.exists() else {}
    wanted = {(spec.path.stem, view): _key(spec, view, backend) for spec in networks for view in VIEWS}
    missing = [spec for spec in networks if any(_key(spec, v, backend) not in stored for v in VIEWS)]
    if missing:
        from animalid.recognition.classifier import Classifier
        from animalid.recognition.images import load_image

        print(f"computing {backend} logits for {folder.name}: {', '.join(s.path.stem for s in missing)}",
              file=sys.stderr)
        ensemble = EnsembleSpec(missing[0].path, "cache", [Member(s) for s in missing], list(VIEWS))
        classifier = Classifier(ensemble, kb_path, device="cpu", backend=backend)
        chunks = []
        for start in range(0, len(rows), 8):
            images = [load_image(folder / row["file"]) for row in rows[start:start + 8]]
            chunks.append(classifier.logits(images))
        logits = np.concatenate(chunks, axis=2)  # (members, views, photos, classes)
        for m, spec in enumerate(missing):
            for v, view in enumerate(VIEWS):
                stored[_key(spec, view, backend)] = logits[m, v].astype(np.float32)
        CACHE.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **{k: v for k, v in stored.items() if k in wanted.values()})
    return {name: stored[key] for name, key in wanted.items()}


def mode_probabilities(spec: EnsembleSpec, logits: dict, temperature: float | None = None,
                       method: str | None = None, weights=None) -> np.ndarray:
    """A mode's combined probabilities (photos, classes), as the classifier computes them."""
    stacked = np.stack([np.stack([logits[(m.spec.path.stem, view)] for view in spec.views])
                        for m in spec.members])
    return combine(stacked, weights or [m.weight for m in spec.members], method or spec.combine,
                   spec.temperature if temperature is None else temperature)


# -- the rules compared ------------------------------------------------------------

def seed_rule_answers(builder: AnswerBuilder, probs_list) -> list[dict]:
    """The seed project's rule: the top-1 class as a species claim, if >= 20%."""
    out = []
    for probs in probs_list:
        best = int(np.argmax(probs))
        entry = builder.kb.get(best)
        if entry is None or probs[best] < 0.20:
            out.append({"rank": "none"})
        else:
            depth = "species" if entry.class_rank == "breed" else entry.class_rank
            out.append({"rank": depth, "taxonomy": dict(entry.taxonomy)})
    return out


def inat_probabilities(probs: np.ndarray, animal: np.ndarray, keep: int = 15, floor: float = 0.01) -> np.ndarray:
    """iNaturalist's candidate set: the top 15, none below 1% of the top one, renormalised."""
    out = np.zeros_like(probs)
    for i, p in enumerate(probs):
        scores = np.where(animal, p, 0.0)
        top = np.argsort(scores)[::-1][:keep]
        top = top[scores[top] >= floor * scores[top[0]]]
        out[i, top] = scores[top] / scores[top].sum()
    return out


def builder_for(base: AnswerBuilder, **thresholds) -> AnswerBuilder:
    rules = replace(base.rules, rank_thresholds={**base.rules.rank_thresholds, **thresholds})
    return AnswerBuilder(base.kb, base.labels, rules, base.top_k)


def answers_of(builder: AnswerBuilder, rows, probs) -> list[dict]:
    return [builder.build(row["file"], p) for row, p in zip(rows, probs)]


def compared_rules(base: AnswerBuilder) -> dict:
    """name -> (builder, transform of the probabilities or None), for one mode's probabilities."""
    own = {rank: base.rules.threshold(rank) for rank in RANKS}
    inat = {**own, "genus": 0.78, "family": 0.78}
    return {
        "previous thresholds (0.9 ...)": (builder_for(base, **PREVIOUS), None),
        "SpeciesNet: 0.8, else 0.65": (builder_for(base, species=0.8, genus=0.65, family=0.65, order=0.65,
                                                   **{"class": 0.65}, phylum=0.65), None),
        "iNaturalist: top 15, 0.78": (builder_for(base, **inat), "inat"),
        "likelihood temperature": (base, "temperature"),
        "configured rules": (base, None),
    }


def lead_figures(builder: AnswerBuilder, rows, probs) -> tuple[int, int, int, int]:
    """(answers whose headline opens with a lead other than the claim, of them right,
    headlines that name a wrong animal, answers that claim an animal).

    A headline names a wrong animal when what it opens with (the lead, or the
    claim when that leads) does not contain the true animal.
    """
    led = right = wrong_headline = claimed = 0
    for row, p in zip(rows, probs):
        answer = builder.build(row["file"], p)
        if answer.get("rank", "none") == "none":
            continue
        claimed += 1
        lead = lead_of(answer)
        verdict = judge_lead(lead, row["truth"], builder.kb) if lead else judge(answer, row["truth"])[0]
        wrong_headline += verdict == "wrong"
        if lead:
            led += 1
            right += verdict == "correct"
    return led, right, wrong_headline, claimed


def judge_lead(lead: dict, truth: dict, kb) -> str:
    """'correct' or 'wrong': whether the lead (a unit, a taxon or a look-alike group) contains the truth."""
    rank, taxon = lead.get("rank") or "species", lead.get("scientific_name", "")
    group = next((g for g in getattr(kb, "lookalike_groups", []) if g.scientific_name == taxon), None)
    if group is not None:
        known = [r for r in group.members if truth.get(r)]
        return "correct" if not known or group.contains(truth) else "wrong"
    if rank not in RANKS:
        return "correct"
    entry = next((e for e in kb.entries.values() if e.taxonomy.get(rank) == taxon), None)
    taxonomy = dict(entry.taxonomy) if entry else {rank: taxon}
    return judge({"rank": rank, "taxonomy": taxonomy}, truth)[0]


class FastJudge:
    """The roll-up decision of AnswerBuilder, vectorised over photos, for threshold grids.

    For each photo and rank it keeps the best taxon's mass and the verdict a
    claim of that taxon would get, so a threshold set is scored with array
    lookups; ``tally`` equals ``score(answers_of(builder, ...))`` for builders
    that differ only in rank thresholds (checked in ``search``).
    """

    def __init__(self, builder: AnswerBuilder, rows: list[dict], probs: np.ndarray):
        nodes = sorted({node for lineage in builder._lineages.values() for node in lineage})
        index = {node: n for n, node in enumerate(nodes)}
        member = np.zeros((len(nodes), probs.shape[1]))
        lineage_of = {}
        for cls, lineage in builder._lineages.items():
            for depth, node in enumerate(lineage):
                member[index[node], cls] = 1.0
                lineage_of.setdefault(node, lineage[:depth + 1])
        masses = probs @ member.T  # (photos, nodes)
        count = builder.rules.animal_candidates or probs.shape[1]
        candidates = np.argsort(-probs, axis=1)[:, :count]
        is_animal = np.array([i in builder.kb for i in range(probs.shape[1])])
        self.animal = (np.take_along_axis(probs, candidates, axis=1) * is_animal[candidates]).sum(axis=1)
        self.rows = rows
        self.mass = np.zeros((len(rows), len(RANKS)))
        self.verdict = np.zeros((len(rows), len(RANKS)), dtype=int)  # 0 wrong, 1 correct, 2 correct family+, 3 species
        for r, rank in enumerate(RANKS):
            columns = [index[node] for node in nodes if node[0] == rank]
            if not columns:
                continue
            best = np.array(columns)[np.argmax(masses[:, columns], axis=1)]
            self.mass[:, r] = masses[np.arange(len(rows)), best]
            for i, row in enumerate(rows):
                claimed = dict(lineage_of[nodes[best[i]]])
                verdict, deepest = judge({"rank": rank, "taxonomy": claimed}, row["truth"])
                self.verdict[i, r] = 0 if verdict == "wrong" else (
                    3 if deepest == "species" else 2 if deepest in FINE_RANKS else 1)

    def tally(self, rules: AnswerRules) -> Tally:
        thresholds = np.array([rules.threshold(rank) for rank in RANKS])
        passes = self.mass >= thresholds
        claimed = np.where(passes.any(axis=1), len(RANKS) - 1 - np.argmax(passes[:, ::-1], axis=1), -1)
        claimed[self.animal < rules.animal_threshold] = -1
        verdicts = np.where(claimed >= 0, self.verdict[np.arange(len(self.rows)), claimed], -1)
        return Tally(total=len(self.rows), correct_species=int((verdicts == 3).sum()),
                     correct_family_or_finer=int((verdicts >= 2).sum()),
                     correct_any=int((verdicts >= 1).sum()), wrong=int((verdicts == 0).sum()),
                     abstained=int((verdicts == -1).sum()))


# -- output --------------------------------------------------------------------------

HEADER = "family+ species anyrank wrong"


def table(title: str, names: list[str], cells: dict) -> None:
    sets = list(cells)
    print(f"\n{title}\n{'':<30}" + "".join(f"{s:<30}" for s in sets))
    print(f"{'':<30}" + "".join(f"{HEADER:<30}" for _ in sets))
    for name in names:
        print(f"{name:<30}" + "".join(f"{cells[s][name]:<30}" for s in sets))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="*", type=Path, default=list(DEV_SETS),
                        help="folders with images and truth.tsv (default: both dev sets)")
    parser.add_argument("--config", help="settings file (default: config.ini)")
    parser.add_argument("--search", action="store_true", help="fit temperatures and grid-search thresholds")
    parser.add_argument("--show-wrong", action="store_true", help="list the configured mode's wrong answers")
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                        help="what computes the logits (default: torch, the reference)")
    parser.add_argument("--compare-backends", action="store_true",
                        help="compare the ONNX backend's answers with PyTorch's, per mode and folder")
    args = parser.parse_args()

    config = load_config(args.config)
    section = config.section("classifier")
    configured = EnsembleSpec.load(section.get_path("model"))
    modes = {name: EnsembleSpec.load(path) for name, path in MODES.items() if path.exists()}
    builders = {name: rules_builder(config, spec) for name, spec in modes.items()}
    base = rules_builder(config, configured)
    networks = [ModelSpec.load(path) for path in NETWORKS]

    data = {}
    for folder in args.folders:
        rows = read_truth(folder)
        data[folder.name] = (rows, cached_logits(folder, rows, networks, section.get_path("knowledge_base"),
                                                 args.backend))
    if args.compare_backends:
        return compare_backends(args.folders, modes, builders, networks, section.get_path("knowledge_base"))
    columns = {name: f"{name} ({len(rows)})" for name, (rows, _) in data.items()}

    cells = {column: {} for column in columns.values()}
    for name, (rows, logits) in data.items():
        fast = mode_probabilities(modes["fast"], logits, temperature=1.0)
        cells[columns[name]]["before: Lite2, 0.9 ... rules"] = score(
            answers_of(builder_for(builders["fast"], **PREVIOUS), rows, fast), rows).cell()
        for mode, spec in modes.items():
            probs = mode_probabilities(spec, logits)
            cells[columns[name]][mode] = score(answers_of(builders[mode], rows, probs), rows).cell()
    table(f"each mode with its thresholds (%; config.ini: model = {section.get('model')})",
          ["before: Lite2, 0.9 ... rules", *modes], cells)

    animal = np.array([i in base.kb for i in range(len(base.labels))])
    temperature = fit_temperature(configured, data)
    cells = {column: {} for column in columns.values()}
    rules = compared_rules(base)
    for name, (rows, logits) in data.items():
        probs = mode_probabilities(configured, logits)
        cells[columns[name]]["seed rule (top-1, 20%)"] = score(seed_rule_answers(base, probs), rows).cell()
        for rule, (builder, transform) in rules.items():
            p = (inat_probabilities(probs, animal) if transform == "inat" else
                 mode_probabilities(configured, logits, temperature=temperature) if transform == "temperature"
                 else probs)
            tally = score(answers_of(builder, rows, p), rows)
            cells[columns[name]][rule] = tally.cell()
            if args.show_wrong and rule == "configured rules":
                for item in tally.wrong_files:
                    print(f"  wrong ({name}):", *item)
    table(f"rules compared on the configured model's outputs (%; likelihood temperature {temperature:.2f})",
          ["seed rule (top-1, 20%)", *rules], cells)

    print("\nheadline: led = opens with a lead other than the claim (a favourite animal or a look-alike "
          "group), of them right; wrong = headlines naming a wrong animal, of the answers that claim one")
    for mode, spec in modes.items():
        parts = []
        for name, (rows, logits) in data.items():
            led, right, wrong, claimed = lead_figures(builders[mode], rows, mode_probabilities(spec, logits))
            parts.append(f"{name}: {led:3d} led, {right:3d} right; wrong {wrong:3d}/{claimed}")
        print(f"  {mode:<10}" + "   ".join(parts))

    if args.search:
        search(builders, modes, data)
    return 0


def answer_key(answer: dict) -> tuple:
    """What "the same answer" means: the claim's name and rank, and what the lead names
    (its name and rank, not its probability, which differs by the preprocessing's rounding)."""
    lead = answer.get("lead")
    named = (lead.get("scientific_name"), lead.get("rank")) if isinstance(lead, dict) else lead
    return answer.get("scientific_name"), answer.get("rank"), named


def compare_backends(folders: list[Path], modes: dict, builders: dict, networks: list[ModelSpec],
                     kb_path: Path) -> int:
    """Per mode and folder: answers the same on both backends (name, rank, lead), the
    family-or-finer and wrong counts of each, and the largest probability difference."""
    print("ONNX Runtime + Pillow/numpy preprocessing against PyTorch + torchvision "
          "(same = same scientific name, rank and lead)")
    for folder in folders:
        rows = read_truth(folder)
        logits = {backend: cached_logits(folder, rows, networks, kb_path, backend) for backend in ("torch", "onnx")}
        for mode, spec in modes.items():
            probs = {backend: mode_probabilities(spec, logits[backend]) for backend in logits}
            answers = {backend: answers_of(builders[mode], rows, probs[backend]) for backend in logits}
            tallies = {backend: score(answers[backend], rows) for backend in logits}
            key = [answer_key(a) for a in answers["torch"]]
            same = sum(k == answer_key(b)
                       for k, b in zip(key, answers["onnx"]))
            t, o = tallies["torch"], tallies["onnx"]
            print(f"  {folder.name:<11} {mode:<9} same {same:3d}/{len(rows)}  family-or-finer torch "
                  f"{t.correct_family_or_finer:3d} onnx {o.correct_family_or_finer:3d}  wrong torch {t.wrong:3d} "
                  f"onnx {o.wrong:3d}  largest probability difference "
                  f"{np.abs(probs['torch'] - probs['onnx']).max():.4f}")
            for row, a, b in zip(rows, answers["torch"], answers["onnx"]):
                if answer_key(a) != answer_key(b):
                    print(f"      differs: {row['file']}: torch {a.get('scientific_name')} ({a.get('rank')}, "
                          f"lead {a.get('lead')}) / onnx {b.get('scientific_name')} ({b.get('rank')}, "
                          f"lead {b.get('lead')})")
    return 0


def rules_builder(config, spec: EnsembleSpec | None = None) -> AnswerBuilder:
    """The AnswerBuilder the classifier would use for ``spec`` (default: the configured
    model), without loading any network."""
    from animalid.recognition.classifier import rules_for
    from animalid.recognition.knowledge import load_knowledge_base
    from animalid.recognition.model import class_labels

    section = config.section("classifier")
    kb = load_knowledge_base(section.get_path("knowledge_base"))
    spec = spec or EnsembleSpec.load(section.get_path("model"))
    return AnswerBuilder(kb, class_labels(spec.members[0].spec, kb),
                         rules_for(spec, edge.answer_rules(section)), section.get_int("top_k"))


# -- the search behind the configured values ------------------------------------------

def fit_temperature(spec: EnsembleSpec, data: dict) -> float:
    """The temperature that minimises the negative log-likelihood of the true classes.

    Photos whose animal has classes in the vocabulary (``imagenet_exact``) of
    both sets count; the likelihood is the probability summed over those classes.
    """
    grid = np.round(np.arange(0.3, 2.01, 0.05), 2)
    losses = []
    for t in grid:
        nll = []
        for rows, logits in data.values():
            probs = mode_probabilities(spec, logits, temperature=t)
            nll += [-np.log(max(probs[i, row["exact"]].sum(), 1e-9)) for i, row in enumerate(rows) if row["exact"]]
        losses.append(np.mean(nll))
    return float(grid[int(np.argmin(losses))])


# Combinations compared by --search: (networks, views, how they are averaged).
COMBINATIONS = [
    ((0,), ("pad",), "probabilities"),
    ((1,), ("pad",), "probabilities"),
    ((2,), ("pad",), "probabilities"),
    ((2,), ("crop",), "probabilities"),
    ((2,), ("pad", "pad-mirror"), "logits"),
    ((2,), VIEWS, "logits"),
    ((1, 2), ("pad", "pad-mirror"), "probabilities"),
    ((1, 2), ("pad", "pad-mirror"), "logits"),
    ((1, 2), VIEWS, "logits"),
    ((0, 1, 2), ("pad", "pad-mirror"), "logits"),
    ((0, 1, 2), VIEWS, "probabilities"),
    ((0, 1, 2), VIEWS, "logits"),
]


def best_thresholds(builder: AnswerBuilder, data: dict, probs: dict, allowed: dict, grid: list):
    """(score, thresholds, tallies) of the grid's best rank thresholds, or None when none qualifies:
    the most family-or-finer answers over both sets together (each set's percentage counts
    alike), no more wrong answers than ``allowed`` on either set, at least 90% correct at
    some rank on each."""
    judges = {name: FastJudge(builder, rows, probs[name]) for name, (rows, _) in data.items()}
    best = None
    for g in grid:
        rules = replace(builder.rules, rank_thresholds=dict(zip(RANKS[::-1], g)))
        tallies = {name: judge.tally(rules) for name, judge in judges.items()}
        if any(t.wrong > allowed[n] or t.pct(t.correct_any) < 90 for n, t in tallies.items()):
            continue
        key = (sum(t.pct(t.correct_family_or_finer) for t in tallies.values()),
               sum(t.pct(t.correct_any) for t in tallies.values()))
        if best is None or key > best[0]:
            best = (key, g, tallies)
    return best


def search(builders: dict, modes: dict, data: dict) -> None:
    """Per combination of networks and views, and per mode: the likelihood temperature, and
    the thresholds with the most family-or-finer answers over both sets together, with no more
    wrong answers than before on either set and at least 90% correct at some rank on each."""
    allowed = {}
    for name, (rows, logits) in data.items():
        probs = mode_probabilities(modes["fast"], logits, temperature=1.0)
        allowed[name] = score(answers_of(builder_for(builders["fast"], **PREVIOUS), rows, probs), rows).wrong
    print(f"\nsearch: wrong answers allowed per set (as before this work): {allowed}")
    grid = [g for g in itertools.product((0.8, 0.9, 0.95, 1.01), np.arange(0.6, 0.96, 0.05),
                                         np.arange(0.3, 0.76, 0.05), (0.4, 0.5, 0.6, 0.7),
                                         (0.3, 0.5, 0.7), (0.15, 0.2, 0.3)) if g[0] >= g[1] >= g[2]]

    def line(best) -> str:
        if best is None:
            return "no threshold set qualifies"
        _, g, tallies = best
        return (f"{tuple(round(float(v), 2) for v in g)}  " +
                "  |  ".join(f"{n}: {t.cell()}" for n, t in tallies.items()))

    print("\ncombinations, temperature 1, each with its best thresholds "
          "(species genus family order class phylum):")
    networks = modes["full"].members
    for members, views, method in COMBINATIONS:
        spec = EnsembleSpec(networks[0].spec.path, "", [networks[m] for m in members], list(views), method)
        probs = {name: mode_probabilities(spec, logits) for name, (rows, logits) in data.items()}
        label = f"Lite{'+'.join(str(m) for m in members)} x {'+'.join(views)}, mean of {method}"
        print(f"  {label:<62} {line(best_thresholds(builders['fast'], data, probs, allowed, grid))}")

    for mode, spec in modes.items():
        t = fit_temperature(spec, data)
        print(f"\n{mode}: temperature by likelihood {t:.2f} (the description's: {spec.temperature:.2f})")
        for temperature in sorted({t, spec.temperature}):
            probs = {name: mode_probabilities(spec, logits, temperature=temperature)
                     for name, (rows, logits) in data.items()}
            print(f"  temperature {temperature:.2f}: "
                  f"{line(best_thresholds(builders[mode], data, probs, allowed, grid))}")


if __name__ == "__main__":
    sys.exit(main())
