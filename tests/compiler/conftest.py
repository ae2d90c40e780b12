"""Compiler tests need TVM (the `compiler` extra) and, for the pod's path, a real S3 server
(the `s3` fixture from tests/s3server.py)."""

from __future__ import annotations

from tests.compiler.deps import need

need("tvm")
