"""MetaSchedule in the compile: a real (small) tuning run, the shared cache in S3, and its refusals.

One dense layer keeps tuning to one kernel and a few trials; the point is the path (records
made, shared, found and applied by the next compile), not the speed.
"""

import json
import re

import numpy as np
import pytest

from kompile.api import Framework
from kompile.api.common import TensorSpec
from kompile.storage import S3Location
from kompile_compiler import packaging, profile, tuning
from kompile_compiler.report import CompileError
from kompile_compiler.targets import host_target
from tests.compiler import models
from tests.compiler.models import compile_onnx
from tests.compiler.test_gates import cpu_target

CACHE = "s3://kompile-artifacts/tuning-test/"


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    return models.dense(tmp_path_factory.mktemp("dense") / "dense.onnx")


@pytest.fixture(scope="module")
def tuned_compile(dense, s3, tmp_path_factory):
    """A compile that tunes (a few trials) and shares its records in the S3 cache: its manifest
    and its compiled library."""
    store, _ = s3
    work = tmp_path_factory.mktemp("tuned")
    _, manifest = compile_onnx(
        dense,
        {"x": [4, 64]},
        work,
        trials=8,
        max_trials_per_task=8,
        tuning_cache=CACHE,
        store=store,
        output_dir=work / "artifact",
    )
    return manifest, work / "artifact" / packaging.LIBRARY


@pytest.fixture(scope="module")
def tuned(tuned_compile):
    return tuned_compile[0]


def test_tuning_measures_and_shares_its_records(tuned, s3):
    store, _ = s3
    report = tuned["tuning"]
    assert report["trials"] == 8 and report["tuneSeconds"] > 0
    assert report["kernelsFromRecords"] >= 1, report  # the tuned kernel carries its tuned schedule
    assert tuned["parity"]["maxAbsError"] < 1e-4
    key = tuning.target_key(host_target().tvm)
    assert report["published"].startswith(f"{CACHE}{key}/")
    bundle = json.loads(store.read(S3Location.parse(report["published"])))
    assert bundle["format"] == tuning.FORMAT and bundle["target"] == key and bundle["records"]


def test_a_tuned_kernel_reads_its_weights_repacked_once_at_compile_time(tuned_compile):
    # Tuning gives the dense layer's weight a layout of the schedule's own; the repacking is
    # split out of the kernel and done on the constant weight at compile time, so the compiled
    # model runs the one kernel per inference (renamed by the split), no repacking kernel.
    manifest, library = tuned_compile
    x = TensorSpec(name="x", shape=[4, 64])
    ran = profile.kernel_times(library, {"x": np.ones((4, 64), np.float32)}, [x])
    assert len(ran) == 1 and next(iter(ran)).endswith("_prepacked"), ran
    assert manifest["tuning"]["kernelsFromRecords"] == 1


def test_the_next_compile_takes_the_records_from_the_cache(tuned, dense, s3, tmp_path):
    store, _ = s3
    _, manifest = compile_onnx(dense, {"x": [4, 64]}, tmp_path, tuning_cache=CACHE, store=store)
    report = manifest["tuning"]
    assert report["trials"] == 0 and report["recordsAvailable"] >= 1
    assert report["kernelsFromRecords"] == tuned["tuning"]["kernelsFromRecords"]
    assert "published" not in report  # nothing tuned, nothing to share


def test_a_recompile_links_the_kernels_the_first_compile_left_in_the_cache(s3, tmp_path):
    store, _ = s3
    model = models.two_dense(tmp_path / "two_dense.onnx")
    cache = f"{CACHE}compiled-{tmp_path.name}/"  # a cache of this test's own: no other test's kernels
    _, first = compile_onnx(model, {"x": [4, 64]}, tmp_path / "first", tuning_cache=cache, store=store)
    _, again = compile_onnx(model, {"x": [4, 64]}, tmp_path / "again", tuning_cache=cache, store=store)
    stored = first["tuning"]["compiledKernels"]
    assert stored["kernelsReused"] == 0 and stored["kernelsStored"] >= 1, stored
    assert again["tuning"]["compiledKernels"] == {"kernelsReused": stored["kernelsStored"], "kernelsStored": 0}
    key = tuning.target_key(host_target().tvm)
    kept = store.list(S3Location.parse(cache).child(f"{key}/kernels"))
    assert len(kept) == stored["kernelsStored"]
    assert again["parity"]["maxAbsError"] < 1e-4  # the linked objects compute the model
    _, plain = compile_onnx(model, {"x": [4, 64]}, tmp_path / "plain")
    assert "compiledKernels" not in plain["tuning"]  # no shared cache, nothing kept


