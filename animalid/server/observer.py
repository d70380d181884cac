"""What the serving loop tells whoever watches it (the operations page, the metrics).

The server knows nothing of the web: it calls these methods on the observer
it was given (``NoObserver`` by default). They may be called from the sending
stage's thread as well as the serving loop's, and must return at once.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence


class Observer(Protocol):
    def request_finished(self, key: str, outcome: str, seconds: float | None,
                         answers: Sequence[dict[str, Any]] = (), photos: Sequence[bytes] = ()) -> None:
        """A request reached ``outcome`` (answered, refused, ignored, set_aside); ``seconds``
        from its arrival to the reply sent (None without a reply); ``photos`` only for an
        answered request, one per answer ("" for a photo that was not classified)."""

    def classified(self, seconds: float) -> None:
        """One classify() call took ``seconds``."""

    def mailbox_reconnected(self) -> None:
        """The mail servers were lost and are back."""

    def changed(self) -> None:
        """History rows were written (requests taken up): live pages may look now."""


class NoObserver:
    """Nobody watching."""

    def request_finished(self, key: str, outcome: str, seconds: float | None,
                         answers: Sequence[dict[str, Any]] = (), photos: Sequence[bytes] = ()) -> None:
        pass

    def classified(self, seconds: float) -> None:
        pass

    def mailbox_reconnected(self) -> None:
        pass

    def changed(self) -> None:
        pass
