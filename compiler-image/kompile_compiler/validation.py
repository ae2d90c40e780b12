"""The parity gate: the compiled model against the framework's own runtime, same inputs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kompile.api import Precision
from kompile.api.common import TensorSpec
from kompile.loadgen.payloads import PayloadError, npz_feeds, random_feeds
from kompile_compiler.report import CompileError

# Allowed |compiled - reference| <= atol + rtol * |reference|, by precision.
TOLERANCE = {
    Precision.FP32: (1e-4, 1e-3),
    Precision.FP16: (1e-2, 1e-2),
    Precision.BF16: (5e-2, 5e-2),
    Precision.INT8: (1e-1, 1e-1),
}


def sample_inputs(specs: list[TensorSpec], seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs of the declared shapes (the load generator's own random payloads)."""
    return random_feeds(specs, count=1, seed=seed)[0]


def load_samples(path, specs: list[TensorSpec]) -> list[dict[str, np.ndarray]]:
    """The user's sample inputs (an .npz named like the inputs), as one feed per sample."""
    try:
        return npz_feeds(path, specs)
    except PayloadError as err:
        raise CompileError("InvalidSampleData", str(err)) from None


@dataclass
class Parity:
    max_abs_error: float
    max_rel_error: float
    atol: float
    rtol: float
    reference: str
    samples: int = 1
    inputs: str = "random"

    def wire(self) -> dict:
        return {
            "maxAbsError": self.max_abs_error,
            "maxRelError": self.max_rel_error,
            "atol": self.atol,
            "rtol": self.rtol,
            "reference": self.reference,
            "samples": self.samples,
            "inputs": self.inputs,
        }

    def worst(self, other: Parity) -> Parity:
        return Parity(
            max(self.max_abs_error, other.max_abs_error),
            max(self.max_rel_error, other.max_rel_error),
            self.atol,
            self.rtol,
            self.reference,
            self.samples + other.samples,
            self.inputs,
        )


def compare(
    names: list[str], compiled: list[np.ndarray], reference: list[np.ndarray], precision: Precision, reference_name: str
) -> Parity:
    atol, rtol = TOLERANCE[precision]
    worst_abs = worst_rel = 0.0
    for name, got, want in zip(names, compiled, reference, strict=True):
        if got.shape != want.shape:
            raise CompileError(
                "AccuracyCheckFailed", f"output '{name}' has shape {list(got.shape)}, the reference {list(want.shape)}"
            )
        want = want.astype(np.float64)
        if not np.all(np.isfinite(want)):
            raise CompileError(
                "AccuracyCheckFailed",
                f"{reference_name}'s own output '{name}' is not finite (NaN or inf) on these inputs, so there is "
                "nothing to compare with; check the model's weights, or give sample data (inputConfig.sampleDataS3Uri)",
            )
        diff = np.abs(got.astype(np.float64) - want)
        abs_err = float(diff.max(initial=0.0))
        rel_err = float((diff / np.maximum(np.abs(want), 1e-12)).max(initial=0.0))
        worst_abs, worst_rel = max(worst_abs, abs_err), max(worst_rel, rel_err)
        if not np.all(diff <= atol + rtol * np.abs(want)):
            raise CompileError(
                "AccuracyCheckFailed",
                f"output '{name}' differs from {reference_name} by up to {abs_err:.3g} (relative {rel_err:.3g}); "
                f"{precision.value} allows {atol:g} + {rtol:g} x |reference|",
            )
    return Parity(worst_abs, worst_rel, atol, rtol, reference_name)


def percentiles_ms(
    run: Callable[[], object], repeats: int = 20, warmup: int = 2, budget_s: float = 10.0
) -> dict[str, float]:
    """Latency percentiles over `repeats` calls, or fewer (at least 3) once `budget_s` is spent:
    a slow model must not hold the compile pod for minutes to be timed."""
    for _ in range(warmup):
        run()
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < repeats and (len(times) < 3 or time.perf_counter() < deadline):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return {
        "p50Ms": float(np.percentile(times, 50)),
        "p90Ms": float(np.percentile(times, 90)),
        "p99Ms": float(np.percentile(times, 99)),
        "samples": len(times),
    }
