"""The README's set-up commands: what they leave on a user's machine."""

from __future__ import annotations

import shlex
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _command(marker: str) -> str:
    lines = README.read_text().splitlines()
    start = lines.index(f"<!-- {marker} -->")
    assert lines[start + 1].startswith("```")
    return lines[start + 2]


def test_parity_packages_are_not_installed_into_the_venv() -> None:
    """demucs/openunmix ship console scripts that crash without their dependencies: keep them off the venv's bin/."""
    command = _command("test-command")
    for step in command.split("&&"):
        words = shlex.split(step.strip(" {}"))
        if "requirements-parity.txt" in words:
            assert "--target" in words and words[words.index("--target") + 1] == ".parity", step
            assert "--no-deps" in words, step
            break
    else:
        raise AssertionError("the test command does not install requirements-parity.txt")


def test_both_commands_are_one_line_and_start_from_a_fresh_venv() -> None:
    for marker in ("main-command", "test-command"):
        command = _command(marker)
        assert command.startswith("python3 -m venv .venv && .venv/bin/pip install -q torch==2.13.0 && ")
