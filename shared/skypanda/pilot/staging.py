"""Data staging: fetch a job's inputs before its payload runs, upload its outputs after.

Stage-in (a job with `stage_in`): each input is a URL, fetched into the job's working directory
under its local name (`local_name`: the last part of the URL's path):

    file:///abs/path          copied (read as the payload user, if there is one: see sandbox)
    http://..., https://...   downloaded (urllib)
    gs://bucket/object        downloaded through the Cloud Storage JSON API,
                              {base}/storage/v1/b/{bucket}/o/{object}?alt=media, where base is
                              $STORAGE_EMULATOR_HOST if set (no token), else
                              https://storage.googleapis.com with a bearer token from
                              $SKYPANDA_GCS_TOKEN or, on Google Cloud, the metadata server

Each file is written next to its final name and renamed when complete, so a payload never sees
half a file. Its size and SHA-256 are counted while it is written. HTTP fetches are retried
(connection errors, 429, 5xx) a few times; anything else fails the stage-in at once.

Stage-out (a job with output patterns, after the payload succeeded): files matching the
patterns (`match_outputs`; staged inputs are never outputs) are uploaded one by one with
`PUT /v1/jobs/<job>/outputs/<name>`, streamed from disk while their size and SHA-256 are
counted; the server answers with what it stored, which must match. An upload is tried once
(see skypanda.handlers.data for why); a refused connection (nothing sent) waits for a server
that is down, within the pilot's outage budget. A file is read only if it is the job's and
stays in its directory (`sandbox.open_inside`): a link swapped in meanwhile cannot upload the
pilot's.

Errors: every failure is a StagingError whose message names the input or output; `Stopped`
when the pilot was told to stop the job meanwhile. Standard library only, Python 3.9 syntax
(the pilot ships as a zipapp).
"""

from __future__ import annotations

import glob
import hashlib
import http.client
import json
import os
import posixpath
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from skypanda.pilot.outage import Outage
from skypanda.pilot.sandbox import PayloadUser, open_inside, read_as

SCHEMES = ("file", "http", "https", "gs")
GCS_API = "https://storage.googleapis.com"
METADATA_TOKEN_URL = (
    "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token"
)
CHUNK_BYTES = 1024 * 1024
FETCH_TRIES = 3
RETRY_BASE_S = 0.5
TIMEOUT_S = 60.0
"""Seconds a single connect or read may take (not the whole transfer)."""
MAX_OUTPUT_FILES = 1000
"""As many outputs as the server's JobReport accepts."""
PART_SUFFIX = ".skypanda-part"


class ShouldStop(Protocol):
    """Polled while staging: None to go on, or the error code to stop the job with."""

    def __call__(self) -> int | None: ...


class StagingError(Exception):
    """Staging failed; the message names the input or output and says why.

    Attributes:
        retryable: trying the same transfer again may work (a connection error, HTTP 429/5xx).
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class Stopped(Exception):
    """The pilot was told to stop the job (kill, SIGTERM) while staging."""

    def __init__(self, code: int) -> None:
        super().__init__(f"stopped with code {code}")
        self.code = code


@dataclass(frozen=True)
class Source:
    """An input URL, parsed: `location` is a path (file), a URL (http) or the object (gs)."""

    url: str
    scheme: str
    name: str
    location: str
    bucket: str = ""


@dataclass(frozen=True)
class Staged:
    """A file that was staged in or out."""

    name: str
    size: int
    sha256: str
    uri: str = ""


# -- pure helpers ---------------------------------------------------------------------------------


def parse_source(url: str) -> Source:
    """Parse an input URL (see the module docstring for the schemes).

    Raises:
        StagingError: not a supported URL, or it names no file.
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        raise StagingError(
            f"cannot stage in {url!r}: use a {', '.join(s + '://' for s in SCHEMES)} URL"
        )
    bucket = ""
    if scheme == "gs":
        bucket, _, location = rest.partition("/")
        if not bucket or not location:
            raise StagingError(f"cannot stage in {url!r}: write gs://bucket/object")
        path = location
    else:
        parts = urllib.parse.urlsplit(url)
        path = urllib.parse.unquote(parts.path)
        location = url
        if scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise StagingError(f"cannot stage in {url!r}: a file:// URL names a local path")
            location = path
    name = posixpath.basename(path)
    if name in ("", ".", "..") or "\0" in name:
        raise StagingError(f"cannot stage in {url!r}: its path names no file")
    return Source(url, scheme, name, location, bucket)


