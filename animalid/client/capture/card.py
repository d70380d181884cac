"""Drawing a shot's answer card: the palette, the layout sizes, the warning
badges and the card itself (the shot's thumbnail beside its answer). The
window around it (live picture, panel, strip) is window.py's and strip.py's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from animalid.client.capture.imaging import shrink
from animalid.client.capture.shots import Shot, waiting_text
from animalid.client.capture.text import RGB, TextPainter
from animalid.contract import lead_of, lead_parts, warnings_of

if TYPE_CHECKING:  # only for annotations: importing them costs start-up time
    import numpy as np

# The key hint drawn across the top of the preview.
HINT = "SPACE/ENTER: capture   q/ESC: quit"

WHITE: RGB = (255, 255, 255)
GREY: RGB = (190, 190, 195)
GOLD: RGB = (255, 205, 70)
ALERT: RGB = (255, 110, 100)
CARD_BACKGROUND: RGB = (28, 30, 36)
# Conservation badges use the IUCN Red List colours people know from field guides.
BADGE_COLOURS: dict[str, RGB] = {
    "DANGEROUS": (205, 25, 25),
    "VENOMOUS": (140, 45, 190),
    "POISONOUS": (0, 135, 75),
    "VULNERABLE": (249, 232, 20),
    "ENDANGERED": (252, 127, 63),
    "CRITICALLY ENDANGERED": (216, 30, 5),
    "EXTINCT IN THE WILD": (84, 35, 68),
}


def layout_unit(frame_height: int) -> int:
    """The body text size for a frame: readable at arm's length, never huge."""
    return max(12, min(26, round(frame_height / 30)))


