"""A model built one kernel an object file, on two threads, runs as the one `tvm.compile` builds;
a second build links the objects a shared cache kept from the first; and the weight repacking
run all at once folds what FoldConstant folds.

SqueezeNet with the shipped x86-avx512 records: tuned kernels (among them Winograd ones and
ones whose weights the records repack) and untuned ones.
"""

import hashlib

import numpy as np
import pytest
import tvm_ffi

from kompile.api import Framework, Precision, parse_data_input_config
from kompile_compiler import building, folding, frontends, kernel_cache, layout, targets, tuning
from kompile_compiler.pipeline import _prepare, _tvm_target
from tests.compiler.models import constants, save, with_random_weights, zoo

INPUTS = {"data_0": [1, 3, 224, 224]}


@pytest.fixture(scope="module")
def target():
    from bench.tune import catalog_target

    return catalog_target("x86-avx512")


@pytest.fixture(scope="module")
def fused(tmp_path_factory, target):
    """SqueezeNet fused, in Winograd form where the records say, its kernels not yet scheduled."""
    path = save(with_random_weights(zoo("squeezenet")), tmp_path_factory.mktemp("building") / "squeezenet.onnx")
    imported = frontends.load(Framework.ONNX, path, parse_data_input_config(INPUTS, Framework.ONNX), 2)
    prepared = _prepare(imported.mod, target, Precision.FP32, 2, print)
    work = tmp_path_factory.mktemp("records")
    tuning.gather(work, tuning.target_key(target.tvm), None, print, tuning.workloads(prepared))
    mod, in_winograd = tuning.choose(prepared, work)
    assert in_winograd, "the shipped records put no convolution in Winograd form"
    return mod, work


@pytest.fixture(scope="module")
def scheduled(fused, target):
    mod, work = fused
    tvm_target = _tvm_target(target, 2)
    mod, report = tuning.schedule(mod, tvm_target, work, 0, None, print)
    assert report.from_records > 0
    return mod, tvm_target


def _run(executable, folder, name, feed):
    import tvm
    from tvm import relax

    executable.export_library(str(folder / name))
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(folder / name)), tvm.cpu())
    result = vm["main"](tvm.runtime.tensor(feed))
    return (result if hasattr(result, "numpy") else result[0]).numpy()


def _kernel_count(mod) -> int:
    import tvm

    return sum(isinstance(f, tvm.tirx.PrimFunc) for f in mod.functions.values())


def test_kernels_built_one_an_object_run_as_tvm_compile_builds_them(scheduled, target, tmp_path):
    import tvm

    if why := targets.why_not_runnable_here(target):
        pytest.skip(why)
    mod, tvm_target = scheduled
    feed = np.random.default_rng(0).standard_normal(INPUTS["data_0"]).astype(np.float32)
    with tvm.transform.PassContext(opt_level=3):
        whole = tvm.compile(mod, target=tvm_target)
        split = building.build(mod, tvm_target, 2, tmp_path)
    assert len(list(tmp_path.glob("kernel*.o"))) >= _kernel_count(mod) - 1  # fused kernels and their weights' repacking
    np.testing.assert_array_equal(_run(split, tmp_path, "split.so", feed), _run(whole, tmp_path, "whole.so", feed))


def test_every_kernel_is_built_in_the_callers_pass_context(scheduled, tmp_path):
    # Worker threads start with TVM's default context: the caller's settings must reach them.
    import tvm

    mod, tvm_target = scheduled
    with tvm.transform.PassContext(opt_level=3, config=building.CONFIG):
        building.build(mod, tvm_target, 2, tmp_path)
    objects = sorted(tmp_path.glob("kernel*.o"))
    check = b"Mismatched type on argument"  # part of an argument check's message
    assert objects and not any(check in o.read_bytes() for o in objects)
    with tvm.transform.PassContext(opt_level=3):
        building.build(mod, tvm_target, 2, tmp_path)
    assert all(check in o.read_bytes() for o in objects)


