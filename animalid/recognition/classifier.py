"""Identify the animal in photos: loaded networks plus the knowledge base.

``Classifier(spec, kb_path, ...).classify([(name, data)])`` answers each
image with one object of the output contract (README, "Output contract").
The model description picks a mode (models/fast.json, balanced.json,
full.json): which networks see which test-time views of each photo, how their
outputs are combined, and the answer thresholds measured for that
combination (README, "Accuracy"). ``animalid.cli.settings.classifier``
builds one from config.ini [classifier]. This package is the only code that imports
PyTorch; it knows nothing of mail.

``backend`` picks what runs the networks (onnx_backend.py): ONNX Runtime on
the CPU from the exports in ``models/onnx/`` (no PyTorch in the process), or
PyTorch; ``auto`` takes ONNX Runtime when the exports are valid and falls
back to PyTorch, saying why once.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from animalid.errors import BadImageError, ModelError
from animalid.recognition.answer import AnswerBuilder, AnswerRules
from animalid.recognition.decode_budget import DEFAULT_BUDGET_PIXELS, DecodeBudget
from animalid.recognition.decoding import decode_reduced, keep_freed_pictures_out_of_the_heap
from animalid.recognition.images import DEFAULT_MAX_PIXELS, load_image
from animalid.recognition.knowledge import load_knowledge_base
from animalid.recognition.model import (
    EnsembleSpec,
    ModelSpec,
    build_view_transform,
    class_labels,
    combine,
    load_network,
    pick_device,
)
from animalid.recognition.onnx_backend import CpuDevice, OnnxNetworks, choose_backend, decoding_threads
from animalid.recognition.placement import CPU_BATCH_TENSORS, Placement
from animalid.recognition.prefetch import prefetched, thread_pool

log = logging.getLogger(__name__)

# Tensors per forward pass on the CPU (placement.py says how it was chosen).
BATCH_SIZE = CPU_BATCH_TENSORS


def rules_for(spec: EnsembleSpec, rules: AnswerRules | None = None) -> AnswerRules:
    """``rules`` completed with the thresholds measured for ``spec``; the rules' own win."""
    rules = rules or AnswerRules()
    return replace(rules, rank_thresholds={**spec.thresholds, **rules.rank_thresholds})


