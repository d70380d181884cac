"""Typed, frozen settings built once from config.ini, at the edge, and handed down.

Every program reads ``config.ini`` here and nowhere else: the mail, server,
client and recognition packages receive the objects built below and never
see the config file (an import contract in pyproject.toml holds them to it).
What only the local development hub knows is resolved here too: a port left
empty follows the host (the protocol's standard port, plus ``[hub]
port_offset`` when the host is the hub), ``allowed_senders = hub`` expands to
the hub's client accounts, and a missing CA file written by the hub says how
to start it (``HUB_HINT``).

Errors name the file, the section and the key (``animalid.config``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from animalid.client.pending import PendingRecord
from animalid.client.requester import Requester
from animalid.config import DEFAULT_CONFIG, Config, Section
from animalid.mail.authresults import parse_trusted_ids
from animalid.mail.mailbox import Mailbox
from animalid.mail.messages import Limits
from animalid.mail.protection import MIN_SECRET_CHARS, Protection
from animalid.mail.receiving import RECEIVE_CHOICES, ReceiveSettings, open_mailbox
from animalid.mail.transport import (
    AUTH_CHOICES,
    ROLES,
    SECURITY_CHOICES,
    STANDARD_PORTS,
    Account,
    Endpoint,
    SmtpSender,
    is_loopback_host,
    looks_like_address,
)
from animalid.server.ledger import POSTGRES_SCHEMES, LedgerSettings
from animalid.server.settings import AllowedSenders, ServerSettings
from animalid.server.trail import settings as trail_rules
from animalid.server.trail.settings import CameraSettings, TrailSettings
from animalid.web.settings import WebSettings

if TYPE_CHECKING:  # the classifier's modules import numpy: not for the client's start-up
    from animalid.client.capture.settings import CaptureSettings
    from animalid.recognition.answer import AnswerRules
    from animalid.recognition.classifier import Classifier

# How to start the local hub, for messages about it (its CA file, its ports refusing).
HUB_HINT = ".venv/bin/python -m animalid.mailhub"
_WILDCARD_ADDRESSES = ("", "0.0.0.0", "::")


# -- mail -----------------------------------------------------------------------

def hub_port_offset(config: Config, host: str) -> int:
    """[hub] port_offset when ``host`` is the local hub ([hub] listen, or loopback for a
    hub on loopback or on every address), else 0."""
    hub = config.section("hub")
    listen = hub.get("listen", "").strip().lower()
    host = host.strip().lower()
    if host == listen or (is_loopback_host(host) and (is_loopback_host(listen) or listen in _WILDCARD_ADDRESSES)):
        return hub.get_int("port_offset", minimum=0, maximum=64000)
    return 0


def endpoint(config: Config, protocol: str) -> Endpoint:
    """[smtp], [imap] or [pop3]: where the server is and how to reach it."""
    section = config.section(protocol)
    ca_path = section.get_path("ca_file", None)
    if ca_path is not None and not ca_path.is_file():
        raise section.error("ca_file", _missing_ca_text(config, section, ca_path))
    host = section.get("host")
    security = section.get_choice("security", SECURITY_CHOICES)
    port = section.get_int("port", minimum=1, maximum=65535) if section.has("port") else None
    offset = hub_port_offset(config, host)
    hub_port = STANDARD_PORTS[protocol][security] + offset
    if port is None:
        port = hub_port
        if port > 65535:
            raise config.section("hub").error("port_offset", f"puts the {protocol} port at {port}, "
                                                             "above 65535")
    return Endpoint(protocol=protocol, host=host, port=port, security=security,
                    ca_file=str(ca_path) if ca_path else None,
                    timeout=section.get_float("timeout", minimum=1.0, maximum=600.0),
                    # The hub's own host and port: a refusal then says how to start it.
                    hub_hint=start_hub_hint(config) if offset and port == hub_port else "")


def start_hub_hint(config: Config) -> str:
    """How to start the local hub with this settings file, as a command to copy."""
    option = "" if config.path == DEFAULT_CONFIG.resolve() else f" --config {config.path}"
    return f"{HUB_HINT}{option}"


def _missing_ca_text(config: Config, section: Section, ca_path: Path) -> str:
    """Why a CA file is missing, naming where its path came from and what to do."""
    written = section.as_written("ca_file")
    value = section.value("ca_file")
    origin = f" ({section.relative_to(value)})" if section.relative_to(value) else ""
    if "${hub:state_dir}" in written.replace(" ", ""):
        return (f"{ca_path} does not exist{origin}: the local hub writes it when it first starts; "
                f"start it ({start_hub_hint(config)}) or set ca_file")
    return f"{ca_path} does not exist{origin}"


def account(config: Config, role: str) -> Account:
    """[client] or [server]: the address, the login and where its secret comes from."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    section = config.section(role)
    address = section.get("address")
    if not looks_like_address(address):
        raise section.error("address", f"{address!r} is not a mail address")
    return Account(role=role, address=address.lower(), username=section.get("username", address),
                   auth=section.get_choice("auth", AUTH_CHOICES),
                   password_source=section.secret_source("password"),
                   token_source=section.secret_source("token"))


