"""Where each network's ONNX export lives, what its sidecar records, and whether it still fits.

An export sits beside the network's description, in an ``onnx/`` folder
(``models/efficientnet_lite1.json`` -> ``models/onnx/efficientnet_lite1.onnx``
and ``.json``; git-ignored). It is made from the checksum-verified PyTorch
checkpoint by ``animalid.recognition.export`` (``EXPORT_COMMAND``), never
downloaded. The sidecar JSON records the checkpoint's sha256, the export's own
sha256, the input size, the class count (and the ImageNet class names, so the
ONNX path needs no torchvision), the opset and the torch, torchvision, onnx
and onnxruntime versions that made it.

An export that is missing, damaged or made from another checkpoint or input
size is refused with one line that names the command that rebuilds it.

No PyTorch here: the ONNX backend reads these files in processes that never
import torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from animalid.errors import ModelError
from animalid.recognition.model import ModelSpec

# The command that (re)builds the exports; `make install` runs it.
EXPORT_COMMAND = ".venv/bin/python -m animalid.cli.export"
# ONNX opset of the exports: ONNX Runtime 1.32 runs it, and torch's TorchScript
# exporter writes it without the onnxscript package.
OPSET = 17
# Bumped when the sidecar's meaning changes, so older exports are rebuilt.
SIDECAR_FORMAT = 1
EXPORT_FOLDER = "onnx"


class StaleExportError(ModelError):
    """An export that is missing, damaged or made from something else than the description says."""


@dataclass(frozen=True)
class ExportFiles:
    """The two files of one network's export."""

    onnx: Path
    sidecar: Path


def export_files(spec: ModelSpec) -> ExportFiles:
    folder = spec.path.parent / EXPORT_FOLDER
    return ExportFiles(folder / f"{spec.path.stem}.onnx", folder / f"{spec.path.stem}.json")


def rebuild_hint(spec: ModelSpec) -> str:
    return f"rebuild it: {EXPORT_COMMAND} --model {spec.path}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_sha256(spec: ModelSpec) -> str:
    """The checkpoint's sha256: the description's (the export checked the file against
    it) or, for a description without one, the file's own."""
    if spec.weights_sha256:
        return spec.weights_sha256.lower()
    if not spec.weights_path.is_file():
        raise ModelError(f"{spec.path}: weights file not found: {spec.weights_path}")
    return file_sha256(spec.weights_path)


def expected_fields(spec: ModelSpec, num_classes: int | None = None) -> dict:
    """What a sidecar must say for this description (num_classes None: not checked)."""
    fields = {
        "format": SIDECAR_FORMAT,
        "architecture": spec.architecture,
        "weights_format": spec.weights_format,
        "checkpoint_sha256": checkpoint_sha256(spec),
        "input_size": [3, spec.crop, spec.crop],
    }
    if num_classes is not None:
        fields["num_classes"] = num_classes
    return fields


def check_export(spec: ModelSpec, num_classes: int | None = None) -> dict:
    """The sidecar of ``spec``'s export when the export is there, intact and made from
    this checkpoint at this input size; otherwise StaleExportError, one line."""
    files = export_files(spec)
    hint = rebuild_hint(spec)
    if not files.onnx.is_file() or not files.sidecar.is_file():
        raise StaleExportError(f"{spec.path}: no ONNX export at {files.onnx}: {hint}")
    try:
        sidecar = json.loads(files.sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StaleExportError(f"{files.sidecar}: unreadable sidecar ({type(exc).__name__}): {hint}") from None
    if not isinstance(sidecar, dict):
        raise StaleExportError(f"{files.sidecar}: the sidecar is not a JSON object: {hint}")
    for key, wanted in expected_fields(spec, num_classes).items():
        if sidecar.get(key) != wanted:
            raise StaleExportError(f"{files.onnx}: stale export: its {key} is {_short(sidecar.get(key))}, "
                                   f"the description needs {_short(wanted)}: {hint}")
    if file_sha256(files.onnx) != sidecar.get("onnx_sha256"):
        raise StaleExportError(f"{files.onnx}: damaged export (sha256 differs from its sidecar's): {hint}")
    return sidecar


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 24 else text[:21] + "..."
