"""The reply's text body, written for a person reading it in Gmail, Outlook or on a phone.

Those show mail in a proportional font and wrap long lines, so nothing here
lines up in columns: each answer is its file name, the answer itself, then
short lines that each start with their label ("Conservation: Endangered").
The first line of every answer is the one client.py prints
(``animalid.contract.headline``). One closing line says what the
attached answers.json is, for the person who wonders.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from animalid.contract import headline, warnings_of

ANSWERS_JSON_LINE = ("answers.json (attached) holds the same answers as data, for programs "
                     "such as client.py; you can ignore it.")
NO_IMAGE_TEXT = "No image was found in your message."
# An error about the message as a whole (file "(message)" in the contract).
MESSAGE_LABEL = "Your message"


def reply_text(answers: Sequence[dict[str, Any]], note: str = "", closing: Sequence[str] = ()) -> str:
    """The whole text body: ``note`` first, each answer, the ``closing`` lines, the answers.json line."""
    blocks = [note] if note else []
    blocks += [answer_text(answer) for answer in answers] or [NO_IMAGE_TEXT]
    blocks += [line for line in closing if line]
    blocks.append(ANSWERS_JSON_LINE)
    return "\n\n".join(blocks)


def answer_text(answer: dict[str, Any]) -> str:
    """One answer: "file: the answer", then labelled lines."""
    name = answer.get("file", "image")
    lines = [f"{MESSAGE_LABEL if name == '(message)' else name}: {headline(answer)}"]
    if "error" not in answer and answer.get("rank", "none") != "none":
        taxonomy = [name for name in (answer.get("taxonomy") or {}).values() if name]
        if taxonomy:
            lines.append("Taxonomy: " + " > ".join(taxonomy))
        most_likely = answer.get("most_likely")
        if most_likely:
            lines.append(f"Most likely: {most_likely['common_name']} ({most_likely['scientific_name']}), "
                         f"{most_likely['probability']:g}%; the facts below are about it")
        lines.append(f"Conservation: {answer.get('endangered') or 'unknown'}")
        flags = warnings_of(answer)
        lines.append("Warnings: " + (", ".join(flags) if flags else "none known"))
        if answer.get("habitat"):
            lines.append(f"Habitat: {answer['habitat']}")
        if answer.get("description"):
            lines.append(f"About: {answer['description']}")
    alternatives = answer.get("alternatives") or []
    if alternatives:
        lines.append("Other possibilities: " + "; ".join(_alternative(alt) for alt in alternatives))
    if answer.get("note"):
        lines.append(f"Note: {answer['note'][:1].upper()}{answer['note'][1:]}.")
    return "\n".join(lines)


def _alternative(alt: dict[str, Any]) -> str:
    scientific = f" ({alt['scientific_name']})" if alt.get("scientific_name") else ""
    return f"{alt['common_name']}{scientific}, {alt['probability']:g}%"