def _cache(folder):
    return kernel_cache.KernelCache(tuning.RecordCache(str(folder)), "test-key")


def test_a_second_build_links_the_objects_the_cache_kept_and_runs_the_same(scheduled, target, tmp_path):
    import tvm

    mod, tvm_target = scheduled
    feed = np.random.default_rng(1).standard_normal(INPUTS["data_0"]).astype(np.float32)
    first, second = _cache(tmp_path / "cache"), _cache(tmp_path / "cache")
    with tvm.transform.PassContext(opt_level=3, config=building.CONFIG):
        built = building.build(mod, tvm_target, 2, tmp_path / "first", first)
        rebuilt = building.build(mod, tvm_target, 2, tmp_path / "second", second)
    kept = sorted((tmp_path / "cache" / "test-key" / kernel_cache.FOLDER).glob("*.o"))
    assert first.reused == 0 and first.stored == len(kept) == len(list((tmp_path / "first").glob("kernel*.o")))
    assert second.reused == first.stored and second.stored == 0 and not second.problems
    # What the second build links is the first's machine code, byte for byte.
    assert sorted(p.read_bytes() for p in (tmp_path / "second").glob("kernel*.o")) == sorted(
        p.read_bytes() for p in (tmp_path / "first").glob("kernel*.o")
    )
    if why := targets.why_not_runnable_here(target):
        pytest.skip(why)
    np.testing.assert_array_equal(_run(rebuilt, tmp_path, "second.so", feed), _run(built, tmp_path, "first.so", feed))


def test_a_damaged_cached_object_is_compiled_again_and_one_of_another_context_is_not_taken(scheduled, tmp_path):
    import tvm

    mod, tvm_target = scheduled
    with tvm.transform.PassContext(opt_level=3, config=building.CONFIG):
        building.build(mod, tvm_target, 2, tmp_path / "first", _cache(tmp_path / "cache"))
        kept = sorted((tmp_path / "cache" / "test-key" / kernel_cache.FOLDER).glob("*.o"))
        data = bytearray(kept[0].read_bytes())
        data[-100] ^= 0xFF  # one flipped bit of machine code
        kept[0].write_bytes(bytes(data))
        again = _cache(tmp_path / "cache")
        building.build(mod, tvm_target, 2, tmp_path / "again", again)
    assert again.reused == len(kept) - 1 and again.stored == 1
    assert any("damaged" in p for p in again.problems)
    assert kernel_cache.FORMAT in kept[0].read_bytes() and kept[0].read_bytes() != bytes(data)  # stored anew
    with tvm.transform.PassContext(opt_level=3):  # the kernels' argument checks back: other machine code
        other = _cache(tmp_path / "cache")
        building.build(mod, tvm_target, 2, tmp_path / "other", other)
    assert other.reused == 0 and other.stored == len(kept)


def test_repacking_all_at_once_folds_what_foldconstant_folds(fused, target, tmp_path):
    import tvm
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms

    mod, work = fused
    with _tvm_target(target, 2), ms.database.JSONDatabase(work_dir=str(work)):
        applied = relax.transform.MetaScheduleApplyDatabase()(layout.weights_layout_free(mod))
    split = relax.transform.SplitLayoutRewritePreproc()(applied)
    first, second = _cache(tmp_path), _cache(tmp_path)
    with tvm.target.Target("llvm"):
        # FoldConstant leaves the repacking kernels in the module, unused; they are dropped here.
        by_tvm = relax.transform.DeadCodeElimination()(relax.transform.FoldConstant()(split))
        at_once = relax.transform.FoldConstant()(folding.kernels_on_constants(split))
        # Built once as a shared library the kernel cache keeps, then loaded from there.
        stored = relax.transform.FoldConstant()(folding.kernels_on_constants(split, first))
        reused = relax.transform.FoldConstant()(folding.kernels_on_constants(split, second))
    assert any(gv.name_hint.endswith("_weight_prepack") for gv in split.get_global_vars())
    assert not any(gv.name_hint.endswith("_weight_prepack") for gv in at_once.get_global_vars())
    _assert_folded_alike(at_once, by_tvm, _unwritten(split))
    assert (first.stored, first.reused, second.stored, second.reused) == (1, 0, 0, 1)
    assert tvm_ffi.structural_equal(stored, at_once) and tvm_ffi.structural_equal(reused, at_once)
    # A cached library that will not load (its digest intact: written so) is built again.
    (kept,) = (tmp_path / "test-key" / kernel_cache.FOLDER).glob("*.o")
    junk = b"not a shared library"
    kept.write_bytes(kernel_cache.FORMAT + hashlib.sha256(junk).hexdigest().encode() + b"\n" + junk)
    third = _cache(tmp_path)
    with tvm.target.Target("llvm"):
        rebuilt = relax.transform.FoldConstant()(folding.kernels_on_constants(split, third))
    assert any("would not load" in p for p in third.problems) and (third.reused, third.stored) == (0, 1)
    assert tvm_ffi.structural_equal(rebuilt, at_once)


