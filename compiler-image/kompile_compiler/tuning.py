"""Schedules for CPU kernels: tuning records, MetaSchedule tuning, and dlight for the rest.

Convolutions are put in NHWC first (`layout`), so every record is for an NHWC kernel.
Tuning takes each kernel with its weights layout-free, so a record may store them in a layout
of its own, which the compile makes once from the constant weights (`repack_weights`). A 3x3
convolution has a second form, Winograd's (`winograd`), which a compile takes where the records
time it faster than the direct one (`choose`).

TVM's default CPU pipeline leaves every kernel a plain loop nest (50-100x slower than
onnxruntime), so every CPU compile comes through here. Records come from three places, best
first: this compile's own tuning (`tuning.trials`), the shared cache (an s3:// prefix or a
folder, where every tuning job leaves its best records for the next job of any model that
shares a kernel), and the records shipped inside the compiler image (made by `bench/tune.py`,
like TVM's TopHub). A kernel no record covers gets TVM's generic dlight CPU rules (`schedules`).

Records are kept apart per instruction set (`target_key`): a schedule tuned for AVX-512 may
not run on an AVX2 CPU. The other way round it does, so a kernel a target's own records leave
out takes the shipped records of the narrower sets its CPU has (`narrower_keys`): an AVX512-BF16
target starts from every AVX-512 record. The core count is not part of the key; a schedule
tuned on 2 cores stays valid on 16.

Of several records for one kernel TVM applies the one with the lowest measured time, and a
time measured on another CPU model says little about this one: an AMD EPYC's record for a
SqueezeNet convolution kept winning on an Intel Xeon over the faster schedule a tuning round
had found there. So a bundle names the CPU model it was measured on, and where bundles from
the compiling machine's CPU model have records for a kernel, those from other models are left
out for that kernel.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kompile.storage import ObjectStore, S3Location, StorageError
from kompile_compiler import fastmath, folding, intrinsics, layout, rewrites, winograd
from kompile_compiler.targets import host_cpu

SHIPPED = Path(__file__).parent / "records"
FORMAT = "kompile.dev/tuning-records/v1"
COLD = "cold"  # a bundle's "caches" when its times were measured with the CPU caches flushed
WORKLOADS = "database_workload.json"
RECORDS = "database_tuning_record.json"
PARTS = {"workloads": WORKLOADS, "records": RECORDS}  # a bundle's fields and MetaSchedule's files
BUILD_TIMEOUT = 60.0  # seconds per candidate; a fresh builder worker spends ~5 s importing TVM
FAILED_RUN = 1e9  # MetaSchedule records a failed measurement as a huge run time
ROUND = 64  # MetaSchedule's trials per search round of one kernel (its num_trials_per_iter)
# What another round is expected to save of a kernel's time, against a first round: first rounds
# took rule-scheduled kernels here 3-30x faster, second rounds about a tenth at most (bench/README.md).
ANOTHER_ROUND = 0.1
GATHERED = "gathered.json"  # which records in a work dir came from elsewhere (never republished)

Progress = Callable[[str], None]


def tunable(tvm_target: dict | None) -> bool:
    """MetaSchedule and the CPU rules here are for LLVM CPU targets; GPU pipelines schedule with dlight."""
    return bool(tvm_target) and tvm_target.get("kind") == "llvm"


def target_key(tvm_target: dict) -> str:
    parts = [tvm_target.get("kind", ""), tvm_target.get("mtriple", ""), tvm_target.get("mcpu", "")]
    parts += sorted(tvm_target.get("mattr") or [])
    return re.sub(r"[^a-z0-9._-]+", "", "-".join(p for p in parts if p).lower())


@dataclass
class Report:
    """What the manifest says about the schedules: how many kernels came from where."""

    kernels: int = 0
    from_records: int = 0
    records_available: int = 0
    trials: int = 0
    tune_seconds: float = 0.0
    published: str | None = None
    tuned_kernels: list[str] = field(default_factory=list)  # empty: every kernel was a candidate
    by_records: set[str] = field(default_factory=set)  # the kernels a record scheduled (not in the manifest)
    settled: set[str] = field(default_factory=set)  # the kernels whose tuned form has a record
    # Scheduled before any record (concatenations, elementwise kernels, reductions along rows).
    untunable: set[str] = field(default_factory=set)
    winograd: list[str] = field(default_factory=list)  # the convolutions in Winograd form, by shape
    compiled: dict | None = None  # what the shared cache's compiled kernels saved (`kernel_cache`)

    def wire(self) -> dict:
        body = {
            "kernels": self.kernels,
            "kernelsFromRecords": self.from_records,
            "kernelsByRules": self.kernels - self.from_records,
            "recordsAvailable": self.records_available,
            "trials": self.trials,
            "tuneSeconds": round(self.tune_seconds, 1),
        }
        if self.published:
            body["published"] = self.published
        if self.tuned_kernels:
            body["tunedKernels"] = self.tuned_kernels
        if self.winograd:
            body["winogradConvolutions"] = self.winograd  # NxHxWxCIxCO of each
        if self.compiled is not None:
            body["compiledKernels"] = self.compiled
        return body


class RecordCache:
    """The shared cache: `<location>/<target key>/<name>.json`, one bundle of best records per job."""

    def __init__(self, location: str, store: ObjectStore | None = None):
        self.location = location
        self.s3 = location.startswith("s3://")
        self.store = store if store is not None or not self.s3 else ObjectStore()

    def bundles(self, key: str) -> list[bytes]:
        if self.s3:
            base = S3Location.parse(self.location).child(key)
            return [data for loc in self.store.list(base) if (data := self.store.read(loc)) is not None]
        folder = Path(self.location) / key
        return [p.read_bytes() for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []

    def put(self, key: str, name: str, data: bytes) -> str:
        return self.write(f"{key}/{name}.json", data)

    def read(self, path: str) -> bytes | None:
        """The object or file at `path` (slash-separated) under the location; None where there is none."""
        if self.s3:
            return self.store.read(S3Location.parse(self.location).child(path))
        file = Path(self.location) / path
        return file.read_bytes() if file.is_file() else None

    def write(self, path: str, data: bytes) -> str:
        if self.s3:
            loc = S3Location.parse(self.location).child(path)
            kind = "application/json" if path.endswith(".json") else "application/octet-stream"
            self.store.write(loc, data, content_type=kind)
            return str(loc)
        file = Path(self.location) / path
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(file)  # readers never see half a file
        return str(file)


def narrower_keys(tvm_target: dict) -> list[str]:
    """The shipped record folders of instruction sets `tvm_target`'s CPU runs too, widest first:
    `x86-avx512-bf16` (cooperlake) runs what was tuned for `skylake-avx512` and `core-avx2`.
    A schedule is valid on every CPU with the instructions it uses; it may not be the best there."""
    from kompile_compiler import targets

    mcpu = tvm_target.get("mcpu")
    if tvm_target.get("kind") != "llvm" or not mcpu or not SHIPPED.is_dir():
        return []
    prefix = target_key({**tvm_target, "mcpu": "", "mattr": []}) + "-"
    features = targets.isa_features(mcpu, tuple(tvm_target.get("mattr") or ()))
    found = []
    for folder in SHIPPED.iterdir():
        if not folder.name.startswith(prefix):
            continue
        # A strict subset: never the target's own folder, nor one of an unknown CPU (no features).
        theirs = targets.isa_features(folder.name.removeprefix(prefix))
        if theirs and theirs < features:
            found.append((len(theirs), folder.name))
    return [name for _, name in sorted(found, reverse=True)]


def gather(
    work_dir: Path,
    key: str,
    cache: RecordCache | None,
    progress: Progress,
    wanted: set[str] | None = None,
    narrower: list[str] = (),
) -> int:
    """Merge the shipped and the cached records for `key` into the database in `work_dir`:
    only those for the workloads in `wanted` (from `workloads`; None: all), and for a kernel
    that records measured on this CPU model cover, only those; of those, where a bundle timed
    with cold caches (`measuring`) covers it, only that bundle's: a time measured with the caches
    flushed is longer than one measured hot, and would otherwise always lose to it. The shipped
    records of the `narrower` keys (`narrower_keys`) fill in the kernels `key`'s own leave without a record."""

    if (work_dir / GATHERED).exists():
        # Gathered already, by the compile that timed the kernels before tuning: merging the
        # same bundles again would read the cache twice and store every record twice.
        return len(open_database(work_dir=str(work_dir)))
    sources = [p.read_bytes() for p in sorted((SHIPPED / key).glob("*.json"))]
    if cache is not None:
        try:
            sources += cache.bundles(key)
        except (StorageError, OSError) as err:
            # The cache only saves time: a compile goes on without it.
            progress(f"tuning cache {cache.location} unreadable, going on without it: {err}")
    bundles = []
    for data in sources:
        try:
            body = json.loads(data)
            if body.get("format") != FORMAT:
                raise ValueError(f"not a {FORMAT} bundle")
            bundles.append(_only(body, wanted))
        except Exception as err:  # noqa: BLE001 - a damaged bundle is skipped, never fatal
            progress(f"skipped a damaged tuning record bundle: {str(err)[:200]}")
    for other in narrower:
        have = _covered(bundles)  # by the wider sets' records
        for path in sorted((SHIPPED / other).glob("*.json")):
            with_these = _only(json.loads(path.read_bytes()), wanted, skip=have)
            if with_these["workloads"]:
                bundles.append(with_these)
    here = host_cpu()
    ours = [b for b in bundles if b.get("cpu") == here]
    cold = _covered([b for b in ours if b.get("caches") == COLD])
    ours = [b if b.get("caches") == COLD else _only(b, None, skip=cold) for b in ours]
    covered = _covered(ours)
    others = [_only(b, None, skip=covered) for b in bundles if b.get("cpu") != here]
    database = _merged(work_dir, ours + others, progress)
    records = database.get_all_tuning_records()
    (work_dir / GATHERED).write_text(json.dumps(sorted({_identity(rec) for rec in records})))
    return len(records)


