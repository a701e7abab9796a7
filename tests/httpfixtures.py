"""A real, fault-injecting HTTP server on 127.0.0.1 for source tests and benchmarks.

Tests talk to it over real sockets so that timeouts, retries, Retry-After, pooling
and rate limits are exercised exactly as in production; nothing in requests is
mocked. It serves, per company:

* ``GET /api/companies/<id>[?date=YYYY-MM-DD]`` -> ``{"data": {"employee_count": N,
  "as_of": day, "name": ...}, "items": [{"count": N}]}``
* ``GET /pages/<id>`` -> an HTML page with ``<span class="employees">12,345 employees</span>``
* ``GET /v5/company/enrich?website=..|profile=..`` -> a People Data Labs shaped answer,
  401 unless ``X-Api-Key`` equals :attr:`FakeHttpServer.api_key` (when that is set)
* ``GET /redirect?to=<url>`` -> 302 to ``url``; ``GET /__log`` -> the request log as JSON

Faults are injected per company and consumed one per request::

    server.inject("acme", status=500, times=2)                       # 500, 500, then OK
    server.inject("acme", status=429, headers={"Retry-After": "1"}, times=1)
    server.inject("acme", delay=1.0)                                 # slower than a timeout
    server.inject("acme", truncate=True)                             # cut JSON, status 200
    server.inject("acme", body=b"<html>login</html>", content_type="text/html")
    server.inject("acme", drop=True)                                 # close without answering
    server.inject("acme", cut=True, times=2)       # full Content-Length, half the body, close

Every request is recorded (:attr:`FakeHttpServer.log`) with path, query, headers,
company and a ``time.monotonic()`` stamp, to assert retries, headers and rates.
Use the :func:`fake_http` pytest fixture, or ``with FakeHttpServer() as server:``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest


@dataclass
class Fault:
    """What to do instead of (or on top of) the normal answer; ``times=None`` is forever."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    content_type: str | None = None
    delay: float = 0.0
    truncate: bool = False
    drop: bool = False
    cut: bool = False
    times: int | None = None


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it; ``time`` is ``time.monotonic()`` on arrival."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    company: str | None
    time: float


