"""A fake of the Databricks workspace's Files API 2.0 on loopback (the other boundary the tests may
fake), for Unity Catalog Volumes: ``/api/2.0/fs/files{path}`` (PUT upload, HEAD, GET, DELETE) and
``/api/2.0/fs/directories{path}`` (PUT create, GET list, DELETE).

It holds the documented rules, so that databricks-sdk and our code run unchanged against it and
fail where the workspace would:
- every request carries ``Authorization: Bearer <token>`` with the server's token (401
  ``UNAUTHENTICATED`` otherwise);
- paths are ``/Volumes/<catalog>/<schema>/<volume>/...`` of a Volume that exists (404 ``NOT_FOUND``);
- an upload is raw bytes (``application/octet-stream``) of at most 5 GiB (413 above), refused with
  409 ``ALREADY_EXISTS`` when the file exists and ``overwrite=false``; missing parent folders are
  created, as the API does;
- a listing returns at most 1,000 entries a page (``page_size`` above it is a 400), with a
  ``next_page_token`` when more remain;
- only an empty directory can be deleted (the API says to delete its contents first).
The SDK's multipart upload (``POST ...?action=initiate-upload``, presigned cloud-storage URLs) is
not served: it answers 501, and ``multipart_requests`` counts such attempts.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlparse

from cdp_assets_tests.loopback import LoopbackServer

MAX_UPLOAD_BYTES = 5 * 1024**3
MAX_PAGE_SIZE = 1000
FILES = "/api/2.0/fs/files"
DIRECTORIES = "/api/2.0/fs/directories"


class _Reject(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class FakeDatabricksWorkspace:
    token: str
    volumes: set[tuple[str, str, str]] = field(default_factory=set)
    files: dict[str, bytes] = field(default_factory=dict)
    directories: set[str] = field(default_factory=set)
    upload_sizes: list[int] = field(default_factory=list)
    multipart_requests: int = 0
    requests: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: LoopbackServer | None = None

    # ---------------------------------------------------------------- server

    def start(self) -> str:
        self._server = LoopbackServer(self._handle)
        return self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    # ---------------------------------------------------------------- requests

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlparse(h.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(h.headers.get("Content-Length") or 0)
        try:
            with self._lock:
                self.requests.append((h.command, url.path))
            if h.headers.get("Authorization") != f"Bearer {self.token}":
                raise _Reject(401, "UNAUTHENTICATED", "Invalid access token.")
            if length > MAX_UPLOAD_BYTES:
                raise _Reject(413, "REQUEST_ENTITY_TOO_LARGE", f"upload of {length} bytes is over the 5 GiB limit")
            body = h.rfile.read(length) if length else b""
            if url.path.startswith(FILES + "/"):
                status, payload, data = self._file(h.command, unquote(url.path[len(FILES) :]), query, h.headers, body)
            elif url.path.startswith(DIRECTORIES + "/"):
                status, payload, data = self._directory(
                    h.command, unquote(url.path[len(DIRECTORIES) :]).rstrip("/"), query
                )
            else:
                raise _Reject(404, "ENDPOINT_NOT_FOUND", f"No API found for '{h.command} {url.path}'")
        except _Reject as r:
            status, payload, data = r.status, {"error_code": r.code, "message": r.message}, None
        h.send_response(status)
        if data is not None:
            h.send_header("Content-Type", "application/octet-stream")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(data)
            return
        text = json.dumps(payload).encode() if payload is not None else b""
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(text)))
        h.end_headers()
        h.wfile.write(text)

    def _volume_of(self, path: str) -> None:
        parts = path.split("/")
        if len(parts) < 5 or parts[1] != "Volumes" or not all(parts[2:5]):
            raise _Reject(
                400, "INVALID_PARAMETER_VALUE", f"{path} is not a path under /Volumes/<catalog>/<schema>/<volume>"
            )
        if tuple(parts[2:5]) not in self.volumes:
            raise _Reject(404, "NOT_FOUND", f"Volume '{'.'.join(parts[2:5])}' does not exist.")

    def _parents(self, path: str) -> list[str]:
        parts = path.split("/")
        return ["/".join(parts[:i]) for i in range(6, len(parts))]

    def _file(self, method: str, path: str, query: dict, headers, body: bytes):
        self._volume_of(path)
        with self._lock:
            if method == "POST":
                self.multipart_requests += 1
                raise _Reject(501, "NOT_IMPLEMENTED", "multipart upload is not served by this fake")
            if method == "PUT":
                if headers.get("Content-Type") != "application/octet-stream":
                    raise _Reject(400, "INVALID_PARAMETER_VALUE", "the body must be application/octet-stream")
                if path in self.directories:
                    raise _Reject(409, "ALREADY_EXISTS", f"{path} is a directory")
                if path in self.files and query.get("overwrite", "true") != "true":
                    raise _Reject(409, "ALREADY_EXISTS", f"The file being created already exists: {path}")
                self.directories.update(self._parents(path))
                self.files[path] = body
                self.upload_sizes.append(len(body))
                return 204, None, None
            if path not in self.files:
                raise _Reject(404, "NOT_FOUND", f"The file being accessed is not found: {path}")
            if method in ("GET", "HEAD"):
                return 200, None, self.files[path]
            if method == "DELETE":
                del self.files[path]
                return 204, None, None
        raise _Reject(405, "METHOD_NOT_ALLOWED", method)

    def _directory(self, method: str, path: str, query: dict):
        self._volume_of(path + "/")
        with self._lock:
            if method == "PUT":
                self.directories.update(self._parents(path + "/x"))
                return 204, None, None
            if path not in self.directories and path.count("/") > 4:  # a Volume's root always exists
                raise _Reject(404, "NOT_FOUND", f"The directory being accessed is not found: {path}")
            children = self._children(path)
            if method == "GET":
                size = int(query.get("page_size", MAX_PAGE_SIZE))
                if not 0 < size <= MAX_PAGE_SIZE:
                    raise _Reject(400, "INVALID_PARAMETER_VALUE", f"page_size must be between 1 and {MAX_PAGE_SIZE}")
                start = int(query.get("page_token", 0))
                page = children[start : start + size]
                payload: dict = {"contents": page}
                if start + size < len(children):
                    payload["next_page_token"] = str(start + size)
                return 200, payload, None
            if method == "DELETE":
                if children:
                    raise _Reject(409, "DIRECTORY_NOT_EMPTY", f"The directory being deleted is not empty: {path}")
                self.directories.discard(path)
                return 204, None, None
        raise _Reject(405, "METHOD_NOT_ALLOWED", method)

    def _children(self, path: str) -> list[dict]:
        prefix = path + "/"
        entries = [
            {"path": d, "name": d[len(prefix) :], "is_directory": True}
            for d in sorted(self.directories)
            if d.startswith(prefix) and "/" not in d[len(prefix) :]
        ]
        entries += [
            {"path": f, "name": f[len(prefix) :], "is_directory": False, "file_size": len(b), "last_modified": 0}
            for f, b in sorted(self.files.items())
            if f.startswith(prefix) and "/" not in f[len(prefix) :]
        ]
        return entries