def _covered(bundles: list[dict]) -> set[str]:
    """The workloads `bundles` have records for."""
    return {_workload_of(line) for b in bundles for line in b["workloads"]}


def _workload_of(line: str) -> str:
    """A database workload line's key (its first field), without parsing the kernel after it:
    ResNet-50's lines are 200 kB each."""
    end = line.find('",')
    return line[2:end] if line.startswith('["') and end > 2 else json.loads(line)[0]


def _merged(work_dir: Path, bundles: list[dict], progress: Progress):
    """The database in `work_dir` with the records of `bundles` added, opened. A bundle's lines
    are a database's own, so they are merged as text (each workload once, the records renumbered)
    and TVM reads the whole once: merging bundle by bundle through TVM parsed every kernel twice
    (ResNet-50's 23 bundles: 1.0 s). Where TVM cannot read the merged one (a record it does not
    know), it is merged again bundle by bundle, the bundles it cannot read skipped."""
    paths = {part: work_dir / file for part, file in PARTS.items()}
    before = {part: path.read_text() if path.exists() else "" for part, path in paths.items()}
    lines = {part: text.splitlines() for part, text in before.items()}
    index = {_workload_of(line): i for i, line in enumerate(lines["workloads"])}
    readable = []
    for body in bundles:
        try:
            keys = [_workload_of(line) for line in body["workloads"]]
            records = [(keys[workload], rest) for workload, rest in map(json.loads, body["records"])]
        except Exception as err:  # noqa: BLE001 - a damaged bundle is skipped, never fatal
            progress(f"skipped a damaged tuning record bundle: {str(err)[:200]}")
            continue
        readable.append(body)
        for workload, line in zip(keys, body["workloads"], strict=True):
            if workload not in index:
                index[workload] = len(lines["workloads"])
                lines["workloads"].append(line)
        lines["records"] += [json.dumps([index[workload], rest]) for workload, rest in records]
    for part, path in paths.items():
        path.write_text("".join(line + "\n" for line in lines[part]))
    try:
        return open_database(work_dir=str(work_dir))
    except Exception as err:  # noqa: BLE001 - TVM's parse error, whatever it is
        progress(f"tuning records TVM cannot read, merging bundle by bundle: {str(err)[:200]}")
    for part, path in paths.items():
        path.write_text(before[part])
    database = open_database(work_dir=str(work_dir))
    for body in readable:
        try:
            _merge(body, database)
        except Exception as err:  # noqa: BLE001 - a damaged bundle is skipped, never fatal
            progress(f"skipped a damaged tuning record bundle: {str(err)[:200]}")
    return database


