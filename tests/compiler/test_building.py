"""A model built with its kernels split over threads runs as the one `tvm.compile` builds, and the
weight repacking run all at once folds what FoldConstant folds.

SqueezeNet with the shipped x86-avx512 records: tuned kernels (among them Winograd ones and
ones whose weights the records repack) and untuned ones, built in two groups.
"""

import numpy as np
import pytest
import tvm_ffi

from kompile.api import Framework, Precision, parse_data_input_config
from kompile_compiler import building, folding, frontends, layout, targets, tuning
from kompile_compiler.pipeline import _prepare, _tvm_target
from tests.compiler.models import save, with_random_weights, zoo

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


def test_kernels_built_in_two_groups_run_as_tvm_compile_builds_them(scheduled, target, tmp_path):
    import tvm

    if why := targets.why_not_runnable_here(target):
        pytest.skip(why)
    mod, tvm_target = scheduled
    feed = np.random.default_rng(0).standard_normal(INPUTS["data_0"]).astype(np.float32)
    with tvm.transform.PassContext(opt_level=3):
        whole = tvm.compile(mod, target=tvm_target)
        split = building.build(mod, tvm_target, 2, tmp_path)
    assert list(tmp_path.glob("kernels*.o")), "no second group was built"
    np.testing.assert_array_equal(_run(split, tmp_path, "split.so", feed), _run(whole, tmp_path, "whole.so", feed))


def test_every_group_is_built_in_the_callers_pass_context(scheduled, tmp_path):
    # Worker threads start with TVM's default context: the caller's settings must reach them.
    import tvm

    mod, tvm_target = scheduled
    with tvm.transform.PassContext(opt_level=3, config=building.CONFIG):
        building.build(mod, tvm_target, 2, tmp_path)
    objects = sorted(tmp_path.glob("kernels*.o"))
    assert len(objects) == 2  # one a thread; the cheapest kernel goes to the module export writes
    check = b"Mismatched type on argument"  # part of an argument check's message
    assert not any(check in o.read_bytes() for o in objects)
    with tvm.transform.PassContext(opt_level=3):
        building.build(mod, tvm_target, 2, tmp_path)
    assert all(check in o.read_bytes() for o in objects)


def test_groups_hold_every_kernel_once_and_split_the_costliest(scheduled):
    import tvm

    mod, _ = scheduled
    costs = {gv: building._cost(f) for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}
    parts = building.groups(costs, 2)
    assert len(parts) == 2
    assert sorted(gv.name_hint for part in parts for gv in part) == sorted(gv.name_hint for gv in costs)
    costliest = sorted(costs, key=lambda gv: -costs[gv])[:2]
    assert {i for i, part in enumerate(parts) for gv in costliest if gv in part} == {0, 1}
    totals = sorted(sum(costs[gv] for gv in part) for part in parts)
    assert totals[0] >= totals[1] / 3, totals  # the rest balances against the costliest
    assert building.groups(costs, 1) == [sorted(costs, key=lambda gv: -costs[gv])]


def test_repacking_all_at_once_folds_what_foldconstant_folds(fused, target):
    import tvm
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms

    mod, work = fused
    with _tvm_target(target, 2), ms.database.JSONDatabase(work_dir=str(work)):
        applied = relax.transform.MetaScheduleApplyDatabase()(layout.weights_layout_free(mod))
    split = relax.transform.SplitLayoutRewritePreproc()(applied)
    with tvm.target.Target("llvm"):
        # FoldConstant leaves the repacking kernels in the module, unused; they are dropped here.
        by_tvm = relax.transform.DeadCodeElimination()(relax.transform.FoldConstant()(split))
        at_once = relax.transform.FoldConstant()(folding.kernels_on_constants(split))
    assert any(gv.name_hint.endswith("_weight_prepack") for gv in split.get_global_vars())
    assert not any(gv.name_hint.endswith("_weight_prepack") for gv in at_once.get_global_vars())
    assert tvm_ffi.structural_equal(at_once, by_tvm)


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
