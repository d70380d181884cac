"""The reply's text body, written for a person reading it in Gmail, Outlook or on a phone.

Those show mail in a proportional font and wrap long lines, so nothing here
lines up in columns: each answer is its file name, the answer itself, then
short lines that each start with their label ("Conservation: Endangered"):
the same lines client.py prints (``animalid.contract.render_text``), without
the padding that lines them up in a terminal. One closing line says what the
attached answers.json is, for the person who wonders.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from animalid.contract import render_text

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
    """One answer: the lines client.py prints (``render_text``), each label followed by
    its value after one space instead of padding to a column."""
    lines = render_text(answer).splitlines()
    name = str(answer.get("file", "image"))
    if name == "(message)" and lines and lines[0].startswith(name):
        lines[0] = MESSAGE_LABEL + lines[0][len(name):]
    return "\n".join([lines[0], *(_unpadded(line) for line in lines[1:])]) if lines else ""


def _unpadded(line: str) -> str:
    """"  Conservation: Endangered" -> "Conservation: Endangered"."""
    found = _LABELLED.match(line)
    return f"{found.group(1)}: {found.group(2)}" if found else line.strip()


_LABELLED = re.compile(r"^\s+([A-Z][A-Za-z ]*?):\s+(.*)$")
