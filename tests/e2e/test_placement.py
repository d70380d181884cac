"""Decoding threads, batch sizes and the device code paths give the same answers.

The GPU paths (pinned memory, non-blocking copies, TF32 switched off, autocast)
are the same code as on the CPU with ``device = cpu``; the GPU-against-CPU
check runs only where a CUDA GPU is present (benchmarks/gpu_check.py measures
it on the dev photos).
"""

from __future__ import annotations

import numpy as np
import pytest

from animalid.cli import settings as edge
from animalid.config import load_config
from animalid.recognition.classifier import Classifier
from animalid.recognition.placement import CPU_BATCH_TENSORS, GPU_BATCH_TENSORS, Placement
from animalid.testing.harness import PHOTOS, ROOT

PHOTO_NAMES = ("tiger.png", "dog.png", "bison.png")


def items():
    photos = [(name, (PHOTOS / name).read_bytes()) for name in PHOTO_NAMES]
    return photos * 3 + [("broken.jpg", b"\xff\xd8\xffnot really a jpeg")]


def classifier(**overrides) -> Classifier:
    overrides.setdefault("device", "cpu")
    return edge.classifier(load_config(ROOT / "config.ini"), **overrides)


@pytest.fixture(scope="module")
def reference():
    serial = classifier(decode_threads=1, batch_size=1)
    try:
        return serial.classify(items())
    finally:
        serial.close()


@pytest.mark.parametrize("threads, batch", [(2, 2), (4, 8), (3, 64)])
def test_threads_and_batch_sizes_change_no_answer(reference, threads, batch):
    other = classifier(decode_threads=threads, batch_size=batch)
    try:
        answers = other.classify(items())
    finally:
        other.close()
    assert [a.get("error") for a in answers] == [a.get("error") for a in reference]
    assert answers[-1]["file"] == "broken.jpg" and "error" in answers[-1]
    for mine, theirs in zip(answers[:-1], reference[:-1]):
        assert (mine["rank"], mine["scientific_name"]) == (theirs["rank"], theirs["scientific_name"])
        assert abs(mine["probability"] - theirs["probability"]) <= 0.1


def test_placement_is_sized_for_the_device():
    import torch

    cpu = Placement.choose(torch, torch.device("cpu"), precision="bf16")
    assert cpu.batch_tensors == CPU_BATCH_TENSORS and cpu.precision == "fp32"  # CPU: exact always
    assert cpu.decode_threads >= 1
    batch = torch.rand(4, 3, 8, 8)
    assert cpu.to_device(torch, batch).is_contiguous(memory_format=torch.channels_last)
    assert Placement.choose(torch, torch.device("cpu"), batch_size=7).batch_tensors == 7
    assert GPU_BATCH_TENSORS > CPU_BATCH_TENSORS


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA GPU")
def test_gpu_and_cpu_give_the_same_answers(reference):
    gpu = classifier(device="cuda")
    gpu_answers = gpu.classify(items())
    for mine, theirs in zip(gpu_answers[:-1], reference[:-1]):
        assert (mine["rank"], mine["scientific_name"]) == (theirs["rank"], theirs["scientific_name"])
        assert np.isclose(mine["probability"], theirs["probability"], atol=0.5)
