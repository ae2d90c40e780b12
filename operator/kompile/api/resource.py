"""How a pydantic model becomes a Kubernetes custom resource: names and columns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from kompile.api.common import GROUP, VERSION, KModel


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: Literal["string", "integer", "number", "boolean", "date"] = "string"
    description: str = ""
    priority: int = 0


@dataclass(frozen=True)
class CustomResource:
    """One CRD: its names, its spec and status models and what `kubectl get` prints."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: type[KModel]
    status: type[KModel]
    description: str
    scope: Literal["Namespaced", "Cluster"] = "Namespaced"
    columns: tuple[PrinterColumn, ...] = field(default_factory=tuple)
    categories: tuple[str, ...] = ("kompile",)

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"

    @property
    def api_version(self) -> str:
        return f"{GROUP}/{VERSION}"