def workloads(mod) -> set[str]:
    """The keys MetaSchedule files the kernels of `mod` (a fused module, or a `Prepared` one in all
    its forms) under, each with its weights as they are and layout-free (`schedule`)."""
    mods = mod.forms() if isinstance(mod, Prepared) else [mod]
    return {w for m in mods for pair in kernel_workloads(m).values() for w in pair}


def kernel_workloads(mod) -> dict[str, tuple[str, str]]:
    """Each kernel of `mod` by name, with its two keys: its weights as they are, and layout-free."""
    free = layout.weights_layout_free(mod)
    return {gv.name_hint: (_workload(func), _workload(free[gv])) for gv, func in _kernels(mod)}


def _workload(func) -> str:
    """A kernel's key in a tuning database: the structural hash of its normalized form, as a
    bundle's workload lines begin with it."""
    import tvm
    import tvm_ffi

    if isinstance(func, tvm.IRModule):
        return str(tvm_ffi.structural_hash(func))  # a database's workload, normalized already
    return str(tvm_ffi.structural_hash(tvm.get_global_func("tvm.s_tir.meta_schedule.normalize_mod")(func)))


def _only(bundle: dict, wanted: set[str] | None, skip: frozenset[str] | set[str] = frozenset()) -> dict:
    """`bundle` less the workloads not in `wanted` or in `skip`, and their records. Every
    model's records for a target share one folder; loading all of them into the database (22 MB,
    1.2 s on 2 cores) was most of what a compile with records took over one without."""
    index = {}
    for i, line in enumerate(bundle["workloads"]):
        workload = _workload_of(line)
        if (wanted is None or workload in wanted) and workload not in skip:
            index[i] = len(index)
    records = []
    for line in bundle["records"]:
        workload, rest = json.loads(line)
        if workload in index:
            records.append(json.dumps([index[workload], rest]))
    return {**bundle, "workloads": [bundle["workloads"][i] for i in index], "records": records}


