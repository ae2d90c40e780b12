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


def need_installed(module: str) -> None:
    """Like `need`, without importing `module` here (locust monkey-patches the standard library
    when imported, so the tests only run it in its own process)."""
    import importlib.util

    if importlib.util.find_spec(module) is not None:
        return
    if os.environ.get("KOMPILE_REQUIRE_COMPILER") == "1":
        pytest.fail(f"{module} is not installed (hack/test installs it)")
    pytest.skip(f"{module} is not installed: pip install -e '.[loadgen]'", allow_module_level=True)
