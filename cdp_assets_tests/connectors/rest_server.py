"""A small REST API on loopback for the rest_api source tests: bearer auth, page-number
pagination, an `updated_since` cursor parameter and an endpoint that answers an error status.
It records every request so tests can see what the source asked for."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PAGE_SIZE = 4


class FakeShopApi:
    def __init__(self, token: str):
        self.token = token
        self.contacts: list[dict] = []
        self.requests: list[tuple[str, dict]] = []  # (path, query)
        self.error_status: int | None = None  # every request answers this status when set
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> str:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                api.requests.append((url.path, query))
                if api.error_status is not None:
                    return self._send(api.error_status, {"error": "the shop is down for maintenance"})
                if self.headers.get("Authorization") != f"Bearer {api.token}":
                    return self._send(401, {"error": "invalid token"})
                if url.path != "/v1/contacts":
                    return self._send(404, {"error": "no such endpoint"})
                since = query.get("updated_since")
                rows = sorted((c for c in api.contacts if since is None or c["updated_at"] > since), key=lambda c: c["updated_at"])
                page = int(query.get("page", "1"))
                chunk = rows[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
                self._send(200, {"results": chunk, "page": page, "total_pages": max(1, -(-len(rows) // PAGE_SIZE))})

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