def _identity(rec) -> str:
    """A record by its kernel and its measurement: equal only for a copy of the same record."""
    import tvm_ffi

    return f"{tvm_ffi.structural_hash(rec.workload.mod)}:{[float(s) for s in rec.run_secs or []]}"


_OPENED: dict = {}  # the database opened last, under its files' state then (`open_database`)


def open_database(work_dir, **options):
    """The MetaSchedule JSON database in `work_dir`, with the intrinsics its traces may name
    registered first: a trace that tensorizes with one TVM does not know fails to parse, and
    the bundle holding it would be dropped whole.

    A compile opens its database three times (records gathered, Winograd chosen, kernels
    scheduled), and TVM parses every kernel of it each time (ResNet-50's: 0.4 s): the one
    opened last is handed out again while its files are as they were when it was opened."""
    from tvm.s_tir import meta_schedule as ms

    intrinsics.register()
    if options:
        return ms.database.JSONDatabase(work_dir=work_dir, **options)
    if (database := _OPENED.get(_files_state(work_dir))) is not None:
        return database
    database = ms.database.JSONDatabase(work_dir=work_dir)
    _OPENED.clear()
    _OPENED[_files_state(work_dir)] = database
    return database


def _files_state(work_dir) -> tuple:
    """A database folder by its path and its files' sizes and modification times: any write changes it."""
    state = [str(Path(work_dir).resolve())]
    for file in PARTS.values():
        try:
            stat = Path(work_dir, file).stat()
            state.append((stat.st_size, stat.st_mtime_ns))
        except FileNotFoundError:
            state.append(None)
    return tuple(state)


