"""The web page's settings, typed and checked: built once at the entry point from ``[web]``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from animalid.web.access import is_loopback_host
from animalid.web.httpd import split_listen


@dataclass(frozen=True)
class WebSettings:
    """``listen`` "" turns the page off; ``token`` "" allows loopback only."""

    listen: str = "127.0.0.1:8470"
    token: str = field(default="", repr=False)  # a secret: never in a log line
    keep_days: float = 7.0
    thumbnails: Path | None = None  # the folder (in the state folder); None keeps none

    def __post_init__(self) -> None:
        if not self.listen:
            return
        host, _ = split_listen(self.listen)
        if not self.token and not is_loopback_host(host):
            raise ValueError(f"listen = {self.listen} is reachable from other machines: set token_env or "
                             "token_command so the page asks for a token, or listen on 127.0.0.1")
        if self.keep_days < 0:
            raise ValueError(f"keep_days = {self.keep_days:g} cannot be negative (0 keeps no thumbnails)")

    @property
    def enabled(self) -> bool:
        return bool(self.listen)

    @property
    def address(self) -> tuple[str, int]:
        return split_listen(self.listen)
