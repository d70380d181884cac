"""The mail formats of the project: requests, replies, and reading what arrives.

Follows RFC 5322 (message format: Message-ID, Date, In-Reply-To, References),
RFC 2045-2049 (MIME: multipart messages, base64 attachments, RFC 2231 file
names), RFC 2183 (Content-Disposition) and RFC 3834 (automatic responses:
``Auto-Submitted: auto-replied`` on every reply, and no reply to automatic
mail, bounces, mailing lists or our own mail). RFC 3462/6522 multipart/report
marks delivery reports.

* A **request** carries the photos as attachments, a ``Message-ID``, a
  ``Date``, the subject "Animal photo YYYY-MM-DD HH:MM:SS" and
  ``X-Animalid: request``.
* A **reply** points at its request with ``In-Reply-To`` and ``References``,
  has a readable text/plain body and the contract answers as an
  application/json part (a list, one object per image, in input order).
* ``parse_incoming`` reads any mail the server receives, including a
  person's ordinary mail from a phone: every image part in order, within the
  limits of config.ini [server], with names that are safe to display (they
  are never used as paths). A part is an image when its bytes say so (magic
  numbers, and for HEIC and AVIF the ISO/IEC 14496-12 'ftyp' brands), whatever
  its declared type or name: old phones and some webmail send photos as
  nameless application/octet-stream. Beside a photo, signature logos, icons
  and tracking pixels are skipped (decorations.py) and the reply says so.

Headers are only ever set through the email package, which refuses CR/LF in
values; anything copied from an incoming message is stripped of control
characters first, so header injection is impossible.

Hostile mail is read defensively: the From field must name exactly one
address, read alike by the email package's two parsers (RFC 5322 section
3.6.2; otherwise mail programs would disagree on whom a reply goes to); a
MIME structure with too many parts or containers is refused before it is
parsed, since the parser is slow on many parts and recursive on nesting; and
mail that answers one of our replies without bringing a photo is not
answered (a loop guard for auto-responders that do not follow RFC 3834).
With ``[security]`` keys (protection.py) a request must be signed and/or
encrypted, and replies are too.
"""

from __future__ import annotations

import email
import email.errors
import email.policy
import email.utils
import json
import logging
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage, Message
from typing import Any, Sequence

from animalid.mail.decorations import find_decorations
from animalid.mail.filekinds import no_image_text, other_attachments
from animalid.mail.headers import HEADER_BYTES_LIMIT, first_message_id, message_ids, one_line, read_header
from animalid.mail.imagetypes import IMAGE_EXTENSIONS, UNTYPED, image_type_of, sniff_image_type
from animalid.mail.parts import attach
from animalid.mail.protection import Protection, ProtectionError, sealed_parts
from animalid.mail.replytext import reply_text
from animalid.mail.transport import looks_like_address

log = logging.getLogger(__name__)

# The X-Animalid header's values, which are also the kinds protection.py signs.
REQUEST_MARK = "request"
REPLY_MARK = "reply"
MARK_HEADER = "X-Animalid"
ANSWERS_FILENAME = "answers.json"
MAX_SKIPPED_NAMES = 5
# Kinds of incoming mail: a request to answer, or why not to answer it.
REQUEST_KIND = "request"
AUTO_SUBMITTED = "auto-submitted"
BOUNCE = "bounce"
MAILING_LIST = "mailing-list"
OWN_MAIL = "own-mail"
NO_SENDER = "no-sender"
LOOP_GUARD = "loop-guard"
# Tags the Message-ID of every reply (make_msgid's idstring), so mail that
# answers a reply is recognised by its In-Reply-To / References.
REPLY_ID_TAG = "animalid-reply"
MAX_NAME_CHARS = 100
MAX_SUBJECT_CHARS = 200
MAX_REFERENCES = 10
MAX_ANSWERS_JSON_BYTES = 2_000_000
# Refused before parsing: the parser recurses once per nesting level (about
# 1000 levels exhaust Python's stack) and takes seconds per 10,000 parts.
MAX_MULTIPART_CONTAINERS = 100
MIN_DELIMITER_LINES = 1000
ENCRYPTED_REQUEST_TEXT = ("The photos are encrypted for the animal server (animalid); "
                          "the answer comes back by mail.\n")