def test_a_bundle_never_carries_the_records_it_was_given(tuned, s3, tmp_path):
    # Else every job would republish the whole cache, each bundle carrying all before it.
    store, _ = s3
    key = tuning.target_key(host_target().tvm)
    assert tuning.gather(tmp_path, key, tuning.RecordCache(CACHE, store), print) >= 1
    assert json.loads(tuning.bundle(tmp_path, key))["records"] == []


def test_a_compile_loads_only_the_records_of_its_own_kernels(tmp_path):
    # The shipped records of every model share a folder; a compile needs a few of them.
    import tvm_ffi
    from tvm.s_tir import meta_schedule as ms

    key = "llvm-x86_64-linux-gnu-core-avx2"
    bundle = json.loads(sorted((tuning.SHIPPED / key).glob("*.json"))[0].read_bytes())
    wanted = json.loads(bundle["workloads"][0])[0]
    for name in ("all", "none", "one"):
        (tmp_path / name).mkdir()
    everything = tuning.gather(tmp_path / "all", key, None, print)
    assert tuning.gather(tmp_path / "none", key, None, print, wanted=set()) == 0
    found = tuning.gather(tmp_path / "one", key, None, print, wanted={wanted})
    records = ms.database.JSONDatabase(work_dir=str(tmp_path / "one")).get_all_tuning_records()
    assert 1 <= found < everything and len(records) == found
    assert {str(tvm_ffi.structural_hash(r.workload.mod)) for r in records} == {wanted}


@pytest.mark.parametrize(
    ("name", "mcpu", "precision"),
    [
        ("squeezenet", "core-avx2", "FP32"),
        ("resnet50", "core-avx2", "FP32"),
        ("resnet50", "skylake-avx512", "FP32"),
        # BF16 on vdpbf16ps: its padded classifiers are rewrites of their own
        ("squeezenet", "cooperlake", "BF16"),
        ("resnet50", "cooperlake", "BF16"),
    ],
)
def test_every_shipped_network_keeps_the_records_of_its_heavy_kernels(name, mcpu, precision, tmp_path):
    # A rewrite before layout or fusion changes the workload hash of every kernel it touches,
    # and the shipped records for those kernels silently stop applying (it happened to two
    # ResNet-50 kernels, then 30x slower). The benchmark networks, as bench/cases.py builds them.

    from kompile.api import Precision
    from kompile.api.datainput import parse_data_input_config
    from kompile_compiler import frontends
    from kompile_compiler.pipeline import _prepare

    model = models.with_random_weights(models.zoo(name))
    weights = {t.name for t in model.graph.initializer}
    data = next(i.name for i in model.graph.input if i.name not in weights)
    path = models.save(model, tmp_path / f"{name}.onnx")
    target = cpu_target(mcpu)
    declared = parse_data_input_config({data: [1, 3, 224, 224]}, Framework.ONNX)
    mod = _prepare(frontends.load(Framework.ONNX, path, declared, 1).mod, target, Precision(precision), 1, print).direct
    key = tuning.target_key(target.tvm)
    stem = name if precision == "FP32" else f"{name}-{precision.lower()}"
    shipped = set()  # the target's own records, and those of the narrower sets it also takes
    for bundle in [
        p for k in (key, *tuning.narrower_keys(target.tvm)) for p in (tuning.SHIPPED / k).glob(f"{stem}*.json")
    ]:
        if bundle.name.removeprefix(stem).startswith("."):  # stem.json, stem.2.json: not another precision's
            shipped |= {json.loads(line)[0] for line in json.loads(bundle.read_bytes())["workloads"]}
    heavy = {gv.name_hint: f for gv, f in tuning._kernels(mod) if re.match(r"fused_(conv2d|matmul)", gv.name_hint)}
    assert heavy
    # A kernel is covered by a record of either of its keys (as it is, or its weights layout-free,
    # which only the whole module tells: which of a kernel's inputs are constants).
    keys = tuning.kernel_workloads(mod)
    assert not {k for k in heavy if not set(keys[k]) & shipped}


def test_without_a_cache_the_kernels_fall_back_to_the_rules(tuned, dense, tmp_path):
    _, manifest = compile_onnx(dense, {"x": [4, 64]}, tmp_path)
    assert manifest["tuning"]["kernelsFromRecords"] == 0
    assert manifest["tuning"]["kernelsByRules"] == manifest["tuning"]["kernels"] >= 1


