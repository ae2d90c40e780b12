"""Test dependencies of the compiler tests: skipped where absent, but a failure under hack/test."""

from __future__ import annotations

import importlib
import os

import pytest


def need(module: str):
    """Import `module`; hack/test sets KOMPILE_REQUIRE_COMPILER=1, where a missing one fails."""
    if os.environ.get("KOMPILE_REQUIRE_COMPILER") == "1":
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f"{module} is not installed: pip install -e '.[dev,compiler]'")