ENCRYPTED_REPLY_TEXT = "The answer is encrypted; client.py shows it."
_MULTIPART = re.compile(rb"multipart/", re.IGNORECASE)
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


@dataclass(frozen=True)
class Limits:
    """What one request may carry (config.ini [server])."""

    max_message_bytes: int
    max_parts: int
    max_images: int
    max_image_pixels: int = 40_000_000  # config.DEFAULTS [server] max_image_pixels


@dataclass
class ImagePart:
    """One image found in a message; ``refusal`` says why it will not be classified."""

    name: str
    content_type: str
    data: bytes
    refusal: str | None = None


@dataclass
class Incoming:
    """What the server needs to know about one received message."""

    message_id: str  # "<...>", or "" when the message has none usable
    sender: str  # bare lower-case address from From, or ""
    subject: str
    references: list[str]
    kind: str  # REQUEST_KIND or the reason to ignore it
    reason: str  # a few words for the log when kind is not REQUEST_KIND
    images: list[ImagePart] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # e.g. parts over the limit
    protection_problem: str = ""  # why the signature / encryption check failed
    skipped: list[str] = field(default_factory=list)  # decorations not answered: "name (WxH)"
    # The header fields as written, top first (name, raw value): authresults.check_sender
    # reads the provider's Authentication-Results from them.
    header_fields: tuple[tuple[str, str], ...] = ()
    # A delivery report (kind BOUNCE): the Message-IDs it reports on, and why it bounced.
    bounced_ids: list[str] = field(default_factory=list)
    bounce_detail: str = ""
    no_image: str = "no image found in the message"  # why there is nothing to identify, when so
    date: float | None = None  # the Date header (RFC 5322 section 3.6.1) as Unix seconds, when readable

    @property
    def is_request(self) -> bool:
        return self.kind == REQUEST_KIND


@dataclass
class Reply:
    """A reply as the client reads it."""

    in_reply_to: list[str]
    references: list[str]
    answers: list[dict[str, Any]] | None  # None when the JSON part is missing or unreadable
    text: str
    from_animalid: bool
    protection_problem: str = ""  # why the signature / encryption check failed


# -- small helpers ----------------------------------------------------------

def clean_text(value: object, limit: int = MAX_SUBJECT_CHARS) -> str:
    """One line of printable text: control characters (CR, LF ...) become spaces."""
    return one_line(value, limit)


def safe_name(raw: str | None, index: int, content_type: str) -> str:
    """A display name for an attachment: no folders, no control characters, bounded.

    It is shown to people and put into answers, never used as a path.
    """
    name = unicodedata.normalize("NFC", clean_text(raw or "", 1000))
    # Format characters (U+202E RIGHT-TO-LEFT OVERRIDE ...) make "gpj.exe" look like "exe.jpg".
    name = "".join(char for char in name if unicodedata.category(char) != "Cf")
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip().lstrip(".")
    if not name:
        subtype = content_type.partition("/")[2] or "bin"
        extension = {"jpeg": "jpg", "octet-stream": "bin"}.get(subtype, subtype)
        name = f"image-{index}.{re.sub(r'[^a-z0-9]', '', extension.lower())[:5] or 'bin'}"
    if len(name) > MAX_NAME_CHARS:
        stem, dot, extension = name.rpartition(".")
        extension = extension[:10] if dot else ""
        name = (stem or name)[:MAX_NAME_CHARS - len(extension) - 1] + (f".{extension}" if extension else "")
    return name


def bare_address(value: object) -> str:
    """The lower-case address of a From-like header, or "" if there is none usable."""
    _, address = email.utils.parseaddr(clean_text(value, 1000))
    address = address.strip().lower()
    return address if looks_like_address(address) else ""