def test_a_damaged_bundle_in_the_cache_is_skipped(tuned, dense, s3, tmp_path):
    store, _ = s3
    key = tuning.target_key(host_target().tvm)
    store.write(S3Location.parse(CACHE).child(key).child("damaged.json"), b'{"format": "nonsense"')
    seen = []
    _, manifest = compile_onnx(dense, {"x": [4, 64]}, tmp_path, tuning_cache=CACHE, store=store, progress=seen.append)
    assert any("damaged tuning record bundle" in line for line in seen)
    assert manifest["tuning"]["kernelsFromRecords"] == tuned["tuning"]["kernelsFromRecords"]


def test_a_bundle_whose_trace_tvm_cannot_read_is_skipped_and_the_others_kept(tmp_path):
    # Bundles are merged as text and TVM parses the whole once; a record it cannot read sends
    # the merge bundle by bundle, so only the bundle that holds it is lost.
    key = "llvm-x86_64-linux-gnu-skylake-avx512"
    real = json.loads((tuning.SHIPPED / key / "squeezenet.3.json").read_bytes())
    good = {**real, "workloads": real["workloads"][:1], "records": [r for r in real["records"] if r.startswith("[0,")]}
    bad = {**real, "workloads": real["workloads"][1:2], "records": []}
    for line in real["records"]:
        if line.startswith("[1,"):
            bad["records"].append("[0," + line[3:].replace('"GetSBlock"', '"NoSuchInstruction"', 1))
    assert good["records"] and bad["records"]
    cache = tuning.RecordCache(str(tmp_path / "cache"))
    cache.put("test-key", "good", json.dumps(good).encode())
    cache.put("test-key", "bad", json.dumps(bad).encode())
    # And one whose record is not JSON at all: skipped before TVM sees it.
    cache.put("test-key", "broken", json.dumps({**good, "records": ["[0, [[[cut short"]}).encode())
    seen = []
    (tmp_path / "work").mkdir()
    assert tuning.gather(tmp_path / "work", "test-key", cache, seen.append) == len(good["records"])
    assert any("merging bundle by bundle" in line for line in seen), seen
    assert sum("skipped a damaged tuning record bundle" in line for line in seen) == 2, seen


def test_a_local_folder_serves_as_the_cache(tmp_path):
    cache = tuning.RecordCache(str(tmp_path / "cache"))
    where = cache.put("llvm-x", "one", b"{}")
    assert where.endswith("llvm-x/one.json") and cache.bundles("llvm-x") == [b"{}"]
    assert cache.bundles("llvm-y") == []


SQUEEZENET_AVX512 = tuning.SHIPPED / "llvm-x86_64-linux-gnu-skylake-avx512" / "squeezenet.3.json"


def _timed(real: dict, cpu: str, seconds: float, count: int, **fields) -> dict:
    """`real`'s first `count` workloads, with one record each measured at `seconds` on `cpu`."""
    records = []
    for line in real["records"]:
        workload, (trace, _, target, args) = json.loads(line)
        if workload < count and all(json.loads(r)[0] != workload for r in records):
            records.append(json.dumps([workload, [trace, [seconds], target, args]]))
    return {**real, "cpu": cpu, "workloads": real["workloads"][:count], "records": records, **fields}


def _best(work_dir) -> dict[str, float]:
    """The lowest time the database in `work_dir` has for each workload, by structural hash."""
    import tvm_ffi
    from tvm.s_tir import meta_schedule as ms

    database = ms.database.JSONDatabase(work_dir=str(work_dir))
    seconds = {}
    for rec in database.get_all_tuning_records():
        workload = str(tvm_ffi.structural_hash(rec.workload.mod))
        seconds[workload] = min(seconds.get(workload, 1.0), float(rec.run_secs[0]))
    return seconds


def test_records_measured_on_this_cpu_model_win_over_faster_ones_from_another(tmp_path):
    """Of two records for a kernel TVM applies the one with the lower measured time, and a time
    measured on another CPU model is no measure of this one: where this model's bundles cover a
    kernel, another model's records for it are left out; they still serve the kernels it lacks."""
    from kompile_compiler.targets import host_cpu

    real = json.loads(SQUEEZENET_AVX512.read_bytes())
    kernel, other_kernel = (json.loads(line)[0] for line in real["workloads"][:2])
    for cpu, expected in ((host_cpu(), 2e-3), ("another-model", 1e-6)):
        cache = tuning.RecordCache(str(tmp_path / cpu / "cache"))
        cache.put("test-key", "here", json.dumps(_timed(real, cpu, 2e-3, 1)).encode())
        # A CPU model no machine has: a real name would be this machine's own on that machine.
        cache.put("test-key", "there", json.dumps(_timed(real, "some-other-model", 1e-6, 2)).encode())
        (tmp_path / cpu / "work").mkdir()
        assert tuning.gather(tmp_path / cpu / "work", "test-key", cache, print) >= 2
        assert _best(tmp_path / cpu / "work") == {kernel: expected, other_kernel: 1e-6}