class Classifier:
    """Loaded networks plus knowledge base; classify images in batches.

    ``spec`` is one network's description or an ensemble's (``EnsembleSpec``):
    every member network sees every view of each image, and their outputs are
    combined into one probability vector per image. The networks
    are loaded once, here.
    """

    def __init__(self, spec: ModelSpec | EnsembleSpec, kb_path: str | Path,
                 rules: AnswerRules | None = None, top_k: int = 3, device: str = "auto",
                 threads: int = 0, allow_pickle: bool = False,
                 max_pixels: int = DEFAULT_MAX_PIXELS, views: Sequence[str] | None = None,
                 batch_size: int = 0, precision: str = "fp32", decode_threads: int = 0,
                 backend: str = "auto"):
        ensemble = spec if isinstance(spec, EnsembleSpec) else EnsembleSpec.single(spec)
        if views:
            ensemble = ensemble.with_views(views)
        self.spec = ensemble
        self.max_pixels = max_pixels
        # Decoding memory follows the pictures, not the threads (decode_budget.py), on
        # either backend.
        self._budget = DecodeBudget(max_pixels=max(DEFAULT_BUDGET_PIXELS, max_pixels))
        keep_freed_pictures_out_of_the_heap()
        self.onnx: OnnxNetworks | None = None
        self.backend, why = choose_backend(backend, device)
        if self.backend == "onnx":
            try:
                self._load_onnx(ensemble, kb_path, rules, top_k, threads, batch_size, decode_threads)
                return
            except ModelError as exc:
                if backend == "onnx":
                    raise
                # Said once, at load: the server and classifier.py go on with PyTorch.
                log.warning("backend auto: classifying with PyTorch: %s", exc)
                self.backend, self.onnx = "torch", None
        elif backend == "auto":
            log.info("backend auto: classifying with PyTorch: %s", why)
        import torch

        self.torch = torch
        self.device = pick_device(torch, device)
        if self.device.type == "cpu":
            torch.set_num_threads(threads or os.cpu_count() or 1)
        self.placement = Placement.choose(torch, self.device, batch_size, precision, decode_threads)
        self._pool = thread_pool(self.placement.decode_threads)
        self.kb = load_knowledge_base(kb_path)
        self.labels = class_labels(ensemble.members[0].spec, self.kb)
        self.networks = []
        for member in ensemble.members:
            # channels_last suits the depthwise convolutions of mobile networks on
            # CPU: about 10% more images/s here (benchmarks/classifier_speed.py).
            network = load_network(torch, member.spec, len(self.labels), allow_pickle).to(
                self.device, memory_format=torch.channels_last)
            network.eval()
            self.networks.append((network, build_view_transform(member.spec, ensemble.views)))
        self.weights = [member.weight for member in ensemble.members]
        # Twice the long side a padded view keeps and the short side a cropped one
        # resizes to, whatever the views: the same photo is reduced the same way
        # in every mode that holds the largest network.
        self.needed = (max(2 * m.spec.crop for m in ensemble.members),
                       max(2 * m.spec.resize for m in ensemble.members))
        self.builder = AnswerBuilder(self.kb, self.labels, rules_for(ensemble, rules), top_k)

    def _load_onnx(self, ensemble: EnsembleSpec, kb_path, rules, top_k: int, threads: int,
                   batch_size: int, decode_threads: int) -> None:
        """The ONNX Runtime backend (onnx_backend.py): no PyTorch in this process."""
        self.torch = None  # type: ignore[assignment]  # no PyTorch on this backend
        self.kb = load_knowledge_base(kb_path)
        self.onnx = OnnxNetworks(ensemble, self.kb, threads)
        self.device = CpuDevice()
        # One setting sizes the whole process (onnx_backend.py, "Threads"): ONNX Runtime
        # runs `threads` threads, and half as many (at least one) decode ahead of it.
        decoding = decode_threads or decoding_threads(self.onnx.threads)
        self.placement = Placement(self.device, batch_size or CPU_BATCH_TENSORS, "fp32", decoding)
        self._pool = ThreadPoolExecutor(max_workers=decoding, thread_name_prefix="animalid-decode")
        self.labels = self.onnx.labels
        self.networks = []
        self.weights = [member.weight for member in ensemble.members]
        self.needed = (max(2 * m.spec.crop for m in ensemble.members),
                       max(2 * m.spec.resize for m in ensemble.members))
        self.builder = AnswerBuilder(self.kb, self.labels, rules_for(ensemble, rules), top_k)

    def load(self) -> None:
        """The networks are loaded when the Classifier is made; nothing is left to load."""

    def classify(self, items: Sequence[tuple[str, object]]) -> list[dict]:
        """Answer each (name, bytes | path | PIL image) in order; never raises for bad images.

        Threads decode and preprocess ahead (``prefetch``) while the networks
        work on full batches of ``placement.batch_tensors`` tensors.
        """
        answers: list[dict | None] = [None] * len(items)
        per_pass = self.images_per_pass()
        window = max(2 * per_pass, 2 * self.placement.decode_threads)
        ready: list[tuple[int, list]] = []
        for position, prepared in enumerate(prefetched(self.prepare, items, self._pool, window)):
            if isinstance(prepared, BadImageError):
                answers[position] = {"file": items[position][0], "error": str(prepared)}
                continue
            ready.append((position, prepared))
            if len(ready) == per_pass:
                self._answer_batch(ready, items, answers)
                ready = []
        if ready:
            self._answer_batch(ready, items, answers)
        return [answer for answer in answers if answer is not None]  # every position is filled

    def images_per_pass(self) -> int:
        """How many images one forward pass takes (each brings one tensor per view)."""
        return max(1, self.placement.batch_tensors // len(self.spec.views))

    def prepare(self, item: tuple[str, Any]):
        """One item's view tensors for every member network, or the BadImageError it raises."""
        try:
            # Reduced while decoding (decoding.py): a batch of phone photos is never held
            # at full size, and the threads share one budget of pixels in flight.
            source = item[1]
            if isinstance(source, (bytes, bytearray, memoryview, str, Path)):
                image = self.shrink(decode_reduced(source, self.needed, self.max_pixels, self._budget))
            else:
                image = self.shrink(load_image(source, self.max_pixels))
        except BadImageError as exc:
            return exc
        return self._views(image)

    def _views(self, image) -> list:
        """A decoded, shrunk image's views: one batch (views, 3, H, W) per member network."""
        if self.onnx is not None:
            return self.onnx.prepare(image)
        return [self.torch.stack(views_of(image)) for _, views_of in self.networks]

    def _answer_batch(self, ready: list[tuple[int, list]], items, answers: list) -> None:
        probabilities = combine(self._forward([tensors for _, tensors in ready]), self.weights,
                                self.spec.combine, self.spec.temperature)
        for (position, _), probs in zip(ready, probabilities):
            answers[position] = self.builder.build(items[position][0], probs)

    def _forward(self, prepared: list[list]) -> "np.ndarray":
        """Every member's logits for prepared images: (members, views, images, classes)."""
        views = len(self.spec.views)
        if self.onnx is not None:
            return self.onnx.forward(prepared, views)
        torch, placement = self.torch, self.placement
        per_member = []
        with torch.inference_mode():
            for index, (network, _) in enumerate(self.networks):
                batch = placement.to_device(torch, torch.cat([tensors[index] for tensors in prepared]))
                with placement.autocast(torch):
                    out = network(batch)
                out = out.float().cpu().numpy()
                # (images * views, classes) -> (views, images, classes)
                per_member.append(out.reshape(len(prepared), views, -1).transpose(1, 0, 2))
        return np.stack(per_member)

    def close(self) -> None:
        """Stop the decoding threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def probabilities(self, images: list) -> "np.ndarray":
        """The combined probabilities (at the description's temperature) for decoded RGB
        images: (images, classes)."""
        spec = self.spec
        return combine(self.logits(images), self.weights, spec.combine, spec.temperature)

    def shrink(self, image):
        """A large photo reduced by a whole factor first (a box filter, fast), so that
        the views' antialiased resizes start from at most about twice what they keep."""
        long_side, short_side = max(image.size), min(image.size)
        factor = min(long_side // self.needed[0], short_side // self.needed[1])
        return image.reduce(factor) if factor >= 2 else image

    def logits(self, images: list) -> "np.ndarray":
        """Every member's logits for decoded RGB images: (members, views, images, classes)."""
        return self._forward([self._views(self.shrink(image)) for image in images])