def _merge(bundle: dict, into) -> None:
    from tvm.s_tir import meta_schedule as ms

    with tempfile.TemporaryDirectory() as tmp:
        for field_name, file in PARTS.items():
            Path(tmp, file).write_text("".join(line + "\n" for line in bundle[field_name]))
        source = open_database(work_dir=tmp, allow_missing=False)
        for rec in source.get_all_tuning_records():
            workload = into.commit_workload(rec.workload.mod)
            into.commit_tuning_record(ms.database.TuningRecord(rec.trace, workload, rec.run_secs, rec.target))


def bundle(work_dir: Path, key: str, cold_cache: bool = False) -> bytes:
    """The best record of every kernel this compile measured, as one portable object, marked
    with how its times were measured where the caches were flushed (`gather`).

    Records that came from the cache or the image are left out: they are there already, and a
    job republishing them would make every bundle carry all the ones before it.
    """
    import tvm_ffi
    from tvm.s_tir import meta_schedule as ms

    gathered = set(json.loads((work_dir / GATHERED).read_text())) if (work_dir / GATHERED).exists() else set()
    best: dict[int, tuple[float, object]] = {}
    for rec in open_database(work_dir=str(work_dir)).get_all_tuning_records():
        secs = [float(s) for s in rec.run_secs or []]
        if not secs or min(secs) >= FAILED_RUN or _identity(rec) in gathered:
            continue
        mean = sum(secs) / len(secs)
        shash = tvm_ffi.structural_hash(rec.workload.mod)
        if shash not in best or mean < best[shash][0]:
            best[shash] = (mean, rec)
    with tempfile.TemporaryDirectory() as tmp:
        out = open_database(work_dir=tmp)
        for _, rec in best.values():
            workload = out.commit_workload(rec.workload.mod)
            out.commit_tuning_record(ms.database.TuningRecord(rec.trace, workload, rec.run_secs, rec.target))
        lines = {name: Path(tmp, name).read_text().splitlines() for name in (WORKLOADS, RECORDS)}
    # The CPU model the records were measured on, for `gather` to prefer this model's own.
    body = {"format": FORMAT, "target": key, "cpu": host_cpu(), **({"caches": COLD} if cold_cache else {})}
    body |= {k: lines[f] for k, f in PARTS.items()}
    return json.dumps(body).encode()


@dataclass
class Prepared:
    """A model laid out for the CPU, its constants folded, before legalization (`prepare`): where
    both forms of its convolutions, direct and Winograd, start from, so the slow folding is done once."""

    folded: object  # the Relax IRModule
    target: object
    winograd_keys: frozenset[str]  # the convolutions Winograd can compute
    _fused: dict = field(default_factory=dict)

    def fused(self, winograd_keys=frozenset()):
        """The kernels a compile schedules: the module legalized and fused, with the convolutions
        in `winograd_keys` in Winograd form and the others direct."""
        from tvm import relax

        chosen = frozenset(winograd_keys) & self.winograd_keys
        if chosen not in self._fused:
            mod = winograd.apply(self.folded, set(chosen)) if chosen else self.folded
            with self.target:
                self._fused[chosen] = relax.pipeline.zero_pipeline()(mod)
        return self._fused[chosen]

    @property
    def direct(self):
        return self.fused()

    def forms(self) -> list:
        """The fused modules a record may be for: direct, and every possible convolution in Winograd form."""
        return [self.direct, self.fused(self.winograd_keys)] if self.winograd_keys else [self.direct]


def prepare(mod, target) -> Prepared:
    """`mod` laid out for the CPU, its exponentials in polynomial form (`fastmath`), its batch
    norms decomposed and its constants folded: `Prepared.fused` makes the kernels MetaSchedule's
    records are keyed on. The weights' arithmetic is folded in numpy (`folding`; TVM's
    FoldConstant builds a kernel with LLVM for each call, 42 s for DenseNet-121), the rest by
    FoldConstant, once: for kernel timing, for each form of its convolutions and for the final build."""
    import tvm
    from tvm import relax

    mod = fastmath.apply(layout.for_cpu(mod))
    with target:
        mod = tvm.transform.Sequential(
            [relax.transform.DecomposeOpsForInference(), relax.transform.CanonicalizeBindings()]
        )(mod)
        folded = relax.transform.FoldConstant()(folding.apply(mod))
    if intrinsics.for_target(target):
        folded = intrinsics.pad_channels(folded)
    if lanes := intrinsics.float32_lanes(target):
        # Convolutions only: the matmuls (ResNet-50's and DenseNet-121's classifiers) keep their
        # shapes, and with them their tuned records; no padded one has been measured faster.
        folded = intrinsics.pad_channels(folded, "float32", lanes, 1, ops=("relax.nn.conv2d",))
    return Prepared(folded, target, frozenset(winograd.keys(folded)))