def parse_bytes(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


# -- building ---------------------------------------------------------------

def build_request(sender: str, recipient: str, images: Sequence[tuple[str, bytes]],
                  now: datetime | None = None, protection: Protection | None = None) -> EmailMessage:
    """A request mail with the photos attached, in order (sealed and/or signed with keys)."""
    protection = protection or Protection()
    now = (now or datetime.now()).astimezone()
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = f"Animal photo {now:%Y-%m-%d %H:%M:%S}"
    message["Date"] = email.utils.format_datetime(now)
    message["Message-ID"] = email.utils.make_msgid(domain=_domain_of(sender))
    message[MARK_HEADER] = REQUEST_MARK
    count = len(images)
    if protection.encrypts:
        message.set_content(ENCRYPTED_REQUEST_TEXT)
    else:
        message.set_content(f"Please identify the animal in the attached photo{'s' if count != 1 else ''}.\n"
                            "Sent by animalid client.py; the answer comes back by mail.\n")
    files = [(safe_name(name, index, image_type_of(data, name)), bytes(data))
             for index, (name, data) in enumerate(images, 1)]
    protection.protect(message, files, REQUEST_MARK, _attach_images)
    return message


def _attach_images(message: EmailMessage, files: list[tuple[str, bytes]]) -> None:
    for name, data in files:
        maintype, _, subtype = image_type_of(data, name).partition("/")
        attach(message, data, maintype, subtype, name)


def build_reply(request: Incoming, sender: str, answers: list[dict[str, Any]], note: str = "",
                now: datetime | None = None, protection: Protection | None = None,
                display_name: str = "") -> EmailMessage:
    """The answer to ``request``: readable text plus the contract JSON (sealed and/or signed with keys).

    ``note`` opens the text; the images skipped as decorations are named in
    one line after the answers. ``display_name`` goes into From (RFC 5322
    section 3.4 name-addr, quoted or encoded by the email package).
    """
    protection = protection or Protection()
    now = (now or datetime.now()).astimezone()
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = email.utils.formataddr((clean_text(display_name, 100), sender)) if display_name \
        else sender
    message["To"] = request.sender
    subject = clean_text(request.subject) or "Animal photo"
    message["Subject"] = subject if subject.lower().startswith("re:") else f"Re: {subject}"
    message["Date"] = email.utils.format_datetime(now)
    message["Message-ID"] = email.utils.make_msgid(idstring=REPLY_ID_TAG, domain=_domain_of(sender))
    if request.message_id:
        message["In-Reply-To"] = request.message_id
        chain = (request.references + [request.message_id])[-MAX_REFERENCES:]
        message["References"] = " ".join(chain)
    # RFC 3834 section 5: mark the reply so that other responders stay quiet.
    message["Auto-Submitted"] = "auto-replied"
    message[MARK_HEADER] = REPLY_MARK
    closing = [skipped_text(request.skipped)] if request.skipped else []
    if protection.encrypts:  # the answers themselves travel sealed only
        body = "\n\n".join(block for block in (note, ENCRYPTED_REPLY_TEXT, *closing) if block)
    else:
        body = reply_text(answers, note, closing)
    message.set_content(body + "\n")
    payload = json.dumps(answers, ensure_ascii=False, indent=1).encode("utf-8")
    protection.protect(message, [(ANSWERS_FILENAME, payload)], REPLY_MARK, _attach_answers)
    return message


def _attach_answers(message: EmailMessage, files: list[tuple[str, bytes]]) -> None:
    for name, payload in files:
        attach(message, payload, "application", "json", name)


def skipped_text(skipped: Sequence[str]) -> str:
    """One line naming the images not answered because they look like decorations."""
    names = ", ".join(skipped[:MAX_SKIPPED_NAMES])
    if len(skipped) > MAX_SKIPPED_NAMES:
        names += f" and {len(skipped) - MAX_SKIPPED_NAMES} more"
    count = len(skipped)
    return (f"Not answered: {count} small image{'s' if count != 1 else ''} that look{'s' if count == 1 else ''} "
            f"like a signature logo or icon, not a photo: {names}. Mail such an image alone "
            "to have it identified.")


def error_answers(request: Incoming, reason: str) -> list[dict[str, Any]]:
    """One contract error object per image (or one for the message) saying ``reason``."""
    if not request.images:
        return [{"file": "(message)", "error": reason}]
    return [{"file": image.name, "error": reason} for image in request.images]


def _domain_of(address: str) -> str:
    domain = address.rpartition("@")[2]
    return re.sub(r"[^A-Za-z0-9.-]", "", domain) or "localhost"


# -- reading what the server receives ---------------------------------------

def parse_incoming(raw: bytes, own_addresses: Sequence[str], limits: Limits,
                   protection: Protection | None = None) -> Incoming:
    """Read one received message: its kind (request or why to ignore it) and its images."""
    if len(raw) > limits.max_message_bytes:
        problem = too_large_text(len(raw), limits.max_message_bytes)
    else:
        problem = structure_problem(raw, limits)
    if problem:  # read no further than the headers
        message = parse_bytes(header_block(raw))
        return _with_problem(_incoming_from(message, own_addresses), problem, protection)
    message = parse_bytes(raw)
    incoming = _incoming_from(message, own_addresses)
    if incoming.kind == BOUNCE:
        incoming.bounced_ids, incoming.bounce_detail = bounce_report(message)
    if not incoming.is_request:
        return incoming
    files = None
    if protection is not None and protection.active:
        try:
            protection.check(message, REQUEST_MARK)
            if protection.encrypts:
                files = protection.unseal(message, REQUEST_MARK)
        except ProtectionError as exc:
            incoming.protection_problem = str(exc)
            return incoming
    if files is not None:
        incoming.images = images_from_files(files, limits)
    else:
        incoming.images, problems, incoming.skipped = extract_images(message, limits)
        incoming.problems.extend(problems)
    if not incoming.images and not incoming.problems and answers_our_reply(message):
        incoming.kind = LOOP_GUARD
        incoming.reason = "answers our reply and brings no photo (mail loop guard)"
    elif not incoming.images:
        # Name what came instead: "cat.pdf is a PDF document; attach the photo itself ...".
        incoming.no_image = no_image_text(other_attachments(message) if files is None
                                          else [(name, "", data) for name, data in files])
    return incoming


def bounce_report(message: Message) -> tuple[list[str], str]:
    """The Message-IDs a delivery report (RFC 3464, RFC 6522) is about -- from its
    returned headers (text/rfc822-headers, message/rfc822), else its In-Reply-To and
    References -- and its diagnostic in one line."""
    ids: list[str] = []
    detail = ""
    for part in message.walk():
        kind = part.get_content_type()
        if kind in ("text/rfc822-headers", "message/rfc822-headers", "message/rfc822"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload:  # message/rfc822: a parsed message
                if isinstance(payload[0], Message):
                    ids += message_ids(read_header(payload[0], "Message-ID"))[:1]
            else:
                raw = _payload(part)
                ids += message_ids(read_header(parse_bytes(header_block(raw)), "Message-ID"))[:1]
        elif kind in ("message/delivery-status", "message/global-delivery-status") and not detail:
            # The email package reads each block of fields (per message, per recipient)
            # as a header block of its own.
            blocks = part.get_payload()
            blocks = blocks if isinstance(blocks, list) else [parse_bytes(_payload(part))]
            for name in ("Diagnostic-Code", "Status", "Action"):
                values = [read_header(block, name).strip() for block in blocks if isinstance(block, Message)]
                detail = detail or next((clean_text(value, 200) for value in values if value), "")
    if not ids:
        ids = message_ids(read_header(message, "In-Reply-To")) + message_ids(read_header(message, "References"))
    return list(dict.fromkeys(ids))[:MAX_REFERENCES], detail or "delivery failed"


def parse_headers_only(raw_headers: bytes, own_addresses: Sequence[str], size: int,
                       limits: Limits, protection: Protection | None = None) -> Incoming:
    """An over-size message read from its headers: its kind, and the size problem."""
    incoming = _incoming_from(parse_bytes(header_block(raw_headers)), own_addresses)
    return _with_problem(incoming, too_large_text(size, limits.max_message_bytes), protection)


def _incoming_from(message: Message, own_addresses: Sequence[str]) -> Incoming:
    """The headers' part of Incoming: ids, sender, subject and kind."""
    sender, sender_problem = single_sender(message)
    incoming = Incoming(
        message_id=first_message_id(read_header(message, "Message-ID")),
        sender=sender,
        subject=clean_text(read_header(message, "Subject")),
        references=message_ids(read_header(message, "References"))[-MAX_REFERENCES:],
        kind=REQUEST_KIND, reason="",
        header_fields=tuple((str(name), str(value)) for name, value in message.raw_items()),
    )
    incoming.kind, incoming.reason = message_kind(message, sender, own_addresses, sender_problem)
    incoming.date = header_date(read_header(message, "Date"))
    return incoming


def header_date(value: str) -> float | None:
    """An RFC 5322 date-time (section 3.3) as Unix seconds; None when missing or unreadable."""
    try:
        when = email.utils.parsedate_to_datetime(value) if value.strip() else None
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    try:
        return when.timestamp()  # a date without a zone is taken as local time
    except (OverflowError, OSError, ValueError):
        return None


def _with_problem(incoming: Incoming, problem: str, protection: Protection | None) -> Incoming:
    """A request whose body is not read: answered with ``problem``, or refused when
    its signature would have to be checked first."""
    if incoming.is_request:
        incoming.problems.append(problem)
        if protection is not None and protection.active:
            incoming.protection_problem = f"cannot be checked: {problem.partition(' (')[0]}"
    return incoming


def header_block(raw: bytes) -> bytes:
    """The header section of a raw message (RFC 5322 section 2.1), at most 64 KiB."""
    found = _BLANK_LINE.search(raw, 0, HEADER_BYTES_LIMIT)
    return raw[:found.end()] if found else raw[:HEADER_BYTES_LIMIT]


def structure_problem(raw: bytes, limits: Limits) -> str:
    """Why the MIME structure is refused before parsing, or "" (see MAX_MULTIPART_CONTAINERS)."""
    containers = 0
    for _ in _MULTIPART.finditer(raw):
        containers += 1
        if containers > MAX_MULTIPART_CONTAINERS:
            break
    delimiters = raw.count(b"\n--")  # boundary delimiter lines (RFC 2046 section 5.1.1)
    if containers > MAX_MULTIPART_CONTAINERS or delimiters > max(MIN_DELIMITER_LINES,
                                                                 20 * limits.max_parts):
        return (f"the message has far more than {limits.max_parts} MIME parts; "
                "it was not read")
    return ""


def single_sender(message: Message) -> tuple[str, str]:
    """The one From address, or "" and why there is none.

    RFC 5322 section 3.6 allows one From field; the email package's legacy
    parser (parseaddr) and its RFC 5322 header parser must both find the
    same single address in it. Where they differ, mail programs differ too,
    and a reply could go to an address the sender did not mean.
    """
    fields = sum(1 for name in message.keys() if name.lower() == "from")
    if fields == 0:
        return "", "no From header"
    if fields > 1:
        return "", "more than one From header"
    legacy = bare_address(read_header(message, "From"))
    try:
        header: Any = message["From"]  # email.headerregistry.AddressHeader (policy.default)
        modern = [address.addr_spec.lower() for address in header.addresses]
        invalid = [d for d in header.defects if isinstance(d, email.errors.InvalidHeaderDefect)]
    except Exception:  # noqa: BLE001 - the header parser on hostile input
        return "", "a From header that cannot be read"
    if not legacy:
        return "", "no usable From address"
    if len(modern) != 1 or invalid or modern[0] != legacy:
        return "", "an ambiguous From header"
    return legacy, ""


def too_large_text(size: int, limit: int) -> str:
    return (f"the message is too large ({size / 1e6:.1f} MB; the limit is "
            f"{limit / 1e6:.1f} MB): send fewer or smaller photos")


def message_kind(message: Message, sender: str, own_addresses: Sequence[str],
                  sender_problem: str = "") -> tuple[str, str]:
    """REQUEST_KIND, or the kind of mail that must not be answered (RFC 3834 section 2)."""
    own = {address.lower() for address in own_addresses}
    if not sender:
        return NO_SENDER, sender_problem or "no usable From address"
    if sender in own:
        return OWN_MAIL, "our own mail"
    return_path = read_header(message, "Return-Path").strip()
    local_part = sender.partition("@")[0]
    if return_path == "<>" or local_part in ("mailer-daemon", "postmaster"):
        return BOUNCE, "delivery report (null return path or MAILER-DAEMON)"
    if message.get_content_type() == "multipart/report":
        return BOUNCE, "delivery report (multipart/report)"
    auto = read_header(message, "Auto-Submitted").strip().lower()
    if auto and auto.split(";")[0].strip() != "no":
        return AUTO_SUBMITTED, f"Auto-Submitted: {clean_text(auto, 40)}"
    precedence = read_header(message, "Precedence").strip().lower()
    if precedence in ("bulk", "list", "junk"):
        return MAILING_LIST, f"Precedence: {precedence}"
    if read_header(message, "List-Id") or read_header(message, "List-Unsubscribe"):
        return MAILING_LIST, "mailing list (List-Id)"
    return REQUEST_KIND, ""


def extract_images(message: Message, limits: Limits) -> tuple[list[ImagePart], list[str], list[str]]:
    """Every image part in document order, attached or inline, within the limits.

    Returns the images, the problems (parts over the limit) and the names of
    the inline signature logos, icons and tracking pixels set aside beside a
    photo (decorations.py; they count against no limit, and client.py's
    requests, whose photos are attachments, never have any).
    """
    found: list[tuple[str | None, str, bytes, bool]] = []
    problems: list[str] = []
    for count, part in enumerate(message.walk(), 1):
        if count > limits.max_parts:
            problems.append(f"the message has more than {limits.max_parts} MIME parts; "
                            "the rest was not read")
            break
        if part.is_multipart():
            continue
        typed = _image_part_type(part)
        if typed is not None:
            found.append(typed)
    decorations = find_decorations([item[2] for item in found], limits.max_image_pixels,
                                   [item[3] for item in found])
    skipped = []
    for index, (width, height) in decorations.items():
        filename, content_type, _, _ = found[index]
        skipped.append(f"{safe_name(filename, index + 1, content_type)} ({width}x{height})")
    images: list[ImagePart] = []
    for position, (filename, content_type, data, _) in enumerate(found, 1):
        if position - 1 in decorations:
            continue
        refusal = None
        if len(images) >= limits.max_images:
            refusal = f"over the limit of {limits.max_images} images per message"
        elif not data:
            refusal = "empty attachment"
        # Named by position among all images, so "image-2.jpg" stays that with or without skips.
        images.append(ImagePart(name=safe_name(filename, position, content_type),
                                content_type=content_type, data=data, refusal=refusal))
    return images, problems, skipped


def images_from_files(files: list[tuple[str, bytes]], limits: Limits) -> list[ImagePart]:
    """Image parts from decrypted (name, bytes) pairs, with the same per-image limits."""
    images = []
    for index, (raw_name, data) in enumerate(files, 1):
        content_type = image_type_of(data, raw_name)
        refusal = None
        if index > limits.max_images:
            refusal = f"over the limit of {limits.max_images} images per message"
        elif not data:
            refusal = "empty attachment"
        images.append(ImagePart(name=safe_name(raw_name, index, content_type),
                                content_type=content_type, data=data, refusal=refusal))
    return images


def answers_our_reply(message: Message) -> bool:
    """True when In-Reply-To or References names one of our replies (REPLY_ID_TAG)."""
    ids = message_ids(read_header(message, "In-Reply-To")) + message_ids(read_header(message, "References"))
    return any(f".{REPLY_ID_TAG}@" in message_id for message_id in ids)


def _image_part_type(part: Message) -> tuple[str | None, str, bytes, bool] | None:
    """(file name, image type, bytes, attached) when a leaf part is an image, else None.

    ``attached``: Content-Disposition says attachment (RFC 2183), not inline.

    The bytes decide first (any declared type but text and message); a part
    declared image/*, or untyped with an image file name, whose bytes show no
    known format stays an image too, so that its answer can say what is wrong.
    """
    declared = part.get_content_type()
    if declared.startswith(("text/", "message/", "multipart/")):
        return None
    try:
        filename = part.get_filename()
    except Exception:
        filename = None
    data = _payload(part)
    try:
        attached = part.get_content_disposition() == "attachment"
    except Exception:  # noqa: BLE001 - a header the parser cannot read
        attached = False
    sniffed = sniff_image_type(data)
    if sniffed:
        return filename, sniffed, data, attached
    if declared.startswith("image/"):
        return filename, declared, data, attached
    extension = "." + filename.rpartition(".")[2].lower() if filename and "." in filename else ""
    if declared in UNTYPED and extension in IMAGE_EXTENSIONS:
        return filename, f"image/{IMAGE_EXTENSIONS[extension]}", data, attached
    return None


def _payload(part: Message) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception:
        return b""
    return data if isinstance(data, bytes) else b""


# -- reading replies on the client -----------------------------------------

def parse_reply(raw: bytes, protection: Protection | None = None) -> Reply:
    """The ids a reply answers, and its contract answers (JSON part, or sealed with keys)."""
    message = parse_bytes(raw)
    answers = None
    text = ""
    for part in message.walk():
        if part.is_multipart():
            continue
        content_type = part.get_content_type()
        try:
            filename = part.get_filename() or ""
        except Exception:
            filename = ""
        if answers is None and (content_type == "application/json" or filename.endswith(".json")):
            answers = _answers_from_json(_payload(part))
        elif not text and content_type == "text/plain" and not part.is_attachment():
            try:
                text = part.get_content()
            except Exception:
                text = _payload(part).decode("utf-8", "replace")
    reply = Reply(in_reply_to=message_ids(read_header(message, "In-Reply-To")),
                  references=message_ids(read_header(message, "References")),
                  answers=answers, text=str(text),
                  from_animalid=read_header(message, MARK_HEADER).strip().lower() == REPLY_MARK)
    if protection is not None and protection.active:
        _check_reply(message, reply, protection)
    return reply


def _check_reply(message: Message, reply: Reply, protection: Protection) -> None:
    """Keep the answers only when the reply passes the signature / decryption check.

    A signed reply that carries only errors may come unencrypted: the server
    sends its notice about a request that failed the check that way, since
    the client may lack the key to open anything else.
    """
    try:
        if protection.signs:
            protection.verify(message, REPLY_MARK)
        if protection.encrypts:
            if sealed_parts(message):
                sealed = dict(protection.unseal(message, REPLY_MARK))
                reply.answers = _answers_from_json(sealed.get(ANSWERS_FILENAME, b""))
            elif not (protection.signs and _errors_only(reply.answers)):
                raise ProtectionError("not encrypted (encryption is required)")
    except ProtectionError as exc:
        reply.protection_problem = str(exc)
        reply.answers = None


def _errors_only(answers: list[dict[str, Any]] | None) -> bool:
    return bool(answers) and all(set(answer) == {"file", "error"} for answer in answers or [])


def reply_headers_match(raw_headers: bytes, outstanding: set[str] | dict[str, Any]) -> str | None:
    """Which outstanding request id this (header-only) message replies to, if any."""
    message = parse_bytes(raw_headers)
    for message_id in message_ids(read_header(message, "In-Reply-To")):
        if message_id in outstanding:
            return message_id
    return None


def _answers_from_json(data: bytes) -> list[dict[str, Any]] | None:
    if not data or len(data) > MAX_ANSWERS_JSON_BYTES:
        return None
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if isinstance(value, list) and all(isinstance(item, dict) for item in value):
        return value
    return None
