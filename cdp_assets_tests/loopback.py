"""An HTTP server on 127.0.0.1, on a free port, served from a daemon thread and stopped by the
test: the part every fake HTTP API of the tests shares (Treasure Data's, the Databricks
workspace's Files API, the REST source's shop, the alerts' webhook and Slack). Each fake only
says how to answer a request."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE")


class LoopbackServer:
    """``start()`` listens on loopback and returns the base URL; ``stop()`` closes the socket.
    Every request of one of ``methods`` is passed to ``handle`` (others get the standard 501)."""

    def __init__(
        self,
        handle: Callable[[BaseHTTPRequestHandler], None],
        methods: Iterable[str] = ALL_METHODS,
        keep_alive: bool = False,
    ):
        self._handle = handle
        self._methods = tuple(methods)
        # HTTP/1.1 keeps connections open between requests, as a real API does for a client's
        # session; the fake must then send a Content-Length with every answer.
        self._keep_alive = keep_alive
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the loopback server is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> str:
        handle = self._handle
        attributes: dict = {"log_message": lambda self, *args: None}  # quiet: the fakes record requests
        attributes.update({f"do_{method}": lambda self: handle(self) for method in self._methods})
        if self._keep_alive:
            # headers and body leave at once, not 40 ms apart (Nagle with delayed ACKs)
            attributes.update(protocol_version="HTTP/1.1", disable_nagle_algorithm=True)
        handler = type("LoopbackHandler", (BaseHTTPRequestHandler,), attributes)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True  # a client's open keep-alive connection does not hold up stop()
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
