"""The ONNX Runtime backend: the ensemble's networks run from their exports on the CPU, without PyTorch.

``choose_backend`` turns ``[classifier] backend`` (auto, onnx, torch) and
``device`` into the backend to use: ``auto`` takes ONNX Runtime on the CPU when
every member network has a valid export (exports.py) and onnxruntime is
installed, and PyTorch on a CUDA GPU (the GPU path stays PyTorch); when it
cannot use ONNX it says why in one line and uses PyTorch. ``onnx`` refuses
instead, with the line that names the rebuild command.

Threads (docs/speed.md, "Threads"): one setting, ``[classifier] threads``
(0 = one per core), sizes the whole process: ONNX Runtime's intra-op pool has
``threads`` threads and ``decoding_threads(threads)`` (half as many, at least
one) decode and prepare photos ahead of it, in the background
(``decode_threads`` overrides that count). ONNX Runtime's threads must not
spin while waiting (``allow_spinning = 0``): on 2 cores spinning halved the
images per second, and one background decoding thread beat two (faster, and
one full-size phone photo in memory at a time instead of two).

Nothing here imports torch or torchvision; a test checks ``sys.modules``.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Sequence

import numpy as np

from animalid.errors import ModelError
from animalid.recognition.exports import check_export, export_files, rebuild_hint
from animalid.recognition.model import EnsembleSpec, class_labels
from animalid.recognition.preprocess import view_arrays

log = logging.getLogger(__name__)

BACKENDS = ("auto", "onnx", "torch")
ONNXRUNTIME_PIN = "onnxruntime==1.32.0"


class CpuDevice:
    """Where the ONNX backend runs (the ``device`` a PyTorch placement would hold)."""

    type = "cpu"

    def __str__(self) -> str:
        return "cpu (ONNX Runtime)"


def choose_backend(backend: str, device: str) -> tuple[str, str]:
    """("onnx" | "torch", why) for ``[classifier] backend`` and ``device``, before any
    export is read; refuses an impossible ``onnx``. The classifier then opens the
    exports (``OnnxNetworks``), and ``auto`` falls back to PyTorch if they are not valid."""
    if backend not in BACKENDS:
        raise ModelError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if backend == "torch":
        return "torch", "backend = torch"
    if device == "cuda":
        if backend == "onnx":
            raise ModelError("backend = onnx runs on the CPU; device = cuda needs backend = torch (or auto)")
        return "torch", "device = cuda: the GPU runs PyTorch"
    if backend == "auto" and device == "auto" and cuda_present():
        return "torch", "a CUDA GPU is present: the GPU runs PyTorch"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        if backend == "onnx":
            raise ModelError(f"backend = onnx, but onnxruntime is not installed (pip install "
                             f"{ONNXRUNTIME_PIN})") from None
        return "torch", f"onnxruntime is not installed (pip install {ONNXRUNTIME_PIN})"
    return "onnx", "ONNX Runtime on the CPU"


def decoding_threads(threads: int) -> int:
    """Background decoding threads beside ``threads`` ONNX Runtime threads (measured on 2 cores)."""
    return max(1, threads // 2)


def cuda_present() -> bool:
    """Whether the NVIDIA driver reports a GPU, asked through libcuda without importing torch."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
        count = ctypes.c_int(0)
        return cuda.cuInit(0) == 0 and cuda.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0
    except (OSError, AttributeError):
        return False


class OnnxNetworks:
    """One ONNX Runtime session per member network, and each network's views as arrays."""

    def __init__(self, ensemble: EnsembleSpec, kb, threads: int = 0, spinning: bool = False):
        import onnxruntime

        first = ensemble.members[0].spec
        sidecars = []
        labels = None
        if first.classes != "imagenet-1k":  # otherwise from the sidecar: no torchvision
            labels = class_labels(first, kb)
        for member in ensemble.members:
            sidecars.append(check_export(member.spec, None if labels is None else len(labels)))
        if labels is None:
            labels = sidecars[0].get("labels")
            if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
                raise ModelError(f"{first.path}: the export's sidecar has no class names: "
                                 f"{rebuild_hint(first)}")
        if any(sidecar.get("num_classes") != len(labels) for sidecar in sidecars):
            raise ModelError(f"{ensemble.path}: the exported members do not share one class list")
        self.labels: list[str] = labels
        self.threads = threads or os.cpu_count() or 1
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        # ``spinning`` only for benchmarks/classifier_speed.py --threads, which measures why not.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "1" if spinning else "0")
        self.sessions = []
        for member in ensemble.members:
            path = export_files(member.spec).onnx
            try:
                session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # noqa: BLE001  (onnxruntime raises its own types for a bad file)
                raise ModelError(f"{path}: ONNX Runtime cannot open it ({str(exc).splitlines()[0][:200]})") from None
            self.sessions.append((session, session.get_inputs()[0].name))
        self.views_of = [view_arrays(member.spec, ensemble.views) for member in ensemble.members]

    def prepare(self, image) -> list[np.ndarray]:
        """One array (views, 3, H, W) per member network."""
        return [views_of(image) for views_of in self.views_of]

    def forward(self, prepared: Sequence[list[np.ndarray]], views: int) -> np.ndarray:
        """Every member's logits for prepared images: (members, views, images, classes)."""
        per_member = []
        for index, (session, input_name) in enumerate(self.sessions):
            batch = np.ascontiguousarray(np.concatenate([arrays[index] for arrays in prepared]))
            out = session.run(None, {input_name: batch})[0].astype(np.float32, copy=False)
            per_member.append(out.reshape(len(prepared), views, -1).transpose(1, 0, 2))
        return np.stack(per_member)