def test_records_timed_with_cold_caches_win_over_faster_hot_ones(tmp_path):
    """A time measured with the caches flushed is longer than one measured hot, so the two are
    not compared: where a cold-cache bundle of this CPU model covers a kernel, the hot records
    of it are left out, and they still serve the kernels it lacks."""
    from kompile_compiler.targets import host_cpu

    real = json.loads(SQUEEZENET_AVX512.read_bytes())
    kernel, other_kernel = (json.loads(line)[0] for line in real["workloads"][:2])
    for caches, expected in ((tuning.COLD, 2e-3), (None, 1e-6)):
        folder = tmp_path / str(caches)
        cache = tuning.RecordCache(str(folder / "cache"))
        marked = {"caches": caches} if caches else {}
        cache.put("test-key", "cold", json.dumps(_timed(real, host_cpu(), 2e-3, 1, **marked)).encode())
        cache.put("test-key", "hot", json.dumps(_timed(real, host_cpu(), 1e-6, 2)).encode())
        (folder / "work").mkdir(parents=True)
        assert tuning.gather(folder / "work", "test-key", cache, print) >= 2
        assert _best(folder / "work") == {kernel: expected, other_kernel: 1e-6}


def test_records_are_kept_apart_per_instruction_set():
    avx2 = tuning.target_key({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "core-avx2", "num-cores": 2})
    assert avx2 == "llvm-x86_64-linux-gnu-core-avx2"
    assert avx2 == tuning.target_key({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "core-avx2"})
    assert avx2 != tuning.target_key({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "skylake-avx512"})
    assert not tuning.tunable({"kind": "cuda", "arch": "sm_80"})


def test_a_wider_instruction_set_runs_the_records_of_the_narrower_ones():
    x86 = {"kind": "llvm", "mtriple": "x86_64-linux-gnu"}
    avx512, avx2 = "llvm-x86_64-linux-gnu-skylake-avx512", "llvm-x86_64-linux-gnu-core-avx2"
    assert tuning.narrower_keys({**x86, "mcpu": "cooperlake"})[:2] == [avx512, avx2]  # widest first
    assert tuning.narrower_keys({**x86, "mcpu": "skylake-avx512"}) == [avx2]
    assert tuning.narrower_keys({**x86, "mcpu": "core-avx2"}) == []
    assert tuning.narrower_keys({**x86, "mcpu": "cooperlake", "mattr": ["-avx512f"]}) == [avx2]  # AVX-512 off
    # A VM's host target: an older model with the sets its CPU has beyond it switched on.
    bf16 = ["+avx512bf16", "+amx-tile", "+amx-bf16"]
    assert "llvm-x86_64-linux-gnu-cooperlake" in tuning.narrower_keys({**x86, "mcpu": "rocketlake", "mattr": bf16})
    assert "llvm-x86_64-linux-gnu-cooperlake" not in tuning.narrower_keys({**x86, "mcpu": "rocketlake"})
    assert tuning.narrower_keys({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "neoverse-v1"}) == []


def test_narrower_records_fill_in_only_the_kernels_the_targets_own_lack(tmp_path, monkeypatch):
    """A target's own records for a kernel are the ones tuned for its instructions: the
    narrower set's records for that kernel stay out, those for other kernels come in."""
    real = json.loads((tuning.SHIPPED / "llvm-x86_64-linux-gnu-skylake-avx512" / "squeezenet.3.json").read_bytes())
    kernels = [json.loads(line)[0] for line in real["workloads"]]
    own = tuning._only(real, set(kernels[:1]))
    shipped = tmp_path / "records"
    for key, body in (("own-key", own), ("narrow-key", real)):
        (shipped / key).mkdir(parents=True)
        (shipped / key / "squeezenet.json").write_text(json.dumps(body))
    monkeypatch.setattr(tuning, "SHIPPED", shipped)
    (tmp_path / "alone").mkdir()
    (tmp_path / "filled").mkdir()
    assert tuning.gather(tmp_path / "alone", "own-key", None, print) == len(own["records"])
    filled = tuning.gather(tmp_path / "filled", "own-key", None, print, narrower=["narrow-key"])
    from_narrower = len(tuning._only(real, None, skip=set(kernels[:1]))["records"])
    assert from_narrower > 0 and filled == len(own["records"]) + from_narrower