def _unwritten(split) -> list[np.ndarray]:
    """Each weight repacking of `split`, built by TVM on its own and run with its outputs full of
    NaN: the positions left NaN are the padding its layout adds and it never writes."""
    import tvm
    from tvm import relax

    call_tir = tvm.ir.Op.get("relax.call_tir")
    calls = []

    def visit(expr):
        if isinstance(expr, relax.Call) and expr.op.same_as(call_tir):
            if expr.args[0].name_hint.endswith("_weight_prepack"):
                calls.append(expr)

    relax.analysis.post_order_visit(split["main"], visit)
    masks = []
    for call in calls:
        gv = call.args[0]
        kernel = tvm.tirx.build(tvm.IRModule({gv: split[gv].with_attr("global_symbol", gv.name_hint)}), "llvm")
        outs = [
            tvm.runtime.tensor(np.full([int(d) for d in ty.shape], np.nan, str(ty.dtype)))
            for ty in folding._outputs(call)
        ]
        kernel[gv.name_hint](*[a.value for a in folding._arguments(call)], *outs)
        masks += [np.isnan(out.numpy()) for out in outs]
    return masks


def _assert_folded_alike(ours, theirs, unwritten: list[np.ndarray]):
    """`ours` is `theirs` bit for bit, but for the padding a repacking never writes: ours zeroes
    it, FoldConstant leaves it as memory held it (a record's layout for a classifier's 1000
    biases is 6 x 168)."""
    assert ours.script() == theirs.script()  # all but the constants' values
    for a, b in zip(constants(ours), constants(theirs), strict=True):
        if a.shape == b.shape and np.array_equal(a, b):
            continue
        assert any(m.shape == a.shape and np.array_equal(a[~m], b[~m]) and not a[m].any() for m in unwritten), (
            f"a folded constant {a.shape} differs from FoldConstant's where the repacking writes, or is not 0 elsewhere"
        )


@pytest.mark.parametrize(
    "shape, dtype, message",
    [
        ([1, 3, 200, 200], np.float32, r"shape\[2\] mismatch"),
        (INPUTS["data_0"], np.float64, "dtype float32 but get float64"),
    ],
)
def test_without_the_kernels_checks_the_vm_still_refuses_a_wrong_input(
    scheduled, target, tmp_path, shape, dtype, message
):
    import tvm
    from tvm import relax

    if why := targets.why_not_runnable_here(target):
        pytest.skip(why)
    mod, tvm_target = scheduled
    with tvm.transform.PassContext(opt_level=3, config=building.CONFIG):
        executable = building.build(mod, tvm_target, 2, tmp_path)
    executable.export_library(str(tmp_path / "model.so"))
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(tmp_path / "model.so")), tvm.cpu())
    with pytest.raises(Exception, match=message):  # the VM's own check of its inputs, TVM's message
        vm["main"](tvm.runtime.tensor(np.zeros(shape, dtype)))
