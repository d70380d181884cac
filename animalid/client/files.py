"""Reading the photos named on the command line, with errors that name the file.

Each photo is checked here, on PC 1, before anything is mailed: a file, not
empty, small enough to mail, an image the server can read, of a usable size
(precheck.py reads the header only).
"""

from __future__ import annotations

from pathlib import Path

from animalid.client.precheck import check_photo
from animalid.errors import AnimalIdError
from animalid.mail.headers import PROVIDER_MAX_MESSAGE_BYTES
from animalid.photolimits import DEFAULT_MAX_PIXELS

# A photo larger than a mail provider takes in one message cannot be sent.
MAX_IMAGE_BYTES = PROVIDER_MAX_MESSAGE_BYTES


def read_images(paths: list[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> list[tuple[str, bytes]]:
    """(name, bytes) for each path, or AnimalIdError naming the file that cannot be used.

    ``max_pixels``: the server's limit ([server] max_image_pixels), checked here first."""
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
        check_photo(raw, data, max_pixels)
        images.append((path.name, data))
    return images
