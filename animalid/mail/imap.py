"""IMAP behind the ``Mailbox`` interface: IDLE, bounded fetches, MOVE and claims.

RFC 9051 / RFC 3501 (UIDVALIDITY+UID as the stable key, BODY.PEEK so other
mail keeps its \\Seen flag), RFC 2177 (IDLE, re-issued before the server's
30-minute inactivity timer), RFC 6851 (MOVE; without it set_aside copies
first and deletes after, so a crash can leave a copy but never lose one),
RFC 4315 (UIDPLUS: UID EXPUNGE, so only our own messages are expunged -- a
whole mailbox never is -- and COPYUID) and RFC 7628 style XOAUTH2 login.
The claims of several servers sharing a mailbox are described in mailbox.py.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any, Callable, TypeVar

from animalid.errors import AnimalIdError, PermanentError, TransientError, UnreachableError
from animalid.mail.headers import HEADER_BYTES_LIMIT, server_text
from animalid.mail.imapclient_compat import input_buffered, untagged_responses
from animalid.mail.mailbox import Mailbox, MailRef, TooLarge, Unreadable
from animalid.mail.transport import Account, Endpoint, network_error

log = logging.getLogger(__name__)

# RFC 2177: clients should re-issue IDLE at least every 29 minutes, since
# servers may log out a client inactive for 30.
DEFAULT_IDLE_REFRESH_S = 25 * 60
FETCH_CHUNK = 50
# An imapclient.IMAPClient; imported lazily (POP3 users never load it), so typed loosely.
Client = Any
T = TypeVar("T")


class ImapMailbox(Mailbox):
    """IMAP with IDLE: new mail wakes ``wait`` at once; one connection is kept.

    The connection idles in the watched folder. Refs may name another folder
    (``MailRef.folder``, e.g. claims): commands on them select it first, and
    the next ``wait`` or ``list`` selects the watched folder again.
    """

    protocol = "imap"

    def __init__(self, endpoint: Endpoint, account: Account, folder: str = "INBOX",
                 idle_refresh: float = DEFAULT_IDLE_REFRESH_S):
        super().__init__(endpoint, account)
        self.folder = folder
        self.idle_refresh = idle_refresh
        self._client: Client | None = None
        self._uidvalidity = 0
        self._selected = ""  # the folder selected now
        self._uidvalidities: dict[str, int] = {}
        self._idling = False
        self._idle_since = 0.0
        self._dirty = True  # list_messages() must look: nothing is known yet
        self._folders_made: set[str] = set()
        self._warned_no_uidplus = False

    # -- session ------------------------------------------------------------

    def _connection(self) -> Client:
        if self._client is None:
            self._client = self._connect()
            self._dirty = True
        return self._client

    def _connect(self) -> Client:
        from imapclient import IMAPClient  # not needed by POP3 users
        from imapclient.exceptions import IMAPClientError, LoginError

        endpoint, account = self.endpoint, self.account
        try:
            client = IMAPClient(endpoint.host, endpoint.port, ssl=endpoint.security == "tls",
                                ssl_context=endpoint.tls_context(), timeout=endpoint.timeout)
        except (OSError, IMAPClientError) as exc:
            raise self._error(exc) from None
        try:
            if endpoint.security == "starttls":
                client.starttls(endpoint.tls_context())
            if account.auth == "xoauth2":
                client.oauth2_login(account.username, account.token())
            elif account.auth == "password":
                client.login(account.username, account.password())
            if not client.has_capability("IDLE"):
                raise PermanentError(f"{endpoint.where} does not support IDLE; use receive = pop3")
            self._selected = ""
            self._select(client, self.folder)
            self._uidvalidity = self._uidvalidities[self.folder]
        except LoginError as exc:
            _shutdown_quietly(client)
            text = server_text(exc)
            if "[UNAVAILABLE]" in text:
                raise TransientError(f"{endpoint.where}: {text}") from None
            raise account.login_refused(endpoint.where, text) from None
        except BaseException as exc:
            _shutdown_quietly(client)
            if isinstance(exc, (OSError, IMAPClientError)):
                raise self._error(exc) from None
            raise
        self._idling = False
        log.debug("%s: selected %s (UIDVALIDITY %s)", endpoint.where, self.folder, self._uidvalidity)
        return client

    def _select(self, client: Client, folder: str) -> int:
        """Select ``folder`` ("" = the watched one) unless it is; its UIDVALIDITY."""
        folder = folder or self.folder
        if self._selected != folder:
            selected = client.select_folder(folder)
            self._selected = folder
            self._uidvalidities[folder] = int(selected.get(b"UIDVALIDITY", 0))
            # SELECT reports the folder's size (EXISTS): not news. News that came
            # while another folder was selected is unknown, so list again.
            _pop_news(untagged_responses(client))
            if folder == self.folder:
                if self._uidvalidity and self._uidvalidities[folder] != self._uidvalidity:
                    self._uidvalidity = self._uidvalidities[folder]
                self._dirty = True
        return self._uidvalidities[folder]

    def _error(self, exc: BaseException) -> AnimalIdError:
        from imapclient.exceptions import IMAPClientAbortError, IMAPClientError

        if isinstance(exc, AnimalIdError):
            return exc
        if isinstance(exc, IMAPClientAbortError):
            return UnreachableError(f"{self.endpoint.where}: connection lost ({server_text(exc)})")
        if isinstance(exc, IMAPClientError):
            return TransientError(f"{self.endpoint.where}: {server_text(exc)}")
        return network_error(self.endpoint, exc)

    def _call(self, action: Callable[[Client], T]) -> T:
        """Run commands outside IDLE; any failure drops the connection (reopened next call)."""
        from imapclient.exceptions import IMAPClientError

        client = self._connection()
        try:
            self._leave_idle()
            return action(client)
        except (OSError, IMAPClientError) as exc:
            self._drop()
            raise self._error(exc) from None

    def _drop(self) -> None:
        client, self._client = self._client, None
        self._idling = False
        self._dirty = True
        self._selected = ""
        self._folders_made.clear()
        if client is not None:
            _shutdown_quietly(client)

    # -- IDLE ---------------------------------------------------------------

    def _enter_idle(self) -> None:
        client = self._client
        assert client is not None, "idling needs the connection"
        self._select(client, self.folder)
        # An EXISTS the server sent during an earlier command sits in imaplib's
        # store and will not be sent again: look there before idling.
        if _pop_news(untagged_responses(client)):
            self._dirty = True
        if self._dirty:
            return
        client.idle()
        self._idling = True
        self._idle_since = time.monotonic()
        if _pop_news(untagged_responses(client)) or input_buffered(client):
            self._dirty = True  # it arrived with the "+ idling" continuation

    def _leave_idle(self) -> None:
        if not self._idling:
            return
        self._idling = False
        assert self._client is not None, "only a connection idles"
        _, responses = self._client.idle_done()
        if _any_news(responses):
            self._dirty = True

    def wait(self, timeout: float) -> bool:
        from imapclient.exceptions import IMAPClientError

        if self._dirty:
            return True
        client = self._connection()
        try:
            if self._idling and time.monotonic() - self._idle_since > self.idle_refresh:
                self._leave_idle()
            if not self._idling:
                self._enter_idle()
                if self._dirty:
                    return True
            started = time.monotonic()
            responses = client.idle_check(timeout=max(0.0, timeout))
        except (OSError, IMAPClientError) as exc:
            self._drop()
            raise self._error(exc) from None
        if _any_news(responses):
            self._dirty = True
        elif not responses and timeout > 0 and time.monotonic() - started < timeout * 0.5:
            # idle_check returns early and empty when the server closed the
            # connection; check the line by leaving IDLE.
            self._call(lambda c: c.noop())
        elif any(_is_bye(r) for r in responses):
            self._drop()
            raise UnreachableError(f"{self.endpoint.where}: server closed the connection")
        return self._dirty

    # -- Mailbox ------------------------------------------------------------

    def list_messages(self) -> list[MailRef]:
        def listing(client: Client) -> list[int]:
            self._select(client, self.folder)
            self._dirty = False  # before the search: news arriving after it must count
            return [int(uid) for uid in client.search(["NOT", "DELETED"])]

        uids = self._call(listing)
        return [MailRef(key=self._key(uid), handle=int(uid)) for uid in sorted(uids)]

    def list_folder(self, folder: str, create: bool = True) -> tuple[int, list[int]]:
        """(UIDVALIDITY, the UIDs not marked deleted) of another folder, e.g. claims;
        (0, []) for a folder that does not exist and is not to be created."""
        def listing(client: Client) -> tuple[int, list[int]]:
            if create:
                self._ensure_folder(client, folder)
            elif not client.folder_exists(folder):
                return 0, []
            uidvalidity = self._select(client, folder)
            return uidvalidity, sorted(int(uid) for uid in client.search(["NOT", "DELETED"]))

        return self._call(listing)

    def uidvalidity_of(self, folder: str) -> int:
        """The UIDVALIDITY of ``folder`` (remembered from its last SELECT, else STATUS)."""
        folder = folder or self.folder
        if folder not in self._uidvalidities:
            status = self._call(lambda client: client.folder_status(folder, [b"UIDVALIDITY"]))
            self._uidvalidities[folder] = int(status[b"UIDVALIDITY"])
        return self._uidvalidities[folder]

    def _key(self, uid: int) -> str:
        return f"imap:{self._uidvalidity}:{uid}"

    def connect(self) -> None:
        self._connection()

    def expect_more(self) -> None:
        self._dirty = True

    def supports_claims(self) -> bool:
        client = self._call(lambda c: c)
        return bool(client.has_capability("MOVE") and client.has_capability("UIDPLUS"))

    def with_sizes(self, refs: list[MailRef]) -> list[MailRef]:
        unknown = [ref for ref in refs if ref.size is None]
        if not unknown:
            return refs
        sizes = {(ref.folder, ref.handle): int(data.get(b"RFC822.SIZE", 0))
                 for ref, data in self._fetch_items(unknown, [b"RFC822.SIZE"])}
        # A message expunged meanwhile has no size: it drops out here.
        return [ref if ref.size is not None else replace(ref, size=sizes[ref.folder, ref.handle])
                for ref in refs if ref.size is not None or (ref.folder, ref.handle) in sizes]

    def fetch(self, refs: list[MailRef], max_bytes: int) -> dict[str, bytes | TooLarge | Unreadable]:
        """Bodies in chunks of FETCH_CHUNK. When a chunk fails, each message is fetched
        alone: one the server will not give while it answers a NOOP right after is
        ``Unreadable`` (that message's failure); a server that stops answering is an outage."""
        found: dict[str, bytes | TooLarge | Unreadable] = {}
        wanted = []
        for ref in self.with_sizes(refs):
            if ref.size is not None and ref.size > max_bytes:
                found[ref.key] = TooLarge(ref.size)
            else:
                wanted.append(ref)
        try:
            fetched = self._fetch_items(wanted, [b"BODY.PEEK[]"])
        except TransientError:
            if len(wanted) < 1:
                raise
            fetched = []
            for ref in wanted:
                try:
                    fetched += self._fetch_items([ref], [b"BODY.PEEK[]"])
                except TransientError as exc:
                    self._call(lambda client: client.noop())  # raises when the server is gone
                    found[ref.key] = Unreadable(f"the mail server would not give it: {exc}")
        for ref, data in fetched:
            body = data.get(b"BODY[]")
            if body is not None:
                found[ref.key] = bytes(body)[: max_bytes + 1]
        return found

    def fetch_headers(self, refs: list[MailRef]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        # A partial fetch (RFC 9051 section 6.4.5, <origin.octets>): a hostile
        # message with megabytes of header lines is not read in full.
        partial = f"BODY.PEEK[HEADER]<0.{HEADER_BYTES_LIMIT}>".encode()
        for ref, data in self._fetch_items(refs, [partial]):
            header = data.get(b"BODY[HEADER]<0>", data.get(b"BODY[HEADER]"))
            if header is not None:
                found[ref.key] = bytes(header)[:HEADER_BYTES_LIMIT]
        return found

    def _fetch_items(self, refs: list[MailRef], items: list[bytes]) -> list[tuple[MailRef, dict[bytes, Any]]]:
        result: list[tuple[MailRef, dict[bytes, Any]]] = []
        for folder, group in _by_folder(refs).items():
            by_uid = {ref.handle: ref for ref in group}
            uids = list(by_uid)
            for start in range(0, len(uids), FETCH_CHUNK):
                chunk = uids[start:start + FETCH_CHUNK]

                def fetch(client: Client, c: list[int] = chunk, f: str = folder) -> dict[int, dict[bytes, Any]]:
                    self._select(client, f)
                    answer: dict[int, dict[bytes, Any]] = client.fetch(c, items)
                    return answer

                answer = self._call(fetch)
                # A message expunged meanwhile is simply missing from the answer.
                result += [(by_uid[uid], data) for uid, data in answer.items() if uid in by_uid]
        return result

    def delete(self, refs: list[MailRef]) -> None:
        for folder, group in _by_folder(refs).items():
            uids = [ref.handle for ref in group]

            def remove(client: Client, f: str = folder, uids: list[int] = uids) -> None:
                self._select(client, f)
                client.add_flags(uids, [b"\\Deleted"], silent=True)
                self._expunge(client, uids)

            self._call(remove)

    def _expunge(self, client: Client, uids: list[int]) -> None:
        if client.has_capability("UIDPLUS"):
            client.uid_expunge(uids)  # leaves others' \Deleted messages alone
        else:
            # Without UID EXPUNGE only a plain EXPUNGE (RFC 9051 section 6.4.3) removes
            # them, with whatever else is marked \Deleted in the folder -- marked for
            # removal by whoever marked it. Without UIDPLUS this server watches the
            # mailbox alone (service.py), so nothing of another server's is in flight.
            if not self._warned_no_uidplus:
                self._warned_no_uidplus = True
                log.info("%s has no UIDPLUS (RFC 4315): expunging the folder, which also removes "
                         "other messages marked \\Deleted there", self.endpoint.where)
            client.expunge()
        untagged_responses(client).pop("EXPUNGE", None)

    def set_aside(self, refs: list[MailRef], folder: str) -> None:
        for source, group in _by_folder(refs).items():
            uids = [ref.handle for ref in group]

            def move(client: Client, s: str = source, uids: list[int] = uids) -> None:
                self._ensure_folder(client, folder)
                self._select(client, s)
                if client.has_capability("MOVE"):
                    self._move(client, uids, folder)
                else:  # copy first: a crash in between leaves two copies, never none
                    client.copy(uids, folder)
                    client.add_flags(uids, [b"\\Deleted"], silent=True)
                    self._expunge(client, uids)

            self._call(move)

    def _ensure_folder(self, client: Client, folder: str) -> None:
        from imapclient.exceptions import IMAPClientError

        if folder in self._folders_made:
            return
        if not client.folder_exists(folder):
            try:
                client.create_folder(folder)
            except IMAPClientError:
                # Another server created it at the same moment ([ALREADYEXISTS]);
                # any other refusal shows again here.
                if not client.folder_exists(folder):
                    raise
        self._folders_made.add(folder)

    # -- claims (several servers, one mailbox) --------------------------------

    def claim(self, refs: list[MailRef], folder: str) -> list[MailRef]:
        """UID MOVE ``refs`` from the watched folder into ``folder``; the refs now ours.

        Ours are exactly the UIDs the server's COPYUID names (see the module
        docstring): the returned refs keep their key and size, with the UID
        they got in ``folder``. The others went to another server first.
        """
        refs = [ref for ref in refs if not ref.folder]
        if not refs:
            return []

        def take(client: Client) -> dict[int, int]:
            self._ensure_folder(client, folder)
            self._select(client, self.folder)
            return self._move(client, [ref.handle for ref in refs], folder)

        moved = self._call(take)
        return [replace(ref, handle=moved[ref.handle], folder=folder) for ref in refs if ref.handle in moved]

    def release(self, refs: list[MailRef]) -> dict[str, MailRef]:
        """UID MOVE claimed refs back to the watched folder: old key -> the ref there now
        (new UID, new key). A ref missing from the answer was gone already."""
        back: dict[str, MailRef] = {}
        for folder, group in _by_folder(refs).items():
            if not folder or folder == self.folder:
                continue

            def give_back(client: Client, f: str = folder, g: list[MailRef] = group) -> dict[int, int]:
                self._select(client, f)
                return self._move(client, [ref.handle for ref in g], self.folder)

            moved = self._call(give_back)
            uidvalidity = self._uidvalidities.get(self.folder, self._uidvalidity)
            for ref in group:
                if ref.handle in moved:
                    back[ref.key] = MailRef(key=f"imap:{uidvalidity}:{moved[ref.handle]}",
                                            handle=moved[ref.handle], size=ref.size)
        self._dirty = True
        return back

    def _move(self, client: Client, uids: list[int], folder: str) -> dict[int, int]:
        """UID MOVE (RFC 6851) in the selected folder; source UID -> destination UID.

        imaplib files the COPYUID response code (untagged OK before the
        expunges, or the tagged OK) under untagged_responses["COPYUID"]; clear
        it first so only this command's answer is read.
        """
        if not uids:
            return {}
        untagged = untagged_responses(client)
        untagged.pop("COPYUID", None)
        client.move(uids, folder)
        answers = untagged.pop("COPYUID", None) or []
        untagged.pop("EXPUNGE", None)  # the moved messages leaving this folder
        moved: dict[int, int] = {}
        for answer in answers:
            moved.update(parse_copyuid(answer))
        return moved

    def close(self) -> None:
        client, self._client = self._client, None
        self._selected = ""
        if client is None:
            return
        try:
            if self._idling:
                self._idling = False
                client.idle_done()
            client.logout()
        except Exception:  # closing a broken connection: nothing left to save
            _shutdown_quietly(client)


def parse_copyuid(answer: bytes | str) -> dict[int, int]:
    """RFC 4315 section 3: ``COPYUID <uidvalidity> <source uid-set> <destination uid-set>``
    -> {source UID: destination UID}, in the order both sets list them."""
    text = answer.decode("ascii", "replace") if isinstance(answer, bytes) else str(answer)
    fields = text.split()
    if len(fields) < 3:
        raise TransientError(f"malformed COPYUID response: {text[:100]!r}")
    source, destination = _uid_set(fields[1]), _uid_set(fields[2])
    if len(source) != len(destination):
        raise TransientError(f"malformed COPYUID response: {text[:100]!r}")
    return dict(zip(source, destination))


def _uid_set(text: str) -> list[int]:
    """An RFC 3501 uid-set without "*": "3,5:7" -> [3, 5, 6, 7]."""
    uids: list[int] = []
    try:
        for part in text.split(","):
            first, _, last = part.partition(":")
            low, high = int(first), int(last or first)
            uids.extend(range(min(low, high), max(low, high) + 1))
    except ValueError:
        raise TransientError(f"malformed UID set in COPYUID: {text[:100]!r}") from None
    return uids


def _by_folder(refs: list[MailRef]) -> dict[str, list[MailRef]]:
    groups: dict[str, list[MailRef]] = {}
    for ref in refs:
        groups.setdefault(ref.folder, []).append(ref)
    return groups


def _any_news(responses: list[Any] | None) -> bool:
    return any(isinstance(r, tuple) and len(r) >= 2 and r[1] in (b"EXISTS", b"RECENT")
               and isinstance(r[0], int) and r[0] > 0 for r in responses or ())


def _is_bye(response: Any) -> bool:
    return isinstance(response, tuple) and bool(response) and response[0] == b"BYE"


def _pop_news(untagged: dict[str, list[Any]]) -> bool:
    found = False
    for name in ("EXISTS", "RECENT"):
        values = untagged.pop(name, None) or []
        found = found or any(value not in (b"0", 0) for value in values)
    return found


def _shutdown_quietly(client: Client) -> None:
    try:
        client.shutdown()
    except Exception:
        pass
