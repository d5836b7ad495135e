"""A small REST API on loopback for the rest_api source tests: bearer auth, page-number
pagination, an `updated_since` cursor parameter and an endpoint that answers an error status.
It records every request so tests can see what the source asked for."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlparse

from cdp_assets_tests.loopback import LoopbackServer

PAGE_SIZE = 4


class FakeShopApi:
    def __init__(self, token: str):
        self.token = token
        self.contacts: list[dict] = []
        self.requests: list[tuple[str, dict]] = []  # (path, query)
        self.error_status: int | None = None  # every request answers this status when set
        self._server: LoopbackServer | None = None

    def start(self) -> str:
        self._server = LoopbackServer(self._handle, methods=("GET",))
        return self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlparse(h.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.requests.append((url.path, query))
        if self.error_status is not None:
            return _send(h, self.error_status, {"error": "the shop is down for maintenance"})
        if h.headers.get("Authorization") != f"Bearer {self.token}":
            return _send(h, 401, {"error": "invalid token"})
        if url.path != "/v1/contacts":
            return _send(h, 404, {"error": "no such endpoint"})
        since = query.get("updated_since")
        rows = sorted(
            (c for c in self.contacts if since is None or c["updated_at"] > since), key=lambda c: c["updated_at"]
        )
        page = int(query.get("page", "1"))
        chunk = rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        _send(h, 200, {"results": chunk, "page": page, "total_pages": max(1, -(-len(rows) // PAGE_SIZE))})


def _send(h: BaseHTTPRequestHandler, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)