def local_name(url: str) -> str:
    """The name `url` is staged in as (skypanda.domain.models.staged_name on the server
    fills the command's placeholders with the same).

    Raises:
        StagingError: see `parse_source`.
    """
    return parse_source(url).name


def gcs_media_url(bucket: str, obj: str, base: str = GCS_API) -> str:
    """The JSON API URL that downloads one object's bytes."""
    b, o = urllib.parse.quote(bucket, safe=""), urllib.parse.quote(obj, safe="")
    return f"{base.rstrip('/')}/storage/v1/b/{b}/o/{o}?alt=media"


def gcs_base(environ: dict[str, str]) -> tuple[str, bool]:
    """Where the Cloud Storage API is, and whether it is an emulator (which takes no token)."""
    emulator = environ.get("STORAGE_EMULATOR_HOST", "")
    if emulator:
        if "://" not in emulator:
            emulator = "http://" + emulator
        return emulator.rstrip("/"), True
    return GCS_API, False


def check_pattern(pattern: str) -> str:
    """An output pattern the pilot will glob: relative, staying inside the working directory.

    Raises:
        StagingError: empty, absolute, or with a `..` part.
    """
    if not pattern.strip() or "\0" in pattern:
        raise StagingError(f"output pattern {pattern!r} is empty")
    if pattern.startswith("/") or "\\" in pattern or ".." in pattern.split("/"):
        raise StagingError(f"output pattern {pattern!r} must stay inside the job's directory")
    return pattern


def match_outputs(
    workdir: Path, patterns: Sequence[str], exclude: Iterable[str] = ()
) -> list[tuple[str, Path]]:
    """The regular files under `workdir` matching any pattern, as (name, path) sorted by name,
    where name is the path relative to `workdir` with `/` separators.

    Glob rules: `*` and `?` do not match `/` nor a leading `.` (hidden files are matched only
    by a pattern that starts its part with `.`), `**` matches any depth. Names in `exclude`
    (the staged inputs) are skipped, and so are files whose real path leaves `workdir`
    (symbolic links pointing out of it).

    Raises:
        StagingError: a bad pattern (see `check_pattern`).
    """
    root = os.path.realpath(workdir)
    skipped = set(exclude)
    found: dict[str, Path] = {}
    for pattern in patterns:
        check_pattern(pattern)
        for hit in glob.glob(os.path.join(glob.escape(root), pattern), recursive=True):
            real = os.path.realpath(hit)
            if not real.startswith(root + os.sep) or not os.path.isfile(real):
                continue
            name = os.path.relpath(hit, root).replace(os.sep, "/")
            if name not in skipped and not name.endswith(PART_SUFFIX):
                found[name] = Path(hit)
    return sorted(found.items())


def backoff_s(attempt: int) -> float:
    """Seconds before retry number `attempt` (1-based) of a fetch."""
    return float(RETRY_BASE_S * 2 ** (attempt - 1))


# -- credentials ----------------------------------------------------------------------------------


