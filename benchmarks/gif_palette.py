"""Does saving a photo as GIF change its answer, and why? (issue 20; docs/providers.md)

For every photo of the labelled folders: the answer to the original, and to the same
photo saved as GIF by Pillow (a 256-colour median-cut palette, no dithering, its
transparency kept as GIF transparency). It also checks that the server decodes the
GIF exactly as saved (the decoded pixels against the quantised image), so a
difference comes from the palette, not from frame or transparency handling.

    .venv/bin/python benchmarks/gif_palette.py /work/shared/dev-real /work/shared/dev-photos

Prints one line per photo whose answer changes, then per folder: how many answers
changed, how many went to a shallower or a deeper rank.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import numpy as np
from PIL import Image

from animalid.cli import settings as edge
from animalid.config import load_config
from animalid.recognition.images import load_image
from animalid.recognition.knowledge import RANKS


def as_gif(data: bytes) -> tuple[bytes, Image.Image]:
    """The photo saved as GIF by Pillow, and the palette image it holds (as RGB)."""
    source = Image.open(io.BytesIO(data))
    source.load()
    out = io.BytesIO()
    source.save(out, "GIF")
    return out.getvalue(), load_image(out.getvalue())


def depth(answer: dict) -> int:
    return RANKS.index(answer["rank"]) + 1 if answer.get("rank") in RANKS else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="folders with photos and truth.tsv")
    parser.add_argument("--config", help="settings file (default: config.ini)")
    args = parser.parse_args()
    classifier = edge.classifier(load_config(args.config))
    for folder in args.folders:
        names = [row["file"] for row in csv.DictReader(open(folder / "truth.tsv"), delimiter="\t")]
        changed = shallower = deeper = 0
        worst_decode = 0.0
        for name in names:
            data = (folder / name).read_bytes()
            gif, decoded = as_gif(data)
            quantised = Image.open(io.BytesIO(gif)).convert("RGBA" if "transparency" in
                                                            Image.open(io.BytesIO(gif)).info else "RGB")
            if quantised.mode == "RGB":  # transparent ones are laid on white by the server
                worst_decode = max(worst_decode, float(np.abs(np.asarray(decoded, np.int16)
                                                              - np.asarray(quantised, np.int16)).max()))
            original, as_gif_answer = classifier.classify([(name, data), (name, gif)])
            if original.get("scientific_name") != as_gif_answer.get("scientific_name"):
                changed += 1
                shallower += depth(as_gif_answer) < depth(original)
                deeper += depth(as_gif_answer) > depth(original)
                print(f"{folder.name}/{name}: {original.get('rank')} {original.get('scientific_name')} "
                      f"{original.get('probability')}% -> GIF {as_gif_answer.get('rank')} "
                      f"{as_gif_answer.get('scientific_name')} {as_gif_answer.get('probability')}%")
        print(f"{folder.name}: {changed} of {len(names)} answers changed as GIF ({shallower} to a "
              f"shallower rank, {deeper} deeper); decoded GIF vs its palette image: max difference "
              f"{worst_decode:.0f} (0 = bit-exact)")


if __name__ == "__main__":
    main()
