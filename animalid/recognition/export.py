"""Export member networks to ONNX from their checksum-verified PyTorch checkpoints.

``export_network(spec)`` loads the checkpoint exactly as the PyTorch backend
does (``load_network``: the sha256 of the description is checked, a pickled
module needs ``allow_pickle``), writes ``onnx/NAME.onnx`` beside the
description with torch's TorchScript exporter (``dynamo=False``: it needs the
``onnx`` package but not ``onnxscript``; opset 17, dynamic batch), checks that
ONNX Runtime gives the same logits as PyTorch on a test input, and only then
writes the sidecar (exports.py). Files are written under temporary names and
renamed, so an interrupted export leaves no half file that looks valid.

The command is ``animalid.cli.export`` (exports.EXPORT_COMMAND); ``make
install`` runs it for every description in ``models/``.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np

from animalid.errors import ModelError
from animalid.recognition.exports import (
    OPSET,
    StaleExportError,
    check_export,
    expected_fields,
    export_files,
    file_sha256,
)
from animalid.recognition.knowledge import load_knowledge_base
from animalid.recognition.model import (
    EnsembleSpec,
    ModelSpec,
    class_labels,
    load_network,
)

log = logging.getLogger(__name__)

# Largest logit difference between PyTorch and ONNX Runtime accepted at export
# (measured: about 1e-5 on EfficientNet-Lite).
MAX_LOGIT_DIFFERENCE = 1e-3


@dataclass(frozen=True)
class ExportResult:
    spec: ModelSpec
    path: Path
    made: bool  # False: the export was already up to date
    max_difference: float | None = None


def networks_of(description: Path) -> list[ModelSpec]:
    """The member networks of a description (one network's or an ensemble's)."""
    return [member.spec for member in EnsembleSpec.load(description).members]


def export_network(spec: ModelSpec, kb_path: str | Path, allow_pickle: bool = False,
                   force: bool = False) -> ExportResult:
    """Export one network unless a valid export is already there (``force``: always)."""
    kb = load_knowledge_base(kb_path)
    labels = class_labels(spec, kb)
    if not force:
        try:
            check_export(spec, len(labels))
            return ExportResult(spec, export_files(spec).onnx, False)
        except StaleExportError:
            pass
    import torch

    network = load_network(torch, spec, len(labels), allow_pickle).eval()
    files = export_files(spec)
    files.onnx.parent.mkdir(parents=True, exist_ok=True)
    partial = files.onnx.with_suffix(".onnx.partial")
    sample = torch.zeros(1, 3, spec.crop, spec.crop)
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated in favour of the dynamo one,
            # which would need onnxscript; it warns about both on every export.
            warnings.simplefilter("ignore")
            torch.onnx.export(network, (sample,), str(partial), dynamo=False, opset_version=OPSET,
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        difference = _compare(torch, network, partial, spec.crop)
    except ModelError:
        partial.unlink(missing_ok=True)
        raise
    except Exception as exc:  # noqa: BLE001  (the exporter raises many types for an unsupported network)
        partial.unlink(missing_ok=True)
        raise ModelError(f"{spec.path}: cannot export to ONNX ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); it stays on "
                         f"PyTorch (backend = torch)") from None
    os.replace(partial, files.onnx)
    sidecar = {
        **expected_fields(spec, len(labels)),
        "onnx_sha256": file_sha256(files.onnx),
        "description": spec.path.name,
        "opset": OPSET,
        "max_logit_difference": difference,
        "versions": {name: _version(name) for name in ("torch", "torchvision", "onnx", "onnxruntime")},
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        # The ONNX backend names classes without torchvision (model.class_labels).
        "labels": labels if spec.classes == "imagenet-1k" else None,
    }
    _write_json(files.sidecar, sidecar)
    return ExportResult(spec, files.onnx, True, difference)


def _compare(torch, network, path: Path, size: int) -> float:
    """The largest logit difference between PyTorch and ONNX Runtime on two test inputs."""
    import onnxruntime

    generator = torch.Generator().manual_seed(0)
    batch = torch.randn(2, 3, size, size, generator=generator)
    with torch.inference_mode():
        expected = network(batch).float().numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: batch.numpy()})[0]
    difference = float(np.abs(got - expected).max())
    if not difference <= MAX_LOGIT_DIFFERENCE:
        raise ModelError(f"{path}: ONNX Runtime's logits differ from PyTorch's by {difference:.2g} "
                         f"(limit {MAX_LOGIT_DIFFERENCE:g}); this network stays on PyTorch (backend = torch)")
    return difference


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _write_json(path: Path, value) -> None:
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(value, indent=1) + "\n", encoding="utf-8")
    os.replace(partial, path)
