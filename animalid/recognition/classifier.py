"""Identify the animal in photos: loaded networks plus the knowledge base.

``Classifier.from_config(config).classify([(name, data)])`` answers each
image with one object of the output contract (README, "Output contract").
The model description picks a mode (models/fast.json, balanced.json,
full.json): which networks see which test-time views of each photo, how their
outputs are combined, and the answer thresholds measured for that
combination (README, "Accuracy"). This package is the only code that imports
PyTorch; it knows nothing of mail.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from animalid.config import Config
from animalid.errors import BadImageError
from animalid.recognition.answer import AnswerBuilder, AnswerRules
from animalid.recognition.images import DEFAULT_MAX_PIXELS, load_image
from animalid.recognition.knowledge import RANKS, load_knowledge_base
from animalid.recognition.model import (VIEWS, EnsembleSpec, ModelSpec, build_view_transform, class_labels,
                                        combine, load_network, pick_device)

log = logging.getLogger(__name__)

# Tensors per forward pass; each image brings one per view, so a pass holds
# max(1, BATCH_SIZE // views) images. On 2 CPU cores larger batches are slower
# per image and cost more memory (benchmarks/classifier_speed.py: one network
# and one view, 34 images/s at 2, 10 images/s and 1.2 GB peak at 16; the
# two-view ensemble, 11.8 images/s one image a pass, 8.7 at two).
BATCH_SIZE = 2


def rules_from_config(section) -> AnswerRules:
    """The answer rules of a config.ini [classifier] section."""
    return AnswerRules(
        rank_threshold=section.get_float("rank_threshold", minimum=0.0, maximum=1.0),
        min_confidence=section.get_float("min_confidence", minimum=0.0, maximum=1.0),
        animal_threshold=section.get_float("animal_threshold", minimum=0.0, maximum=1.0),
        animal_candidates=section.get_int("animal_candidates", minimum=0),
        rank_thresholds={rank: section.get_float(f"{rank}_threshold", None, 0.0, 1.0)
                         for rank in RANKS if section.has(f"{rank}_threshold")},
        lead_probability=section.get_float("lead_probability", minimum=0.0, maximum=1.0),
        lead_ratio=section.get_float("lead_ratio", minimum=1.0),
    )


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
                 max_pixels: int = DEFAULT_MAX_PIXELS, views: Sequence[str] | None = None):
        import torch

        self.torch = torch
        ensemble = spec if isinstance(spec, EnsembleSpec) else EnsembleSpec.single(spec)
        if views:
            ensemble = ensemble.with_views(views)
        self.spec = ensemble
        self.max_pixels = max_pixels
        self.device = pick_device(torch, device)
        if self.device.type == "cpu":
            torch.set_num_threads(threads or os.cpu_count() or 1)
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

    @classmethod
    def from_config(cls, config: Config, **overrides) -> "Classifier":
        section = config.section("classifier")
        views = section.get_list("views", [])
        unknown = [view for view in views if view not in VIEWS]
        if unknown:
            raise section.error("views", f"{unknown[0]!r} is not one of: {', '.join(VIEWS)}")
        settings = dict(
            spec=ModelSpec.load(section.get_path("model")),
            kb_path=section.get_path("knowledge_base"),
            rules=rules_from_config(section),
            top_k=section.get_int("top_k", minimum=0, maximum=50),
            device=section.get_choice("device", ("auto", "cpu", "cuda")),
            threads=section.get_int("threads", minimum=0, maximum=256),
            allow_pickle=section.get_bool("allow_pickle"),
            views=views,
        )
        settings.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**settings)

    def classify(self, items: Sequence[tuple[str, object]]) -> list[dict]:
        """Answer each (name, bytes | path | PIL image) in order; never raises for bad images."""
        answers: list[dict | None] = [None] * len(items)
        images, positions = [], []
        for position, (name, source) in enumerate(items):
            try:
                # Reduced at once: a batch of phone photos is not held at full size.
                images.append(self.shrink(load_image(source, self.max_pixels)))
                positions.append(position)
            except BadImageError as exc:
                answers[position] = {"file": name, "error": str(exc)}
        per_pass = max(1, BATCH_SIZE // len(self.spec.views))
        for start in range(0, len(images), per_pass):
            batch = images[start:start + per_pass]
            for position, probs in zip(positions[start:start + per_pass], self.probabilities(batch)):
                answers[position] = self.builder.build(items[position][0], probs)
        return answers

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
        """Every member's logits for every view: (members, views, images, classes)."""
        torch = self.torch
        images = [self.shrink(image) for image in images]
        per_member = []
        with torch.inference_mode():
            for network, views_of in self.networks:
                tensors = [tensor for image in images for tensor in views_of(image)]
                batch = torch.stack(tensors).to(self.device, memory_format=torch.channels_last)
                out = network(batch).float().cpu().numpy()
                # (images * views, classes) -> (views, images, classes)
                per_member.append(out.reshape(len(images), len(self.spec.views), -1).transpose(1, 0, 2))
        return np.stack(per_member)
