"""One compile: fetch, import, compile with TVM, export, check parity and latency, package."""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from kompile.api import DataInputConfigError, Framework, Precision, parse_data_input_config
from kompile.api.common import TensorSpec
from kompile.api.compilationjob import Artifact
from kompile.api.compiledmodel import Latency
from kompile.api.result import CompilerJob, CompilerResult
from kompile.storage import ObjectStore, StorageError
from kompile_compiler import autocast, building, frontends, kernel_cache, packaging, profile, targets, trees, tuning
from kompile_compiler.frontends.onnx import datatype
from kompile_compiler.report import CompileError
from kompile_compiler.source import fetch, locate, sha256_file
from kompile_compiler.validation import compare, load_samples, percentiles_ms, sample_inputs
from kompile_runtime.artifact import MODEL_FILES, ONNX_RUNTIME, TREE_RUNTIME, TVM_RUNTIME, runner

Progress = Callable[[str], None]


def stderr_progress(message: str) -> None:
    print(f"[kompile] {message}", file=sys.stderr, flush=True)


@contextmanager
def step(progress: Progress, what: str):
    progress(f"{what} ...")
    start = time.perf_counter()
    yield
    progress(f"{what}: {time.perf_counter() - start:.1f} s")


def compile_job(
    job: CompilerJob, workdir: Path, store: ObjectStore | None = None, progress: Progress = stderr_progress
) -> tuple[CompilerResult, dict]:
    spec = job.spec
    tune = spec.tuning
    return compile_model(
        model_uri=spec.input_config.s3_uri,
        framework=spec.input_config.framework,
        data_input_config=spec.input_config.data_input_config,
        target=targets.resolve(job.target, spec.output_config.target_platform),
        precision=spec.output_config.precision,
        opt_level=spec.output_config.compiler_options.opt_level if spec.output_config.compiler_options else 3,
        workdir=workdir,
        upload_to=spec.output_config.s3_output_location,
        store=store,
        progress=progress,
        sample_data_uri=spec.input_config.sample_data_s3_uri,
        trials=tune.trials if tune else 0,
        max_trials_per_task=tune.max_trials_per_task if tune else None,
        tuning_cache=os.environ.get("KOMPILE_TUNING_CACHE") or None,
        uncompiled=spec.output_config.uncompiled,
    )