def receive_settings(config: Config, role: str, receive: str | None = None) -> ReceiveSettings:
    """How [client] or [server] reads its mail (``receive`` overrides the file)."""
    section = config.section(role)
    receive = receive or section.get_choice("receive", RECEIVE_CHOICES)
    if receive not in RECEIVE_CHOICES:
        raise section.error("receive", f"{receive!r} is not one of: {', '.join(RECEIVE_CHOICES)}")
    imap = config.section("imap")
    return ReceiveSettings(
        protocol=receive,
        poll_interval=section.get_float("poll_interval", minimum=0.01, maximum=3600.0),
        folder=imap.get("folder"),
        idle_refresh=imap.get_float("idle_refresh", minimum=10.0, maximum=29 * 60))


def mailbox(config: Config, role: str, receive: str | None = None) -> Mailbox:
    """The mailbox of [client] or [server], by IMAP or POP3 (not connected yet)."""
    settings = receive_settings(config, role, receive)
    return open_mailbox(endpoint(config, settings.protocol), account(config, role), settings)


def sender(config: Config, role: str) -> SmtpSender:
    """An SMTP session (opened on first use) as [client] or [server]."""
    return SmtpSender(endpoint(config, "smtp"), account(config, role))


def protection(config: Config) -> Protection:
    """[security]: the signing and encryption keys; a key whose source is named must be there."""
    if not config.has_section("security"):
        return Protection()
    section = config.section("security")
    return Protection.from_secrets(
        _configured_secret(section, "signing_key"), _configured_secret(section, "encryption_key"),
        max_age_s=section.get_float("signature_max_age", minimum=60.0),
        notify_failures=section.get_bool("notify_signature_failures"))


def _configured_secret(section: Section, name: str) -> str | None:
    """The secret when its source is named (then it must be there), else None.

    A secret written into the file itself is refused when the file is read
    (animalid.config).
    """
    source = section.secret_source(name)
    if not source.named:
        return None
    secret = source.fetch()
    if len(secret) < MIN_SECRET_CHARS:
        raise section.error(f"{name}_env / {name}_command",
                            f"the secret is shorter than {MIN_SECRET_CHARS} characters "
                            "(use e.g. openssl rand -base64 32)")
    return secret


# -- client -----------------------------------------------------------------------

def requester(config: Config, receive: str | None = None) -> Requester:
    """The client's Requester: [client], [smtp], [imap]/[pop3] and [security]."""
    section = config.section("client")
    client = account(config, "client")
    return Requester(account=client, server_address=section.get("server_address"),
                     timeout=section.get_float("timeout", minimum=0.1),
                     sender=SmtpSender(endpoint(config, "smtp"), client),
                     mailbox=mailbox(config, "client", receive), protection=protection(config))


