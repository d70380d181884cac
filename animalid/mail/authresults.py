"""Reading RFC 8601 Authentication-Results, and deciding whether a request's From is genuine.

Anybody can write ``From: client1@example.com``. What a mail provider knows
about a message -- whether its DKIM signature verified, whether DMARC passed
for the From domain, whether the account owner submitted it with a password
-- it writes at the top of the message in an ``Authentication-Results``
header (RFC 8601) that carries its own name, the *authserv-id*. Headers
lower down were written by whoever sent the message and prove nothing, so:

* only the **topmost** Authentication-Results header carrying the trusted
  authserv-id counts (RFC 8601 section 7.1: a receiver prepends its header,
  and SHOULD remove copies claiming its own id that arrived with the mail).
  Fastmail writes its results as several adjacent headers with the same id,
  so the trusted *block* is that header plus the Authentication-Results
  headers with the same id that follow it directly, with no other header
  field between. A method that can grant trust (dmarc, dkim, auth) found in
  two headers of a block, or dmarc or auth with two different verdicts, is
  ambiguous and refused: a provider writes each method once;
* it must say one of:

  - ``dmarc=pass`` with ``header.from`` equal to the From domain;
  - ``dkim=pass`` whose signing domain (``header.d``, else the domain of
    ``header.i``) is aligned with the From domain (below);
  - ``auth=pass`` with ``smtp.auth`` equal to the From address (RFC 8601
    section 2.7.4: the account owner submitted it);

  and a ``dmarc=fail`` for the From domain in the same block vetoes all of
  them.

Microsoft 365 and Outlook.com write their header with no authserv-id at all
(``Authentication-Results: spf=pass (sender IP is ...) smtp.mailfrom=...;
dkim=pass (signature was verified) header.d=...;dmarc=pass action=none
header.from=...;compauth=pass reason=100``), sometimes split over several
headers, with stray receiving-domain words between the semicolons. The
trusted id ``none`` stands for "the topmost header without an authserv-id";
``dmarc=bestguesspass`` (no DMARC record: Microsoft's guess) and
``compauth`` are not proof and do not count.

Alignment (DMARC's relaxed mode, RFC 7489 section 3.1.1) compares
*organisational* domains, which needs the Public Suffix List. Without it, a
conservative approximation: the signing domain and the From domain align
when they are equal, or when one is a subdomain of the other and the shorter
does not look like a public suffix (one label, or a known second-level
registry label under a two-letter country code such as ``co.uk``). Sibling
subdomains (``a.example.com`` vs ``b.example.com``), which DMARC would
align, are refused: a false refusal rather than a false trust.

The header is parsed defensively (bounded length, nesting and token count;
linear time; never an exception). Text inside a provider's header is partly
the sender's -- the envelope sender is echoed in ``smtp.mailfrom`` and in a
comment -- and RFC 5322 comments do not quote ``"``, while some writers
treat a quoted string inside a comment as quoted. A sender could use that
difference to end a comment early in one reading and smuggle ``;
dmarc=pass`` to the top level. So the decision is taken under both
readings, and the sender is trusted only when both agree; anything the
parser cannot read is refused.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

HEADER_NAME = "authentication-results"
# Bounds: real headers are under 2 KiB; Fastmail's longest are about 1.5 KiB.
MAX_VALUE_CHARS = 16 * 1024
MAX_HEADERS = 32  # Authentication-Results fields examined, from the top
MAX_FIELDS = 1_000  # header fields of any kind looked through
MAX_TOKENS = 2_000
MAX_COMMENT_DEPTH = 8
NO_AUTHSERV_ID = "none"  # the trusted-id spelling for Microsoft's header without one

# Second-level labels that registries under a two-letter country code sell
# below (example.co.uk, example.com.au, example.ne.jp): such a two-label name
# is treated as a public suffix, never as an organisation.
_REGISTRY_LABELS = frozenset({
    "ac", "co", "com", "edu", "gob", "go", "gov", "govt", "gouv", "id", "in", "lg", "ltd", "me",
    "mil", "ne", "net", "nhs", "nom", "or", "org", "plc", "sch",
})
_DOMAIN = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")
_TRUSTED_ID = re.compile(r"^(?:\*\.)?(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*"
                         r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


# -- what a header says ---------------------------------------------------------

@dataclass(frozen=True)
class MethodResult:
    """One ``method=result`` clause with its ``ptype.property=value`` pairs."""

    method: str  # lower case: "dkim", "dmarc", "auth", ...
    result: str  # lower case: "pass", "fail", "none", ...
    properties: tuple[tuple[str, str], ...] = ()  # (lower-case "header.d", value as written)
    reason: str = ""

    def get(self, name: str) -> str:
        """The first value of property ``name`` ("header.d"), or ""."""
        for key, value in self.properties:
            if key == name:
                return value
        return ""


@dataclass(frozen=True)
class AuthResults:
    """One parsed Authentication-Results header."""

    authserv_id: str  # lower case; "" when the header has none (Microsoft)
    results: tuple[MethodResult, ...]


@dataclass(frozen=True)
class SenderVerdict:
    """Whether the From of a message is authenticated, and the one-line reason."""

    trusted: bool
    reason: str


# -- lexing ---------------------------------------------------------------------

class _Malformed(Exception):
    """The header cannot be read (internal: parse() returns None)."""


@dataclass(frozen=True)
class _Token:
    kind: str  # "word", "quoted", "=", ";"
    text: str
    joined: bool  # follows the previous token with no space or comment between


_SPECIALS = '()";='


def _lex(value: str, quotes_in_comments: bool) -> list[_Token]:
    """Tokens of ``value``; comments dropped, folding and controls read as space.

    ``quotes_in_comments``: whether a quoted string inside a comment hides
    parentheses (not in RFC 5322, but some writers and readers do it).
    """
    tokens: list[_Token] = []
    position, end = 0, len(value)
    joined = False
    while position < end:
        char = value[position]
        if char <= " " or char == "\x7f":
            position += 1
            joined = False
        elif char == "(":
            position = _skip_comment(value, position, quotes_in_comments)
            joined = False
        elif char == '"':
            text, position = _quoted(value, position)
            tokens.append(_Token("quoted", text, joined))
            joined = True
        elif char in "=;":
            tokens.append(_Token(char, char, joined))
            position += 1
            joined = True
        elif char == ")":
            raise _Malformed("a ')' outside any comment")
        else:
            start = position
            while position < end and value[position] > " " and value[position] != "\x7f" \
                    and value[position] not in _SPECIALS:
                position += 1
            tokens.append(_Token("word", value[start:position], joined))
            joined = True
        if len(tokens) > MAX_TOKENS:
            raise _Malformed("too many tokens")
    return tokens


def _skip_comment(value: str, position: int, quotes_in_comments: bool) -> int:
    """The position after the comment that starts at ``position`` (nested, quoted-pairs)."""
    depth, end = 0, len(value)
    in_quotes = False
    while position < end:
        char = value[position]
        if char == "\\":
            position += 2
            continue
        if in_quotes:
            if char == '"':
                in_quotes = False
        elif char == '"' and quotes_in_comments:
            in_quotes = True
        elif char == "(":
            depth += 1
            if depth > MAX_COMMENT_DEPTH:
                raise _Malformed("comments nested too deeply")
        elif char == ")":
            depth -= 1
            if depth == 0:
                return position + 1
        position += 1
    raise _Malformed("a comment that never ends")


def _quoted(value: str, position: int) -> tuple[str, int]:
    """The content of the quoted string at ``position`` and the position after it."""
    out: list[str] = []
    position += 1
    end = len(value)
    while position < end:
        char = value[position]
        if char == "\\" and position + 1 < end:
            out.append(value[position + 1])
            position += 2
            continue
        if char == '"':
            return "".join(out), position + 1
        out.append(char)
        position += 1
    raise _Malformed("a quoted string that never ends")


# -- parsing --------------------------------------------------------------------

def parse(value: str, quotes_in_comments: bool = False) -> AuthResults | None:
    """One Authentication-Results header value, or None when it cannot be read.

    Tolerates what real providers write beside the grammar: no authserv-id
    (Microsoft), stray words between semicolons, properties after a semicolon
    of their own, a trailing semicolon, non-standard ``key=value`` pairs
    (``action=none``), and a version after the authserv-id (``mx.microsoft.com 1``).
    """
    if not isinstance(value, str) or len(value) > MAX_VALUE_CHARS:
        return None
    try:
        return _parse(_lex(value, quotes_in_comments))
    except _Malformed:
        return None


def _parse(tokens: list[_Token]) -> AuthResults:
    if not tokens:
        raise _Malformed("empty")
    position = 0
    authserv_id = ""
    if not (len(tokens) > 1 and tokens[0].kind == "word" and tokens[1].kind == "="):
        if tokens[0].kind not in ("word", "quoted"):
            raise _Malformed("no authserv-id")
        authserv_id = tokens[0].text.lower().rstrip(".")
        position = 1
        if position < len(tokens) and tokens[position].kind == "word" and tokens[position].text.isdigit():
            position += 1  # authres-version
        if position < len(tokens) and tokens[position].kind != ";":
            raise _Malformed("text after the authserv-id")
    segments: list[list[_Token]] = [[]]
    for token in tokens[position:]:
        if token.kind == ";":
            segments.append([])
        else:
            segments[-1].append(token)
    results: list[MethodResult] = []
    for number, segment in enumerate(segments):
        if not segment:
            continue
        if number == 1 and authserv_id and len(segment) == 1 and segment[0].text.lower() == "none":
            continue  # "no-result": nothing was checked
        if len(segment) == 1 and segment[0].kind == "word" and "." in segment[0].text:
            continue  # Microsoft's stray receiving domain between semicolons
        pairs = _pairs(segment)
        key, result = pairs[0]
        if "." in key:  # properties after a semicolon of their own (seen from Microsoft)
            if not results:
                raise _Malformed("properties before any method")
            last = results[-1]
            results[-1] = MethodResult(last.method, last.result, last.properties + tuple(pairs),
                                       last.reason)
            continue
        if "/" in key:  # method-version: "dkim/1"
            key = key.split("/", 1)[0]
        reason = ""
        properties: list[tuple[str, str]] = []
        for name, text in pairs[1:]:
            if name == "reason" and not reason:
                reason = text
            else:
                properties.append((name, text))
        if not result:
            raise _Malformed(f"{key} without a result")
        results.append(MethodResult(key, result.lower(), tuple(properties), reason))
    return AuthResults(authserv_id, tuple(results))


def _pairs(segment: list[_Token]) -> list[tuple[str, str]]:
    """``key=value`` pairs; a value is a word or a quoted string, with an ``@domain``
    written right after it (``smtp.mailfrom="a b"@example.com``)."""
    pairs: list[tuple[str, str]] = []
    position, end = 0, len(segment)
    while position < end:
        key = segment[position]
        if key.kind != "word" or position + 1 >= end or segment[position + 1].kind != "=":
            raise _Malformed("expected key=value")
        if position + 2 >= end:  # "header.from=" at the end (Microsoft, for an empty From)
            pairs.append((key.text.lower(), ""))
            break
        value = segment[position + 2]
        if value.kind not in ("word", "quoted"):
            raise _Malformed("expected a value")
        text = value.text
        position += 3
        while position < end and segment[position].joined and segment[position].kind == "word" \
                and (segment[position].text.startswith("@") or value.kind == "quoted"):
            text += segment[position].text
            position += 1
        while position < end and segment[position].joined and segment[position].kind == "=":
            text += "="  # base64 padding in header.b
            position += 1
        pairs.append((key.text.lower(), text))
    return pairs


def authserv_id_of(value: str, quotes_in_comments: bool = False) -> str | None:
    """The authserv-id a header claims ("" for none), even when the rest cannot be read;
    None when not even that can be told."""
    if not isinstance(value, str):
        return None
    head = value[:MAX_VALUE_CHARS]
    # The id ends at the first ";" unless a comment or quoted string holds that ";",
    # in which case the short cut cannot be read and the whole value is lexed.
    for cut in (head.split(";", 1)[0], head):
        try:
            tokens = _lex(cut, quotes_in_comments)
        except _Malformed:
            continue
        if not tokens:
            return None
        if len(tokens) > 1 and tokens[0].kind == "word" and tokens[1].kind == "=":
            return ""
        if tokens[0].kind in ("word", "quoted"):
            return tokens[0].text.lower().rstrip(".")
        return None
    return None


# -- trusted ids ----------------------------------------------------------------

def parse_trusted_ids(text: str) -> tuple[str, ...]:
    """The ``[server] authserv_id`` setting: names separated by commas or spaces; a name,
    ``*.example.com`` (any host under it: Fastmail's mx1..mxN.messagingengine.com), or
    ``none`` (Microsoft's header without an id). Raises ValueError naming a bad one."""
    ids = []
    for name in re.split(r"[,\s]+", text.strip().lower()):
        if not name:
            continue
        if name != NO_AUTHSERV_ID and not _TRUSTED_ID.match(name.rstrip(".")):
            raise ValueError(f"{name!r} is not a host name, *.domain or none")
        ids.append(name.rstrip("."))
    return tuple(ids)


def id_matches(authserv_id: str, trusted: Iterable[str]) -> bool:
    for name in trusted:
        if name == NO_AUTHSERV_ID:
            if authserv_id == "":
                return True
        elif name.startswith("*."):
            if authserv_id.endswith(name[1:]) and len(authserv_id) > len(name) - 1:
                return True
        elif authserv_id == name:
            return True
    return False


# -- alignment ------------------------------------------------------------------

def looks_like_public_suffix(domain: str) -> bool:
    labels = domain.split(".")
    if len(labels) <= 1:
        return True
    return len(labels) == 2 and len(labels[1]) == 2 and labels[0] in _REGISTRY_LABELS


def aligned(signing_domain: str, from_domain: str) -> bool:
    """Relaxed alignment, approximated without the Public Suffix List (module docstring)."""
    signing, sender = signing_domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    if not signing or not sender or not _DOMAIN.match(signing) or not _DOMAIN.match(sender):
        return False
    if signing == sender:
        return True
    shorter, longer = sorted((signing, sender), key=len)
    return longer.endswith("." + shorter) and not looks_like_public_suffix(shorter)


# -- the decision ---------------------------------------------------------------

_GRANTING = ("dmarc", "dkim", "auth")
# In a property value (an address, a domain, a key fragment) these mean the
# sender's own text was echoed, as in a local part written to break out of a
# comment: refuse rather than guess how the writer meant it.
_SUSPICIOUS = re.compile(r'[()";\\\s\x00-\x1f\x7f]')


def check_sender(header_fields: Iterable[tuple[str, str]], from_address: str,
                 trusted_ids: Sequence[str]) -> SenderVerdict:
    """Whether ``from_address`` is authenticated by the trusted Authentication-Results.

    ``header_fields``: the message's header fields in order, top first, as
    (name, raw value) -- ``Message.raw_items()``, not decoded values (RFC 2047
    decoding could turn a sender's text into semicolons).
    """
    if not trusted_ids:
        return SenderVerdict(False, "no trusted authserv-id is set")
    header_fields = list(itertools.islice(header_fields, MAX_FIELDS))
    address = (from_address or "").strip().lower()
    if address.count("@") != 1 or not address.split("@")[1]:
        return SenderVerdict(False, "no usable From address")
    strict = _decide(header_fields, address, trusted_ids, quotes_in_comments=False)
    lenient = _decide(header_fields, address, trusted_ids, quotes_in_comments=True)
    if not strict.trusted:
        return strict
    if not lenient.trusted:
        return SenderVerdict(False, f"{lenient.reason} (read another way, the header says otherwise)")
    return strict


def _decide(header_fields: Sequence[tuple[str, str]], address: str, trusted_ids: Sequence[str],
            quotes_in_comments: bool) -> SenderVerdict:
    who = " or ".join(trusted_ids)
    block = _trusted_block(header_fields, trusted_ids, quotes_in_comments)
    if block is None:
        return SenderVerdict(False, f"no Authentication-Results header from {who}")
    parsed = [parse(value, quotes_in_comments) for value in block]
    if any(results is None for results in parsed):
        return SenderVerdict(False, f"the Authentication-Results header from {who} cannot be read")
    headers = [results for results in parsed if results is not None]
    for method in _GRANTING:
        carrying = [results for results in headers if any(r.method == method for r in results.results)]
        if len(carrying) > 1:
            return SenderVerdict(False, f"{method} results in two Authentication-Results headers "
                                        f"from {who}: ambiguous")
    results = [result for header in headers for result in header.results]
    for result in results:
        for name, text in result.properties:
            if _SUSPICIOUS.search(text):
                return SenderVerdict(False, f"{name} in the Authentication-Results header from {who} "
                                            "holds characters no address or domain has")
    domain = address.split("@")[1]
    for method in ("dmarc", "auth"):
        verdicts = {(r.result, r.get("header.from").lower(), r.get("smtp.auth").lower())
                    for r in results if r.method == method}
        if len(verdicts) > 1:
            return SenderVerdict(False, f"conflicting {method} results from {who}")
    for result in results:
        if result.method == "dmarc" and result.result == "fail" and \
                result.get("header.from").lower().rstrip(".") in ("", domain):
            return SenderVerdict(False, f"dmarc=fail for {domain} (from {who})")
    passes = [result for result in results if result.result == "pass"]
    for result in passes:
        if result.method == "dmarc" and result.get("header.from").lower().rstrip(".") == domain:
            return SenderVerdict(True, f"dmarc=pass for {domain}")
    for result in passes:
        if result.method == "auth" and result.get("smtp.auth").strip().lower() == address:
            return SenderVerdict(True, f"auth=pass as {address}")
    for result in passes:
        signer = _signing_domain(result) if result.method == "dkim" else ""
        if signer and aligned(signer, domain):
            return SenderVerdict(True, f"dkim=pass for {signer}, aligned with {domain}")
    said = ", ".join(f"{r.method}={r.result}" for r in results if r.method in _GRANTING) or "nothing"
    return SenderVerdict(False, f"{who} says {said} for {address}")


def _signing_domain(result: MethodResult) -> str:
    signer = result.get("header.d")
    if not signer:
        identity = result.get("header.i")  # Gmail often writes only header.i=@example.com
        signer = identity.rpartition("@")[2] if "@" in identity else ""
    return signer.lower().rstrip(".")


def _trusted_block(header_fields: Sequence[tuple[str, str]], trusted_ids: Sequence[str],
                   quotes_in_comments: bool) -> list[str] | None:
    """The values of the topmost Authentication-Results header with a trusted id and of
    those with the same id directly below it; None when there is none."""
    seen = 0
    block: list[str] = []
    block_id: str | None = None
    for name, value in header_fields:
        is_results = str(name).strip().lower() == HEADER_NAME
        if block_id is not None:
            if is_results and authserv_id_of(str(value), quotes_in_comments) == block_id:
                block.append(str(value))
                continue
            return block
        if not is_results:
            continue
        seen += 1
        if seen > MAX_HEADERS:
            return None
        claimed = authserv_id_of(str(value), quotes_in_comments)
        if claimed is not None and id_matches(claimed, trusted_ids):
            block_id = claimed
            block.append(str(value))
    return block or None
