"""Pydantic validation errors as one line that names each field at fault."""

from __future__ import annotations

from pydantic import ValidationError
from pydantic.alias_generators import to_camel


def describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        path = ".".join(to_camel(str(p)) if isinstance(p, str) else f"[{p}]" for p in e["loc"]).replace(".[", "[")
        message = e["msg"].removeprefix("Value error, ")
        parts.append(f"{path}: {message}" if path else message)
    return "; ".join(parts)