def pending_record(config: Config, address: str) -> PendingRecord:
    """The client's record of requests still waiting ([client] state_file)."""
    return PendingRecord(_path(config.section("client"), "state_file"), address)


# -- server -----------------------------------------------------------------------

def limits(config: Config) -> Limits:
    """What one request may carry ([server])."""
    section = config.section("server")
    return Limits(max_message_bytes=section.get_int("max_message_bytes", minimum=1000),
                  max_parts=section.get_int("max_parts", minimum=1),
                  max_images=section.get_int("max_images", minimum=1),
                  max_image_pixels=section.get_int("max_image_pixels", minimum=1))


def allowed_senders(config: Config) -> AllowedSenders:
    """[server] allowed_senders; "hub" expands to the local hub's client accounts."""
    section = config.section("server")
    entries: list[str] = []
    for entry in section.get_list("allowed_senders"):
        if entry.lower() == "hub":
            hub = config.section("hub")
            domain = hub.get("domain")
            entries += [f"{name}@{domain}" for name in hub.get_list("clients")]
        elif entry.startswith("@") and "." in entry or looks_like_address(entry):
            entries.append(entry)
        else:
            raise section.error("allowed_senders", f"{entry!r} is neither an address, "
                                                   "an @domain nor \"hub\"")
    return AllowedSenders(entries)


def ledger_settings(config: Config) -> LedgerSettings:
    """[server] ledger: empty for SQLite at ``state_file``, or a
    ``postgresql://user@host[:port]/database`` URL (password from ``ledger_password_env``
    or ``ledger_password_command``, never in the URL)."""
    section = config.section("server")
    state_file = _path(section, "state_file")
    url = section.get("ledger", "")
    if not url:
        return LedgerSettings(state_file)
    parts = urlsplit(url)
    if parts.scheme not in POSTGRES_SCHEMES:
        raise section.error("ledger", "not a postgresql://user@host/database URL "
                                      "(leave it empty for the SQLite state_file)")
    if parts.password is not None or "password" in parts.query.lower():
        raise section.error("ledger", "a password does not go in the URL: name where it comes from "
                                      "with ledger_password_env or ledger_password_command")
    if not parts.path.strip("/"):
        raise section.error("ledger", "the URL names no database (postgresql://user@host/DATABASE)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise section.error("ledger", "PostgreSQL needs psycopg: pip install 'psycopg[binary]' "
                                      "(see requirements.txt)") from None
    password = section.secret_source("ledger_password")
    return LedgerSettings(state_file, url, password if password.named else None)


def server_settings(config: Config, receive: str | None = None) -> ServerSettings:
    """[server] (with [security] and the limits), read once."""
    section = config.section("server")
    return ServerSettings(
        address=account(config, "server").address,
        receive=receive or section.get_choice("receive", RECEIVE_CHOICES),
        state_file=_path(section, "state_file"),
        max_attempts=section.get_int("max_attempts", minimum=1, maximum=100),
        rate_limit_per_hour=section.get_int("rate_limit_per_hour", minimum=0),
        failed_folder=section.get("failed_folder"),
        answered_folder=section.get("answered_folder", ""),
        retry_max_delay=section.get_float("retry_max_delay", minimum=0.1, maximum=86400.0),
        limits=limits(config),
        max_image_pixels=section.get_int("max_image_pixels", minimum=1),
        allowed=allowed_senders(config),
        protection=protection(config),
        display_name=section.get("display_name", ""),
        claims_folder=_claims_folder(config),
        claim_lease=section.get_float("claim_lease", minimum=1.0, maximum=86400.0),
        pipeline=section.get_bool("pipeline"),
        ledger=ledger_settings(config),
        require_authentication=section.get_bool("require_authentication"),
        authserv_ids=_authserv_ids(section),
        trail=trail_settings(config),
    )