class _MetadataToken:
    """An access token from the Google Cloud metadata server, cached until shortly before it
    expires. `get()` gives None off Google Cloud (the server does not answer)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0
        self._absent_until = 0.0

    def get(self) -> str | None:
        with self._lock:
            now = time.monotonic()
            if self._token is not None and now < self._expires:
                return self._token
            if now < self._absent_until:
                return None
            request = urllib.request.Request(
                METADATA_TOKEN_URL, headers={"Metadata-Flavor": "Google"}
            )
            try:
                with urllib.request.urlopen(request, timeout=2.0) as response:
                    body = json.loads(response.read().decode("utf-8"))
                self._token = str(body["access_token"])
                self._expires = now + max(float(body.get("expires_in", 300)) - 60.0, 10.0)
            except (OSError, ValueError, KeyError, http.client.HTTPException):
                self._token = None
                self._absent_until = now + 60.0  # not on Google Cloud: do not ask per file
            return self._token


_METADATA = _MetadataToken()


def gcs_token(environ: dict[str, str]) -> str | None:
    """The bearer token for Cloud Storage: $SKYPANDA_GCS_TOKEN, else the metadata server's."""
    return environ.get("SKYPANDA_GCS_TOKEN") or _METADATA.get()


# -- stage-in -------------------------------------------------------------------------------------


class _Sink:
    """Writes a file under a temporary name, counting size and SHA-256; renamed by `done`."""

    def __init__(self, dest: Path, should_stop: ShouldStop) -> None:
        self.dest = dest
        self.part = dest.with_name(dest.name + PART_SUFFIX)
        self._should_stop = should_stop
        self._file: BinaryIO = self.part.open("wb")
        self.size = 0
        self._digest = hashlib.sha256()

    def copy_from(self, stream: Any) -> None:
        while True:
            code = self._should_stop()
            if code is not None:
                raise Stopped(code)
            chunk = stream.read(CHUNK_BYTES)
            if not chunk:
                return
            self._file.write(chunk)
            self._digest.update(chunk)
            self.size += len(chunk)

    def done(self) -> Staged:
        self._file.close()
        os.replace(self.part, self.dest)
        return Staged(self.dest.name, self.size, self._digest.hexdigest())

    def discard(self) -> None:
        self._file.close()
        self.part.unlink(missing_ok=True)


def _copy_file(source: Source, sink: _Sink, user: PayloadUser | None) -> None:
    try:
        with open(source.location, "rb") if user is None else read_as(source.location, user) as f:
            sink.copy_from(f)
    except IsADirectoryError as e:
        raise StagingError(f"{source.url}: is a directory, not a file") from e
    except OSError as e:
        raise StagingError(f"{source.url}: {e.strerror or e}") from e


def _http_request(source: Source, environ: dict[str, str]) -> urllib.request.Request:
    if source.scheme != "gs":
        return urllib.request.Request(source.location)
    base, emulator = gcs_base(environ)
    headers = {}
    token = None if emulator else gcs_token(environ)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return urllib.request.Request(
        gcs_media_url(source.bucket, source.location, base), headers=headers
    )


def _download(source: Source, sink: _Sink, environ: dict[str, str]) -> None:
    """One HTTP GET into `sink`. Raises StagingError, with `retryable` set on the error
    (connection failures, 429, 5xx)."""
    request = _http_request(source, environ)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            sink.copy_from(response)
    except urllib.error.HTTPError as e:
        e.close()  # it holds the connection
        denied = e.code in (401, 403) and source.scheme == "gs"
        anonymous = denied and not request.has_header("Authorization")
        hint = " (no Cloud Storage token: set SKYPANDA_GCS_TOKEN)" if anonymous else ""
        retry = e.code == 429 or e.code >= 500
        raise StagingError(f"{source.url}: HTTP {e.code} {e.reason}{hint}", retryable=retry) from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", None) or e
        raise StagingError(f"{source.url}: cannot fetch: {reason}", retryable=True) from e