class FakeHttpServer:
    """Per-company JSON/HTML/PDL answers plus injectable faults; see the module docstring."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.counts: dict[str, int] = {}
        self.payloads: dict[str, Any] = {}
        self.pages: dict[str, str] = {}
        self.aliases: dict[str, str] = {}  # website or LinkedIn URL -> company id
        self.api_key: str | None = None
        self.log: list[RecordedRequest] = []
        self._faults: dict[str, list[Fault]] = {}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # -- lifecycle -----------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHttpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeHttpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- data and faults -----------------------------------------------------------
    def add_company(
        self, company: str, count: int, *, website: str | None = None, linkedin: str | None = None
    ) -> None:
        self.counts[company] = count
        for alias in (website, linkedin):
            if alias:
                self.aliases[alias] = company

    def inject(self, company: str, **kwargs: Any) -> Fault:
        """Queue a :class:`Fault` for ``company``; faults apply in the order injected."""
        fault = Fault(**kwargs)
        with self._lock:
            self._faults.setdefault(company, []).append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self.log.clear()

    def take_fault(self, company: str | None) -> Fault | None:
        with self._lock:
            queue = self._faults.get(company or "", [])
            if not queue:
                return None
            fault = queue[0]
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    queue.pop(0)
            return fault

    # -- what the log says ---------------------------------------------------------
    def requests_for(self, company: str) -> list[RecordedRequest]:
        return [r for r in list(self.log) if r.company == company]

    def rate(self, prefix: str = "/") -> float:
        """Mean request rate (requests/s) between the first and last matching request."""
        stamps = sorted(r.time for r in list(self.log) if r.path.startswith(prefix))
        if len(stamps) < 2 or stamps[-1] == stamps[0]:
            return float("inf") if len(stamps) >= 2 else 0.0
        return (len(stamps) - 1) / (stamps[-1] - stamps[0])

    # -- answers -------------------------------------------------------------------
    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[str | None, int, str, bytes]:
        """(company, status, content type, body) of the normal, fault-free answer."""
        parts = [unquote(p) for p in path.split("/") if p]
        if len(parts) == 3 and parts[:2] == ["api", "companies"]:
            company = parts[2]
            if company not in self.counts and company not in self.payloads:
                return company, 404, "application/json", b'{"error": "not found"}'
            day = query.get("date", [date.today().isoformat()])[0]
            payload = self.payloads.get(company) or {
                "data": {"employee_count": self.counts[company], "as_of": day, "name": company},
                "items": [{"count": self.counts[company]}],
            }
            return company, 200, "application/json", json.dumps(payload).encode()
        if len(parts) == 2 and parts[0] == "pages":
            company = parts[1]
            if company in self.pages:
                return company, 200, "text/html; charset=utf-8", self.pages[company].encode()
            if company not in self.counts:
                return company, 404, "text/html", b"<html><title>Not found</title></html>"
            html = (
                f"<html><head><title>{company} - about</title></head><body>"
                f"<div id='stats'><span class='employees'>{self.counts[company]:,} employees"
                "</span></div></body></html>"
            )
            return company, 200, "text/html; charset=utf-8", html.encode()
        if path == "/v5/company/enrich":
            return self._pdl(query)
        return None, 404, "text/plain", b"no such route"

    def _pdl(self, query: dict[str, list[str]]) -> tuple[str | None, int, str, bytes]:
        key = (query.get("profile") or query.get("website") or [""])[0]
        company = self.aliases.get(key)
        if company is None:
            error = {"status": 404, "error": {"type": "not_found", "message": "No records"}}
            return None, 404, "application/json", json.dumps(error).encode()
        payload = self.payloads.get(company) or {
            "status": 200,
            "name": company,
            "website": key,
            "employee_count": self.counts[company],
            "likelihood": 8,
        }
        return company, 200, "application/json", json.dumps(payload).encode()


def _handler_for(server: FakeHttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so client connection pooling is real
        disable_nagle_algorithm = True  # else headers+body writes stall 40 ms on delayed ACKs

        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:
            arrived = time.monotonic()
            split = urlsplit(self.path)
            query = parse_qs(split.query)
            if split.path == "/__log":
                log = [{"path": r.path, "time": r.time} for r in list(server.log)]
                return self._send(200, "application/json", json.dumps(log).encode(), {})
            if split.path == "/redirect":
                server.log.append(
                    RecordedRequest("GET", split.path, query, dict(self.headers), None, arrived)
                )
                return self._send(302, "text/plain", b"", {"Location": query["to"][0]})
            company, status, ctype, body = server.answer(split.path, query)
            key = self.headers.get("X-Api-Key")
            if split.path == "/v5/company/enrich" and server.api_key not in (None, key):
                status, ctype = 401, "application/json"
                body = b'{"status": 401, "error": {"type": "authentication_error"}}'
            server.log.append(
                RecordedRequest("GET", split.path, query, dict(self.headers), company, arrived)
            )
            fault = server.take_fault(company)
            headers: dict[str, str] = {}
            if fault is not None:
                if fault.delay:
                    time.sleep(fault.delay)
                if fault.drop:
                    self.close_connection = True
                    return None
                if fault.truncate:
                    body = body[: max(1, len(body) // 2)]
                if fault.status is not None and fault.status >= 400 and fault.body is None:
                    body = json.dumps({"error": f"injected {fault.status}"}).encode()
                    ctype = "application/json"
                status = fault.status or status
                body = fault.body if fault.body is not None else body
                ctype = fault.content_type or ctype
                headers = fault.headers
            return self._send(status, ctype, body, headers, cut=fault is not None and fault.cut)

        def _send(
            self, status: int, ctype: str, body: bytes, headers: dict[str, str], cut: bool = False
        ) -> None:
            """Answer; ``cut`` announces the whole body but sends half and hangs up, which
            is what a proxy or server that dies mid-transfer looks like to a client."""
            try:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if cut else body)
                if cut:
                    self.wfile.flush()
                    self.close_connection = True
            except (BrokenPipeError, ConnectionResetError):  # the client timed out first
                self.close_connection = True

    return Handler


@pytest.fixture
def fake_http() -> Iterator[FakeHttpServer]:
    """A started :class:`FakeHttpServer`, stopped after the test."""
    with FakeHttpServer() as server:
        yield server