def choose(prepared: Prepared, work_dir: Path, use_winograd: bool | None = None) -> tuple[object, frozenset[str]]:
    """The fused module to schedule, and which of its convolutions are in Winograd form: with
    `use_winograd` None, those whose Winograd kernels the records in `work_dir`'s database time
    faster than their direct kernels; True: all that can be (to tune them); False: none. A
    tuning compile tunes what this gives, so it explores Winograd kernels only when asked."""

    if use_winograd is False or not prepared.winograd_keys:
        return prepared.direct, frozenset()
    candidate = prepared.fused(prepared.winograd_keys)
    if use_winograd:
        return candidate, prepared.winograd_keys
    best = _best_times(open_database(work_dir=str(work_dir)))
    direct_time, candidate_time = _kernel_times(prepared.direct, best), _kernel_times(candidate, best)
    direct_calls, candidate_calls = _calls(prepared.direct), _calls(candidate)
    if len(direct_calls) != len(candidate_calls):
        return prepared.direct, frozenset()  # fused differently: no call-by-call comparison
    seconds: dict[str, list[float]] = {}  # per convolution: [direct, Winograd], over every call
    for plain, other in zip(direct_calls, candidate_calls, strict=True):
        for key in winograd.keys_in(other):
            pair = seconds.setdefault(key, [0.0, 0.0])
            pair[0] += direct_time.get(plain, math.inf)
            pair[1] += candidate_time.get(other, math.inf)
    chosen = frozenset(key for key, (plain, other) in seconds.items() if other < plain)
    return prepared.fused(chosen), chosen


def _best_times(database) -> dict[str, float]:
    """The best measured time of each workload in `database`, in seconds."""
    best: dict[str, float] = {}
    for rec in database.get_all_tuning_records():
        secs = [float(s) for s in rec.run_secs or []]
        if secs and min(secs) < FAILED_RUN:
            key = _workload(rec.workload.mod)
            best[key] = min(best.get(key, math.inf), sum(secs) / len(secs))
    return best


def _kernel_times(mod, best: dict[str, float]) -> dict[str, float]:
    """Each kernel of `mod` by name, with the best recorded time of either of its forms."""
    times = {}
    for name, pair in kernel_workloads(mod).items():
        if found := [best[w] for w in pair if w in best]:
            times[name] = min(found)
    return times


def _calls(mod) -> list[str]:
    """The kernels `mod`'s Relax functions call, by name, in the order of the calls."""
    return [call.args[0].name_hint for call in rewrites.calls(mod, "relax.call_tir")]


