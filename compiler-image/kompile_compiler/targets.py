"""From a HardwareTarget (or an inline platform) to what the compiler builds for.

Backends sit behind one small interface: a new one is one class in `BACKENDS`.
"""

from __future__ import annotations

import platform
import re
import shutil
from dataclasses import dataclass
from functools import cache

from kompile.api.hardwaretarget import Accelerator, Arch, Backend, HardwareTargetSpec, TargetPlatform
from kompile.api.result import NamedTarget
from kompile_compiler.report import CompileError

TRIPLES = {Arch.X86_64: "x86_64-linux-gnu", Arch.ARM64: "aarch64-linux-gnu"}
MACHINES = {"x86_64": Arch.X86_64, "amd64": Arch.X86_64, "aarch64": Arch.ARM64, "arm64": Arch.ARM64}
# LLVM CPU features that are instruction sets (the rest are tuning hints such as fast-gather).
ISA_FEATURE = re.compile(r"^(avx|amx|sse|ssse|fma|f16c|bmi|aes|sha|vaes|vpclmul|gfni|movbe|popcnt|lzcnt|adx)")


@dataclass(frozen=True)
class CompileTarget:
    name: str
    backend: Backend
    tvm: dict | None  # the dictionary tvm.target.Target takes

    @property
    def arch(self) -> Arch:
        triple = (self.tvm or {}).get("mtriple") or ((self.tvm or {}).get("host") or {}).get("mtriple")
        if triple:
            return MACHINES.get(triple.split("-")[0], Arch.X86_64)
        return host_arch()


def host_arch() -> Arch:
    return MACHINES.get(platform.machine().lower(), Arch.X86_64)


def resolve(target: NamedTarget | None, inline: TargetPlatform | None) -> CompileTarget:
    if target is not None:
        return from_hardware_target(target.name, target.spec)
    assert inline is not None
    name = inline.name
    if inline.accelerator is Accelerator.NEURON:
        return CompileTarget(name, Backend.NEURON, None)
    if inline.accelerator is Accelerator.NVIDIA:
        raise CompileError(
            "UnsupportedTarget",
            "an inline nvidia platform does not say which GPU architecture; name a HardwareTarget with tvm.arch "
            "(e.g. sm_80) as targetDevice",
        )
    return CompileTarget(name, Backend.TVM, {"kind": "llvm", "mtriple": TRIPLES[inline.arch]})


def from_hardware_target(name: str, spec: HardwareTargetSpec) -> CompileTarget:
    tvm = spec.tvm.tvm_dict() if spec.tvm else None
    if tvm is not None and tvm["kind"] == "llvm" and "mtriple" not in tvm:
        tvm["mtriple"] = TRIPLES[spec.platform.arch]
    return CompileTarget(name, spec.backend, tvm)


def host_target() -> CompileTarget:
    """The machine this runs on, for local compiles (`kompile compile` without a target)."""
    mcpu = host_cpu()
    tvm_target = {"kind": "llvm", "mtriple": TRIPLES[host_arch()], "mcpu": mcpu}
    # A virtual machine can hide features its CPU model has (AMX on an Emerald Rapids VM), or
    # name an older model than the CPU it runs on (Rocket Lake for a CPU with AMX and
    # AVX512-BF16): LLVM names the model from its number, so the features /proc/cpuinfo lacks
    # are switched off, and those the CPU has beyond the model's switched on.
    mattr = [f"-{feature}" for feature in _lacking(isa_features(mcpu))]
    mattr += [f"+{feature}" for feature in _beyond(mcpu)]
    if mattr:
        tvm_target["mattr"] = mattr
    return CompileTarget("host", Backend.TVM, tvm_target)


def _beyond(mcpu: str) -> list[str]:
    """The instruction sets this CPU has (as LLVM reads them from CPUID, and /proc/cpuinfo
    lists, so the kernel supports them too) that the `mcpu` model has not."""
    import tvm_ffi

    try:
        host = tvm_ffi.get_global_func("tvm.codegen.llvm.GetHostCPUFeatures")()
    except Exception:  # noqa: BLE001 - a TVM without LLVM: the model's features alone
        return []
    flags = host_cpu_flags()
    on = {str(f) for f, enabled in host.items() if enabled and ISA_FEATURE.match(str(f))}
    return sorted(f for f in on - isa_features(mcpu) if _norm(f) in flags)


@cache
def isa_features(mcpu: str, mattr: tuple[str, ...] = ()) -> frozenset[str]:
    """The instruction sets of CPU model `mcpu`, with `mattr`'s switched on (+) and off (-) as
    LLVM does it (switching AVX-512F off switches off every AVX-512 set with it)."""
    import tvm
    from tvm.target import codegen

    # No mcpu: LLVM's baseline CPU of the host's architecture, as a compile without one gets.
    target = {"kind": "llvm", **({"mcpu": mcpu} if mcpu else {}), **({"mattr": list(mattr)} if mattr else {})}
    try:
        features = codegen.llvm_get_cpu_features(tvm.target.Target(target))
    except Exception:  # noqa: BLE001 - not a CPU LLVM knows
        return frozenset()
    return frozenset(str(f) for f in features if ISA_FEATURE.match(str(f)))


def features_needed(target: CompileTarget) -> frozenset[str]:
    """The instruction sets an LLVM CPU target's code may use: its model's, with its `mattr`
    switched on and off by LLVM itself, implications included (`-avx512f` takes every AVX-512
    set with it; a feature LLVM does not know is ignored by it, so no code can need it)."""
    tvm_target = target.tvm or {}
    return isa_features(tvm_target.get("mcpu") or "", tuple(tvm_target.get("mattr") or ()))


def _lacking(features: set[str]) -> list[str]:
    return sorted(f for f in features if _norm(f) not in host_cpu_flags())


@cache
def host_cpu() -> str:
    """LLVM's name for this machine's CPU model (`emeraldrapids`, `znver4`)."""
    from tvm.target import codegen

    return str(codegen.llvm_get_system_cpu())


def host_cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(_norm(flag) for flag in line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


# LLVM's feature name -> the kernel's /proc/cpuinfo flag, where they differ.
CPUINFO_NAMES = {"sse3": "pni", "bmi": "bmi1", "lzcnt": "abm", "sha": "shani"}


def _norm(feature: str) -> str:
    name = re.sub(r"[._-]", "", feature.lower())
    return CPUINFO_NAMES.get(name, name)


def why_not_runnable_here(target: CompileTarget) -> str | None:
    """None when the artifact can run on this machine's CPU; otherwise the reason it cannot."""
    if target.backend is not Backend.TVM or not target.tvm or target.tvm["kind"] != "llvm":
        return f"target {target.name} is not this machine's CPU"
    if target.arch is not host_arch():
        return f"target {target.name} is {target.arch.value}, this machine is {host_arch().value}"
    missing = _lacking(features_needed(target))
    if missing:
        return f"target {target.name} needs {', '.join(missing)}, which this CPU lacks"
    return None


class NeuronBackend:
    """AWS Neuron: runs neuronx-cc where the compiler image carries it."""

    @staticmethod
    def check() -> None:
        if shutil.which("neuronx-cc") is None:
            raise CompileError(
                "BackendUnavailable",
                "the neuron backend needs neuronx-cc (AWS Neuron SDK), which this compiler image does not include",
            )
        raise CompileError("BackendUnavailable", "neuronx-cc is installed, but driving it is not implemented yet")


class TvmBackend:
    @staticmethod
    def check() -> None:
        import tvm  # noqa: F401  (the image's one hard dependency)


BACKENDS = {Backend.TVM: TvmBackend, Backend.NEURON: NeuronBackend}
