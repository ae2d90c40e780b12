"""Artifacts for hardware this machine is not: ARM64 (cross-compiled) and NVIDIA GPUs.

The compile cannot run them, so they are checked for what they are, and the parity check is
recorded as skipped, with the reason, in their manifest. The ARM64 one is then run under
qemu-user, in an aarch64 Python with TVM's aarch64 wheel (hack/lib/arm64.sh), and its
outputs compared with onnxruntime's on this machine.
"""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
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


ARM64 = {
    "platform": {"arch": "arm64"},
    "tvm": {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "neoverse-v1", "mattr": ["+neon"]},
}
# What a serving pod does with the artifact, in the aarch64 Python.
RUN_ON_ARM64 = """
import sys, numpy as np, tvm
from tvm import relax
vm = relax.VirtualMachine(tvm.runtime.load_module(sys.argv[1]), tvm.cpu())
np.save(sys.argv[3], vm["main"](tvm.runtime.tensor(np.load(sys.argv[2]))).numpy())
"""


def test_arm64_artifact_is_an_aarch64_library(tmp_path):
    library, manifest = compile_for(tmp_path, ARM64)
    assert elf_machine(library) == EM_AARCH64
    if host_arch() is Arch.ARM64:
        assert manifest["parity"]["maxAbsError"] <= 1e-4  # on an ARM64 machine it runs, and is checked
    else:
        assert manifest["parity"] == {"skipped": f"target t is arm64, this machine is {host_arch().value}"}
    assert manifest["target"]["tvm"]["mtriple"] == "aarch64-linux-gnu"


def arm64_python() -> tuple[str, Path]:
    qemu, folder = shutil.which("qemu-aarch64-static"), os.environ.get("KOMPILE_ARM64_PYTHON")
    if qemu and folder and Path(folder, "site", "tvm").is_dir():
        return qemu, Path(folder)
    if os.environ.get("KOMPILE_REQUIRE_COMPILER") == "1":
        pytest.fail("no aarch64 Python under qemu-user: hack/test sets it up (hack/lib/arm64.sh)")
    pytest.skip("set KOMPILE_ARM64_PYTHON to an aarch64 Python with TVM (hack/lib/arm64.sh) and install qemu-user")


@pytest.mark.skipif(host_arch() is Arch.ARM64, reason="on ARM64 the compile itself runs the artifact")
def test_arm64_artifact_runs_under_qemu_with_onnxruntimes_outputs(tmp_path):
    import onnxruntime as ort

    qemu, arm64 = arm64_python()
    library, _ = compile_for(tmp_path, ARM64)
    x = np.random.default_rng(5).standard_normal((2, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "run.py").write_text(RUN_ON_ARM64)
    root = arm64 / "root"
    ran = subprocess.run(
        [
            qemu,
            "-L",
            root,
            root / "usr/bin/python3.11",
            tmp_path / "run.py",
            library,
            tmp_path / "x.npy",
            tmp_path / "y",
        ],
        env={"PYTHONPATH": str(arm64 / "site"), "TVM_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    expected = ort.InferenceSession(str(tmp_path / "mlp.onnx")).run(None, {"features": x})[0]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-4, atol=1e-5)


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