def _authserv_ids(section: Section) -> tuple[str, ...]:
    """[server] authserv_id: whose Authentication-Results header proves a sender."""
    try:
        ids = parse_trusted_ids(section.get("authserv_id", ""))
    except ValueError as exc:
        raise section.error("authserv_id", str(exc)) from None
    if section.get_bool("require_authentication") and not ids:
        raise section.error("authserv_id", "empty, but require_authentication = yes needs the name your "
                            "mailbox's provider writes in Authentication-Results: mx.google.com (Gmail), "
                            "none (Outlook, Microsoft 365), *.messagingengine.com (Fastmail), "
                            "${hub:domain} (the local hub); or set require_authentication = no")
    return ids


def trail_settings(config: Config) -> TrailSettings:
    """Every [trail-camera NAME] section (docs/trail-cameras.md), checked key by key."""
    names = config.sections_of("trail-camera")
    if not names:
        return TrailSettings()
    taxa = _known_taxa(config)
    return TrailSettings(tuple(_camera(config.section(name), taxa) for name in names))


def _camera(section: Section, taxa: dict[str, str]) -> CameraSettings:
    def parsed(key: str, parse: Any) -> Any:
        try:
            return parse(section.value(key))
        except ValueError as exc:
            raise section.error(key, str(exc)) from None

    notify = section.get_list("notify", [])
    for address in notify:
        if not looks_like_address(address):
            raise section.error("notify", f"{address!r} is not a mail address")
    alert_on = tuple(_taxon(section, name, taxa) for name in section.get_list("alert_on", []))
    overall, per_taxon = parsed("min_probability", trail_rules.parse_probability)
    for taxon in per_taxon:
        if taxon not in {name.lower() for name in alert_on}:
            raise section.error("min_probability", f"{taxon!r} is not in alert_on "
                                                   f"({', '.join(alert_on) or 'empty'})")
    if alert_on and not notify:
        raise section.error("notify", "missing: who gets the alerts for alert_on (add addresses)")
    return CameraSettings(
        section=section.name.partition(" ")[2].strip(),
        senders=parsed("from", trail_rules.parse_senders),
        subject_pattern=parsed("subject_pattern", trail_rules.parse_subject_pattern),
        name=section.value("name") or section.name.partition(" ")[2].strip(),
        notify=tuple(address.lower() for address in notify),
        alert_on=alert_on, min_probability=overall, taxon_probability=per_taxon,
        cooldown_s=parsed("cooldown", trail_rules.parse_duration),
        quiet_hours=parsed("quiet_hours", trail_rules.parse_quiet_hours),
        digest_minute=parsed("digest", trail_rules.parse_digest),
        silent_after_s=parsed("silent_after", trail_rules.parse_duration))


def _known_taxa(config: Config) -> dict[str, str]:
    """Lower-case name -> the knowledge base's scientific name, for every taxon at every
    rank and every look-alike group; common names map to their scientific name too."""
    from animalid.recognition.knowledge import load_knowledge_base

    kb = load_knowledge_base(_path(config.section("classifier"), "knowledge_base"))
    names: dict[str, str] = {}
    for entry in kb.entries.values():
        for taxon in entry.taxonomy.values():
            if taxon:
                names.setdefault(taxon.lower(), taxon)
    for group in kb.lookalike_groups:
        names.setdefault(group.scientific_name.lower(), group.scientific_name)
    common = {common.lower(): f"common:{scientific}" for scientific, common in kb.taxon_names.items()
              if common and common.lower() not in names}
    return {**common, **names}


def _taxon(section: Section, name: str, taxa: dict[str, str]) -> str:
    found = taxa.get(name.lower())
    if found is not None and not found.startswith("common:"):
        return found
    if found is not None:
        raise section.error("alert_on", f"{name!r} is a common name: write the knowledge base's "
                                        f"scientific name, {found.partition(':')[2]}")
    import difflib

    close = difflib.get_close_matches(name.lower(), [k for k, v in taxa.items() if not v.startswith("common:")], n=1)
    hint = f" (did you mean {taxa[close[0]]}?)" if close else ""
    raise section.error("alert_on", f"{name!r} is no taxon of the knowledge base{hint}")


