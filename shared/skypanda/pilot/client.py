"""A small JSON-over-HTTP client for the skypanda API, on the standard library only.

It is hand-written on `urllib.request` rather than built on requests or httpx because the pilot
ships as a single-file zipapp into arbitrary payload images, where the only thing we may assume
is a Python >= 3.9 interpreter. The CLI reuses it, so it stays general: any method, any path,
JSON or raw bodies.

Errors:

    ApiError            every failure, with the HTTP status (0: the server could not be reached)
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, BinaryIO, NamedTuple

from skypanda.pilot.outage import RETRY_MAX_S, Outage

RETRY_STATUSES = frozenset({502, 503, 504})
"""Statuses a proxy or load balancer returns while the server restarts or scales: worth a retry."""


class _Call(NamedTuple):
    """One request, as `ApiClient.call` built it."""

    method: str
    url: str
    headers: dict[str, str]
    data: bytes | None


class ApiError(Exception):
    """The server answered with a non-2xx status, or could not be reached at all.

    Attributes:
        status: the HTTP status, or 0 when no answer came back (after the retries).
        message: the server's JSON "message" when it sent one, else a short description.
        body: the decoded JSON error body when there was one.
    """

    def __init__(self, status: int, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message
        self.body = body

    @property
    def unreachable(self) -> bool:
        """True when the server never answered: the caller cannot know whether it acted."""
        return self.status == 0


def backoff_delay(attempt: int, *, base_s: float, max_s: float) -> float:
    """Seconds to wait before retry number `attempt` (1-based): doubling from base_s, capped."""
    return float(min(max_s, base_s * (2 ** (attempt - 1))))


class ApiClient:
    """Calls the skypanda HTTP API with a bearer token, retrying transient failures.

    Retries cover connection errors and 502/503/504, the failures a restarting or overloaded
    server produces. They use exponential backoff and stop once the next wait would pass
    `retry_budget_s` since the first try, so a dead server is reported within a bounded time.
    A retried POST may reach the server twice when the first answer was lost; the server's
    endpoints are written to tolerate that (compare-and-set writes).

    A `patient` call (a pilot's heartbeats and reports) retries for longer: as long as the
    server has not answered for less than `outage_s` (`outage`, shared by every call of this
    client: see skypanda.pilot.outage).

    Args:
        server: base URL, e.g. "http://127.0.0.1:8080" (a trailing slash is ignored).
        token: bearer token sent on every request, or None to send none.
        timeout: seconds to wait for one answer.
        retries: how many times to retry a transient failure (0: try once).
        backoff_s: first wait between tries; it doubles up to `max_backoff_s`.
        max_backoff_s: longest single wait between tries.
        retry_budget_s: no retry starts later than this many seconds after the first try.
        outage_s: how long patient calls wait for a server that does not answer (0: as long
            as any call).
        keep_alive: keep one connection to the server open per calling thread and send every
            call of that thread on it (a pilot: no TCP handshake and no new server channel per
            call); `close()` closes them. Not through a proxy (those calls go as without it).
    """

    def __init__(
        self,
        server: str,
        token: str | None,
        timeout: float = 30.0,
        *,
        retries: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        retry_budget_s: float = 30.0,
        outage_s: float = 0.0,
        keep_alive: bool = False,
    ) -> None:
        if not server.startswith(("http://", "https://")):
            raise ValueError(f"server must be an http:// or https:// URL, got {server!r}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.server = server.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.retry_budget_s = retry_budget_s
        self.outage = Outage(outage_s)
        parts = urllib.parse.urlsplit(self.server)
        direct = keep_alive and not urllib.request.getproxies().get(parts.scheme)
        self._kept = _Kept(parts) if direct or (keep_alive and _bypass(parts)) else None

    def close(self) -> None:
        """Close the connections kept open (`keep_alive`); later calls open new ones."""
        if self._kept is not None:
            self._kept.close()

    def call(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        params: dict[str, Any] | None = None,
        raw: bytes | None = None,
        content_type: str | None = None,
        patient: bool = False,
        once: bool = False,
    ) -> Any:
        """Send one request and return the decoded answer.

        Args:
            method: HTTP method, e.g. "GET" or "POST".
            path: path under the server, e.g. "/v1/pilots" (query parameters go in `params`).
            body: JSON-serialisable body, or None for no JSON body.
            params: query parameters; None values are left out.
            raw: raw body bytes to send instead of JSON (e.g. a log chunk).
            content_type: content type of `raw` (default application/octet-stream).
            patient: also retry while the server has not answered for less than the outage
                budget (what a pilot must not lose to a server restart).
            once: try once, whatever `retries` says (the caller has another way to retry).

        Returns:
            The parsed JSON answer, the text of a text/plain answer, or None for 204 or an
            empty body.

        Raises:
            ApiError: the server answered non-2xx (status set), or could not be reached after
                the retries (status 0, the message names the URL; a patient call also gives
                up with status 0 on a proxy's 502/503/504).
        """
        request = self._request(method, path, body, params, raw, content_type)
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                answer = self._send(request)
            except ApiError as e:
                if not (e.status == 0 or e.status in RETRY_STATUSES):
                    self.outage.answered()
                    raise
                down_for = self.outage.unanswered(e)
                attempt += 1
                delay = backoff_delay(attempt, base_s=self.backoff_s, max_s=self.max_backoff_s)
                spent = (
                    once
                    or attempt > self.retries
                    or (time.monotonic() - started + delay > self.retry_budget_s)
                )
                if patient:  # on until the server has been down for the whole outage budget
                    left = self.outage.budget_s - down_for
                    if spent and left <= 0:
                        if e.status == 0:
                            raise
                        raise ApiError(0, f"no answer for {down_for:.0f} s: {e}") from e
                    delay = min(delay, RETRY_MAX_S, max(left, self.backoff_s))
                elif spent:
                    raise
                time.sleep(delay)
            else:
                self.outage.answered()
                return answer

    def _request(
        self,
        method: str,
        path: str,
        body: object,
        params: dict[str, Any] | None,
        raw: bytes | None,
        content_type: str | None,
    ) -> _Call:
        url = self.server + "/" + path.lstrip("/")
        query = {k: v for k, v in (params or {}).items() if v is not None}
        if query:
            url += "?" + urllib.parse.urlencode(query, doseq=True)
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data: bytes | None = None
        if raw is not None:
            data = raw
            headers["Content-Type"] = content_type or "application/octet-stream"
        elif body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        return _Call(method.upper(), url, headers, data)

    def _send(self, call: _Call) -> Any:
        if self._kept is not None:
            return self._kept.send(call, self.timeout)
        request = urllib.request.Request(
            call.url, data=call.data, headers=call.headers, method=call.method
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return _decode(
                    response.status, response.headers.get("Content-Type"), response.read()
                )
        except urllib.error.HTTPError as e:
            raise _http_error(e) from e
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", None) or e
            raise ApiError(0, f"cannot reach {call.url}: {reason}") from e


def _decode(status: int, content_type: str | None, data: bytes) -> Any:
    """Turn a 2xx answer into JSON, text, or None."""
    if status == 204 or not data:
        return None
    kind = (content_type or "").split(";")[0].strip().lower()
    text = data.decode("utf-8", errors="replace")
    if kind.startswith("text/"):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _http_error(e: urllib.error.HTTPError) -> ApiError:
    """Build an ApiError from a non-2xx answer, keeping the server's own message."""
    try:
        data = e.read()
    except (OSError, http.client.HTTPException):
        data = b""
    return _error_from(e.code, str(e.reason or ""), data)


def _error_from(code: int, reason: str, data: bytes) -> ApiError:
    """An ApiError for a non-2xx answer with this body: the server's message when it sent one."""
    body: dict[str, Any] | None = None
    message = ""
    try:
        decoded = json.loads(data.decode("utf-8", errors="replace")) if data else None
    except ValueError:
        decoded = None
    if isinstance(decoded, dict):
        body = decoded
        message = str(decoded.get("message") or decoded.get("error") or "")
    if not message:
        text = data.decode("utf-8", errors="replace").strip()
        message = text[:500] if text else reason or http.client.responses.get(code, "")
    return ApiError(code, message, body)


def _bypass(parts: urllib.parse.SplitResult) -> bool:
    """Whether the proxy settings leave this server out (no_proxy)."""
    return bool(urllib.request.proxy_bypass(parts.hostname or ""))


class _Kept:
    """One HTTP/1.1 connection per thread to one server, reused call after call.

    The request and its answer are written and read here, on the connection's socket
    (`http.client` only connects it, TLS included): `http.client` parses every answer's
    headers with the `email` package, which cost a pilot more than starting a short payload.
    Answers are read by Content-Length, chunked, or to the connection's close.

    A connection the server closed while it was idle fails on its next use before the server
    read anything; that call is sent again at once on a new connection (once). Every other
    failure is the caller's (ApiClient.call retries what is worth retrying)."""

    def __init__(self, parts: urllib.parse.SplitResult) -> None:
        self._parts = parts
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._host = parts.netloc.rpartition("@")[2].encode("idna")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: dict[http.client.HTTPConnection, BinaryIO] = {}  # every thread's

    def _connection(self, timeout: float) -> tuple[http.client.HTTPConnection, BinaryIO, bool]:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None and conn.sock is not None:
            conn.sock.settimeout(timeout)
            return conn, self._local.reader, True
        kind = (
            http.client.HTTPSConnection
            if self._parts.scheme == "https"
            else http.client.HTTPConnection
        )
        conn = kind(self._parts.hostname or "", self._parts.port, timeout=timeout)
        try:
            conn.connect()
        except OSError:
            conn.close()
            raise
        assert conn.sock is not None
        self._local.conn, self._local.reader = conn, conn.sock.makefile("rb")
        with self._lock:
            self._all[conn] = self._local.reader
        return conn, self._local.reader, False

    def _drop(self) -> None:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.reader.close()
            conn.close()
            with self._lock:
                self._all.pop(conn, None)
        self._local.conn = None

    def _head(self, call: _Call) -> bytes:
        target = call.url[len(self._origin) :] or "/"
        lines = [f"{call.method} {target} HTTP/1.1".encode(), b"Host: " + self._host]
        lines += [f"{k}: {v}".encode("latin-1") for k, v in call.headers.items()]
        if call.data is not None or call.method in ("POST", "PUT", "PATCH"):
            lines.append(b"Content-Length: %d" % len(call.data or b""))
        return b"\r\n".join([*lines, b"", b""])

    def send(self, call: _Call, timeout: float) -> Any:
        request = self._head(call) + (call.data or b"")
        while True:
            try:
                conn, reader, reused = self._connection(timeout)
                assert conn.sock is not None
                conn.sock.sendall(request)
                status, reason, headers, data, close = _read_response(reader, call.method)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                self._drop()
                if reused:
                    continue  # the server closed it while idle: on a new connection, once
                raise ApiError(0, f"cannot reach {call.url}: {e}") from e
            except (OSError, http.client.HTTPException, ValueError) as e:
                self._drop()
                raise ApiError(0, f"cannot reach {call.url}: {e}") from e
            if close:
                self._drop()
            break
        if status >= 400:
            raise _error_from(status, reason, data)
        return _decode(status, headers.get("content-type"), data)

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, {}
        for conn, reader in conns.items():
            reader.close()  # the socket closes with the last of the two
            conn.close()


MAX_LINE = 65536
MAX_HEADERS = 100


def _read_response(reader: BinaryIO, method: str) -> tuple[int, str, dict[str, str], bytes, bool]:
    """Read one answer: (status, reason, headers by lower-case name, body, whether the
    connection is to be closed after it). Interim (1xx) answers are skipped.

    Raises:
        http.client.RemoteDisconnected: the connection closed before an answer began.
        http.client.HTTPException, ValueError: not an HTTP/1.x answer, or cut short.
    """
    while True:
        line = reader.readline(MAX_LINE + 1)
        if not line:
            raise http.client.RemoteDisconnected("the server closed the connection unanswered")
        version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise http.client.BadStatusLine(line.decode("latin-1")[:100])
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS + 1):
            field = reader.readline(MAX_LINE + 1)
            if field in (b"\r\n", b"\n", b""):
                break
            name, _, value = field.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        else:
            raise http.client.HTTPException(f"more than {MAX_HEADERS} headers")
        if not 100 <= int(code) < 200:
            break
    status = int(code)
    connection = headers.get("connection", "").lower()
    close = connection == "close" or (version == "HTTP/1.0" and connection != "keep-alive")
    if method == "HEAD" or status in (204, 304):
        return status, reason, headers, b"", close
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return status, reason, headers, _read_chunked(reader), close
    length = headers.get("content-length")
    if length is None:  # to the end of the connection
        return status, reason, headers, reader.read(), True
    want = int(length)
    data = reader.read(want)
    if len(data) < want:
        raise http.client.IncompleteRead(data, want - len(data))
    return status, reason, headers, data, close


def _read_chunked(reader: BinaryIO) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = reader.readline(MAX_LINE + 1)
        if not size_line:
            raise http.client.IncompleteRead(b"".join(parts))
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while reader.readline(MAX_LINE + 1) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(parts)
        chunk = reader.read(size)
        if len(chunk) < size:
            raise http.client.IncompleteRead(chunk)
        parts.append(chunk)
        reader.readline(MAX_LINE + 1)  # the CRLF after the chunk