def preview_margin(unit: int) -> int:
    return max(6, unit // 2)


def small_text(unit: int) -> int:
    """The size of secondary lines: status, badges, top matches."""
    return max(10, round(unit * 0.85))


def badge_padding(size: int) -> tuple[int, int]:
    return max(4, size // 2), max(2, size // 4)


def badge_text_colour(background: RGB) -> RGB:
    red, green, blue = background
    return (0, 0, 0) if 0.299 * red + 0.587 * green + 0.114 * blue > 150 else WHITE


def draw_badges(canvas, painter: TextPainter, x: int, y: int, flags: Sequence[str],
                size: int, max_x: int) -> int:
    """Coloured labels left to right from (x, y); returns the row height (0 if none)."""
    if not flags:
        return 0
    pad_x, pad_y = badge_padding(size)
    height = painter.line_height(size) + 2 * pad_y
    for flag in flags:
        width = painter.width(flag, size, "bold") + 2 * pad_x
        if x + width > max_x:
            break  # no room: the badges that fit still say the most important
        colour = BADGE_COLOURS.get(flag, ALERT)
        canvas.box(x, y, x + width, y + height, colour, radius=pad_y * 2)
        canvas.text(x + pad_x, y + pad_y, flag, size, badge_text_colour(colour), "bold")
        x += width + pad_x
    return height


@dataclass(frozen=True)
class CardText:
    """What a shot's card says, before any pixels (hashable: it keys the card cache)."""

    title: str
    title_colour: RGB = WHITE
    probability: str = ""
    subtitle: str = ""
    badges: tuple[str, ...] = ()
    details: tuple[str, ...] = ()


def card_text(shot: Shot, now: float) -> CardText:
    answer = shot.answer
    if answer is None and shot.waiting:
        return CardText(f"shot {shot.number}", subtitle=waiting_text(shot, now))
    if answer is None:
        return CardText(f"shot {shot.number}: no answer", ALERT, subtitle=shot.problem or "")
    if "error" in answer:
        return CardText(f"shot {shot.number}: not identified", ALERT, subtitle=str(answer["error"]))
    return answer_card_text(answer, shot.number)


def answer_card_text(answer: dict, number: int) -> CardText:
    """Title, badges and top matches of one answer of the output contract."""
    details = []
    most_likely = answer.get("most_likely")
    if most_likely:
        details.append(f"most likely {_named(most_likely)} {most_likely['probability']:g}%")
    alternatives = answer.get("alternatives") or []
    if alternatives:
        details.append("Top matches:")
        details += [f"{i}. {_named(alt)} {alt['probability']:g}%"
                    for i, alt in enumerate(alternatives, 1)]
    name = answer.get("common_name", "")
    if answer.get("rank", "none") == "none":  # "No animal recognised", "Could not identify"
        looks_like = answer.get("looks_like")
        guess = (f"it looks like: {looks_like['label']} ({looks_like['probability']:g}%)"
                 if looks_like else "")
        return CardText(name, GOLD, subtitle=_joined(guess, f"shot {number}"),
                        details=tuple(details))
    # The title is the headline's opening (contract.lead_parts): the window, the
    # terminal and the mail lead with the same animal or group.
    title, label, probability = lead_parts(answer)
    if lead_of(answer) is not None:
        rank, scientific = answer["rank"], answer.get("scientific_name", "")
        claim = scientific if rank == "species" else f"{rank} {scientific}"
        label = _joined(label, f"at least {claim} {answer.get('probability', 0):g}%")
    return CardText(title, probability=f"{probability:g}%",
                    subtitle=_joined(label, f"shot {number}"), badges=tuple(warnings_of(answer)),
                    details=tuple(details))


def _named(candidate: dict) -> str:
    scientific = candidate.get("scientific_name")
    return f"{candidate['common_name']} ({scientific})" if scientific else candidate["common_name"]


def _joined(*parts: str) -> str:
    return " \u00b7 ".join(part for part in parts if part)


def render_card(shot: Shot, width: int, now: float, painter: TextPainter, unit: int) -> "np.ndarray":
    """The shot's card: its thumbnail beside what is known about it (an opaque BGR image)."""
    import numpy as np

    text = card_text(shot, now)
    pad, gap = preview_margin(unit), max(2, unit // 4)
    title_size, body_size, small_size = round(unit * 1.4), unit, small_text(unit)
    rows = [painter.line_height(title_size), painter.line_height(body_size)]
    if text.badges:
        rows.append(painter.line_height(small_size) + 2 * badge_padding(small_size)[1])
    rows += [painter.line_height(small_size)] * len(text.details)
    height = max(2 * pad + sum(rows) + gap * (len(rows) - 1), 6 * unit)
    card = np.empty((height, width, 3), np.uint8)
    card[:] = CARD_BACKGROUND[::-1]

    thumb = shrink(shot.image, max(1, width // 3), height - 2 * pad)
    thumb_h, thumb_w = thumb.shape[:2]
    top = (height - thumb_h) // 2
    card[top:top + thumb_h, pad:pad + thumb_w] = thumb

    x, right = 2 * pad + thumb_w, width - pad
    with painter.canvas(card) as canvas:
        y = pad
        title = painter.fit(text.title, right - x, title_size, "bold")
        canvas.text(x, y, title, title_size, text.title_colour, "bold")
        if text.probability:
            after = x + painter.width(title, title_size, "bold") + unit
            if after + painter.width(text.probability, title_size, "bold") <= right:
                canvas.text(after, y, text.probability, title_size, GOLD, "bold")
        y += rows[0] + gap
        canvas.text(x, y, painter.fit(text.subtitle, right - x, body_size, "italic"),
                    body_size, GREY, "italic")
        y += rows[1] + gap
        if text.badges:
            y += draw_badges(canvas, painter, x, y, text.badges, small_size, right) + gap
        for line in text.details:
            colour = GREY if line.endswith(":") else WHITE
            canvas.text(x, y, painter.fit(line, right - x, small_size), small_size, colour)
            y += painter.line_height(small_size) + gap
    return card


def card_width(frame_width: int, frame_height: int) -> int:
    """The width of the card on a preview of this size."""
    return frame_width - 2 * preview_margin(layout_unit(frame_height))

