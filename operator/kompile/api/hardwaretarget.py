"""HardwareTarget: a cluster-wide catalog entry for one kind of hardware.

It says how TVM must compile for the hardware (the target), which nodes have it (the
node pool's labels and taints) and what it costs, so compilation jobs, endpoints and
recommendations can all name a target instead of repeating those details.
"""

from __future__ import annotations

import enum
from typing import Literal

from pydantic import Field, model_validator

from kompile.api.common import KModel, ObservedStatus, ResourceRequirements, Toleration
from kompile.api.resource import CustomResource, PrinterColumn


class TargetKind(enum.StrEnum):
    LLVM = "llvm"
    CUDA = "cuda"


class Backend(enum.StrEnum):
    """The compiler that produces the artifact."""

    TVM = "tvm"
    NEURON = "neuron"


class Arch(enum.StrEnum):
    """CPU architecture of the nodes, named as Neo's TargetPlatform.Arch names them (lowercase)."""

    X86_64 = "x86_64"
    ARM64 = "arm64"


class Accelerator(enum.StrEnum):
    NVIDIA = "nvidia"
    NEURON = "neuron"


class TargetPlatform(KModel):
    """Operating system, CPU architecture and accelerator (Neo's TargetPlatform)."""

    os: Literal["linux"] = "linux"
    arch: Arch
    accelerator: Accelerator | None = None

    @property
    def name(self) -> str:
        """A DNS-safe name for the platform, e.g. linux-x86-64, linux-arm64-nvidia: what a
        CompiledModel of an inline-platform job names as its target."""
        accelerator = self.accelerator.value if self.accelerator else None
        return "-".join(p for p in (self.os, self.arch.value.replace("_", "-"), accelerator) if p)


class TvmHost(KModel):
    """The host (CPU) side of a device target."""

    mtriple: str | None = Field(None, max_length=128)
    mcpu: str | None = Field(None, max_length=64)
    mattr: list[str] | None = None


class TvmTarget(KModel):
    """An Apache TVM target, the dictionary form `tvm.target.Target` takes."""

    kind: TargetKind
    mcpu: str | None = Field(None, max_length=64, description="LLVM CPU name, e.g. skylake-avx512, neoverse-v1.")
    mtriple: str | None = Field(
        None, max_length=128, description="LLVM target triple; set it to cross-compile, e.g. aarch64-linux-gnu."
    )
    mattr: list[str] | None = Field(None, description="LLVM CPU features, e.g. [+avx2, +fma].")
    arch: str | None = Field(None, pattern=r"^sm_[0-9]{2,3}a?$", description="CUDA architecture, e.g. sm_80.")
    num_cores: int | None = Field(None, ge=1, le=1024, description="Cores the compiled code may use.")
    host: TvmHost | None = Field(None, description="Host target for device (cuda) targets.")
    attrs: dict[str, str] | None = Field(None, description="Further target attributes, passed to TVM as given.")

    @model_validator(mode="after")
    def _arch_only_for_cuda(self) -> TvmTarget:
        if self.arch and self.kind is not TargetKind.CUDA:
            raise ValueError("arch is a CUDA target attribute; set kind: cuda or drop arch")
        if self.kind is TargetKind.CUDA and not self.arch:
            raise ValueError("a cuda target needs arch, e.g. sm_80")
        return self

    def tvm_dict(self) -> dict:
        """The dictionary `tvm.target.Target(...)` takes."""
        out: dict = {"kind": self.kind.value}
        for key in ("mcpu", "mtriple", "mattr", "arch"):
            if (value := getattr(self, key)) is not None:
                out[key] = value
        if self.num_cores is not None:
            out["num-cores"] = self.num_cores
        out.update(self.attrs or {})
        if self.host is not None:
            out["host"] = {"kind": "llvm", **self.host.model_dump(exclude_none=True)}
        return out


class HardwareTargetSpec(KModel):
    platform: TargetPlatform
    backend: Backend = Backend.TVM
    tvm: TvmTarget | None = Field(None, description="How TVM compiles for this hardware (backend tvm).")
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Labels of the node pool that has this hardware."
    )
    tolerations: list[Toleration] | None = Field(None, description="Tolerations for the pool's taints.")
    resources: ResourceRequirements | None = Field(
        None, description="Default resources of serving pods on this hardware."
    )
    compile_natively: bool = Field(
        False,
        description="Run compiler pods on this pool instead of anywhere (needed to tune on the hardware, "
        "and for compilers that only run there).",
    )
    instance_type: str | None = Field(None, max_length=128, description="Instance type of the pool's nodes.")
    cost_per_hour: float | None = Field(None, ge=0, description="Price of one node per hour, in your currency.")

    @model_validator(mode="after")
    def _backend_needs_its_config(self) -> HardwareTargetSpec:
        if self.backend is Backend.TVM and self.tvm is None:
            raise ValueError("backend tvm needs the tvm target (spec.tvm)")
        return self


class HardwareTargetStatus(ObservedStatus):
    """Condition Valid: the target can be compiled for."""


HARDWARE_TARGET = CustomResource(
    kind="HardwareTarget",
    plural="hardwaretargets",
    short_names=("hwt",),
    spec=HardwareTargetSpec,
    status=HardwareTargetStatus,
    scope="Cluster",
    description="A kind of hardware: how to compile for it, which nodes have it and what it costs.",
    columns=(
        PrinterColumn("Arch", ".spec.platform.arch"),
        PrinterColumn("Accelerator", ".spec.platform.accelerator"),
        PrinterColumn("Backend", ".spec.backend"),
        PrinterColumn("Instance", ".spec.instanceType"),
        PrinterColumn("Cost/h", ".spec.costPerHour", "number"),
        PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
    ),
)