def _claims_folder(config: Config) -> str:
    """[server] claims_folder, checked against the folders it must not be."""
    section = config.section("server")
    folder = section.get("claims_folder")
    others = {"[imap] folder": config.section("imap").get("folder"),
              "[server] failed_folder": section.get("failed_folder"),
              "[server] answered_folder": section.get("answered_folder", "")}
    for name, other in others.items():
        if other and other.lower() == folder.lower():
            raise section.error("claims_folder", f"{folder!r} is also {name}; claims need a folder "
                                                 "of their own")
    return folder


def web_settings(config: Config) -> WebSettings:
    """[web]: the operations page's address, its token (when it is not on loopback)
    and the thumbnails' retention; the thumbnails live beside [server] state_file."""
    section = config.section("web")
    listen = section.get("listen", "")
    source = section.secret_source("token")
    token = ""
    if listen and source.named:
        token = source.fetch()
        if len(token) < MIN_SECRET_CHARS:
            raise section.error("token_env / token_command",
                                f"the token is shorter than {MIN_SECRET_CHARS} characters "
                                "(use e.g. openssl rand -base64 32)")
    keep_days = section.get_float("keep_days", minimum=0.0, maximum=3650.0)
    thumbnails = _path(config.section("server"), "state_file").parent / "thumbnails"
    try:
        return WebSettings(listen=listen, token=token, keep_days=keep_days, thumbnails=thumbnails)
    except ValueError as exc:
        raise section.error("listen", str(exc)) from None


@dataclass(frozen=True)
class ServerParts:
    """What ``Server`` is assembled from: its settings, mailbox and SMTP sender."""

    settings: ServerSettings
    mailbox: Mailbox
    sender: SmtpSender


def server_parts(config: Config, receive: str | None = None) -> ServerParts:
    settings = server_settings(config, receive)
    return ServerParts(settings, mailbox(config, "server", settings.receive), sender(config, "server"))


def server(config: Config, classifier: Any = None, receive: str | None = None,
           backend: str | None = None) -> Any:
    """A ``Server`` for config.ini; without ``classifier`` it loads the one [classifier]
    describes (``backend``, when given, wins) when it opens (``LazyClassifier``)."""
    from animalid.server.service import Server

    parts = server_parts(config, receive)
    if classifier is None:
        classifier = LazyClassifier(classifier_options(
            config, max_pixels=parts.settings.max_image_pixels, backend=backend))
    return Server(parts.settings, parts.mailbox, parts.sender, classifier)


# -- recognition --------------------------------------------------------------------

def answer_rules(section: Section) -> "AnswerRules":
    """The answer rules of a config.ini [classifier] section."""
    from animalid.recognition.answer import AnswerRules
    from animalid.recognition.knowledge import RANKS

    return AnswerRules(
        rank_threshold=section.get_float("rank_threshold", minimum=0.0, maximum=1.0),
        min_confidence=section.get_float("min_confidence", minimum=0.0, maximum=1.0),
        animal_threshold=section.get_float("animal_threshold", minimum=0.0, maximum=1.0),
        animal_candidates=section.get_int("animal_candidates", minimum=0),
        rank_thresholds={rank: section.get_float(f"{rank}_threshold", None, 0.0, 1.0)
                         for rank in RANKS if section.has(f"{rank}_threshold")},
        lead_probability=section.get_float("lead_probability", minimum=0.0, maximum=1.0),
        lead_ratio=section.get_float("lead_ratio", minimum=1.0),
    )


