"""Where and how the networks run: device, batch size, numeric precision.

The defaults give the same answers on every device: ``precision = fp32``
turns TensorFloat-32 off for convolutions and matrix products on NVIDIA GPUs.
PyTorch enables it for cuDNN convolutions by default, and it rounds inputs to
10 mantissa bits: it is the likely cause of the one real photo (of 151) whose
GPU answer differed from the CPU's by 6 points (issue 11; not re-measured
here, where no GPU was lent: benchmarks/gpu_check.py measures it).
``tf32``, ``bf16`` and ``fp16`` trade that exactness for speed on a GPU; on
the CPU they are ignored (fp32 is used).

Batch size counts tensors (one per image and view) per forward pass. On 2 CPU
cores larger passes are slower per image and cost more memory
(benchmarks/classifier_speed.py: one network and one view, 34 images/s at 2,
10 images/s and 1.2 GB peak at 16; the two-view ensemble, 11.8 images/s one
image a pass, 8.7 at two). A GPU wants large ones: the network alone did
2,300 images/s at 256 on an H200 (issue 11).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
CPU_BATCH_TENSORS = 2
GPU_BATCH_TENSORS = 256


@dataclass(frozen=True)
class Placement:
    """How one classifier runs its networks."""

    device: object  # torch.device
    batch_tensors: int
    precision: str
    decode_threads: int

    @classmethod
    def choose(cls, torch, device, batch_size: int = 0, precision: str = "fp32",
               decode_threads: int = 0) -> "Placement":
        """``batch_size`` and ``decode_threads`` 0 mean: sized for the device and the machine."""
        cuda = device.type == "cuda"
        batch = batch_size or (GPU_BATCH_TENSORS if cuda else CPU_BATCH_TENSORS)
        threads = decode_threads or os.cpu_count() or 1
        placement = cls(device, batch, precision if cuda else "fp32", threads)
        if cuda:
            allow = placement.precision == "tf32"
            torch.backends.cuda.matmul.allow_tf32 = allow
            torch.backends.cudnn.allow_tf32 = allow
        return placement

    @property
    def cuda(self) -> bool:
        return bool(getattr(self.device, "type", "") == "cuda")

    def autocast(self, torch):
        """Reduced precision around a forward pass where asked for (GPU only)."""
        if self.cuda and self.precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            return torch.autocast("cuda", dtype=dtype)
        return contextlib.nullcontext()

    def to_device(self, torch, batch):
        """A CPU batch on the device, channels-last; on a GPU through pinned memory,
        so the copy overlaps the work already queued there."""
        if self.cuda:
            batch = batch.pin_memory()
            return batch.to(self.device, non_blocking=True, memory_format=torch.channels_last)
        return batch.contiguous(memory_format=torch.channels_last)