@pytest.mark.parametrize(
    "target, framework, match",
    [
        (cpu_target("neoverse-v1", "arm64", "aarch64-linux-gnu"), Framework.ONNX, "measures on the target's own CPU"),
        (host_target(), Framework.XGBOOST, "nothing to tune"),
    ],
)
def test_tuning_is_refused_where_it_cannot_measure(dense, tmp_path, target, framework, match):
    with pytest.raises(CompileError, match=match) as err:
        compile_onnx(dense, {"x": [4, 64]}, tmp_path, target=target, framework=framework, trials=8)
    assert err.value.reason == "UnsupportedTuning"


def test_a_small_budget_goes_to_the_kernel_that_takes_the_time(tmp_path):
    """8 trials of 8 per kernel cover one of the perceptron's two kernels: the compile times both
    (as compiled with the records there are) and tunes the slower one only."""
    from tests.compiler.test_compile_onnx import mlp

    model = mlp(tmp_path / "mlp.onnx", batch=4)  # two kernels: matmul+relu fused, and a matmul
    messages: list[str] = []
    _, manifest = compile_onnx(
        model, {"features": [4, 16]}, tmp_path / "work", trials=8, max_trials_per_task=8, progress=messages.append
    )
    report = manifest["tuning"]
    assert (report["kernels"], report["kernelsFromRecords"]) == (2, 1), report
    assert len(report["tunedKernels"]) == 1 and "matmul" in report["tunedKernels"][0]
    assert any(m.startswith(f"tuning {report['tunedKernels'][0]}: ") for m in messages), messages


def test_a_budget_goes_to_the_kernels_named_and_to_no_others(tmp_path):
    """16 trials of 8 per kernel would tune both of the perceptron's kernels; named, one is tuned.
    A name that is no kernel of the model is refused with the names there are."""
    from kompile_compiler.report import CompileError
    from tests.compiler.test_compile_onnx import mlp

    model = mlp(tmp_path / "mlp.onnx", batch=4)
    options = {"trials": 16, "max_trials_per_task": 8}
    with pytest.raises(CompileError, match="no kernel fused_nothing to tune; the kernels: ") as refused:
        compile_onnx(model, {"features": [4, 16]}, tmp_path / "refused", kernels=("fused_nothing",), **options)
    kernels = refused.value.detail.split("the kernels: ")[1].split(", ")
    assert len(kernels) == 2, kernels
    _, manifest = compile_onnx(model, {"features": [4, 16]}, tmp_path / "work", kernels=kernels[1:], **options)
    assert manifest["tuning"]["tunedKernels"] == kernels[1:], manifest["tuning"]


def test_running_it_again_tunes_the_kernel_the_first_run_left(tmp_path):
    """With a record for the slower kernel, a second compile's small budget goes to the other one:
    another round on a tuned kernel is expected to save less than a first round."""
    from tests.compiler.test_compile_onnx import mlp

    model = mlp(tmp_path / "mlp.onnx", batch=4)
    cache = str(tmp_path / "records")
    runs = [
        compile_onnx(
            model, {"features": [4, 16]}, tmp_path / f"work{i}", trials=8, max_trials_per_task=8, tuning_cache=cache
        )[1]["tuning"]
        for i in range(2)
    ]
    assert runs[1]["tunedKernels"] != runs[0]["tunedKernels"], runs
    assert runs[1]["kernelsFromRecords"] == 2, runs


def test_a_second_round_waits_for_the_first_rounds_it_is_worth_less_than():
    seconds = {"conv_big": 6e-3, "conv_small": 1e-3, "matvec": 1.4e-3, "reshape": 2e-6}
    tuned = {"conv_big", "conv_small"}
    assert tuning.worth_tuning(seconds, tuned, 2) == ("matvec", "conv_big")
    assert tuning.worth_tuning(seconds, set(), 2) == ("conv_big", "matvec")  # nothing tuned: by time


def test_how_many_kernels_a_budget_tunes():
    assert tuning.kernels_to_tune(8, 8) == 1 and tuning.kernels_to_tune(512, None) == 8
    assert tuning.kernels_to_tune(100, 200) == 2  # a round is at most 64 trials