def schedule(
    mod,
    target,
    work_dir: Path,
    trials: int,
    max_trials_per_task: int | None,
    progress: Progress,
    kernels=(),
    compiled=None,
    cold_cache: bool = False,
):
    """Tune `mod` (from `choose`) when `trials` > 0 (only the kernels named in `kernels`, when
    given; each candidate timed as `measuring(cold_cache)` says), apply the database, the rules
    to the rest, and repack the weights of the kernels a record gave a layout of their own (with
    the repacking built once for the `compiled` kernel cache, where there is one).

    Every kernel has two forms: as it is, and with its weights layout-free (`layout`), which
    records tuned before weights were repacked do not cover. Tuning tunes the layout-free form;
    a kernel takes it where a record covers it, else the form its records are for.

    Returns the scheduled module (for `tvm.compile`) and the kernel counts for the report.
    """
    import tvm_ffi
    from tvm import relax

    from kompile_compiler import schedules

    report = Report(trials=trials, tuned_kernels=list(kernels))
    with target:
        mod = schedules.before_records(mod)  # the records' schedules for these are never the faster
    report.untunable = schedules.scheduled(mod)
    database = open_database(work_dir=str(work_dir))
    report.records_available = len(database)
    report.kernels = len(_kernels(mod))
    free = layout.weights_layout_free(mod)
    if trials > 0:
        started = time.perf_counter()
        _tune(
            free,
            target,
            work_dir,
            trials,
            trials_per_kernel(max_trials_per_task),
            set(kernels),
            report.untunable,
            database,
            progress,
            cold_cache,
        )
        report.tune_seconds = time.perf_counter() - started
    recorded = set(_best_times(database))  # the workloads measured successfully
    chosen = mod.clone()
    for gv, func in _kernels(free):
        if _workload(func) in recorded:
            chosen.update_func(gv, func)
            report.settled.add(gv.name_hint)
    with target, database:
        tuned = relax.transform.MetaScheduleApplyDatabase()(chosen)
    # A kernel a record covers comes back rewritten by the record's schedule.
    report.by_records = {
        g.name_hint for g, f in _kernels(tuned) if not tvm_ffi.structural_equal(f, chosen[g.name_hint])
    }
    report.from_records = len(report.by_records)
    with target:
        return repack_weights(schedules.cpu_rules()(tuned), compiled), report


def kernel_name(compiled: str) -> str:
    """The name a kernel has in `mod` from the name it has in the compiled model, where
    SplitLayoutRewritePreproc renamed the kernels whose weights it repacks."""
    return compiled.removesuffix("_prepacked")


def repack_weights(mod, compiled=None):
    """The weight layout changes the records' schedules asked for, split out of their kernels
    and done once, on the constant weights, at compile time (all their kernels built at once,
    or taken from the `compiled` kernel cache: `folding.kernels_on_constants`)."""
    from tvm import relax

    repacked = folding.kernels_on_constants(relax.transform.SplitLayoutRewritePreproc()(mod), compiled)
    return relax.transform.FoldConstant()(repacked)


def trials_per_kernel(max_trials_per_task: int | None) -> int:
    return max_trials_per_task or ROUND


def kernels_to_tune(trials: int, max_trials_per_task: int | None) -> int:
    """How many kernels a budget tunes: MetaSchedule gives each kernel a first round of up to
    ROUND trials before it favours any, so a budget smaller than that times the kernels never
    gets past the first ones; a compile spends it on this many kernels instead."""
    return max(1, math.ceil(trials / min(ROUND, trials_per_kernel(max_trials_per_task))))


def worth_tuning(seconds: dict[str, float], by_records: set[str], count: int) -> tuple[str, ...]:
    """The `count` kernels where a round of tuning is expected to save the most time: a kernel
    with a record already counts ANOTHER_ROUND of its time, so a second round on a large kernel
    does not keep going before a first round on a smaller one the rules left slow."""
    expected = {k: t * (ANOTHER_ROUND if k in by_records else 1.0) for k, t in seconds.items()}
    return tuple(sorted(expected, key=expected.get, reverse=True)[:count])


def measuring(cold_cache: bool):
    """How MetaSchedule times a candidate: its default (repeated calls, so the kernel's weights and
    inputs stay in the caches), or with the CPU caches flushed before each of ten calls. A kernel
    in a whole network finds its weights gone from the caches, evicted by the layers before it:
    ResNet-50's late 1x1 convolutions (2-4 MB of weights for 49-196 pixels), tuned the cold way,
    ran 15% faster in place than their records tuned the default way, where its 56 x 56 one,
    which rereads its activations more than its weights, ran 15% slower (bench/README, session 25)."""
    from tvm.s_tir import meta_schedule as ms

    if not cold_cache:
        return "local"
    config = ms.runner.EvaluatorConfig(number=1, repeat=10, min_repeat_ms=0, enable_cpu_cache_flush=True)
    return ms.runner.LocalRunner(evaluator_config=config)


