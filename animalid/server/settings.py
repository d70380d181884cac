"""The server's settings: [server] read once, typed, with the senders it may answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from animalid.config import Config
from animalid.mail.messages import Limits
from animalid.mail.protection import Protection
from animalid.mail.transport import Account, looks_like_address


class AllowedSenders:
    """Who gets answers: exact addresses and @domain entries ("hub" expands to its clients)."""

    def __init__(self, entries: list[str]):
        self.addresses = {e.lower() for e in entries if not e.startswith("@")}
        self.domains = {e[1:].lower() for e in entries if e.startswith("@")}

    @classmethod
    def from_config(cls, config: Config) -> "AllowedSenders":
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
        return cls(entries)

    def allows(self, address: str) -> bool:
        address = address.lower()
        return address in self.addresses or address.rpartition("@")[2] in self.domains

    def __repr__(self) -> str:
        return f"AllowedSenders({sorted(self.addresses)} + {sorted('@' + d for d in self.domains)})"


@dataclass
class ServerSettings:
    address: str
    receive: str
    state_file: Path
    max_attempts: int
    rate_limit_per_hour: int
    failed_folder: str
    answered_folder: str
    retry_max_delay: float
    limits: Limits
    max_image_pixels: int
    allowed: AllowedSenders
    protection: Protection = field(default_factory=Protection)
    display_name: str = ""  # in the From of replies: "Animal ID <server@...>"
    claims_folder: str = "animalid-claims"
    claim_lease: float = 60.0
    pipeline: bool = True

    @classmethod
    def from_config(cls, config: Config, receive: str | None = None) -> "ServerSettings":
        section = config.section("server")
        return cls(
            address=Account.from_config(config, "server").address,
            receive=receive or section.get_choice("receive", ("imap", "pop3")),
            state_file=section.get_path("state_file"),
            max_attempts=section.get_int("max_attempts", minimum=1, maximum=100),
            rate_limit_per_hour=section.get_int("rate_limit_per_hour", minimum=0),
            failed_folder=section.get("failed_folder"),
            answered_folder=section.get("answered_folder", ""),
            retry_max_delay=section.get_float("retry_max_delay", minimum=0.1, maximum=86400.0),
            limits=Limits.from_config(config),
            max_image_pixels=section.get_int("max_image_pixels", minimum=1),
            allowed=AllowedSenders.from_config(config),
            protection=Protection.from_config(config),
            display_name=section.get("display_name", ""),
            claims_folder=_claims_folder(config),
            claim_lease=section.get_float("claim_lease", minimum=1.0, maximum=86400.0),
            pipeline=section.get_bool("pipeline"),
        )


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