def classifier_options(config: Config, **overrides: Any) -> dict[str, Any]:
    """``Classifier``'s keyword arguments from [classifier]; ``overrides`` (not None) win."""
    from animalid.recognition.model import VIEWS, ModelSpec
    from animalid.recognition.onnx_backend import BACKENDS
    from animalid.recognition.placement import PRECISIONS

    section = config.section("classifier")
    views = section.get_list("views", [])
    unknown = [view for view in views if view not in VIEWS]
    if unknown:
        raise section.error("views", f"{unknown[0]!r} is not one of: {', '.join(VIEWS)}")
    options: dict[str, Any] = dict(
        kb_path=_path(section, "knowledge_base"),
        rules=answer_rules(section),
        top_k=section.get_int("top_k", minimum=0, maximum=50),
        device=section.get_choice("device", ("auto", "cpu", "cuda")),
        threads=section.get_int("threads", minimum=0, maximum=256),
        allow_pickle=section.get_bool("allow_pickle"),
        views=views,
        batch_size=section.get_int("batch_size", minimum=0, maximum=4096),
        precision=section.get_choice("precision", PRECISIONS),
        decode_threads=section.get_int("decode_threads", minimum=0, maximum=256),
        backend=section.get_choice("backend", BACKENDS),
    )
    options.update({key: value for key, value in overrides.items() if value is not None})
    if "spec" not in options:
        options["spec"] = ModelSpec.load(_path(section, "model"))
    return options


def classifier(config: Config, **overrides: Any) -> "Classifier":
    """The classifier [classifier] describes, loaded now (PyTorch and the weights)."""
    from animalid.recognition.classifier import Classifier

    return Classifier(**classifier_options(config, **overrides))


class LazyClassifier:
    """The server's classifier, loaded by an explicit ``load()`` (the server calls it
    once the mail servers have accepted its logins, before the first request)."""

    def __init__(self, options: dict[str, Any]):
        self._options = options  # Classifier's keyword arguments (classifier_options)
        self._loaded: Any = None

    def load(self) -> None:
        if self._loaded is None:
            from animalid.recognition.classifier import Classifier

            self._loaded = Classifier(**self._options)

    @property
    def backend(self) -> str:
        """What runs the networks once loaded: "onnx" or "torch"."""
        return str(getattr(self._ready(), "backend", "torch"))

    def _ready(self) -> Any:
        if self._loaded is None:
            raise RuntimeError("the classifier is not loaded yet (call load() first)")
        return self._loaded

    def images_per_pass(self) -> int:
        return int(self._ready().images_per_pass())

    def classify(self, items: Any) -> list[dict[str, Any]]:
        return list(self._ready().classify(items))

    def close(self) -> None:
        if self._loaded is not None:
            self._loaded.close()


def _path(section: Section, key: str) -> Path:
    path = section.get_path(key)
    assert path is not None  # get_path without a fallback raises for an empty value
    return path


def capture_settings(config: Config, args: argparse.Namespace) -> "CaptureSettings":
    """The camera's settings: [camera] and [client], the command line winning where given."""
    # Imported here: the capture package is for the camera mode alone.
    from animalid.client.capture.settings import CaptureSettings, camera_source

    camera, client = config.section("camera"), config.section("client")

    def given(name: str) -> Any:
        return getattr(args, name, None)

    if given("camera"):
        source = camera_source(given("camera"))  # relative to where the user is
    else:
        source = camera_source(camera.get("source"), config.folder)
    width, height = given("resolution") or (camera.get_int("width", minimum=0),
                                            camera.get_int("height", minimum=0))
    save_dir = given("save_dir")
    return CaptureSettings(
        source=source, width=width, height=height,
        warmup_frames=camera.get_int("warmup_frames", minimum=0),
        jpeg_quality=given("jpeg_quality") or camera.get_int(
            "jpeg_quality", minimum=1, maximum=100),
        max_side=(given("max_side") if given("max_side") is not None
                  else camera.get_int("max_side", minimum=0)),
        save_dir=Path(save_dir) if save_dir else camera.get_path("save_dir", None),
        window=not given("no_window"),
        timeout_s=given("timeout") or client.get_float("timeout", minimum=0.1),
        poll_interval_s=client.get_float("poll_interval", minimum=0.01, maximum=3600.0),
    )
