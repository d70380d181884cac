"""Reading the photos named on the command line, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

from animalid.errors import AnimalIdError
from animalid.mail.headers import PROVIDER_MAX_MESSAGE_BYTES
from animalid.mail.imagetypes import image_type_of

# A photo larger than a mail provider takes in one message cannot be sent.
MAX_IMAGE_BYTES = PROVIDER_MAX_MESSAGE_BYTES


def read_images(paths: list[str]) -> list[tuple[str, bytes]]:
    """(name, bytes) for each path, or AnimalIdError naming the file that cannot be used."""
    images = []
    for raw in paths:
        path = Path(raw)
        try:
            size = path.stat().st_size
            if path.is_dir():
                raise AnimalIdError(f"{raw}: is a folder, not an image")
            if size == 0:
                raise AnimalIdError(f"{raw}: the file is empty")
            if size > MAX_IMAGE_BYTES:
                raise AnimalIdError(f"{raw}: too large ({size / 1e6:.1f} MB; at most "
                                    f"{MAX_IMAGE_BYTES / 1e6:.0f} MB)")
            data = path.read_bytes()
        except FileNotFoundError:
            raise AnimalIdError(f"{raw}: no such file") from None
        except PermissionError:
            raise AnimalIdError(f"{raw}: permission denied") from None
        except OSError as exc:
            raise AnimalIdError(f"{raw}: cannot read: {exc.strerror or exc}") from None
        if not image_type_of(data, path.name).startswith("image/"):
            raise AnimalIdError(f"{raw}: not an image file (JPEG, PNG, HEIC, AVIF, WebP, GIF, BMP or TIFF)")
        images.append((path.name, data))
    return images
