"""Winograd convolutions: they compute what the direct ones do, and a compile takes them only
where its tuning records time them faster.

The network has three 3x3 convolutions Winograd can compute, two on a 16 x 16 image (tiles of
4 x 4) and one on 8 x 8 (tiles of 2 x 2), and one it cannot (stride 2).
"""

import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from kompile.api import Framework, Precision, parse_data_input_config
from kompile_compiler import frontends, tuning, winograd
from kompile_compiler.pipeline import _prepare, _tvm_target
from kompile_compiler.targets import host_target
from tests.compiler.models import compile_onnx, save

SHAPE = [1, 8, 16, 16]
KEYS = {"1x16x16x8x16", "1x16x16x16x16", "1x8x8x16x16"}


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    rng = np.random.default_rng(7)

    def weight(name, *shape):
        value = rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))
        return numpy_helper.from_array(value.astype(np.float32), name)

    stats = [numpy_helper.from_array(rng.uniform(0.5, 1.5, 16).astype(np.float32), n) for n in ("s", "b", "m", "v")]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "s", "b", "m", "v"], ["n1"]),
        helper.make_node("Relu", ["n1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3"], ["c3"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Conv", ["c3", "w4"], ["c4"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c4"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 8, 8])],
        [weight("w1", 16, 8, 3, 3), weight("w2", 16, 16, 3, 3), weight("w3", 16, 16, 3, 3), weight("w4", 16, 16, 3, 3)]
        + stats,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return save(model, tmp_path_factory.mktemp("winograd") / "cnn.onnx")


@pytest.fixture(scope="module")
def prepared(cnn):
    declared = parse_data_input_config({"x": SHAPE}, Framework.ONNX)
    return _prepare(frontends.load(Framework.ONNX, cnn, declared, 2).mod, host_target(), Precision.FP32, 2, print)


def test_the_convolutions_winograd_can_compute_are_found(prepared):
    assert prepared.winograd_keys == KEYS
    names = [gv.name_hint for gv, _ in tuning._kernels(prepared.fused(KEYS))]
    assert {k for name in names for k in winograd.keys_in(name)} == KEYS
    # The tile follows the image: 4 x 4 on 16 x 16, 2 x 2 on 8 x 8; the ReLU after each is fused in.
    assert any(name.startswith("fused_conv2d_winograd_1x16x16x16x16_f4_relu") for name in names), names
    assert any(name.startswith("fused_conv2d_winograd_1x8x8x16x16_f2_relu") for name in names), names


def test_the_filters_transform_as_the_kernel_expects():
    """F(m, 3) in one dimension: the product of the transformed input and filter, transformed
    back, is the 3-tap correlation of the input."""
    a, b, g = winograd._matrices(2)
    rng = np.random.default_rng(0)
    d, w = rng.standard_normal(4), rng.standard_normal(3)
    direct = np.array([d[i : i + 3] @ w for i in range(2)])
    assert np.allclose(a.T @ ((g @ w) * (b.T @ d)), direct)


@pytest.mark.parametrize("use", [True, False])
def test_the_winograd_form_computes_what_onnxruntime_does(cnn, tmp_path, use):
    _, manifest = compile_onnx(cnn, {"x": SHAPE}, tmp_path, winograd=use)
    assert manifest["parity"]["reference"].startswith("onnxruntime")
    assert manifest["parity"]["maxAbsError"] <= 1e-4, manifest["parity"]
    assert sorted(manifest["tuning"].get("winogradConvolutions", [])) == (sorted(KEYS) if use else [])


def records(mod, seconds):
    """(workload, time) for each kernel of `mod` whose name `seconds` gives a time for."""
    import tvm

    normalize = tvm.get_global_func("tvm.s_tir.meta_schedule.normalize_mod")
    for gv, func in tuning._kernels(mod):
        if (time := seconds(gv.name_hint)) is not None:
            yield normalize(func), time


def database(tmp_path, prepared, direct_seconds, winograd_seconds):
    """A work dir whose records time each direct kernel at `direct_seconds` and each Winograd
    kernel at `winograd_seconds(key)` (None: no record), each record the kernel unscheduled."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    work = tmp_path / "work"
    work.mkdir()
    db = ms.database.JSONDatabase(work_dir=str(work))
    plain = records(prepared.direct, lambda name: direct_seconds)
    fast = records(prepared.fused(KEYS), lambda name: next((winograd_seconds(k) for k in winograd.keys_in(name)), None))
    target = _tvm_target(host_target(), 2)
    for workload, seconds in [*plain, *fast]:
        trace = tvm.s_tir.Schedule(workload).trace
        db.commit_tuning_record(ms.database.TuningRecord(trace, db.commit_workload(workload), [seconds], target))
    return work


def test_a_convolution_takes_the_winograd_form_only_where_its_records_are_faster(prepared, tmp_path):
    faster = "1x16x16x16x16"
    work = database(tmp_path, prepared, 1e-3, lambda key: 1e-4 if key == faster else 1e-2)
    mod, chosen = tuning.choose(prepared, work)
    assert chosen == {faster}
    assert [k for gv, _ in tuning._kernels(mod) for k in winograd.keys_in(gv.name_hint)] == [faster]
    # Asked for every one (to tune them), or for none.
    assert tuning.choose(prepared, work, True)[1] == KEYS
    assert tuning.choose(prepared, work, False)[1] == frozenset()


def test_without_records_for_the_winograd_form_a_compile_stays_direct(prepared, tmp_path):
    work = database(tmp_path, prepared, 1e-3, lambda key: None)
    mod, chosen = tuning.choose(prepared, work)
    assert chosen == frozenset() and mod is prepared.direct


def test_a_compile_applies_the_winograd_records_of_the_shared_cache(cnn, prepared, tmp_path):
    """Records for the Winograd form in the shared cache: the compile takes that form, the
    manifest says so, and the parity gate passes."""
    work = database(tmp_path, prepared, 1e-3, lambda key: 1e-4)
    key = tuning.target_key(host_target().tvm)
    cache = tuning.RecordCache(str(tmp_path / "cache"))
    cache.put(key, "winograd", tuning.bundle(work, key))
    assert json.loads((tmp_path / "cache" / key / "winograd.json").read_bytes())["records"]
    _, manifest = compile_onnx(cnn, {"x": SHAPE}, tmp_path / "compile", tuning_cache=str(tmp_path / "cache"))
    assert sorted(manifest["tuning"]["winogradConvolutions"]) == sorted(KEYS)
    assert manifest["parity"]["maxAbsError"] <= 1e-4, manifest["parity"]
