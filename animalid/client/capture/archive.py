"""Keeping shots on disk: each shot's JPEG and, once known, its answer as
JSON and as readable text, in the --save-dir folder."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from animalid.client.capture.shots import Shot
from animalid.contract import render_answers
from animalid.errors import ConfigError

# The package's one logger: log lines name "animalid.client.capture", as before the split.
log = logging.getLogger(__package__)


class ShotArchive:
    """Keeps each shot (.jpg) and, once known, its answer (.json and a readable
    .txt) in one folder; does nothing without a folder. A full disk costs a
    warning, never the session."""

    def __init__(self, folder: Path | None):
        self.folder = folder

    @classmethod
    def open(cls, folder: Path | None) -> "ShotArchive":
        if folder is not None:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"save dir {folder}: cannot create it ({exc.strerror})") from None
        return cls(folder)

    def keep_shot(self, shot: Shot) -> None:
        self._write(shot.name, shot.jpeg)

    def keep_outcome(self, shot: Shot) -> None:
        stem = Path(shot.name).stem
        record = json.dumps(shot_record(shot), ensure_ascii=False, indent=2) + "\n"
        self._write(f"{stem}.json", record.encode("utf-8"))
        self._write(f"{stem}.txt", (shot_report(shot) + "\n").encode("utf-8"))

    def _write(self, name: str, data: bytes) -> None:
        if self.folder is None:
            return
        try:
            (self.folder / name).write_bytes(data)
        except OSError as exc:
            log.warning("cannot keep %s in %s: %s", name, self.folder, exc.strerror)


def shot_record(shot: Shot) -> dict:
    """The JSON kept beside a shot: when, which message, the answers or the problem."""
    waited = None if shot.answered_at is None else round(shot.answered_at - shot.captured_at, 1)
    return {"shot": shot.number, "file": shot.name, "taken": shot.taken.isoformat(timespec="seconds"),
            "message_id": shot.message_id, "answer_after_s": waited,
            "answers": shot.answers, "problem": shot.problem}


def shot_report(shot: Shot) -> str:
    """The readable answer of a shot, labelled with its number."""
    header = f"shot {shot.number} (message id {shot.message_id or 'none'})"
    if shot.answers is None:
        return f"{header}: {shot.problem}"
    return f"{header}:\n{render_answers(shot.answers)}"

