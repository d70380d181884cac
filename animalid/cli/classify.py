"""``classifier.py`` / ``animalid-classify``: identify the animal in image files, offline."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Iterable

from animalid.cli.runner import run_command, setup_logging
from animalid.config import load_config
from animalid.contract import render_answers
from animalid.errors import ExitStatus

log = logging.getLogger(__name__)
PROG = "classifier.py"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Identify the animal in each image with pretrained networks "
                    "(config.ini [classifier] model; by default models/balanced.json, "
                    "EfficientNet-Lite1 and -Lite2) and the animal_image.json knowledge base.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="The answer names the deepest taxonomic rank that is confident enough;\n"
               "below min_confidence at every rank it says 'Could not identify'.\n"
               "Thresholds, model and knowledge base are set in config.ini [classifier].\n"
               "exit status: 0 all images answered, 1 some file could not be read,\n"
               "2 bad settings or model.\n"
               "examples:\n"
               "  .venv/bin/python classifier.py tests/photos/tiger.png\n"
               "  .venv/bin/python classifier.py --json photo1.jpg photo2.heic")
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help="image files (JPEG, PNG, GIF, BMP, TIFF, WebP, HEIC/HEIF, AVIF)")
    parser.add_argument("--json", action="store_true", help="print the output contract as JSON, one object per image")
    parser.add_argument("--top-k", type=int, metavar="N", help="number of alternatives to list (default: config)")
    parser.add_argument("--config", metavar="FILE", help="settings file (default: config.ini beside this program)")
    parser.add_argument("--model", metavar="JSON", help="model description to use instead of config's")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where to run the network")
    parser.add_argument("--backend", choices=("auto", "onnx", "torch"),
                        help="what runs the networks: onnx (ONNX Runtime, CPU, needs the exports of "
                             "python -m animalid.cli.export), torch (PyTorch) or auto (onnx when "
                             "exported, torch on a GPU); default: config")
    parser.add_argument("-v", "--verbose", action="store_true", help="log timings")
    return parser


def main(argv: Iterable[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, logging.INFO if args.verbose else logging.WARNING)
    if args.top_k is not None and not 0 <= args.top_k <= 50:
        print("classifier.py: --top-k must be between 0 and 50", file=sys.stderr)
        return ExitStatus.USAGE
    return run_command(PROG, lambda: classify_files(args), args.verbose)


def classify_files(args: argparse.Namespace) -> int:
    from animalid.cli import settings as edge
    from animalid.recognition.model import ModelSpec

    started = time.perf_counter()
    overrides = {"top_k": args.top_k, "device": args.device, "backend": args.backend}
    if args.model:
        overrides["spec"] = ModelSpec.load(args.model)
    classifier = edge.classifier(load_config(args.config), **overrides)
    log.info("model loaded in %.2f s", time.perf_counter() - started)
    answers = classifier.classify([(name, name) for name in args.images])
    for answer in answers:
        if "error" in answer:
            print(f"{PROG}: {answer['file']}: {answer['error']}", file=sys.stderr)
    good = [a for a in answers if "error" not in a]
    if args.json:
        print(json.dumps(answers, indent=2, ensure_ascii=False))
    elif good:
        print(render_answers(good))
    return ExitStatus.ERROR if len(good) < len(answers) else ExitStatus.OK


if __name__ == "__main__":
    sys.exit(main())
