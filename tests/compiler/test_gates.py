"""The parity gate and the can-it-run-here check, on their own."""

import numpy as np
import pytest

from kompile.api import Precision
from kompile.api.hardwaretarget import HardwareTargetSpec
from kompile_compiler.report import CompileError
from kompile_compiler.targets import (
    features_needed,
    from_hardware_target,
    host_cpu_flags,
    host_target,
    why_not_runnable_here,
)
from kompile_compiler.validation import compare


def test_parity_gate_fails_with_the_numbers():
    reference = [np.linspace(-1, 1, 100, dtype=np.float32).reshape(10, 10)]
    close = [reference[0] + 1e-6]
    assert compare(["y"], close, reference, Precision.FP32, "onnxruntime").max_abs_error < 1e-5
    off = [reference[0].copy()]
    off[0][3, 3] += 0.25
    with pytest.raises(CompileError) as err:
        compare(["y"], off, reference, Precision.FP32, "onnxruntime")
    assert err.value.reason == "AccuracyCheckFailed"
    assert "output 'y' differs from onnxruntime by up to 0.25" in err.value.detail
    with pytest.raises(CompileError, match="has shape"):
        compare(["y"], [reference[0][:5]], reference, Precision.FP32, "onnxruntime")
    broken = [reference[0].copy()]
    broken[0][0, 0] = np.nan
    with pytest.raises(CompileError, match="onnxruntime's own output 'y' is not finite"):
        compare(["y"], reference, broken, Precision.FP32, "onnxruntime")


def cpu_target(mcpu: str, arch: str = "x86_64", triple: str = "x86_64-linux-gnu", mattr: list[str] | None = None):
    tvm = {"kind": "llvm", "mcpu": mcpu, "mtriple": triple, **({"mattr": mattr} if mattr else {})}
    spec = HardwareTargetSpec.model_validate({"platform": {"arch": arch}, "tvm": tvm})
    return from_hardware_target(mcpu, spec)


def test_this_machine_runs_its_own_code():
    assert why_not_runnable_here(host_target()) is None


def test_avx512_code_runs_only_where_the_cpu_has_it():
    reason = why_not_runnable_here(cpu_target("skylake-avx512"))
    if "avx512f" in host_cpu_flags():
        assert reason is None
    else:
        assert reason is not None and "avx512f" in reason


def test_a_targets_mattr_counts_as_llvm_applies_it():
    # Switching AVX-512F off switches off the AVX-512 sets built on it: that code runs on AVX2.
    without = features_needed(cpu_target("skylake-avx512", mattr=["-avx512f"]))
    assert "avx2" in without and not {f for f in without if f.startswith("avx512")}
    # Switching it on brings what it implies: such code may use AVX2 and FMA too.
    assert {"avx512f", "avx2", "fma"} <= features_needed(cpu_target("x86-64", mattr=["+avx512f"]))
    # LLVM ignores a feature it does not know, so no code needs it.
    assert features_needed(cpu_target("x86-64", mattr=["+notafeature"])) == features_needed(cpu_target("x86-64"))
    if "avx2" in host_cpu_flags():
        assert why_not_runnable_here(cpu_target("skylake-avx512", mattr=["-avx512f"])) is None


def test_other_architectures_never_run_here():
    assert "arm64" in why_not_runnable_here(cpu_target("neoverse-v1", "arm64", "aarch64-linux-gnu"))


def test_every_framework_is_compiled_or_refused_with_a_reason():
    from kompile.api import Framework
    from kompile_compiler.frontends import NOT_YET

    assert set(NOT_YET) | {Framework.ONNX, Framework.PYTORCH, Framework.XGBOOST} == set(Framework)
    assert all("ONNX" in why for why in NOT_YET.values())


def test_the_compiler_names_an_inline_platform_as_the_operator_does():
    from kompile.api.hardwaretarget import TargetPlatform
    from kompile_compiler.targets import resolve

    platform = TargetPlatform(arch="x86_64")
    assert resolve(None, platform).name == platform.name == "linux-x86-64"
