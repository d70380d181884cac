"""The answer contract: the keys every answer carries, and its readable text form.

An answer is a plain dict (README, "Output contract"). The recognition code
builds it, the server mails it as JSON, and the client and the camera card
show it. This module is plain Python with no dependencies, so every layer may
import it: the mail client on PC 1 renders answers without PyTorch.
"""

from __future__ import annotations

from collections.abc import Sequence

COULD_NOT_IDENTIFY = "Could not identify"
NO_ANIMAL = "No animal recognised"
CONTRACT_KEYS = ("file", "scientific_name", "common_name", "description", "habitat",
                 "endangered", "dangerous", "poisonous", "venomous", "probability",
                 "rank", "taxonomy", "alternatives")
# The keys of an animal answer's ``lead`` object (what the headline opens with);
# a lead that names one animal also carries its description, habitat and endangered.
LEAD_KEYS = ("common_name", "scientific_name", "rank", "probability")
# Optional: "note", a sentence about the photo itself (e.g. that a GIF's palette can change
# the answer); "most_likely" and "looks_like" (see headline()).


def headline(answer: dict) -> str:
    """One line that leads with the animal, and says what is certain and what is not.

    It opens with the answer's ``lead`` (``lead_parts``), the same words the
    camera card's title shows:

    * the lead is the claim: "Tiger (Panthera tigris), 97%", or "Dog, wolf or
      fox: family Canidae, 64%; possibly Eskimo Dog (Canis lupus familiaris), 19%";
    * the lead is the most likely animal, well ahead: it comes first with its
      own probability, then what the answer claims, the least it stands by:
      "Tiger (Panthera tigris), 64%; at least family Felidae: Cat (wild or
      domestic), 77%";
    * the lead is a look-alike group, since the most likely class commonly
      stands for animals outside the vocabulary: "Seal or sea lion
      (Pinnipedia), 62%; most like Sea lion (Zalophus californianus), 60%; at
      least order Carnivora: ..., 70%".
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
    title, label, lead_probability = lead_parts(answer)
    lead = lead_of(answer)
    most_likely = answer.get("most_likely")
    if lead is None:  # the claim leads
        text = f"{title} ({scientific}), {probability:g}%" if rank == "species" \
            else f"{title}: {rank} {scientific}, {probability:g}%"
        if most_likely:
            # The possibility offered is the most likely animal of the claim with
            # its breeds and forms added up: its line among the alternatives.
            possible = next((alt for alt in answer.get("alternatives") or []
                             if alt.get("scientific_name") == most_likely.get("scientific_name")), most_likely)
            if possible.get("common_name") != name:
                text += f"; possibly {_candidate(possible, scientific)}, {possible['probability']:g}%"
            elif most_likely.get("common_name") != name:
                text += f"; most like {_candidate(most_likely, scientific)}, {most_likely['probability']:g}%"
        return text
    text = f"{title} ({label}), {lead_probability:g}%"
    if most_likely and lead.get("rank") not in ("species", None) and \
            most_likely.get("scientific_name") != lead.get("scientific_name"):
        text += f"; most like {_candidate(most_likely)}, {most_likely['probability']:g}%"
    elif most_likely and most_likely.get("common_name") != lead.get("common_name"):
        text += f"; most like {_candidate(most_likely, lead.get('scientific_name', ''))}, " \
                f"{most_likely['probability']:g}%"
    claim = (f"{_capital(name)} ({scientific})" if rank == "species"
             else f"{rank} {scientific}: {_capital(name)}")
    return text + f"; at least {claim}, {probability:g}%"


def lead_parts(answer: dict) -> tuple[str, str, float]:
    """(title, scientific label, probability) the headline and the camera card open with.

    The title is the lead's common name; the label is its scientific name (with
    its rank above species: "family Felidae"). Abstentions ("Could not
    identify") have no label.
    """
    if "error" in answer:
        return "Not identified", "", 0.0
    lead = lead_of(answer) or answer
    # An answer from before the lead object leads with ``most_likely``: a species.
    rank = lead.get("rank") or ("species" if lead is not answer else "none")
    name = _capital(lead.get("common_name", ""))
    if rank == "none":
        return name, "", float(answer.get("probability", 0))
    scientific = lead.get("scientific_name", "")
    label = scientific if rank in ("species", "clade") else f"{rank} {scientific}"
    return name, label, float(lead.get("probability", 0))


def lead_of(answer: dict) -> dict | None:
    """The answer's lead when it is not the claim itself (a favourite animal or a look-alike group).

    Answers from servers before the ``lead`` object carried ``lead: true`` beside
    ``most_likely``; they are read the same way.
    """
    lead = answer.get("lead")
    if lead is True:
        lead = answer.get("most_likely")
    if not isinstance(lead, dict):
        return None
    if (lead.get("scientific_name"), lead.get("rank", answer.get("rank"))) == \
            (answer.get("scientific_name"), answer.get("rank")):
        return None
    return lead


def _candidate(candidate: dict, claimed: str = "") -> str:
    """A candidate's name, with its scientific name unless that is the claim's (a breed)."""
    scientific = candidate.get("scientific_name", "")
    name = _capital(candidate.get("common_name", ""))
    return f"{name} ({scientific})" if scientific and scientific != claimed else name


def warnings_of(answer: dict) -> list[str]:
    flags = [word.upper() for word in ("dangerous", "venomous", "poisonous") if answer.get(word)]
    lead = lead_of(answer)
    status = (lead or {}).get("endangered") or answer.get("endangered")
    if status in ("Vulnerable", "Endangered", "Critically Endangered", "Extinct in the Wild"):
        flags.append(status.upper())
    return flags


def render_text(answer: dict) -> str:
    """The readable, multi-line form of one answer.

    The facts shown are those of what the headline opens with: the lead's when
    it carries its own (a favourite species), else the claim's. A broad claim
    ("phylum Chordata") has none, and a weak guess's facts are never shown.
    """
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
                     f"{most_likely['probability']:g}%")
    lead = lead_of(answer)
    facts = lead if lead and any(lead.get(key) for key in ("description", "habitat", "endangered")) \
        else answer
    if lead is not None and facts is lead:
        lines.append(f"  Facts about:  {_capital(lead['common_name'])} ({lead['scientific_name']})")
    flags = warnings_of(answer)
    if facts.get("endangered"):
        lines.append(f"  Conservation: {facts['endangered']}")
    lines.append("  Warnings:     " + (", ".join(flags) if flags else "none known"))
    if facts.get("habitat"):
        lines.append(f"  Habitat:      {facts['habitat']}")
    if facts.get("description"):
        lines.append(f"  About:        {facts['description']}")
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
