"""Specification of payloads run as another Unix user (`--payload-user`, skypanda.pilot.sandbox).

The choice of user and its refusals are checked anywhere; running payloads as `nobody` needs
root (CI runs as root) and skips elsewhere. Those tests work in a directory the payload user
can reach by its path: pytest's tmp_path lies under a directory of mode 0700.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skypanda.pilot.config import parse_args
from skypanda.pilot.runner import FLAGS_FILE, payload_env, read_flags, run_payload
from skypanda.pilot.sandbox import (
    NEEDED_CAPS,
    PayloadUser,
    hand_over,
    make_base,
    open_inside,
    resolve_payload_user,
    unreachable,
)
from skypanda.pilot.staging import StagingError, Uploader, parse_source, stage_in
from skypanda.wire.codes import ErrorCode
from skypanda.wire.groups import GROUPS_DIR
from tests.unit.test_pilot_runner import wait_gone

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the pilot is POSIX only")


def _nobody() -> PayloadUser | None:
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        return None
    return PayloadUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


NOBODY = _nobody()
as_root = pytest.mark.skipif(
    os.geteuid() != 0 or NOBODY is None,
    reason="running payloads as user nobody needs root and a nobody user (CI has both)",
)
ALL_CAPS = "CapEff:\t000001ffffffffff\n"
NO_CAPS = "CapEff:\t0000000000000000\n"
SERVER = ["--server", "http://127.0.0.1:1", "--queue", "q"]


@pytest.fixture
def reachable() -> Iterator[Path]:
    """A fresh directory of mode 0711 under /tmp: the payload user can reach what is in it."""
    path = Path(tempfile.mkdtemp(prefix="skypanda-sandbox-test-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def never() -> int | None:
    return None


def run_as(
    user: PayloadUser | None, script: str, workdir: Path, stop: Any = never
) -> tuple[Any, bytes]:
    """Run `sh -c script` as `user`; the result and the output."""
    out: list[bytes] = []
    job = {"id": "j", "attempt": 1, "command": ["sh", "-c", script], "env": {},
           "resources": {"memory_mb": 0, "walltime_s": 60}}  # fmt: skip
    result = run_payload(
        job, workdir, on_output=out.append, should_stop=stop, poll_s=0.05, kill_grace_s=1.0,
        user=user,
    )  # fmt: skip
    return result, b"".join(out)


# -- choosing the user, and the refusals -----------------------------------------------------


def test_by_default_payloads_run_as_the_pilots_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SKYPANDA_PAYLOAD_USER", raising=False)
    assert parse_args(SERVER).payload_user is None


@as_root
@pytest.mark.parametrize("how", ["name", "uid", "environment"])
def test_the_payload_user_is_named_by_a_flag_or_the_environment(
    how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert NOBODY is not None
    monkeypatch.delenv("SKYPANDA_PAYLOAD_USER", raising=False)
    if how == "environment":
        monkeypatch.setenv("SKYPANDA_PAYLOAD_USER", "nobody")
        argv = SERVER
    else:
        argv = [*SERVER, "--payload-user", "nobody" if how == "name" else str(NOBODY.uid)]
    assert parse_args(argv).payload_user == NOBODY


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no-such-user-skypanda", "payload user 'no-such-user-skypanda' does not exist"),
        ("4000000000", "payload user '4000000000' does not exist"),
        ("root", "payload user 'root' is root: that is no isolation"),
        ("0", "payload user 'root' is root: that is no isolation"),
    ],
)
def test_a_pilot_refuses_a_missing_user_or_root_with_one_line(
    spec: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args([*SERVER, "--payload-user", spec])
    assert info.value.code == 2
    assert capsys.readouterr().err == f"Error: --payload-user: {message}\n"


@pytest.mark.skipif(NOBODY is None, reason="needs a nobody user")
def test_the_pilots_own_user_is_refused() -> None:
    assert NOBODY is not None
    with pytest.raises(ValueError, match=r"'nobody' is the pilot's own user .*: no isolation"):
        resolve_payload_user("nobody", euid=NOBODY.uid, status=ALL_CAPS)


@pytest.mark.skipif(NOBODY is None, reason="needs a nobody user")
@pytest.mark.parametrize(
    ("euid", "status", "lacking"),
    [
        (1000, NO_CAPS, ", ".join(NEEDED_CAPS)),
        (1000, "", ", ".join(NEEDED_CAPS)),  # no /proc: only root may
        (0, "CapEff:\t000001ffffffff7f\n", "CAP_SETUID"),  # root, its CAP_SETUID dropped
    ],
)
def test_a_pilot_without_the_right_to_switch_users_is_refused(
    euid: int, status: str, lacking: str
) -> None:
    with pytest.raises(ValueError, match=f"cannot run payloads as 'nobody': it lacks {lacking} "):
        resolve_payload_user("nobody", euid=euid, status=status)


@pytest.mark.skipif(NOBODY is None, reason="needs a nobody user")
def test_the_capabilities_suffice_without_root() -> None:
    bits = sum(1 << bit for bit in NEEDED_CAPS.values())
    user = resolve_payload_user("nobody", euid=1000, status=f"CapEff:\t{bits:016x}\n")
    assert user == NOBODY
    assert resolve_payload_user("nobody", euid=0, status="") == NOBODY  # root, no /proc


@pytest.mark.skipif(NOBODY is None, reason="needs a nobody user")
def test_a_real_pilot_refuses_at_start_with_one_line_and_no_traceback() -> None:
    # Given a pilot command naming a user it cannot use: unknown; or, where the tests are not
    # root, nobody (no right to switch); where they are, root
    spec = "nobody" if os.geteuid() != 0 else "root"
    for user in ("no-such-user-skypanda", spec):
        # When it starts
        done = subprocess.run(
            [sys.executable, "-m", "skypanda.pilot.agent", *SERVER, "--payload-user", user],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        # Then it exits at once, saying why in one line
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.startswith("Error: --payload-user: "), done.stderr


# -- the payload's environment ---------------------------------------------------------------


def test_a_payload_of_another_user_gets_its_workdir_as_home(tmp_path: Path) -> None:
    user = PayloadUser("payload", 4242, 4242)
    env = payload_env({"id": "j", "env": {}}, tmp_path, user)
    assert (env["HOME"], env["USER"], env["LOGNAME"]) == (str(tmp_path), "payload", "payload")
    # a job may set its own
    env = payload_env({"id": "j", "env": {"HOME": "/data"}}, tmp_path, user)
    assert env["HOME"] == "/data"


# -- files the pilot reads for a payload -----------------------------------------------------


def test_the_flags_file_is_never_read_through_a_link_or_from_another_owner(
    tmp_path: Path,
) -> None:
    # Given a secret of the pilot's, and a flags file that is a link to it
    secret = tmp_path / "token"
    secret.write_text("a=secret\n")
    link = tmp_path / FLAGS_FILE
    link.symlink_to(secret)

    # When the pilot reads the flags: nothing of the secret, a note
    flags, notes = read_flags(link)
    assert flags == {} and "secret" not in " ".join(notes)
    assert notes and notes[0].startswith(f"cannot read {FLAGS_FILE}")

    # And a regular file of another owner than the payload's is ignored
    flags, notes = read_flags(secret, owner=os.geteuid() + 1)
    assert flags == {} and notes == [
        f"token is not the payload's (owner uid {os.geteuid()}): ignored"
    ]


def test_an_output_is_opened_only_inside_the_job_directory(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (tmp_path / "secret").write_text("secret")
    (work / "sub" / "data.txt").write_text("data")
    (work / "inside").symlink_to(work / "sub" / "data.txt")
    (work / "outside").symlink_to(tmp_path / "secret")
    (work / "dir").symlink_to(tmp_path)
    os.mkfifo(work / "fifo")

    with open_inside(work / "inside", work) as f:
        assert f.read() == b"data"
    for name in ("outside", "dir/secret"):
        with pytest.raises(OSError, match="leads out of the job's directory"):
            open_inside(work / name, work)
    with pytest.raises(OSError, match="not a regular file"):
        open_inside(work / "fifo", work)


# -- running payloads as nobody (root only) --------------------------------------------------


@as_root
def test_a_payload_runs_as_the_user_in_a_directory_handed_over_to_it(reachable: Path) -> None:
    assert NOBODY is not None
    # Given a job directory where the pilot staged an input (its own file, as stage-in leaves),
    # and links to a file and a directory of the pilot's
    base, _ = make_base(str(reachable / "base"), "", NOBODY)
    workdir = base / "j.1"
    (workdir / "in").mkdir(parents=True)
    (workdir / "in" / "input.txt").write_text("input\n")
    (reachable / "pilots").mkdir()
    (reachable / "pilots" / "file").write_text("the pilot's")
    (workdir / "in" / "link").symlink_to(reachable / "pilots" / "file")
    (workdir / "dirlink").symlink_to(reachable / "pilots")

    # When a payload runs as nobody, writing outputs, flags and log lines, and changing its input
    script = (
        'echo "ids $(id -u) $(id -g) $(id -G)"; echo "home $HOME"; '
        'echo done=yes >> "$SKYPANDA_FLAGS"; mkdir out && echo result > out/result.txt; '
        "echo more >> in/input.txt && echo appended"
    )
    result, out = run_as(NOBODY, script, workdir)

    # Then it ran as nobody, with no supplementary group, its workdir as HOME, and all worked
    assert (result.status, result.flags) == ("finished", {"done": "yes"}), out
    assert f"ids {NOBODY.uid} {NOBODY.gid} {NOBODY.gid}\n".encode() in out
    assert f"home {workdir}\n".encode() in out and b"appended\n" in out
    assert (workdir / "out" / "result.txt").stat().st_uid == NOBODY.uid
    # And its directory is its own, closed to others; the pilot's work root is not listable
    assert (workdir.stat().st_uid, workdir.stat().st_mode & 0o777) == (NOBODY.uid, 0o700)
    assert (workdir / "in" / "input.txt").stat().st_uid == NOBODY.uid
    # (the links were handed over, not what they point to)
    assert (workdir / "dirlink").lstat().st_uid == NOBODY.uid
    assert (reachable / "pilots").stat().st_uid == 0
    assert (reachable / "pilots" / "file").stat().st_uid == 0
    assert base.stat().st_mode & 0o777 == 0o711
    assert (base / GROUPS_DIR).stat().st_mode & 0o777 == 0o700


@as_root
def test_a_payload_cannot_read_the_pilots_files_nor_leak_them_through_its_flags(
    reachable: Path,
) -> None:
    assert NOBODY is not None
    # Given a pilot's work root with a credential of the pilot's in it, and one of its user's
    # (the work root is searchable, to reach the job directories in it: files of the pilot's
    # there are kept by their own mode)
    base, _ = make_base(str(reachable / "base"), "", NOBODY)
    (base / "token").write_text("pilot-credential\n")
    (base / "token").chmod(0o600)
    (reachable / "token").write_text("admin-credential\n")
    (reachable / "token").chmod(0o600)

    # When a payload tries to list and read them, and links its flags file to one
    script = (
        f'ls {base} || echo "no listing"; cat {base}/token || echo "no base token"; '
        f'cat {reachable}/token || echo "no admin token"; '
        f'ln -sf {reachable}/token "$SKYPANDA_FLAGS"'
    )
    result, out = run_as(NOBODY, script, base / "j.1")

    # Then it read nothing, and the pilot did not read the link for it
    assert b"no listing" in out and b"no base token" in out and b"no admin token" in out, out
    assert b"credential" not in out, out
    assert result.flags == {}


@as_root
def test_a_payload_of_another_user_is_killed_with_its_whole_group(reachable: Path) -> None:
    assert NOBODY is not None
    # Given a payload as nobody that ignores SIGTERM, with a child doing the same
    script = "trap '' TERM; sh -c \"trap '' TERM; sleep 60\" & echo $!; sleep 60"
    stop: list[int] = []
    workdir = reachable / "j.1"

    # When the pilot is told to stop it
    def should_stop() -> int | None:
        stop.append(1)
        return ErrorCode.KILLED_BY_SERVER if len(stop) > 5 else None

    result, out = run_as(NOBODY, script, workdir, should_stop)

    # Then it is killed, and so is its child
    assert (result.status, result.error_code) == ("failed", ErrorCode.KILLED_BY_SERVER)
    assert wait_gone(int(out.split()[0])), out


@as_root
def test_a_file_input_is_read_with_the_payload_users_rights(reachable: Path) -> None:
    assert NOBODY is not None
    # Given a file anyone may read, and one only the pilot may
    public, private = reachable / "public.txt", reachable / "private.txt"
    public.write_text("public")
    private.write_text("private")
    private.chmod(0o600)
    work = reachable / "work"

    # Then the first is staged, the second refused, as the payload could not read it
    staged = stage_in([public.as_uri()], work, should_stop=never, note=print, user=NOBODY)
    assert [s.size for s in staged] == [6]
    with pytest.raises(StagingError, match=r"as user nobody: cat: .*Permission denied"):
        stage_in([private.as_uri()], work, should_stop=never, note=print, user=NOBODY)
    assert not (work / "private.txt").exists()
    # (as the pilot, without a payload user, it is read: that is the pilot's own user)
    assert parse_source(private.as_uri()).scheme == "file"


@as_root
def test_an_output_that_is_not_the_payloads_is_never_uploaded(reachable: Path) -> None:
    assert NOBODY is not None
    # Given a job directory of nobody holding a file of the pilot's (a hard link, say)
    workdir = reachable / "j.1"
    workdir.mkdir()
    (workdir / "out.txt").write_text("pilot's")
    hand_over(workdir, NOBODY)
    os.chown(workdir / "out.txt", 0, 0)

    # When it is uploaded: refused before anything is sent (the server is not there)
    uploader = Uploader("http://127.0.0.1:1", None, "p")
    with pytest.raises(StagingError, match="belongs to uid 0, not to the job"):
        uploader.upload("j", 1, "out.txt", workdir / "out.txt", never, root=workdir)


@as_root
def test_a_work_root_of_another_user_is_refused_and_an_unreachable_one_noted(
    reachable: Path, tmp_path: Path
) -> None:
    assert NOBODY is not None
    theirs = reachable / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY.uid, NOBODY.gid)
    with pytest.raises(OSError, match=f"belongs to uid {NOBODY.uid}, not to the pilot"):
        make_base(str(theirs), "", NOBODY)
    # tmp_path lies under a directory of mode 0700
    assert unreachable(tmp_path / "base", NOBODY) is not None
    assert unreachable(reachable / "base", NOBODY) is None
