"""Specification of the pilot's data staging helpers (skypanda.pilot.staging).

URL parsing, local names, output globs and file fetches are tested directly; HTTP fetches
against a real http.server on 127.0.0.1. The whole path (pilot, server, blob store) is in
tests/e2e/test_pilot_data.py.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from skypanda.domain.models import staged_name
from skypanda.pilot.staging import (
    StagingError,
    Stopped,
    Uploader,
    backoff_s,
    check_pattern,
    fetch,
    gcs_base,
    gcs_media_url,
    local_name,
    match_outputs,
    parse_source,
    stage_in,
)


def never() -> int | None:
    return None


# --- URLs and local names ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "scheme", "name", "location", "bucket"),
    [
        ("file:///data/run1/hits.txt", "file", "hits.txt", "/data/run1/hits.txt", ""),
        ("file://localhost/data/a%20b.txt", "file", "a b.txt", "/data/a b.txt", ""),
        (
            "https://example.org/x/data.csv?sig=abc#frag",
            "https",
            "data.csv",
            "https://example.org/x/data.csv?sig=abc#frag",
            "",
        ),
        ("http://127.0.0.1:8000/a.txt", "http", "a.txt", "http://127.0.0.1:8000/a.txt", ""),
        ("gs://bucket/dir/obj.root", "gs", "obj.root", "dir/obj.root", "bucket"),
        ("gs://bucket/a%20b", "gs", "a%20b", "a%20b", "bucket"),  # object names are literal
        ("GS://bucket/o", "gs", "o", "o", "bucket"),
    ],
)
def test_an_input_url_is_parsed_into_where_to_fetch_it_and_its_local_name(
    url: str, scheme: str, name: str, location: str, bucket: str
) -> None:
    source = parse_source(url)
    assert (source.scheme, source.name, source.location, source.bucket) == (
        scheme,
        name,
        location,
        bucket,
    )


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("/data/x.txt", "use a file://"),
        ("s3://bucket/x", "use a file://"),
        ("ftp://host/x", "use a file://"),
        ("https://example.org/", "names no file"),
        ("file:///data/..", "names no file"),
        ("gs://bucket", "gs://bucket/object"),
        ("gs:///object", "gs://bucket/object"),
        ("file://otherhost/x.txt", "local path"),
    ],
)
def test_an_input_the_pilot_cannot_fetch_is_refused_naming_it(url: str, says: str) -> None:
    with pytest.raises(StagingError, match=says) as info:
        parse_source(url)
    assert repr(url) in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "file:///data/run1/hits.txt",
        "file://localhost/data/a%20b.txt",
        "https://example.org/x/data.csv?sig=abc",
        "http://127.0.0.1:8000/deep/er/a.txt",
        "gs://bucket/dir/obj.root",
        "gs://bucket/a%20b",
        "gs://bucket/what?not#this",
    ],
)
def test_the_pilot_stages_an_input_under_the_name_the_server_put_in_the_command(url: str) -> None:
    # The server fills {input} with staged_name; the pilot writes the file as local_name
    assert local_name(url) == staged_name(url)


@pytest.mark.parametrize("url", ["https://example.org/", "gs://bucket", "/plain/path", "s3://b/o"])
def test_the_server_and_the_pilot_refuse_the_same_urls(url: str) -> None:
    with pytest.raises(StagingError):
        local_name(url)
    with pytest.raises(ValueError):
        staged_name(url)


def test_a_gcs_object_is_fetched_through_the_json_api_with_its_name_quoted() -> None:
    assert gcs_media_url("b", "dir/a b.txt") == (
        "https://storage.googleapis.com/storage/v1/b/b/o/dir%2Fa%20b.txt?alt=media"
    )
    assert gcs_media_url("b", "o", "http://127.0.0.1:4443/") == (
        "http://127.0.0.1:4443/storage/v1/b/b/o/o?alt=media"
    )


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, ("https://storage.googleapis.com", False)),
        ({"STORAGE_EMULATOR_HOST": "http://127.0.0.1:4443"}, ("http://127.0.0.1:4443", True)),
        ({"STORAGE_EMULATOR_HOST": "127.0.0.1:4443"}, ("http://127.0.0.1:4443", True)),
    ],
)
def test_the_storage_emulator_replaces_cloud_storage_when_set(
    environ: dict[str, str], expected: tuple[str, bool]
) -> None:
    assert gcs_base(environ) == expected


def test_retries_of_a_fetch_back_off_doubling() -> None:
    assert [backoff_s(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]


def test_an_upload_url_names_the_job_attempt_pilot_and_output() -> None:
    uploader = Uploader("http://127.0.0.1:8080/", "tok", "p 1")
    assert uploader.url("t1-00ab", 2, "plots/a b.png") == (
        "http://127.0.0.1:8080/v1/jobs/t1-00ab/outputs/plots/a%20b.png?attempt=2&pilot=p+1"
    )


# --- output patterns ---------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", ["*.txt", "out/**/*.root", "result-?.json", ".hidden*"])
def test_a_relative_pattern_is_accepted(pattern: str) -> None:
    assert check_pattern(pattern) == pattern


@pytest.mark.parametrize("pattern", ["", " ", "/etc/*", "../x", "a/../../b", "a\\b"])
def test_a_pattern_that_could_leave_the_workdir_is_refused(pattern: str) -> None:
    with pytest.raises(StagingError):
        check_pattern(pattern)


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_outputs_are_the_regular_files_matching_any_pattern_sorted_by_name(tmp_path: Path) -> None:
    # Given a workdir with outputs, a staged input, hidden files, a directory, and a link out
    for name in ("b.txt", "a.txt", "in.txt", ".skypanda-flags", ".hidden.txt", "x.log"):
        touch(tmp_path / name)
    touch(tmp_path / "sub" / "deep" / "c.txt")
    (tmp_path / "dir.txt").mkdir()
    outside = touch(tmp_path.parent / f"{tmp_path.name}-secret.txt")
    os.symlink(outside, tmp_path / "link.txt")
    os.symlink(tmp_path / "a.txt", tmp_path / "inner.txt")

    # When outputs are matched by overlapping patterns, the staged input excluded
    found = match_outputs(tmp_path, ["*.txt", "**/*.txt", "a.*"], exclude=["in.txt"])

    # Then each regular file inside the workdir is listed once, by its relative name
    assert [name for name, _ in found] == ["a.txt", "b.txt", "inner.txt", "sub/deep/c.txt"]
    assert dict(found)["sub/deep/c.txt"] == tmp_path / "sub" / "deep" / "c.txt"


def test_no_match_is_no_output(tmp_path: Path) -> None:
    assert match_outputs(tmp_path, ["*.root"]) == []


def test_matching_refuses_a_bad_pattern(tmp_path: Path) -> None:
    with pytest.raises(StagingError, match="inside"):
        match_outputs(tmp_path, ["../*"])


# --- fetching ----------------------------------------------------------------------------------


def test_a_file_url_is_copied_whole_with_its_size_and_sha256(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)  # more than one chunk
    src = touch(tmp_path / "src" / "in put.bin", data)

    staged = fetch(parse_source(src.as_uri()), tmp_path / "in put.bin", should_stop=never)

    assert (tmp_path / "in put.bin").read_bytes() == data
    assert (staged.name, staged.size, staged.sha256) == (
        "in put.bin",
        len(data),
        hashlib.sha256(data).hexdigest(),
    )


@pytest.mark.parametrize("what", ["missing", "directory"])
def test_a_file_that_cannot_be_read_fails_naming_the_url_and_leaves_nothing(
    tmp_path: Path, what: str
) -> None:
    src = tmp_path / "src" / "x.txt"
    if what == "directory":
        src.mkdir(parents=True)
    dest = tmp_path / "work" / "x.txt"
    dest.parent.mkdir()
    with pytest.raises(StagingError, match=re.escape(src.as_uri())):
        fetch(parse_source(src.as_uri()), dest, should_stop=never)
    assert list(dest.parent.iterdir()) == []


def test_a_stop_request_interrupts_a_fetch_and_leaves_nothing(tmp_path: Path) -> None:
    src = touch(tmp_path / "x.txt")
    (tmp_path / "work").mkdir()
    with pytest.raises(Stopped) as info:
        fetch(parse_source(src.as_uri()), tmp_path / "work" / "x.txt", should_stop=lambda: 1144)
    assert info.value.code == 1144
    assert list((tmp_path / "work").iterdir()) == []


def test_stage_in_fetches_every_input_in_order_and_notes_its_checksum(tmp_path: Path) -> None:
    a, b = touch(tmp_path / "a.txt", b"alpha"), touch(tmp_path / "d" / "b.txt", b"beta")
    notes: list[str] = []

    staged = stage_in(
        [a.as_uri(), b.as_uri()], tmp_path / "work", should_stop=never, note=notes.append
    )

    assert [(s.name, s.size) for s in staged] == [("a.txt", 5), ("b.txt", 4)]
    assert (tmp_path / "work" / "b.txt").read_bytes() == b"beta"
    assert hashlib.sha256(b"alpha").hexdigest() in notes[0]
    assert a.as_uri() in notes[0]


def test_two_inputs_under_one_local_name_fail_before_any_fetch(tmp_path: Path) -> None:
    a, b = touch(tmp_path / "1" / "x.txt"), touch(tmp_path / "2" / "x.txt")
    with pytest.raises(StagingError, match=r"both be staged as x\.txt"):
        stage_in([a.as_uri(), b.as_uri()], tmp_path / "work", should_stop=never, note=print)
    assert not (tmp_path / "work").exists()


class _Server(http.server.ThreadingHTTPServer):
    hits: list[str]
    failures: int  # answer 503 to this many requests first


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        if self.server.failures > 0:
            self.server.failures -= 1
            self.send_error(503)
        elif self.path == "/data.txt":
            body = b"served\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def web() -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.hits, server.failures = [], 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def base(server: _Server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_an_http_input_is_downloaded(web: _Server, tmp_path: Path) -> None:
    staged = fetch(parse_source(f"{base(web)}/data.txt"), tmp_path / "data.txt", should_stop=never)
    assert (tmp_path / "data.txt").read_bytes() == b"served\n"
    assert staged.sha256 == hashlib.sha256(b"served\n").hexdigest()


def test_a_missing_http_input_fails_at_once_naming_it(web: _Server, tmp_path: Path) -> None:
    url = f"{base(web)}/nope.txt"
    with pytest.raises(StagingError, match="HTTP 404") as info:
        fetch(parse_source(url), tmp_path / "nope.txt", should_stop=never)
    assert url in str(info.value)
    assert web.hits == ["/nope.txt"]  # not retried


def test_a_server_error_is_retried(web: _Server, tmp_path: Path) -> None:
    web.failures = 1
    fetch(parse_source(f"{base(web)}/data.txt"), tmp_path / "data.txt", should_stop=never)
    assert web.hits == ["/data.txt", "/data.txt"]


def test_an_unreachable_server_fails_after_the_retries(tmp_path: Path) -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    port = server.server_address[1]
    server.server_close()  # nothing listens there now
    with pytest.raises(StagingError, match="cannot fetch"):
        fetch(
            parse_source(f"http://127.0.0.1:{port}/x"), tmp_path / "x", should_stop=never, tries=2
        )
