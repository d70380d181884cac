"""End-to-end protection of requests and replies: HMAC signatures and AEAD encryption.

A From header proves nothing (RFC 5322 section 3.6.2 defines it, nothing
authenticates it), and mail crosses providers that can read it. A deployment
that wants more shares secrets between its clients and its server, set in
config.ini ``[security]`` as ``signing_key_env`` / ``signing_key_command`` and
``encryption_key_env`` / ``encryption_key_command`` (read by
``config.Section.get_secret``; never stored in the file). A key that is
configured is *required*: unsigned or unencrypted mail is refused.

**Signature** -- HMAC-SHA256 (RFC 2104, RFC 6234) in one header::

    X-Animalid-Signature: v1; a=hmac-sha256; s=<base64url of the MAC>

over a canonical form, the compact JSON array of: the version, the kind
(request or reply: a request's signature never verifies as a reply), the
first Message-ID and In-Reply-To ids, the Date (RFC 5322 section 3.3) as
Unix seconds, the From and To addresses (bare, lower case, sorted), and for
every attachment (RFC 2183; any non-text part counts too) its content type,
file name and the SHA-256 of its decoded body (RFC 2045 transfer encoding
removed). Values are taken apart from their encoding, so re-folding or
re-encoding in transit does not break it. The readable text body is *not*
covered -- gateways re-wrap it and add footers -- so only the signed JSON
answers count. A Date further than ``signature_max_age`` from now is
refused, so an old request cannot be replayed once the server's ledger
(90 days, by Message-ID) has forgotten it.

**Encryption** -- AES-256-GCM (NIST SP 800-38D, the RFC 5116 AEAD
interface): a request's photos, or a reply's answers JSON, travel as one
application/octet-stream part (RFC 2046 section 4.5.1) named
``animalid-sealed.bin``: ``b"AID1" | 12-byte random nonce | ciphertext+tag``.
The associated data is the kind, Message-ID, In-Reply-To and From of the
message, so a sealed part copied into another message does not open. Inside:
a 4-byte big-endian length, a JSON index ``{"files": [{"name", "size"}]}``
and the files' bytes one after the other.

Each secret is stretched with HKDF-SHA256 (RFC 5869) under its own label,
so one secret may serve both purposes without one key serving two
algorithms. What a shared secret cannot do: tell the key holders apart (any
client could forge a reply to another client), or hide who mails whom and
when. Errors name what failed, never a key.
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import hashlib
import hmac
import json
import os
import struct
import time
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from typing import Callable

from animalid.errors import PermanentError
from animalid.mail.headers import first_message_id, read_header
from animalid.mail.parts import attach

SIGNATURE_HEADER = "X-Animalid-Signature"
SIGNATURE_VERSION = "v1"
SEALED_FILENAME = "animalid-sealed.bin"
SEALED_MAGIC = b"AID1"
NONCE_BYTES = 12
KEY_BYTES = 32
MIN_SECRET_CHARS = 16
DEFAULT_MAX_AGE_S = 7 * 24 * 3600
MAX_INDEX_BYTES = 1_000_000
MAX_SEALED_FILES = 1000
_SIGNING_LABEL = b"animalid v1 hmac-sha256 signing key"
_ENCRYPTION_LABEL = b"animalid v1 aes-256-gcm encryption key"


class ProtectionError(PermanentError):
    """Mail that fails the signature or decryption check; the text says which."""


@dataclass(frozen=True)
class Protection:
    """The keys of one side; both None means protection is off."""

    signing_key: bytes | None = field(default=None, repr=False)
    encryption_key: bytes | None = field(default=None, repr=False)
    max_age_s: float = DEFAULT_MAX_AGE_S
    notify_failures: bool = False  # server: tell an allowed sender whose request failed

    @classmethod
    def from_secrets(cls, signing: str | None = None, encryption: str | None = None,
                     max_age_s: float = DEFAULT_MAX_AGE_S, notify_failures: bool = False) -> "Protection":
        """From the secrets themselves (each at least MIN_SECRET_CHARS long)."""
        for secret in (signing, encryption):
            if secret is not None and len(secret) < MIN_SECRET_CHARS:
                raise ValueError(f"a secret needs at least {MIN_SECRET_CHARS} characters")
        return cls(signing_key=derive_key(signing, _SIGNING_LABEL) if signing else None,
                   encryption_key=derive_key(encryption, _ENCRYPTION_LABEL) if encryption else None,
                   max_age_s=max_age_s, notify_failures=notify_failures)

    @property
    def signs(self) -> bool:
        return self.signing_key is not None

    @property
    def encrypts(self) -> bool:
        return self.encryption_key is not None

    @property
    def active(self) -> bool:
        return self.signs or self.encrypts

    # -- sending ------------------------------------------------------------

    def seal(self, message: EmailMessage, files: list[tuple[str, bytes]], kind: str) -> None:
        """Attach ``files`` encrypted, as one part bound to this message's headers."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self._key(self.encryption_key)).encrypt(
            nonce, _pack(files), _associated_data(message, kind))
        attach(message, SEALED_MAGIC + nonce + sealed, "application", "octet-stream", SEALED_FILENAME)

    def sign(self, message: EmailMessage, kind: str) -> None:
        """Add (or replace) the signature header; call it last, once nothing else changes."""
        del message[SIGNATURE_HEADER]
        mac = self._mac(message, kind)
        message[SIGNATURE_HEADER] = f"{SIGNATURE_VERSION}; a=hmac-sha256; s={_b64(mac)}"

    def protect(self, message: EmailMessage, files: list[tuple[str, bytes]], kind: str,
                attach_plain: Callable[[EmailMessage, list[tuple[str, bytes]]], None]) -> None:
        """Attach ``files`` (sealed when encrypting, else by ``attach_plain``), then sign."""
        if self.encrypts:
            self.seal(message, files, kind)
        else:
            attach_plain(message, files)
        if self.signs:
            self.sign(message, kind)

    # -- receiving ----------------------------------------------------------

    def check(self, message: Message, kind: str, now: float | None = None) -> None:
        """Raise ProtectionError unless the mail carries what this side requires."""
        if self.signs:
            self.verify(message, kind, now)
        if self.encrypts and not sealed_parts(message):
            raise ProtectionError("not encrypted (encryption is required)")

    def verify(self, message: Message, kind: str, now: float | None = None) -> None:
        """Check the signature header and the signed Date's age."""
        value = _header(message, SIGNATURE_HEADER)
        if not value:
            raise ProtectionError("not signed (a signature is required)")
        fields = _signature_fields(value)
        if fields.get("version") != SIGNATURE_VERSION or fields.get("a") != "hmac-sha256":
            raise ProtectionError("unknown signature version or algorithm")
        try:
            given = base64.urlsafe_b64decode(fields.get("s", "") + "==")
        except (ValueError, TypeError):
            raise ProtectionError("the signature is not valid base64") from None
        if not hmac.compare_digest(given, self._mac(message, kind)):
            raise ProtectionError("bad signature (wrong key, or the mail was changed)")
        age = (time.time() if now is None else now) - _date_seconds(message)
        if abs(age) > self.max_age_s:
            raise ProtectionError(f"the signed Date is {abs(age) / 3600:.0f} h away from now "
                                  f"(at most {self.max_age_s / 3600:.0f} h allowed)")

    def unseal(self, message: Message, kind: str) -> list[tuple[str, bytes]]:
        """The files of the one sealed part, decrypted and authenticated."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        parts = sealed_parts(message)
        if len(parts) != 1:
            raise ProtectionError("not encrypted (encryption is required)" if not parts
                                  else "more than one encrypted part")
        blob = _payload(parts[0])
        head = len(SEALED_MAGIC) + NONCE_BYTES
        if len(blob) < head + 16 or not blob.startswith(SEALED_MAGIC):
            raise ProtectionError("the encrypted part is damaged")
        nonce = blob[len(SEALED_MAGIC):head]
        try:
            plain = AESGCM(self._key(self.encryption_key)).decrypt(nonce, blob[head:],
                                                        _associated_data(message, kind))
        except InvalidTag:
            raise ProtectionError("cannot decrypt (wrong key, or the mail was changed)") from None
        return _unpack(plain)

    @staticmethod
    def _key(key: bytes | None) -> bytes:
        if key is None:  # callers check signs / encrypts first
            raise ProtectionError("no key configured for this")
        return key

    def _mac(self, message: Message, kind: str) -> bytes:
        return hmac.new(self._key(self.signing_key), canonical_form(message, kind), hashlib.sha256).digest()


# -- canonical forms ----------------------------------------------------------

def canonical_form(message: Message, kind: str) -> bytes:
    """What the signature covers, as bytes (see the module docstring)."""
    parts = [[part.get_content_type(), _filename(part),
              hashlib.sha256(_payload(part)).hexdigest()]
             for part in signed_parts(message)]
    fields = ["animalid-signature", SIGNATURE_VERSION, kind,
              _first_id(message, "Message-ID"), _first_id(message, "In-Reply-To"),
              _date_seconds(message), _addresses(message, "From"), _addresses(message, "To"),
              parts]
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def signed_parts(message: Message) -> list[Message]:
    """Leaf parts that are attachments or not text: everything but the readable body."""
    return [part for part in message.walk()
            if not part.is_multipart()
            and (part.get_content_maintype() != "text" or _is_attachment(part))]


def sealed_parts(message: Message) -> list[Message]:
    return [part for part in message.walk()
            if not part.is_multipart() and _filename(part) == SEALED_FILENAME]


def _associated_data(message: Message, kind: str) -> bytes:
    fields = ["animalid-sealed", SIGNATURE_VERSION, kind, _first_id(message, "Message-ID"),
              _first_id(message, "In-Reply-To"), _addresses(message, "From")]
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _pack(files: list[tuple[str, bytes]]) -> bytes:
    index = json.dumps({"files": [{"name": name, "size": len(data)} for name, data in files]},
                       ensure_ascii=True).encode("ascii")
    return struct.pack(">I", len(index)) + index + b"".join(bytes(data) for _, data in files)


def _unpack(plain: bytes) -> list[tuple[str, bytes]]:
    """The inverse of _pack; authenticated data, but still checked: a key holder may err."""
    try:
        (length,) = struct.unpack(">I", plain[:4])
        if length > MAX_INDEX_BYTES:
            raise ValueError("index too large")
        entries = json.loads(plain[4:4 + length].decode("ascii"))["files"]
        if not isinstance(entries, list) or len(entries) > MAX_SEALED_FILES:
            raise ValueError("bad file list")
        files, offset = [], 4 + length
        for entry in entries:
            name, size = str(entry["name"]), int(entry["size"])
            if size < 0 or offset + size > len(plain):
                raise ValueError("sizes do not add up")
            files.append((name, plain[offset:offset + size]))
            offset += size
    except (ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError):
        raise ProtectionError("the decrypted content is malformed") from None
    return files


# -- small helpers ------------------------------------------------------------

def derive_key(secret: str, label: bytes) -> bytes:
    """A 256-bit key for one purpose from a configured secret (HKDF-SHA256, RFC 5869)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None,
                info=label).derive(secret.encode("utf-8"))


