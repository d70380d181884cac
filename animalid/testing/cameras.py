"""A simulated trail camera for tests and benchmarks: frames with EXIF times, and their mails.

Empty frames are synthetic landscapes (a sky gradient over noisy ground, no
licence question); animal frames are the committed test photos re-encoded as
a camera's JPEG with an EXIF ``DateTimeOriginal``.
"""

from __future__ import annotations

import email.utils
import io
import random
import time
from email.message import EmailMessage

from PIL import Image, ImageDraw

from animalid.testing.harness import photo

EXIF_IFD = 0x8769
DATE_TIME_ORIGINAL = 0x9003


def _jpeg(image: Image.Image, taken: float) -> bytes:
    exif = Image.Exif()
    exif.get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] = time.strftime("%Y:%m:%d %H:%M:%S", time.localtime(taken))
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=85, exif=exif)
    return out.getvalue()


def landscape(seed: int, taken: float, size: tuple[int, int] = (640, 480)) -> bytes:
    """An empty frame: sky, a horizon, grassy noise; different for each seed."""
    rng = random.Random(seed)
    width, height = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    horizon = int(height * rng.uniform(0.35, 0.55))
    for y in range(horizon):
        shade = y / max(1, horizon)
        draw.line([(0, y), (width, y)], fill=(int(110 + 90 * shade), int(150 + 70 * shade), 235))
    for y in range(horizon, height):
        draw.line([(0, y), (width, y)], fill=(60 + rng.randint(0, 25), 95 + rng.randint(0, 40), 40))
    for _ in range(4000):
        x, y = rng.randrange(width), rng.randrange(horizon, height)
        draw.point((x, y), fill=(40 + rng.randint(0, 60), 80 + rng.randint(0, 80), 30))
    return _jpeg(image, taken)


def animal(name: str, taken: float) -> bytes:
    """A committed test photo (tests/photos) as a camera JPEG taken at ``taken``."""
    return _jpeg(Image.open(io.BytesIO(photo(name))), taken)


def camera_mail(sender: str, recipient: str, subject: str, filename: str, data: bytes,
                date: float) -> EmailMessage:
    """One frame as a camera mails it: a short text and the JPEG."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = email.utils.formatdate(date, localtime=True)
    message["Message-ID"] = email.utils.make_msgid(domain=sender.rpartition("@")[2])
    message.set_content(f"{subject}\n")
    message.add_attachment(data, maintype="image", subtype="jpeg", filename=filename)
    return message
