"""Artifacts for hardware this machine is not: ARM64 (cross-compiled) and NVIDIA GPUs.

They cannot run here, so they are checked for what they are; the parity check is
recorded as skipped, with the reason, in their manifest.
"""

import pytest

from kompile.api.hardwaretarget import Arch, HardwareTargetSpec
from kompile_compiler.targets import from_hardware_target, host_arch
from tests.compiler.models import compile_onnx
from tests.compiler.test_compile_onnx import mlp

EM_X86_64, EM_AARCH64 = 62, 183


def elf_machine(path) -> int:
    head = path.read_bytes()[:20]
    assert head[:4] == b"\x7fELF", "not an ELF file"
    return int.from_bytes(head[18:20], "little")


def compile_for(tmp_path, spec: dict):
    target = from_hardware_target("t", HardwareTargetSpec.model_validate(spec))
    out = tmp_path / "artifact"
    _, manifest = compile_onnx(
        mlp(tmp_path / "mlp.onnx"), {"features": [2, 16]}, tmp_path / "work", target=target, output_dir=out
    )
    return out / "model.so", manifest


def test_arm64_artifact_is_an_aarch64_library(tmp_path):
    library, manifest = compile_for(
        tmp_path,
        {
            "platform": {"arch": "arm64"},
            "tvm": {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "neoverse-v1", "mattr": ["+neon"]},
        },
    )
    assert elf_machine(library) == EM_AARCH64
    if host_arch() is Arch.ARM64:
        assert manifest["parity"]["maxAbsError"] <= 1e-4  # on an ARM64 machine it runs, and is checked
    else:
        assert manifest["parity"] == {"skipped": f"target t is arm64, this machine is {host_arch().value}"}
    assert manifest["target"]["tvm"]["mtriple"] == "aarch64-linux-gnu"


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_cuda_artifact_carries_gpu_kernels(tmp_path, arch):
    library, manifest = compile_for(
        tmp_path,
        {
            "platform": {"arch": "x86_64", "accelerator": "nvidia"},
            "tvm": {"kind": "cuda", "arch": arch, "host": {"mtriple": "x86_64-linux-gnu"}},
        },
    )
    assert elf_machine(library) == EM_X86_64  # the host side; the kernels ride inside it
    assert b"__global__" in library.read_bytes() or b".target " + arch.encode() in library.read_bytes()
    assert manifest["parity"] == {"skipped": "target t is not this machine's CPU"}
    assert manifest["target"]["tvm"] == {
        "kind": "cuda",
        "arch": arch,
        "host": {"kind": "llvm", "mtriple": "x86_64-linux-gnu"},
    }
