"""prun's sandbox upload (`file_server/*`): prun tars its working directory and uploads it
before it submits, even with `--noBuild`; JEDI's runGen unpacks it in each job.

skypanda cannot ship a sandbox to its jobs yet, so an upload is checked and not kept: an
empty sandbox (prun run from an empty directory) is taken, as there is nothing to ship; one
holding files is refused, naming them, so prun stops there with that message instead of
running jobs that would miss the files.
"""

from __future__ import annotations

import io
import tarfile
import zlib

from flask import Blueprint, Response, jsonify, request

from skypanda.api.panda.mapping import PandaInputError

MAX_SANDBOX_BYTES = 16 * 1024 * 1024
"""The most an uploaded sandbox may hold, compressed or not (prun's own limit is 768 MB)."""


def routes(bp: Blueprint) -> None:
    """`file_server/validate_cache_file` and `file_server/upload_cache_file` on `bp`."""

    @bp.post("/file_server/validate_cache_file")
    def validate_cache_file() -> Response:
        # Never "FOUND:...": no sandbox is kept, so there is none to reuse
        return jsonify({"success": True, "message": "", "data": None})

    @bp.post("/file_server/upload_cache_file")
    def upload_cache_file() -> Response:
        if (request.content_length or 0) > MAX_SANDBOX_BYTES + 64 * 1024:
            raise PandaInputError(f"a sandbox is limited to {MAX_SANDBOX_BYTES:,} bytes",
                                  field="file")  # fmt: skip
        upload = request.files.get("file")
        if upload is None:
            raise PandaInputError("upload_cache_file takes one file, as the form field 'file'",
                                  field="file")  # fmt: skip
        files = sandbox_files(upload.read(MAX_SANDBOX_BYTES + 1))
        if files:
            more = f" and {len(files) - 3} more" if len(files) > 3 else ""
            raise PandaInputError(
                f"skypanda cannot ship prun's sandbox to jobs yet, and this one holds "
                f"{len(files)} files ({', '.join(files[:3])}{more}): run prun from an empty "
                "directory, and give jobs their files another way (pfnList)",
                field="file",
            )
        return jsonify({"success": True, "message": "sandbox taken (empty)", "data": None})


def sandbox_files(raw: bytes) -> list[str]:
    """The names of the files (not directories) a sandbox (a tar, gzipped or not) holds.

    Raises:
        PandaInputError: over MAX_SANDBOX_BYTES (compressed or not), or not a tar.
    """
    if len(raw) > MAX_SANDBOX_BYTES:
        raise PandaInputError(f"a sandbox is limited to {MAX_SANDBOX_BYTES:,} bytes", field="file")
    if raw[:2] == b"\x1f\x8b":
        d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            raw = d.decompress(raw, MAX_SANDBOX_BYTES + 1)
        except zlib.error as e:
            raise PandaInputError(f"the sandbox is not a gzipped tar: {e}", field="file") from e
        if len(raw) > MAX_SANDBOX_BYTES or d.unconsumed_tail:
            raise PandaInputError(f"a sandbox is limited to {MAX_SANDBOX_BYTES:,} bytes "
                                  "uncompressed", field="file")  # fmt: skip
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            return [m.name for m in tar.getmembers() if not m.isdir()]
    except tarfile.TarError as e:
        raise PandaInputError(f"the sandbox is not a tar file: {e}", field="file") from e