def fetch(
    source: Source,
    dest: Path,
    *,
    should_stop: ShouldStop,
    environ: dict[str, str] | None = None,
    tries: int = FETCH_TRIES,
    user: PayloadUser | None = None,
) -> Staged:
    """Fetch one input to `dest`, whole or not at all; a file:// one read as `user` if given.

    Raises:
        StagingError: it could not be fetched (after the retries, for HTTP).
        Stopped: `should_stop` said so.
    """
    env = dict(os.environ) if environ is None else environ
    for attempt in range(1, tries + 1):
        sink = _Sink(dest, should_stop)
        try:
            if source.scheme == "file":
                _copy_file(source, sink, user)
            else:
                _download(source, sink, env)
            return sink.done()
        except StagingError as e:
            sink.discard()
            if attempt >= tries or not e.retryable:
                raise
        except BaseException:
            sink.discard()
            raise
        _sleep(backoff_s(attempt), should_stop)
    raise AssertionError("unreachable")  # pragma: no cover


def _sleep(seconds: float, should_stop: ShouldStop) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        code = should_stop()
        if code is not None:
            raise Stopped(code)
        time.sleep(min(0.1, max(deadline - time.monotonic(), 0)))


def stage_in(
    inputs: Sequence[str],
    workdir: Path,
    *,
    should_stop: ShouldStop,
    note: Callable[[str], None],
    environ: dict[str, str] | None = None,
    user: PayloadUser | None = None,
) -> list[Staged]:
    """Fetch every input into `workdir` (created if missing), in order; `note` gets one line
    per file (name, size, SHA-256) for the job's log. With `user` (the payload user), file://
    inputs are read with its rights, not the pilot's.

    Raises:
        StagingError: an input is not a supported URL, two land under one name, or one could
            not be fetched; nothing after it is fetched.
        Stopped: `should_stop` said so.
    """
    sources = [parse_source(url) for url in inputs]
    seen: dict[str, str] = {}
    for s in sources:
        if s.name in seen:
            raise StagingError(
                f"inputs {seen[s.name]} and {s.url} would both be staged as {s.name}"
            )
        seen[s.name] = s.url
    workdir.mkdir(parents=True, exist_ok=True)
    staged = []
    for source in sources:
        started = time.monotonic()
        done = fetch(
            source, workdir / source.name, should_stop=should_stop, environ=environ, user=user
        )
        note(
            f"stage-in {source.url} -> {done.name}: {done.size} bytes, sha256 {done.sha256} "
            f"({time.monotonic() - started:.2f} s)"
        )
        staged.append(done)
    return staged


# -- stage-out ------------------------------------------------------------------------------------


class _HashingReader:
    """A file read by http.client while sending, counting size and SHA-256 on the way."""

    def __init__(self, f: BinaryIO, should_stop: ShouldStop) -> None:
        self._f = f
        self._should_stop = should_stop
        self.size = 0
        self.digest = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        code = self._should_stop()
        if code is not None:
            raise Stopped(code)
        data = self._f.read(n)
        self.size += len(data)
        self.digest.update(data)
        return data