def compile_model(
    *,
    model_uri: str,
    framework: Framework,
    data_input_config,
    target: targets.CompileTarget,
    precision: Precision = Precision.FP32,
    opt_level: int = 3,
    workdir: Path,
    output_dir: Path | None = None,
    upload_to: str | None = None,
    store: ObjectStore | None = None,
    progress: Progress = stderr_progress,
    sample_data_uri: str | None = None,
    trials: int = 0,
    max_trials_per_task: int | None = None,
    tuning_cache: str | None = None,
    uncompiled: bool = False,
    winograd: bool | None = None,
    kernels: tuple[str, ...] = (),
    cold_cache: bool = False,
) -> tuple[CompilerResult, dict]:
    """Compile a model into an artifact; `uncompiled` packages the ONNX model as it is instead,
    checked and measured the same way, for onnxruntime in the serving pod (a baseline).
    `winograd` (CPU): None computes a 3x3 convolution in Winograd form where the tuning records
    time that form faster than the direct one, True wherever it can (to tune that form:
    `bench/tune.py --winograd`), False never. `kernels` (names, as `bench/kernel_times.py` lists
    them): the kernels `trials` go to, instead of the ones the compile would pick. `cold_cache`:
    tuning times each candidate with the CPU caches flushed first (`tuning.measuring`)."""
    try:
        declared = parse_data_input_config(data_input_config, framework)
    except DataInputConfigError as err:
        raise CompileError(err.reason, str(err)) from None
    if problem := _precision_problem(framework, precision):
        raise CompileError("UnsupportedPrecision", problem)
    if uncompiled and (problem := _uncompiled_problem(framework, precision, trials)):
        raise CompileError(problem[0], problem[1])
    if not uncompiled:
        targets.BACKENDS[target.backend].check()
    if trials and (problem := _tuning_problem(framework, target)):
        raise CompileError("UnsupportedTuning", problem)
    threads = int(os.environ.get("TVM_NUM_THREADS") or (target.tvm or {}).get("num-cores") or os.cpu_count() or 1)
    os.environ["TVM_NUM_THREADS"] = str(threads)  # read by TVM's thread pool when it first runs

    if store is None and (model_uri.startswith("s3://") or upload_to):
        store = ObjectStore()
    with step(progress, "fetching the model"):
        source = fetch(model_uri, workdir, store)
        source_sha = sha256_file(source)
        model_file = locate(source, framework, workdir)
    sample_path = None
    if sample_data_uri:
        with step(progress, "fetching the sample inputs"):
            try:
                sample_path = fetch(sample_data_uri, workdir / "samples", store)
            except CompileError as err:
                raise CompileError("InvalidSampleData", f"sample data: {err.detail}") from None
    versions = _versions(framework, uncompiled)
    key = packaging.content_key(
        samples=sha256_file(sample_path) if sample_path else None,
        source=source_sha,
        framework=framework.value,
        inputs=declared.wire(),
        target=target.tvm,
        backend=target.backend.value,
        precision=precision.value,
        optLevel=opt_level,
        tuning={
            "trials": trials,
            "maxTrialsPerTask": max_trials_per_task,
            **({"kernels": list(kernels)} if kernels else {}),
            **({"coldCache": True} if cold_cache else {}),
        },
        compiler=versions,
        **({"uncompiled": True} if uncompiled else {}),
    )
    if upload_to and (done := packaging.reusable(upload_to, key, store)):
        # A retried pod, or the same job applied again: the artifact is already whole.
        progress(f"an identical compile is already at {done.artifact.uri} (sha256 {done.artifact.sha256[:12]}): reused")
        return done, {"contentKey": key, "reused": True}
    with step(progress, f"importing {model_file.name} ({framework.value})"):
        imported = frontends.load(
            framework, model_file, declared, threads, quantized=precision is Precision.INT8, relax=not uncompiled
        )
    out = output_dir or workdir / "artifact"
    out.mkdir(parents=True, exist_ok=True)
    library = out / packaging.LIBRARY
    started = time.perf_counter()
    schedules = None
    if uncompiled:
        shutil.copyfile(model_file, out / MODEL_FILES[ONNX_RUNTIME])
    elif framework is Framework.XGBOOST:
        with step(progress, f"compiling the trees for {target.name} (tl2cgen)"):
            trees.build(imported.mod, library, target, threads)
    else:
        cache = tuning.RecordCache(tuning_cache, store) if tuning_cache else None
        plan = TuningPlan(
            workdir / "tuning",
            trials,
            max_trials_per_task,
            cache,
            threads,
            key,
            winograd=winograd,
            cold_cache=cold_cache,
        )
        mod = _prepare(imported.mod, target, precision, threads, progress)
        if trials and kernels:
            plan.kernels = _named_kernels(mod, kernels)
        elif trials:
            plan.kernels = _heaviest(mod, imported, target, opt_level, plan, workdir / "profile", progress)
        schedules = _compile_tvm(mod, library, target, opt_level, plan, progress)
    compile_seconds = time.perf_counter() - started

    if sample_path is not None:
        feeds = load_samples(sample_path, imported.inputs)
    else:
        feeds = [sample_inputs(imported.inputs)]
    feed = feeds[0]
    reference = [np.asarray(r) for r in imported.reference(feed)]
    output_names = imported.output_names or [f"output{i}" for i in range(len(reference))]
    outputs = [
        TensorSpec(name=n, shape=list(r.shape), datatype=datatype(r.dtype))
        for n, r in zip(output_names, reference, strict=True)
    ]
    manifest = {
        "model": {
            "framework": framework.value,
            "source": model_uri,
            "sourceSha256": source_sha,
            "file": model_file.name,
        },
        "inputs": [t.wire() for t in imported.inputs],
        "outputs": [t.wire() for t in outputs],
        "target": {"name": target.name, "backend": target.backend.value, "tvm": target.tvm},
        # How the serving pod loads the model: TVM's Relax VM, tl2cgen's tree predictor, or
        # onnxruntime for an uncompiled model.
        "runtime": ONNX_RUNTIME if uncompiled else TREE_RUNTIME if framework is Framework.XGBOOST else TVM_RUNTIME,
        "precision": precision.value,
        "contentKey": key,
        "compiler": {
            **versions,
            "optLevel": opt_level,
            "compileSeconds": round(compile_seconds, 3),
            "host": platform.machine(),
        },
    }
    if schedules is not None:
        manifest["tuning"] = schedules.wire()
    latency = None
    # onnxruntime runs an uncompiled model on whatever CPU this is.
    if (reason := None if uncompiled else targets.why_not_runnable_here(target)) is None:
        run = runner(manifest["runtime"], out, [t.name for t in imported.inputs])
        args = [feed[t.name] for t in imported.inputs]
        with step(progress, f"checking outputs against {imported.reference_name} ({len(feeds)} samples)"):
            parity = compare(output_names, run(*args), reference, precision, imported.reference_name)
            for other in feeds[1:]:
                expected = [np.asarray(r) for r in imported.reference(other)]
                got = run(*[other[t.name] for t in imported.inputs])
                parity = parity.worst(compare(output_names, got, expected, precision, imported.reference_name))
            parity.inputs = "user samples" if sample_path is not None else "random"
        with step(progress, f"measuring latency ({threads} threads)"):
            compiled_ms = percentiles_ms(lambda: run(*args))
            reference_ms = percentiles_ms(lambda: imported.reference(feed))
        latency = Latency(
            p50_ms=compiled_ms["p50Ms"],
            p90_ms=compiled_ms["p90Ms"],
            p99_ms=compiled_ms["p99Ms"],
            reference_p50_ms=reference_ms["p50Ms"],
        )
        manifest["parity"] = parity.wire()
        manifest["latency"] = {
            **latency.wire(),
            "threads": threads,
            "samples": compiled_ms["samples"],
            "speedupVsReference": round(reference_ms["p50Ms"] / compiled_ms["p50Ms"], 4),
        }
        progress(
            f"max abs error {parity.max_abs_error:.3g}; p50 {compiled_ms['p50Ms']:.2f} ms "
            f"({imported.reference_name}: {reference_ms['p50Ms']:.2f} ms)"
        )
    else:
        # A cross-compiled artifact cannot run here; the serving pod runs it on its hardware.
        manifest["parity"] = {"skipped": reason}
        progress(f"parity check skipped: {reason}")

    artifact = packaging.write_manifest(out, manifest)
    if upload_to:
        with step(progress, f"uploading to {upload_to}"):
            uri = packaging.upload(out, upload_to, store)
        artifact = Artifact(uri=uri, sha256=artifact.sha256, size_bytes=artifact.size_bytes)
    result = CompilerResult(
        artifact=artifact, precision=precision, inputs=imported.inputs, outputs=outputs, latency=latency
    )
    return result, manifest


