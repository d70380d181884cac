"""Identify the animal in photos: a loaded network plus the knowledge base.

``Classifier.from_config(config).classify([(name, data)])`` answers each
image with one object of the output contract (README, "Output contract").
This package is the only code that imports PyTorch; it knows nothing of mail.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

from animalid.config import Config
from animalid.errors import BadImageError
from animalid.recognition.answer import AnswerBuilder, AnswerRules
from animalid.recognition.images import DEFAULT_MAX_PIXELS, load_image
from animalid.recognition.knowledge import RANKS, load_knowledge_base
from animalid.recognition.model import ModelSpec, build_transform, class_labels, load_network, pick_device

log = logging.getLogger(__name__)

# Images per forward pass. On 2 CPU cores larger batches are slower per image
# and cost more memory (benchmarks/classifier_speed.py: 34 images/s at 2,
# 10 images/s and 1.2 GB peak at 16).
BATCH_SIZE = 2

class Classifier:
    """A loaded network plus knowledge base; classify images in batches."""

    def __init__(self, spec: ModelSpec, kb_path: str | Path, rules: AnswerRules | None = None,
                 top_k: int = 3, device: str = "auto", threads: int = 0,
                 allow_pickle: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS):
        import torch

        self.torch = torch
        self.spec = spec
        self.max_pixels = max_pixels
        self.device = pick_device(torch, device)
        if self.device.type == "cpu":
            torch.set_num_threads(threads or os.cpu_count() or 1)
        self.kb = load_knowledge_base(kb_path)
        self.labels = class_labels(spec, self.kb)
        # channels_last suits the depthwise convolutions of mobile networks on
        # CPU: about 10% more images/s here (benchmarks/classifier_speed.py).
        self.model = load_network(torch, spec, len(self.labels), allow_pickle).to(
            self.device, memory_format=torch.channels_last)
        self.model.eval()
        self.transform = build_transform(spec)
        self.builder = AnswerBuilder(self.kb, self.labels, rules or AnswerRules(), top_k)

    @classmethod
    def from_config(cls, config: Config, **overrides) -> "Classifier":
        section = config.section("classifier")
        rules = AnswerRules(
            rank_threshold=section.get_float("rank_threshold", minimum=0.0, maximum=1.0),
            min_confidence=section.get_float("min_confidence", minimum=0.0, maximum=1.0),
            animal_threshold=section.get_float("animal_threshold", minimum=0.0, maximum=1.0),
            rank_thresholds={rank: section.get_float(f"{rank}_threshold", None, 0.0, 1.0)
                             for rank in RANKS if section.has(f"{rank}_threshold")},
        )
        settings = dict(
            spec=ModelSpec.load(section.get_path("model")),
            kb_path=section.get_path("knowledge_base"),
            rules=rules,
            top_k=section.get_int("top_k", minimum=0, maximum=50),
            device=section.get_choice("device", ("auto", "cpu", "cuda")),
            threads=section.get_int("threads", minimum=0, maximum=256),
            allow_pickle=section.get_bool("allow_pickle"),
        )
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
