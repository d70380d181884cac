"""The answer contract: the keys every answer carries, and its readable text form.

An answer is a plain dict (README, "Output contract"). The recognition code
builds it, the server mails it as JSON, and the client and the camera card
show it. This module is plain Python with no dependencies, so every layer may
import it: the mail client on PC 1 renders answers without PyTorch.
"""

from __future__ import annotations

from typing import Sequence

COULD_NOT_IDENTIFY = "Could not identify"
NO_ANIMAL = "No animal recognised"
CONTRACT_KEYS = ("file", "scientific_name", "common_name", "description", "habitat",
                 "endangered", "dangerous", "poisonous", "venomous", "probability",
                 "rank", "taxonomy", "alternatives")
# Optional: "note", a sentence about the photo itself (e.g. that a GIF's palette can change
# the answer); "most_likely" and "looks_like" (see headline()).


def headline(answer: dict) -> str:
    """One line that leads with the animal, and says what is certain and what is not.

    * the answer names the animal itself: "Tiger (Panthera tigris), 97%";
    * the most likely animal is well ahead (``lead``): it comes first, with its
      own probability, then what the answer claims, the least it stands by:
      "Tiger (Panthera tigris), 64%; at least family Felidae: Cat (wild or
      domestic), 77%";
    * otherwise the claim comes first and the most likely animal is offered as
      a possibility: "Dog, wolf or fox: family Canidae, 64%; possibly Eskimo
      Dog (Canis lupus familiaris), 19%".
    """
    if "error" in answer:
        return f"error: {answer['error']}"
    name, probability = answer.get("common_name", ""), answer.get("probability", 0)
    rank = answer.get("rank", "none")
    if rank == "none":
        looks_like = answer.get("looks_like")
        if looks_like:
            return f"{name}; it looks like: {looks_like['label']} ({looks_like['probability']:g}%)"
        return name
    scientific = answer.get("scientific_name", "")
    most_likely = lead_of(answer) or answer.get("most_likely")
    if lead_of(answer):
        claim = (f"{_capital(name)} ({scientific})" if rank == "species"
                 else f"{rank} {scientific}: {_capital(name)}")
        lead = lead_of(answer) or {}
        return f"{_candidate(lead, scientific)}, {lead['probability']:g}%; " \
               f"at least {claim}, {probability:g}%"
    if rank == "species":
        text = f"{_capital(name)} ({scientific}), {probability:g}%"
    else:
        text = f"{_capital(name)}: {rank} {scientific}, {probability:g}%"
    if most_likely:
        text += f"; possibly {_candidate(most_likely, scientific)}, {most_likely['probability']:g}%"
    return text


def lead_of(answer: dict) -> dict | None:
    """The most likely animal when the answer leads with it (well ahead of the others), else None."""
    most_likely = answer.get("most_likely")
    return most_likely if most_likely and answer.get("lead") else None


def _candidate(candidate: dict, claimed: str = "") -> str:
    """A candidate's name, with its scientific name unless that is the claim's (a breed)."""
    scientific = candidate.get("scientific_name", "")
    name = _capital(candidate.get("common_name", ""))
    return f"{name} ({scientific})" if scientific and scientific != claimed else name


def warnings_of(answer: dict) -> list[str]:
    flags = [word.upper() for word in ("dangerous", "venomous", "poisonous") if answer.get(word)]
    if answer.get("endangered") in ("Vulnerable", "Endangered", "Critically Endangered",
                                     "Extinct in the Wild"):
        flags.append(answer["endangered"].upper())
    return flags


def render_text(answer: dict) -> str:
    """The readable, multi-line form of one answer."""
    lines = [f"{answer.get('file', 'image')}: {headline(answer)}"]
    if "error" in answer or answer.get("rank", "none") == "none":
        lines += _alternative_lines(answer)
        return "\n".join(lines)
    taxonomy = [t for t in (answer.get("taxonomy") or {}).values() if t]
    if taxonomy:
        lines.append("  Taxonomy:     " + " > ".join(taxonomy))
    most_likely = answer.get("most_likely")
    if most_likely:
        lines.append(f"  Most likely:  {most_likely['common_name']} ({most_likely['scientific_name']}), "
                     f"{most_likely['probability']:g}%; the facts below are about it")
    flags = warnings_of(answer)
    status = answer.get("endangered") or "unknown"
    lines.append(f"  Conservation: {status}")
    lines.append("  Warnings:     " + (", ".join(flags) if flags else "none known"))
    if answer.get("habitat"):
        lines.append(f"  Habitat:      {answer['habitat']}")
    if answer.get("description"):
        lines.append(f"  About:        {answer['description']}")
    lines += _alternative_lines(answer)
    if answer.get("note"):
        lines.append(f"  Note:         {answer['note']}")
    return "\n".join(lines)


def _alternative_lines(answer: dict) -> list[str]:
    alternatives = answer.get("alternatives") or []
    if not alternatives:
        return []
    parts = []
    for alt in alternatives:
        scientific = f" ({alt['scientific_name']})" if alt.get("scientific_name") else ""
        parts.append(f"{alt['common_name']}{scientific} {alt['probability']:g}%")
    return ["  Alternatives: " + "; ".join(parts)]


def render_answers(answers: Sequence[dict]) -> str:
    return "\n\n".join(render_text(answer) for answer in answers)


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
