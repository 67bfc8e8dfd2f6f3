"""A real HTTP server on 127.0.0.1 that plays the Electricity Maps API for tests.

It records every request (path, query, headers) and answers with whatever the test sets:
a status, a body, and an optional delay (to provoke client timeouts).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class SeenRequest:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class LocalElectricityMaps:
    status: int = 200
    body: bytes = json.dumps({"zone": "DE", "carbonIntensity": 123}).encode()
    delay_s: float = 0.0
    requests: list[SeenRequest] = field(default_factory=list)
    url: str = ""

    def answer_json(self, payload: object, status: int = 200) -> None:
        self.status = status
        self.body = json.dumps(payload).encode()

    def answer_raw(self, body: bytes, status: int = 200) -> None:
        self.status = status
        self.body = body


def start_local_api() -> tuple[LocalElectricityMaps, ThreadingHTTPServer]:
    api = LocalElectricityMaps()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            parts = urlsplit(self.path)
            api.requests.append(
                SeenRequest(parts.path, parse_qs(parts.query), {k.lower(): v for k, v in self.headers.items()})
            )
            if api.delay_s:
                time.sleep(api.delay_s)
            try:
                self.send_response(api.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(api.body)))
                self.end_headers()
                self.wfile.write(api.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return api, server
