#!/usr/bin/env python3
"""Score the classifier's answers on a folder of labelled photos.

The folder holds images and a ``truth.tsv`` (the format of the project's dev
photos: file, species, genus, family, order, class, phylum). An answer claims
a taxon at a rank; it is *correct* when the true animal belongs to that taxon
and *wrong* when it does not. "Could not identify" and "no animal recognised"
are abstentions, neither correct nor wrong. Where the truth itself is only
known down to some rank (``Corvus sp.``), a deeper claim is judged at that
rank.

Printed for the configured rules and, for comparison, for the seed project's
rule (top-1 class, "Could not identify" below 20%) and a naive roll-up (the
deepest rank whose summed probability reaches 0.5). ``--sweep`` also tries a
grid of thresholds, to choose the values in config.ini.

    python benchmarks/evaluate.py ../shared/dev-photos
"""

from __future__ import annotations

import argparse
import csv
import itertools
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path


from animalid.recognition.answer import AnswerBuilder, AnswerRules
from animalid.config import load_config  # noqa: E402
from animalid.recognition.knowledge import RANKS  # noqa: E402

BINOMIAL = re.compile(r"^([A-Z][a-z]+ [a-z]+(?: [a-z]+)?)")


@dataclass
class Tally:
    total: int = 0
    correct_species: int = 0
    correct_family_or_finer: int = 0
    correct_any: int = 0
    wrong: int = 0
    abstained: int = 0
    wrong_files: list = field(default_factory=list)

    def line(self, name: str) -> str:
        pct = lambda n: f"{100.0 * n / max(self.total, 1):5.1f}%"  # noqa: E731
        return (f"{name:<28} species {pct(self.correct_species)}  family-or-finer "
                f"{pct(self.correct_family_or_finer)}  any rank {pct(self.correct_any)}  "
                f"wrong {pct(self.wrong)}  abstained {pct(self.abstained)}")


def read_truth(folder: Path) -> list[dict]:
    with open(folder / "truth.tsv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    for row in rows:
        match = BINOMIAL.match(row.get("species", "").strip())
        species = match.group(1) if match and " sp" not in match.group(1) else ""
        row["truth"] = {rank: (row.get(rank) or "").strip() for rank in RANKS[:-1]}
        row["truth"]["species"] = species
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
            if rank in ("species", "genus", "family"):
                tally.correct_family_or_finer += 1
            if rank == "species":
                tally.correct_species += 1
    return tally


def seed_rule_answers(builder: AnswerBuilder, probs_list, rows) -> list[dict]:
    """The seed project's rule: the top-1 class as a species claim, if >= 20%."""
    out = []
    for probs in probs_list:
        best = max(range(len(probs)), key=lambda i: probs[i])
        entry = builder.kb.get(best)
        if entry is None or probs[best] < 0.20:
            out.append({"rank": "none"})
        else:
            depth = "species" if entry.class_rank == "breed" else entry.class_rank
            out.append({"rank": depth, "taxonomy": dict(entry.taxonomy)})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="folder with images and truth.tsv")
    parser.add_argument("--config", help="settings file (default: config.ini)")
    parser.add_argument("--sweep", action="store_true", help="try a grid of thresholds too")
    parser.add_argument("--fit", choices=("crop", "pad"),
                        help="override the model description's input.fit (crop = the reference preprocessing)")
    parser.add_argument("--show-wrong", action="store_true", help="list the wrong answers")
    args = parser.parse_args()

    from animalid.recognition.classifier import Classifier
    from animalid.recognition.model import build_transform

    rows = read_truth(args.folder)
    classifier = Classifier.from_config(load_config(args.config))
    if args.fit:
        classifier.spec.fit = args.fit
        classifier.transform = build_transform(classifier.spec)
    from animalid.recognition.images import load_image
    tensors = [classifier.transform(load_image(args.folder / row["file"])) for row in rows]
    probs_list = []
    for start in range(0, len(tensors), 16):
        probs_list += classifier.probabilities(tensors[start:start + 16])

    base = classifier.builder
    print(f"{len(rows)} photos in {args.folder}, input fit: {classifier.spec.fit}")
    print(score(seed_rule_answers(base, probs_list, rows), rows).line("seed rule (top-1, 20%)"))
    naive = AnswerBuilder(base.kb, base.labels, AnswerRules(0.5, 0.0, 0.0), base.top_k)
    print(score([naive.build(r["file"], p) for r, p in zip(rows, probs_list)], rows).line("naive roll-up (0.5)"))
    tally = score([base.build(r["file"], p) for r, p in zip(rows, probs_list)], rows)
    print(tally.line("configured rules"))
    if args.show_wrong:
        for item in tally.wrong_files:
            print("  wrong:", *item)
    if args.sweep:
        sweep(base, probs_list, rows)
    return 0


def sweep(base: AnswerBuilder, probs_list, rows) -> None:
    print("\nsweep: species genus family order class phylum animal -> figures")
    results = []
    grid = itertools.product((0.5, 0.6, 0.7, 0.8), (0.5, 0.6, 0.7), (0.4, 0.5, 0.6),
                             (0.3, 0.4, 0.5), (0.2, 0.3, 0.4), (0.2, 0.3), (0.2, 0.3, 0.4))
    for sp, ge, fa, orr, cl, ph, animal in grid:
        rules = AnswerRules(0.5, 0.2, animal, dict(species=sp, genus=ge, family=fa, order=orr,
                                                   **{"class": cl}, phylum=ph))
        builder = AnswerBuilder(base.kb, base.labels, rules, base.top_k)
        tally = score([builder.build(r["file"], p) for r, p in zip(rows, probs_list)], rows)
        results.append((tally, (sp, ge, fa, orr, cl, ph, animal)))
    ok = [r for r in results if r[0].wrong <= 0.10 * r[0].total]
    ok.sort(key=lambda r: (r[0].correct_family_or_finer, r[0].correct_any), reverse=True)
    for tally, params in ok[:15]:
        print(params, tally.line(""))


if __name__ == "__main__":
    sys.exit(main())
