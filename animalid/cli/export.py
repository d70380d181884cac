"""``python -m animalid.cli.export``: export the networks to ONNX for the ONNX Runtime backend.

Exports each member network of every model description in ``models/`` (or of
the ``--model`` descriptions) from its checksum-verified PyTorch checkpoint,
into ``onnx/`` beside the description, with a sidecar JSON
(animalid/recognition/exports.py). An export that is already valid is kept,
so ``make install`` can run this every time. A network that cannot be
exported (a pickled module without ``--allow-pickle``, an unsupported layer)
stays on PyTorch: one line says so and the others are still exported.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

from animalid.cli.runner import run_command, setup_logging
from animalid.config import DEFAULT_CONFIG, load_config
from animalid.errors import ExitStatus, ModelError

PROG = "python -m animalid.cli.export"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Export the member networks of model descriptions to ONNX (opset 17, "
                    "dynamic batch) from their checksum-verified PyTorch checkpoints, for "
                    "[classifier] backend = onnx or auto. Exports go to onnx/ beside each "
                    "description, with a sidecar JSON (checkpoint sha256, versions, opset, "
                    "input size); valid exports are kept.",
        epilog="Exit status: 0 every network exported or up to date, 1 some network stays "
               "on PyTorch, 2 bad settings or description.")
    parser.add_argument("--model", metavar="JSON", action="append",
                        help="a model description (one network or an ensemble); repeatable "
                             "(default: every *.json in models/ beside config.ini)")
    parser.add_argument("--config", metavar="FILE", help="settings file, for the knowledge base "
                                                         "(default: config.ini beside the programs)")
    parser.add_argument("--force", action="store_true", help="export again even when the export is valid")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="load pickled-module checkpoints (runs their code: only files you trust)")
    parser.add_argument("-v", "--verbose", action="store_true", help="tracebacks for unexpected errors")
    return parser


def main(argv: Iterable[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    return run_command(PROG, lambda: export(args), args.verbose)


def export(args: argparse.Namespace) -> int:
    from animalid.recognition.export import export_network, networks_of
    from animalid.recognition.model import ModelSpec

    config = load_config(args.config)
    kb_path = config.section("classifier").get_path("knowledge_base", must_exist=True)
    assert kb_path is not None  # get_path without a fallback returns a path or raises
    descriptions = [Path(m) for m in args.model] if args.model else sorted(
        (DEFAULT_CONFIG.parent / "models").glob("*.json"))
    specs: dict[Path, ModelSpec] = {}
    for description in descriptions:
        for spec in networks_of(description):
            specs.setdefault(spec.path.resolve(), spec)
    status = ExitStatus.OK
    for spec in specs.values():
        try:
            result = export_network(spec, kb_path, allow_pickle=args.allow_pickle, force=args.force)
        except ModelError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            status = ExitStatus.ERROR
            continue
        if result.made:
            print(f"exported {spec.path.name} -> {result.path} "
                  f"(largest logit difference {result.max_difference:.1e})")
        else:
            print(f"up to date: {result.path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