def _payload(part: Message) -> bytes:
    """A leaf part's body with its transfer encoding removed (b"" when there is none)."""
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _header(message: Message, name: str) -> str:
    """The header with its whitespace folded to single spaces: what the signature covers."""
    return " ".join(read_header(message, name).split())


def _first_id(message: Message, name: str) -> str:
    return first_message_id(read_header(message, name))


def _addresses(message: Message, name: str) -> str:
    pairs = email.utils.getaddresses([_header(message, name)])
    return ",".join(sorted({address.strip().lower() for _, address in pairs if address.strip()}))


def _date_seconds(message: Message) -> int:
    try:
        when = email.utils.parsedate_to_datetime(_header(message, "Date"))
        if when.tzinfo is None:  # "-0000" (RFC 5322 section 3.3): read as UTC on every side
            when = when.replace(tzinfo=datetime.timezone.utc)
        return int(when.timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        raise ProtectionError("no valid Date header to check") from None


def _filename(part: Message) -> str:
    try:
        return str(part.get_filename() or "")
    except Exception:  # hostile RFC 2231 parameters
        return ""


def _is_attachment(part: Message) -> bool:
    try:
        return part.get_content_disposition() == "attachment"
    except Exception:
        return False


def _signature_fields(value: str) -> dict[str, str]:
    items = [item.strip() for item in value.split(";")]
    fields = {"version": items[0] if items else ""}
    for item in items[1:]:
        key, _, val = item.partition("=")
        fields[key.strip().lower()] = val.strip()
    return fields


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")
