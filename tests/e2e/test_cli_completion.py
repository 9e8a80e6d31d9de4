"""Shell completion (click's) for bash, zsh and fish, from the installed command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_cli_up import SKYPANDA, run_cli

MARKERS = {
    "bash": "complete -o nosort -F _skypanda_completion skypanda",
    "zsh": "#compdef skypanda",
    "fish": "complete --no-files --command skypanda",
}


@pytest.mark.parametrize("shell", sorted(MARKERS))
def test_the_completion_script_is_produced_for_each_shell(shell: str, tmp_path: Path) -> None:
    # When the script is asked for, by the command or by click's variable
    by_command = run_cli(tmp_path, "completion", shell)
    env = {**os.environ, "_SKYPANDA_COMPLETE": f"{shell}_source"}
    by_variable = subprocess.run(
        [SKYPANDA], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    # Then both give the same script, for this shell, calling back `skypanda`
    assert by_command.returncode == 0, by_command.stderr
    assert by_command.stdout == by_variable.stdout
    assert MARKERS[shell] in by_command.stdout
    assert "_SKYPANDA_COMPLETE=" in by_command.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash here")
def test_bash_completes_commands_and_choices(tmp_path: Path) -> None:
    # Given bash with the script loaded (the command on PATH, as after pip install)
    script = (
        "source <(skypanda completion bash)\n"
        "COMP_WORDS=(skypanda sta); COMP_CWORD=1; _skypanda_completion skypanda\n"
        'echo "commands: ${COMPREPLY[*]}"\n'
        'COMPREPLY=(); COMP_WORDS=(skypanda up --backend "")\n'
        "COMP_CWORD=3; _skypanda_completion skypanda\n"
        'echo "backends: ${COMPREPLY[*]}"\n'
    )
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    done = subprocess.run(
        ["bash", "-c", script], env={**os.environ, "PATH": path}, capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    # Then a command prefix and an option's choices complete
    assert done.returncode == 0, done.stderr
    assert "commands: status" in done.stdout
    assert "backends: local emulators" in done.stdout
