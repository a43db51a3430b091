"""How ``serve`` hosts the app: uvicorn with explicit limits. A connection that has not sent its request headers
within ``header_timeout_s`` is closed (uvicorn itself has no header timeout: a slow client would hold its
connection forever); connections beyond ``max_connections`` get 503 from uvicorn; on SIGTERM or the first Ctrl-C
the server stops accepting, gives the requests in flight ``drain_s`` to finish, and exits 0."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass
from typing import Callable

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .errors import CganError

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools not installed: uvicorn runs h11 alone
    HttpToolsProtocol = None


@dataclass(frozen=True)
class ServeLimits:
    """How much the server takes on, and for how long it waits."""

    max_queue: int = 64 * 64  # images accepted and not yet answered (64 model batches of 64); past it: 503
    deadline_s: float = 30.0  # a request not answered by then gets 504
    header_timeout_s: float = 10.0  # a connection whose request headers are not complete by then is closed
    body_timeout_s: float = 10.0  # a request body not received by then gets 408
    keep_alive_s: float = 5.0  # an idle keep-alive connection is closed after this
    max_connections: int = 1000  # open connections and requests beyond this get 503 at once
    drain_s: float = 30.0  # on SIGTERM, requests in flight get this long to finish


class _HeaderDeadline:
    """Mixed into uvicorn's HTTP protocols: a connection must complete each request's headers within
    ``header_timeout_s`` of opening, or of its previous response."""

    header_timeout_s = 10.0
    _header_timer: asyncio.TimerHandle | None = None
    _headers_done = False

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_deadline()

    def connection_lost(self, exc) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._headers_done = False
        self._header_timer = asyncio.get_running_loop().call_later(self.header_timeout_s, self._header_deadline)

    def _header_deadline(self) -> None:
        if not self._headers_done and not self._request_started() and not self.transport.is_closing():
            self.transport.close()

    def _request_started(self) -> bool:
        return False


class _H11(_HeaderDeadline, H11Protocol):
    def _request_started(self) -> bool:
        import h11

        return self.conn.their_state is not h11.IDLE  # h11 leaves IDLE once a request's headers are parsed


if HttpToolsProtocol is not None:
    class _HttpTools(_HeaderDeadline, HttpToolsProtocol):
        def on_headers_complete(self) -> None:
            self._headers_done = True
            super().on_headers_complete()


class _DrainingServer(uvicorn.Server):
    """uvicorn's server; after a SIGTERM or Ctrl-C has drained it, the process exits normally (uvicorn re-raises
    the signal, which ends the process with -15 before the exit code can say the drain went well)."""

    @contextlib.contextmanager
    def capture_signals(self):
        with super().capture_signals():
            yield
            self._captured_signals.clear()


def protocol(limits: ServeLimits) -> type:
    """The HTTP protocol class uvicorn runs (httptools where installed, else h11), with the header deadline."""
    base = _HttpTools if HttpToolsProtocol is not None else _H11
    return type(base.__name__, (base,), {"header_timeout_s": limits.header_timeout_s})


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port``; one that cannot be bound is a CganError of one line."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except (OSError, OverflowError) as exc:
        raise CganError(f"cannot listen on {host}:{port}: {getattr(exc, 'strerror', None) or exc}") from None
    return sock


def check_port(host: str, port: int) -> None:
    """Fail in one line now where ``host``:``port`` cannot be listened on (for a server that binds it later)."""
    bind_socket(host, port).close()


def run(app, host: str, port: int, limits: ServeLimits, on_listening: Callable[[], None] = lambda: None) -> None:
    """Serve ``app`` until SIGTERM or Ctrl-C, then drain; a port that cannot be listened on is a CganError (the
    socket is bound here, so that uvicorn's own bind failure, a logged line and exit code 3, never happens)."""
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", http=protocol(limits),
                            timeout_keep_alive=int(max(1, limits.keep_alive_s)),
                            limit_concurrency=limits.max_connections,
                            timeout_graceful_shutdown=int(max(1, limits.drain_s)))
    with bind_socket(host, port) as sock:
        on_listening()
        _DrainingServer(config).run(sockets=[sock])
