"""The operations page on a socket: the standard library's ThreadingHTTPServer in a thread.

Why this and not an ASGI stack: the server is built on threads (the serving
loop, the sending stage, the lease heartbeat) with no event loop to share,
the surface is nine GET routes and one event stream, and a page watched by a
few people needs no more than a thread per open connection. The standard
library adds no dependency to audit; ``prometheus_client`` is the only new
one.

When the port is taken (several servers on one machine with one
config.ini), ``start_web`` logs one line and tries the next ports, up to
``PORT_TRIES``; when none is free, or the address cannot be bound at all, it
logs that and the server runs without a page. It never stops the server.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Generator

from animalid.web.app import Request, WebApp

log = logging.getLogger(__name__)

PORT_TRIES = 10
SOCKET_TIMEOUT_S = 60.0  # an idle keep-alive connection lets its thread go after this


def split_listen(listen: str) -> tuple[str, int]:
    """``host:port`` / ``[v6]:port`` / ``:port`` -> (host, port); ValueError names the problem."""
    text = listen.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:  # 0: any free port
        raise ValueError(f"{listen!r} is not host:port (for example 127.0.0.1:8470)")
    return host or "127.0.0.1", int(port)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "animalid"
    sys_version = ""
    timeout = SOCKET_TIMEOUT_S
    app: WebApp  # set on the subclass made for each server

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve()

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve()

    def do_POST(self) -> None:  # noqa: N802
        self._serve()

    def _serve(self) -> None:
        try:
            response = self.app.handle(Request(self.command, self.path, dict(self.headers.items())))
        except Exception:  # noqa: BLE001 - one bad request must not take the page down
            log.exception("web: %s %s failed", self.command, self.path[:200])
            self.send_error(500, "internal error (see the server's log)")
            return
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        for name, value in response.headers:
            self.send_header(name, value)
        if response.stream is not None and self.command == "HEAD":
            response.stream.close()  # the headers say what a GET would stream
            response.stream = None
        if response.stream is not None:
            self.send_header("Connection", "close")
            self.close_connection = True
            self.end_headers()
            self._stream(response.stream)
            return
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _stream(self, chunks: Generator[bytes, None, None]) -> None:
        try:
            for chunk in chunks:
                self.wfile.write(chunk)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            pass  # the page was closed
        finally:
            chunks.close()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        log.debug("web: " + format, *args)


class WebServer:
    """A bound page server; ``url`` is where it listens."""

    def __init__(self, httpd: ThreadingHTTPServer, on_close: Callable[[], object] | None = None):
        self._httpd = httpd
        self._thread: threading.Thread | None = None
        self._on_close = on_close
        address = httpd.server_address
        host, port = str(address[0]), int(address[1])
        self.host, self.port = host, port
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}/"
        self.wanted_port = port  # differs from port when that was taken

    @property
    def note(self) -> str:
        """", or why the port is not the one asked for (for the one log line)."""
        return f" (port {self.wanted_port} was taken)" if self.wanted_port and self.wanted_port != self.port else ""

    def start(self) -> "WebServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="animalid-web", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close()  # ends the event streams, so their threads return
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(10)
            self._thread = None
        self._httpd.server_close()


def bind(app: WebApp | None, host: str, port: int, tries: int = PORT_TRIES,
         on_close: Callable[[], object] | None = None) -> WebServer | None:
    """Bind ``host:port``, or the next free port; None (logged) when none can be had."""
    handler = type("AnimalidHandler", (_Handler,), {"app": app})
    server_class = type("AnimalidHTTPServer", (ThreadingHTTPServer,),
                        {"daemon_threads": True, "block_on_close": False,
                         "address_family": socket.AF_INET6 if ":" in host else socket.AF_INET})
    for attempt in range(tries):
        candidate = port + attempt if port else 0
        try:
            server = WebServer(server_class((host, candidate), handler), on_close)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE and port and attempt + 1 < tries:
                continue
            taken = f"ports {port}-{candidate} are taken" if attempt else f"{exc.strerror or exc}"
            log.warning("web: cannot listen on %s:%d (%s); this server runs without its page",
                        host, port, taken)
            return None
        server.wanted_port = port
        return server
    return None