@dataclass
class TuningPlan:
    """Where this compile's schedules come from and go to (see `tuning`)."""

    work_dir: Path
    trials: int
    max_trials_per_task: int | None
    cache: tuning.RecordCache | None
    threads: int
    name: str  # this compile's bundle name in the shared cache
    kernels: tuple[str, ...] = ()  # tune only these (by name); empty: every kernel
    winograd: bool | None = None  # see `compile_model`
    cold_cache: bool = False  # see `compile_model`


@contextmanager
def _tvm_errors():
    """TVM raises its own error kinds for code it cannot compile; the user reads them as a CompileError."""
    try:
        yield
    except CompileError:
        raise
    except Exception as err:  # noqa: BLE001
        raise CompileError("CompilationFailed", f"TVM: {str(err).strip().splitlines()[-1]}") from None


def _tvm_target(target: targets.CompileTarget, threads: int):
    import tvm

    # MetaSchedule sizes its parallel loops by num-cores; the pod's CPU count is the honest figure.
    return tvm.target.Target({"num-cores": threads, **target.tvm} if tuning.tunable(target.tvm) else target.tvm)


def _prepare(mod, target: targets.CompileTarget, precision, threads: int, progress):
    """What every build of this compile starts from: the module cast to `precision`, and for a
    CPU target laid out with its constants folded (`tuning.Prepared`, once: it is slow on big networks)."""
    with _tvm_errors():
        mod = autocast.apply(mod, precision)
        if tuning.tunable(target.tvm):
            with step(progress, "laying out and folding constants"):
                return tuning.prepare(mod, _tvm_target(target, threads))
    return mod


