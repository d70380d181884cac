"""The test-time views of a photo as numpy arrays, with Pillow: the ONNX backend's preprocessing.

It follows the torchvision pipeline of ``model.build_transform`` step by step,
without PyTorch:

* ``pad``: the picture centred on a square of the background colour (the same
  offsets as torchvision's pad), resized to ``crop`` x ``crop``;
* ``crop``: the short side resized to ``resize`` (the long side truncated as
  torchvision computes it), then the centre ``crop`` x ``crop`` cut out;
* the resize is Pillow's antialiased filter of the description's
  interpolation; torchvision's antialiased bicubic is a port of Pillow's
  (same kernel, a = -0.5), computed in float and rounded, where Pillow
  computes in fixed point, so a pixel may differ by one level
  (docs/speed.md, "Preprocessing");
* normalisation as ``ToDtype(scale=True)`` then ``Normalize``: value / 255,
  minus mean / pixel_scale, divided by std / pixel_scale, in float32;
* a ``-mirror`` view is its fitted view flipped left to right.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from animalid.errors import ModelError
from animalid.recognition.images import BACKGROUND_RGB
from animalid.recognition.model import ModelSpec

RESAMPLING = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
              "nearest": Image.Resampling.NEAREST}


def fit_image(image: Image.Image, spec: ModelSpec, fit: str) -> Image.Image:
    """An RGB image fitted to the network's input square by ``fit`` (pad or crop)."""
    if spec.interpolation not in RESAMPLING:
        raise ModelError(f"{spec.path}: input.interpolation must be one of {', '.join(RESAMPLING)}")
    resample = RESAMPLING[spec.interpolation]
    width, height = image.size
    if fit == "pad":
        side = max(width, height)
        if (width, height) != (side, side):
            square = Image.new("RGB", (side, side), BACKGROUND_RGB)
            square.paste(image, ((side - width) // 2, (side - height) // 2))
            image = square
        return image.resize((spec.crop, spec.crop), resample)
    if fit == "crop":
        short, long = min(width, height), max(width, height)
        # torchvision's Resize(int): the short side to `resize`, the long one truncated.
        new_short, new_long = spec.resize, int(spec.resize * long / short)
        size = (new_short, new_long) if width <= height else (new_long, new_short)
        if size != image.size:
            image = image.resize(size, resample)
        left = round((image.size[0] - spec.crop) / 2.0)  # torchvision's center_crop
        top = round((image.size[1] - spec.crop) / 2.0)
        return image.crop((left, top, left + spec.crop, top + spec.crop))
    raise ModelError(f"{spec.path}: input.fit must be crop or pad")


def normaliser(spec: ModelSpec) -> Callable[[Image.Image], np.ndarray]:
    """RGB image -> float32 array (3, H, W), normalised as the description says."""
    scale = spec.pixel_scale
    mean = (np.asarray(spec.mean, dtype=np.float32) / np.float32(scale))[:, None, None]
    std = (np.asarray(spec.std, dtype=np.float32) / np.float32(scale))[:, None, None]

    def normalise(image: Image.Image) -> np.ndarray:
        pixels = np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)
        return (pixels.astype(np.float32) / np.float32(255) - mean) / std

    return normalise


def view_arrays(spec: ModelSpec, views: Sequence[str]) -> Callable[[Image.Image], np.ndarray]:
    """RGB image -> float32 array (views, 3, crop, crop) in the order of ``views``;
    each fit is computed once, its mirror is the same array flipped."""
    fits = list(dict.fromkeys(view.split("-")[0] for view in views))
    normalise = normaliser(spec)

    def views_of(image: Image.Image) -> np.ndarray:
        fitted = {fit: normalise(fit_image(image, spec, fit)) for fit in fits}
        return np.stack([fitted[view.split("-")[0]][:, :, ::-1] if view.endswith("-mirror")
                         else fitted[view] for view in views])

    return views_of
