"""The code keeps one style: ruff's lint rules and formatter (configured in pyproject.toml)."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT

SOURCES = ["operator", "compiler-image", "runtime-image", "tests", "bench"]


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff(command):
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, *SOURCES], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