def _compile_tvm(mod, library: Path, target: targets.CompileTarget, opt_level, plan: TuningPlan, progress):
    """`mod` (from `_prepare`) fused, scheduled, built and exported to `library`."""
    import tvm

    report = None
    tvm_target = _tvm_target(target, plan.threads)
    with _tvm_errors():
        if tuning.tunable(target.tvm):
            key = tuning.target_key(target.tvm)
            plan.work_dir.mkdir(parents=True, exist_ok=True)
            with step(progress, f"fusing and loading tuning records for {key}"):
                narrower = tuning.narrower_keys(target.tvm)
                found = tuning.gather(plan.work_dir, key, plan.cache, progress, tuning.workloads(mod), narrower)
                progress(f"{found} records for this model's kernels")
            mod, in_winograd = tuning.choose(mod, plan.work_dir, plan.winograd)
            if in_winograd:
                progress(f"{len(in_winograd)} kinds of 3x3 convolution in Winograd form")
            what = f"tuning ({plan.trials} trials) and scheduling" if plan.trials else "scheduling"
            compiled = kernel_cache.KernelCache(plan.cache, key) if plan.cache is not None else None
            with step(progress, what):
                mod, report = tuning.schedule(
                    mod,
                    tvm_target,
                    plan.work_dir,
                    plan.trials,
                    plan.max_trials_per_task,
                    progress,
                    plan.kernels,
                    compiled,
                    plan.cold_cache,
                )
                progress(f"{report.from_records} of {report.kernels} kernels from tuning records")
            report.winograd = sorted(in_winograd)
            if plan.trials and plan.cache is not None:
                report.published = _publish(plan, key, progress)
        with tempfile.TemporaryDirectory() as objects:
            with step(progress, f"compiling for {target.name} ({target.tvm})"):
                if tuning.tunable(target.tvm):
                    with tvm.transform.PassContext(opt_level=opt_level, config=building.CONFIG):
                        executable = building.build(mod, tvm_target, plan.threads, Path(objects), compiled)
                    if compiled is not None:
                        report.compiled = compiled.wire()
                        where = plan.cache.location
                        progress(f"{compiled.reused} compiled kernels from {where}, {compiled.stored} stored there")
                        for problem in dict.fromkeys(compiled.problems):  # each once
                            progress(problem)
                else:
                    with tvm.transform.PassContext(opt_level=opt_level):
                        executable = tvm.compile(mod, target=tvm_target)
            with step(progress, f"exporting {library.name}"):
                _export(executable, library, target)
    return report


def _named_kernels(mod, names) -> tuple[str, ...]:
    """`names`, each a kernel of `mod` (a `tuning.Prepared`, in any of its forms), or an error that lists them."""
    known = {gv.name_hint for form in mod.forms() for gv, _ in tuning._kernels(form)}
    if unknown := sorted(set(names) - known):
        raise CompileError(
            "UnsupportedTuning", f"no kernel {', '.join(unknown)} to tune; the kernels: {', '.join(sorted(known))}"
        )
    return tuple(names)


def _heaviest(mod, imported, target, opt_level, plan: TuningPlan, folder: Path, progress) -> tuple[str, ...]:
    """The kernels where a budget too small for every kernel buys the most (none: tune them all),
    from their times in the model as compiled with the records there are."""
    count = tuning.kernels_to_tune(plan.trials, plan.max_trials_per_task)
    library = folder / packaging.LIBRARY
    folder.mkdir(parents=True, exist_ok=True)
    untuned = replace(plan, trials=0, kernels=())  # the same work dir: its records are gathered once
    with step(progress, f"timing every kernel, to pick the {count} to tune"):
        report = _compile_tvm(mod, library, target, opt_level, untuned, lambda _: None)
        timed = profile.kernel_times(library, sample_inputs(imported.inputs), imported.inputs)
        times = {name: t for k, t in timed.items() if (name := tuning.kernel_name(k)) not in report.untunable}
    if count >= len(times):
        return ()  # the budget reaches every kernel
    chosen = tuning.worth_tuning(times, report.settled, count)
    share = sum(times[k] for k in chosen) / max(sum(times.values()), 1e-12)
    progress(f"tuning {', '.join(chosen)}: {share:.0%} of {sum(times.values()) * 1000:.1f} ms")
    return chosen