@dataclass(frozen=True)
class Uploader:
    """Where and as whom a pilot uploads a job's outputs (`outage`: see `Uploader._wait`)."""

    server: str
    token: str | None
    pilot_id: str
    timeout_s: float = TIMEOUT_S
    outage: Outage | None = None

    def url(self, job_id: str, attempt: int, name: str) -> str:
        path = (
            f"/v1/jobs/{urllib.parse.quote(job_id, safe='')}/outputs/"
            f"{urllib.parse.quote(name, safe='/')}"
        )
        query = urllib.parse.urlencode({"attempt": attempt, "pilot": self.pilot_id})
        return f"{self.server.rstrip('/')}{path}?{query}"

    def upload(
        self,
        job_id: str,
        attempt: int,
        name: str,
        path: Path,
        should_stop: ShouldStop,
        *,
        root: Path | None = None,
    ) -> Staged:
        """Send one output; check the server stored what was sent.

        With `root` (the job's directory) the file is opened only if it is the job's and
        inside it (see `sandbox.open_inside`).

        Raises:
            StagingError: the file could not be read, the server refused or could not be
                reached (past the outage budget), or it counted other bytes than were sent.
            Stopped: `should_stop` said so.
        """
        headers = {"Content-Type": "application/octet-stream"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        while True:
            try:
                with path.open("rb") if root is None else open_inside(path, root) as f:
                    headers["Content-Length"] = str(os.fstat(f.fileno()).st_size)
                    reader = _HashingReader(f, should_stop)
                    request = urllib.request.Request(
                        self.url(job_id, attempt, name), data=reader, headers=headers, method="PUT"
                    )
                    with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                        answer = json.loads(response.read().decode("utf-8"))
                break
            except urllib.error.HTTPError as e:
                raise StagingError(f"output {name}: the server refused it: {_message(e)}") from e
            except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
                reason = getattr(e, "reason", None) or e
                # Refused: nothing was sent, so trying again cannot store the output twice.
                if isinstance(reason, ConnectionRefusedError) and self._wait(e, should_stop):
                    continue
                raise StagingError(f"output {name}: upload failed: {reason}") from e
        sent = Staged(name, reader.size, reader.digest.hexdigest())
        if not isinstance(answer, dict) or (answer.get("size"), answer.get("sha256")) != (
            sent.size,
            sent.sha256,
        ):
            raise StagingError(f"output {name}: the server stored other bytes than were sent")
        return Staged(name, sent.size, sent.sha256, str(answer.get("uri", "")))

    def _wait(self, refused: Exception, should_stop: ShouldStop) -> bool:
        """Wait for a server that refused the connection (`outage`): True to try again."""
        if self.outage is None or not self.outage.wait(refused, lambda: should_stop() is not None):
            code = should_stop()
            if code is not None:
                raise Stopped(code) from refused
            return False
        return True


def _message(e: urllib.error.HTTPError) -> str:
    """The server's JSON message of an error answer (closing the connection it holds)."""
    try:
        body = json.loads(e.read().decode("utf-8", errors="replace"))
        return f"HTTP {e.code}: {body.get('message') or body.get('error')}"
    except (OSError, ValueError, AttributeError, http.client.HTTPException):
        return f"HTTP {e.code} {e.reason}"
    finally:
        e.close()


def stage_out(
    uploader: Uploader,
    job_id: str,
    attempt: int,
    workdir: Path,
    patterns: Sequence[str],
    *,
    exclude: Iterable[str],
    should_stop: ShouldStop,
    note: Callable[[str], None],
) -> list[Staged]:
    """Upload every file matching `patterns` (none matching is not an error); `note` gets one
    line per file for the job's log.

    Raises:
        StagingError: a bad pattern, too many files, or an upload failed; the rest is not sent.
        Stopped: `should_stop` said so.
    """
    matches = match_outputs(workdir, patterns, exclude)
    if len(matches) > MAX_OUTPUT_FILES:
        raise StagingError(
            f"{len(matches)} files match the output patterns; at most {MAX_OUTPUT_FILES}"
        )
    if not matches:
        note(f"stage-out: no file matches {', '.join(patterns)}")
    out = []
    for name, path in matches:
        started = time.monotonic()
        done = uploader.upload(job_id, attempt, name, path, should_stop, root=workdir)
        note(
            f"stage-out {name} -> {done.uri}: {done.size} bytes, sha256 {done.sha256} "
            f"({time.monotonic() - started:.2f} s)"
        )
        out.append(done)
    return out


def output_records(staged: Iterable[Staged]) -> list[dict[str, Any]]:
    """Outputs as the job's final report lists them."""
    return [{"name": s.name, "uri": s.uri, "size": s.size, "sha256": s.sha256} for s in staged]


__all__ = [
    "SCHEMES",
    "Source",
    "Staged",
    "StagingError",
    "Stopped",
    "Uploader",
    "check_pattern",
    "fetch",
    "gcs_base",
    "gcs_media_url",
    "gcs_token",
    "local_name",
    "match_outputs",
    "output_records",
    "parse_source",
    "stage_in",
    "stage_out",
]