def _tune(
    mod,
    target,
    work_dir: Path,
    trials: int,
    per_task: int,
    kernels: set[str],
    untunable: set[str],
    database,
    progress,
    cold_cache: bool = False,
) -> None:
    """MetaSchedule's tune_relax, with the tasks picked by exact kernel name (never one in `untunable`)."""
    from tvm.s_tir import meta_schedule as ms

    # MetaSchedule's logging setup names every handler already on its logger in a dictConfig,
    # and fails on one without a name ('NoneType' object has no attribute 'format'); pytest's
    # log capture leaves such handlers there after a first tuning run in the same process.
    meta_logger = logging.getLogger("tvm.s_tir.meta_schedule")
    meta_logger.setLevel(logging.WARNING)
    for handler in [h for h in meta_logger.handlers if h.get_name() is None]:
        meta_logger.removeHandler(handler)
    tasks = [
        t
        for t in ms.relax_integration.extract_tasks(mod, target)
        if (not kernels or t.task_name in kernels) and t.task_name not in untunable
    ]
    if not tasks:  # MetaSchedule fails on none; the kernels asked for are all scheduled already
        progress(f"nothing to tune: {', '.join(sorted(kernels)) or 'every kernel'} scheduled before any record")
        return
    contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
        tasks, work_dir=str(work_dir), space=search_space(target)
    )
    ms.tune_tasks(
        tasks=contexts,
        task_weights=weights,
        work_dir=str(work_dir),
        max_trials_global=trials,
        max_trials_per_task=per_task,
        num_trials_per_iter=min(ROUND, per_task),
        database=database,
        builder=ms.builder.LocalBuilder(f_build=_build_candidate, timeout_sec=BUILD_TIMEOUT),
        runner=measuring(cold_cache),
        measure_callbacks=[*ms.MeasureCallback.create("default"), _progress_callback(trials, progress)],
    )


def search_space(target):
    """TVM's LLVM design space, plus tiling onto the tensor intrinsics `target` has (`intrinsics`):
    the intrinsic's rule first, so a kernel it fits is tiled for it, and plain multi-level
    tiling for every kernel it does not fit (TVM's own VNNI space is built the same way)."""
    from tvm.s_tir import meta_schedule as ms

    names = intrinsics.for_target(target)
    if not names:
        return "post-order-apply"
    intrinsics.register()
    rules = list(ms.ScheduleRule.create("llvm"))
    tiling = next(i for i, rule in enumerate(rules) if type(rule) is ms.schedule_rule.MultiLevelTiling)
    rules[tiling:tiling] = [intrinsics.tiling_rule(name) for name in names]
    rules = [
        intrinsics.compute_location_rule() if type(rule) is ms.schedule_rule.RandomComputeLocation else rule
        for rule in rules
    ]
    postprocs = [
        intrinsics.layout_rewrite_unless_packed() if type(p) is ms.postproc.RewriteLayout else p
        for p in ms.Postproc.create("llvm")
    ]
    postprocs += [intrinsics.unroll_around_intrinsics(), ms.postproc.RewriteTensorize(vectorize_init_loop=True)]
    return ms.space_generator.PostOrderApply(sch_rules=rules, postprocs=postprocs, mutator_probs="llvm")


def _build_candidate(mod, target, _params):
    """MetaSchedule's default build, less its import of every tensor intrinsic TVM has.

    That import registers CUDA's and ROCm's intrinsics too (48 s on a 2-core machine), and the
    builder starts fresh workers for every batch, so each batch paid it and timed out. A
    candidate reaches the builder already scheduled, its tensorized blocks already inlined.
    """
    from tvm.driver import build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    return build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


def _kernels(mod) -> list:
    from tvm import tirx

    return [(gv, f) for gv, f in mod.functions.items() if isinstance(f, tirx.PrimFunc)]


def _progress_callback(total: int, progress: Progress):
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

    @derived_object
    class TrialCounter(PyMeasureCallback):
        def __init__(self):
            self.done = 0

        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
            self.done += len(runner_results)
            progress(f"tuning: {self.done}/{total} trials (kernel {task_id})")

    return TrialCounter()
