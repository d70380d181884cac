"""Naming what a file that is not a usable photo really is, so a refusal can say what to do.

"no image found in the message" leaves a person guessing; "cat.pdf is a PDF
document; attach the photo itself (JPEG, PNG, HEIC...)" does not. The
content decides (magic numbers: a text file named ``.jpg`` is a text file),
then the declared MIME type, then the file name. Used by the server for the
attachments of a request that holds no image, and by client.py before it
mails a file.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterable
from email.message import Message

from animalid.mail.imagetypes import IMAGE_EXTENSIONS

# What to send instead, in every refusal of a file that is not a photo.
ATTACH_PHOTO = "attach the photo itself (JPEG, PNG, HEIC...)"
SEND_PHOTO = "send the photo itself (JPEG, PNG, HEIC...)"
# Magic numbers at offset 0 -> what the file is. Longer signatures first where they overlap.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a Microsoft Office document"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"8BPS", "a Photoshop document (PSD)"),
    (b"\x00\x00\x01\x00", "an icon (ICO)"),
    (b"ID3", "an audio file (MP3)"),
    (b"OggS", "an audio or video file (Ogg)"),
    (b"fLaC", "an audio file (FLAC)"),
    (b"\x1a\x45\xdf\xa3", "a video (WebM/Matroska)"),
    (b"{\\rtf", "a document (RTF)"),
    (b"\x7fELF", "a program (ELF)"),
    (b"MZ", "a Windows program"),
)
# ZIP containers told apart by their file name (Office Open XML, OpenDocument, archives).
_ZIP_KINDS = {".docx": "a Word document", ".xlsx": "an Excel spreadsheet",
              ".pptx": "a PowerPoint presentation", ".odt": "an OpenDocument text",
              ".ods": "an OpenDocument spreadsheet", ".odp": "an OpenDocument presentation",
              ".pages": "a Pages document", ".key": "a Keynote presentation",
              ".epub": "an e-book (EPUB)"}
# Declared types (or the type guessed from the name) by main type.
_MAIN_KINDS = {"text": "a text file", "audio": "an audio file", "video": "a video",
               "font": "a font", "model": "a 3-D model"}
_NAMED_TYPES = {"application/pdf": "a PDF document", "application/zip": "a ZIP archive",
                "application/msword": "a Word document", "application/vnd.ms-excel": "an Excel spreadsheet",
                "application/vnd.ms-powerpoint": "a PowerPoint presentation",
                "application/json": "a JSON file", "application/xml": "an XML file",
                "text/html": "a web page (HTML)", "text/calendar": "a calendar invitation",
                "text/vcard": "a contact card (vCard)", "text/x-vcard": "a contact card (vCard)",
                "application/pgp-signature": "a PGP signature", "application/pkcs7-signature":
                "an S/MIME signature", "application/x-pkcs7-signature": "an S/MIME signature",
                "image/svg+xml": "a vector drawing (SVG), not a photo"}
# Declared types whose content is text: a text file may be named by them.
_TEXT_TYPES = ("text/", "application/json", "application/xml", "image/svg+xml")
HEAD_BYTES = 512  # enough for every signature above and to tell text from binary
UNNAMED = "the attachment"


def kind_of(data: bytes, filename: str = "", declared: str = "") -> str:
    """What the bytes are, in words for a person: "a PDF document", "a text file", "empty"."""
    if not data:
        return "empty"
    head = bytes(data[:HEAD_BYTES])
    extension = _extension(filename)
    for magic, kind in _SIGNATURES:
        if head.startswith(magic):
            return kind
    if head.startswith(b"PK\x03\x04"):
        return _ZIP_KINDS.get(extension, "a ZIP archive")
    if head[4:8] == b"ftyp":
        return "a video (MP4/QuickTime)"  # image brands (HEIC, AVIF) are sniffed as images before this
    if head[:4] == b"RIFF":
        return {b"WAVE": "an audio file (WAV)", b"AVI ": "a video (AVI)"}.get(head[8:12], "a RIFF file")
    guessed = (mimetypes.guess_type(filename)[0] or "") if filename else ""
    if _looks_textual(head):
        lowered = head.lstrip().lower()
        if lowered.startswith((b"<!doctype html", b"<html")):
            return "a web page (HTML)"
        if b"<svg" in lowered:
            return "a vector drawing (SVG), not a photo"
        for content_type in ((declared or "").lower(), guessed):
            if content_type in _NAMED_TYPES and content_type.startswith(_TEXT_TYPES):
                return _NAMED_TYPES[content_type]
        return "a text file"
    for content_type in ((declared or "").lower(), guessed):
        if content_type in _NAMED_TYPES:
            return _NAMED_TYPES[content_type]
        main = content_type.partition("/")[0]
        if main in _MAIN_KINDS:
            return _MAIN_KINDS[main]
    return "not an image"


def not_a_photo_text(name: str, data: bytes, declared: str = "", verb: str = "attach") -> str:
    """One sentence: what ``name`` is and what to do, e.g. "cat.pdf is a PDF document; attach
    the photo itself (JPEG, PNG, HEIC...)". A file whose name promises an image says so:
    "fake.jpg is a text file, not a JPEG image; ...". ``verb``: attach (mail) or send (client)."""
    kind = kind_of(data, name, declared)
    shown = name or UNNAMED
    promised = IMAGE_EXTENSIONS.get(_extension(name), "").upper()
    if kind == "empty":
        what = "is empty"
    elif kind == "not an image":
        what = f"is not a {promised} image, whatever its name says" if promised else "is not an image"
    else:
        what = f"is {kind}" + (f", not a {promised} image" if promised else "")
    return f"{shown} {what}; {ATTACH_PHOTO if verb == 'attach' else SEND_PHOTO}"


def other_attachments(message: Message) -> list[tuple[str, str, bytes]]:
    """(file name, declared type, bytes) of each leaf part that is neither the body text
    nor an image: what a request without any image carried instead."""
    found = []
    for part in message.walk():
        if part.is_multipart():
            continue
        declared = part.get_content_type()
        try:
            filename = part.get_filename() or ""
            disposition = part.get_content_disposition()
        except Exception:  # noqa: BLE001 - a header the parser cannot read
            filename, disposition = "", None
        if declared.startswith(("text/plain", "text/html")) and not filename and disposition != "attachment":
            continue  # the message's own text
        if declared.startswith(("message/", "multipart/")):
            continue
        try:
            data = part.get_payload(decode=True)
        except Exception:  # noqa: BLE001
            data = b""
        found.append((filename, declared, data if isinstance(data, bytes) else b""))
    return found


def no_image_text(attachments: Iterable[tuple[str, str, bytes]], limit: int = 3) -> str:
    """Why a request had nothing to identify, naming what it carried instead: "no image
    found: cat.pdf is a PDF document; attach the photo itself (JPEG, PNG, HEIC...)"."""
    found = [not_a_photo_text(name, data, declared).rpartition("; ")[0]
             for name, declared, data in attachments]
    shown = found[:limit] + ([f"and {len(found) - limit} more"] if len(found) > limit else [])
    return "; ".join(["no image found" + (f": {shown[0]}" if shown else " in the message"),
                      *shown[1:], ATTACH_PHOTO])


def _extension(filename: str) -> str:
    return "." + filename.rpartition(".")[2].lower() if filename and "." in filename else ""


def _looks_textual(head: bytes) -> bool:
    """No NUL byte and valid UTF-8 (a cut multi-byte character at the end is allowed)."""
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3 and exc.reason == "unexpected end of data"
    return True