def _publish(plan: TuningPlan, key: str, progress) -> str | None:
    """This compile's best records into the shared cache, for every later compile on this target."""
    try:
        where = plan.cache.put(key, plan.name, tuning.bundle(plan.work_dir, key, plan.cold_cache))
    except (StorageError, OSError) as err:
        progress(f"could not share the tuning records at {plan.cache.location}: {err}")
        return None
    progress(f"tuning records shared at {where}")
    return where


def _tuning_problem(framework: Framework, target: targets.CompileTarget) -> str | None:
    if framework is Framework.XGBOOST:
        return "tree models compile with tl2cgen, which has nothing to tune; set tuning.trials to 0"
    if not tuning.tunable(target.tvm):
        return f"tuning covers CPU (llvm) targets; {target.name} is scheduled by TVM's built-in rules"
    if reason := targets.why_not_runnable_here(target):
        # MetaSchedule measures every candidate on this machine's CPU.
        return f"tuning measures on the target's own CPU, and {reason}; run the job on the target's node pool"
    return None


def _uncompiled_problem(framework: Framework, precision: Precision, trials: int) -> tuple[str, str] | None:
    if framework is not Framework.ONNX:
        return "UnsupportedFramework", f"uncompiled: onnxruntime serves ONNX models, not {framework.value}"
    if precision is not Precision.FP32:
        return "UnsupportedPrecision", f"uncompiled: the model is served as it is, in FP32, not {precision.value}"
    if trials:
        return "UnsupportedTuning", "uncompiled: nothing is compiled, so nothing is tuned; set tuning.trials to 0"
    return None


def _precision_problem(framework: Framework, precision: Precision) -> str | None:
    """Why this framework cannot compile at this precision, or None where it can."""
    if framework is Framework.XGBOOST and precision is not Precision.FP32:
        return f"{precision.value}: tree models compile in FP32"
    if precision is Precision.INT8 and framework is not Framework.ONNX:
        return f"INT8: only QDQ-quantized ONNX models compile to INT8, not {framework.value}"
    return None


def _versions(framework: Framework, uncompiled: bool = False) -> dict[str, str]:
    from importlib.metadata import version

    if uncompiled:
        return {"onnxruntime": version("onnxruntime")}
    if framework is Framework.XGBOOST:
        return {"treelite": version("treelite"), "tl2cgen": version("tl2cgen")}
    import tvm

    return {"tvm": tvm.__version__, "kompile": _own_version()}


@functools.cache
def _own_version() -> str:
    """The package version and a digest of this compiler's code and shipped records: both decide
    the artifact, so a new compiler image never reuses what an older one built for the same job."""
    from importlib.metadata import version

    digest = hashlib.sha256()
    package = Path(__file__).parent
    for path in sorted(p for p in package.rglob("*") if p.suffix in (".py", ".json") and p.is_file()):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return f"{version('kompile')}+{digest.hexdigest()[:12]}"


def _export(executable, library: Path, target: targets.CompileTarget) -> None:
    options = {}
    if target.arch is not targets.host_arch():
        from tvm.support import cc

        compiler = f"{targets.TRIPLES[target.arch]}-gcc"
        if shutil.which(compiler) is None:
            raise CompileError("BackendUnavailable", f"exporting for {target.arch.value} needs {compiler}")
        options["fcompile"] = cc.cross_compiler(compiler)
    try:
        executable.export_library(str(library), **options)
    except Exception as err:  # noqa: BLE001
        raise CompileError("CompilationFailed", f"exporting the library failed: {str(err).strip()[-500:]}") from None


def _numpy(result) -> list[np.ndarray]:
    if hasattr(result, "numpy"):
        return [result.numpy()]
    return [r.numpy() for r in result]
