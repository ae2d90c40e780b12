"""Kernels no tuning record covers: elementwise chains, pooling, concatenations and softmax get
schedules that vectorise (and spread over the cores when large), a single-row softmax is
not recomputed per element, and a softmax or layer norm over many rows goes a row at a time.

The network has the kernels of a classifier that dlight's CPU rules left as scalar loops on one
core: a decomposed batch norm with its ReLU, a padded max pool, a concatenation, and the
softmax over the classes at batch 1.
"""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from kompile.api import Framework, Precision, parse_data_input_config
from kompile_compiler import frontends, tuning
from kompile_compiler.pipeline import _prepare, _tvm_target
from kompile_compiler.targets import host_target
from tests.compiler.models import compile_onnx, save

SHAPE = [1, 16, 32, 32]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    rng = np.random.default_rng(2)
    stats = [numpy_helper.from_array(rng.uniform(0.5, 1.5, 16).astype(np.float32), n) for n in ("s", "b", "m", "v")]
    weight = numpy_helper.from_array((rng.standard_normal((1000, 32)) * 0.2).astype(np.float32), "w")
    nodes = [
        helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["bn"]),
        helper.make_node("Relu", ["bn"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Concat", ["p", "p"], ["c"], axis=1),
        helper.make_node("GlobalAveragePool", ["c"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "w"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["y"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1000])],
        [*stats, weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return save(model, tmp_path_factory.mktemp("classifier") / "classifier.onnx")


def loop_kinds(func) -> set[str]:
    """The kinds of loop (parallel, vectorized) a kernel's TVMScript has."""
    script = func.script()
    return {kind for kind in ("parallel", "vectorized") if f"T.{kind}(" in script}


def test_every_kernel_without_a_record_vectorises(classifier, tmp_path):
    target = host_target()
    declared = parse_data_input_config({"x": SHAPE}, Framework.ONNX)
    mod = _prepare(frontends.load(Framework.ONNX, classifier, declared, 2).mod, target, Precision.FP32, 2, print).direct
    scheduled, report = tuning.schedule(mod, _tvm_target(target, 2), tmp_path, 0, None, print)
    assert report.from_records == 0
    kernels = {gv.name_hint: loop_kinds(f) for gv, f in tuning._kernels(scheduled)}
    # Each kind of kernel the rules here cover, found and vectorised.
    for part in ("relu", "max_pool2d", "concatenate", "softmax"):
        assert [kinds for k, kinds in kernels.items() if part in k], kernels
        assert all("vectorized" in kinds for k, kinds in kernels.items() if part in k), kernels
    # The batch norm's 16,384 elements are spread over the cores; the single row of 1,000
    # classes is not (parallel over its elements, each recomputed the row's max and sum).
    assert all("parallel" in kinds for k, kinds in kernels.items() if "relu" in k), kernels
    assert all("parallel" not in kinds for k, kinds in kernels.items() if "softmax" in k), kernels


def test_the_scheduled_kernels_compute_what_onnxruntime_does(classifier, tmp_path):
    _, manifest = compile_onnx(classifier, {"x": SHAPE}, tmp_path)
    assert manifest["parity"]["reference"].startswith("onnxruntime")
    assert manifest["parity"]["maxAbsError"] <= 1e-5


def _concat_then_cast(channels=(32, 16, 48)):
    """TOPI's concatenation of NHWC maps along their channels, cast to bf16 (as BF16's next
    matmult reads it), as Relax legalizes and fuses it: the PrimFunc and its inputs."""
    from tvm import te, topi

    inputs = [te.placeholder((1, 5, 7, c), "float32", name=f"x{i}") for i, c in enumerate(channels)]
    out = topi.cast(topi.concatenate(inputs, axis=3), "bfloat16")
    return te.create_prim_func([*inputs, out]), [(1, 5, 7, c) for c in channels]


def _run_kernel(func, shapes):
    import ml_dtypes
    import tvm

    rng = np.random.default_rng(4)
    args = [tvm.runtime.tensor(rng.standard_normal(s).astype("float32")) for s in shapes]
    out = tvm.runtime.tensor(np.zeros((1, 5, 7, sum(s[-1] for s in shapes)), ml_dtypes.bfloat16))
    tvm.compile(tvm.IRModule({"main": func}), target=_tvm_target(host_target(), 2))(*args, out)
    return out.numpy().view("uint16")


def test_a_concatenation_is_one_vectorised_copy_per_input():
    """TOPI's form selects an input per element, a select no channel loop vectorises;
    partitioned at the inputs' offsets, each part copies one input, vectorised, same bits."""
    import tvm

    from kompile_compiler import schedules

    func, shapes = _concat_then_cast()
    with _tvm_target(host_target(), 2):
        scheduled = schedules.concatenations(tvm.IRModule({"main": func}))["main"]
    assert scheduled.attrs["tirx.is_scheduled"]  # so no record and no tuning trial touch it
    assert scheduled.script().count("T.vectorized(") == 3
    np.testing.assert_array_equal(_run_kernel(scheduled, shapes), _run_kernel(func, shapes))


def test_other_selects_are_not_taken_for_a_concatenation():
    # Padding's if_then_else tests a range (of rows, columns and here channels too), not where an input starts.
    from tvm import te, topi

    from kompile_compiler import schedules

    x = te.placeholder((1, 5, 7, 16), "float32", name="x")
    padded = te.create_prim_func([x, topi.nn.pad(x, [0, 1, 1, 4], [0, 1, 1, 0])])
    assert schedules.Concatenation().apply(padded, _tvm_target(host_target(), 2), False) is None


def test_a_small_budget_is_not_spent_on_a_concatenation(tmp_path):
    """The concatenation takes most of this model's time, but no trial can touch it (it is
    scheduled before any record): the budget goes to the kernel that can be tuned."""
    # Channels last, as the CPU layout puts a network's concatenations (no convolution moves them here).
    shape = [1, 56, 56, 64]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in (("x", shape), ("s", [1, 8]))]
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Concat", ["r", "x"], ["c"], axis=3),
        helper.make_node("ReduceMax", ["s"], ["m"], axes=[1], keepdims=0),
    ]
    outputs = [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 56, 56, 128])]
    outputs.append(helper.make_tensor_value_info("m", TensorProto.FLOAT, [1]))
    graph = helper.make_graph(nodes, "wide", inputs, outputs)
    model = save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "wide.onnx")
    messages: list[str] = []
    _, manifest = compile_onnx(
        model, {"x": shape, "s": [1, 8]}, tmp_path / "work", trials=8, max_trials_per_task=8, progress=messages.append
    )
    assert not [m for m in messages if m.startswith("tuning ") and "concatenate" in m], messages
    assert "concatenate" not in str(manifest["tuning"].get("tunedKernels", [])), manifest["tuning"]
    assert manifest["tuning"]["kernelsFromRecords"] == 1, manifest["tuning"]  # the reduction, tuned
    # Named, it is tuned no more: the compile says so and goes on.
    concat = next(k for k in _kernel_names(model, {"x": shape, "s": [1, 8]}) if "concatenate" in k)
    messages.clear()
    compile_onnx(
        model, {"x": shape, "s": [1, 8]}, tmp_path / "named", trials=8, kernels=(concat,), progress=messages.append
    )
    assert any(m.startswith(f"nothing to tune: {concat} scheduled before any record") for m in messages), messages


def _kernel_names(model, shapes) -> list[str]:
    target = host_target()
    declared = parse_data_input_config(shapes, Framework.ONNX)
    mod = _prepare(frontends.load(Framework.ONNX, model, declared, 2).mod, target, Precision.FP32, 2, print).direct
    return [gv.name_hint for gv, _ in tuning._kernels(mod)]


def _batch_norm_relu(shape=(1, 16, 16, 32)):
    """A decomposed batch norm with its ReLU on an NHWC map, its statistics per channel."""
    from tvm import te, topi

    x = te.placeholder(shape, "float32", name="x")
    mean, scale = (te.placeholder((1, 1, 1, shape[-1]), "float32", name=n) for n in ("mean", "scale"))
    out = topi.nn.relu(topi.multiply(topi.subtract(x, mean), scale))
    return te.create_prim_func([x, mean, scale, out]), x


def test_an_elementwise_kernel_is_scheduled_before_any_record():
    """A batch norm only streams memory: the rule's schedule goes before any record (one measured
    for DenseNet-121's ran it ten times slower), and computes what numpy does."""
    import tvm

    from kompile_compiler import schedules

    func, _ = _batch_norm_relu()
    with _tvm_target(host_target(), 2):
        scheduled = schedules.before_records(tvm.IRModule({"main": func}))["main"]
    assert scheduled.attrs["tirx.is_scheduled"]
    assert {"parallel", "vectorized"} <= loop_kinds(scheduled)  # 8,192 elements, 16 a vector at most
    rng = np.random.default_rng(5)
    x, mean, scale = (rng.standard_normal(s).astype("float32") for s in ((1, 16, 16, 32), (1, 1, 1, 32), (1, 1, 1, 32)))
    out = tvm.runtime.tensor(np.zeros_like(x))
    tvm.compile(tvm.IRModule({"main": scheduled}), target=_tvm_target(host_target(), 2))(
        *(tvm.runtime.tensor(a) for a in (x, mean, scale)), out
    )
    np.testing.assert_allclose(out.numpy(), np.maximum((x - mean) * scale, 0), rtol=1e-6)


def test_a_kernel_that_reads_elsewhere_is_not_taken_for_elementwise():
    # A transpose and a padding read other positions than they write: their schedules are the records'.
    from tvm import te, topi

    from kompile_compiler import schedules

    _, x = _batch_norm_relu()
    for out in (topi.transpose(x, (0, 2, 1, 3)), topi.nn.pad(x, [0, 1, 1, 0], [0, 1, 1, 0])):
        func = te.create_prim_func([x, out])
        assert schedules.Elementwise().apply(func, _tvm_target(host_target(), 2), False) is None


def _rows(reduce):
    """A kernel reducing the last axis of 12 x 128 rows of 128 with TOPI's op (softmax, layer norm)."""
    from tvm import te

    x = te.placeholder((1, 12, 128, 128), "float32", name="x")
    return te.create_prim_func(reduce(x))


def test_a_softmax_over_many_rows_is_scheduled_a_row_at_a_time_before_any_record():
    """An attention softmax: the rows spread over the cores, each reduction a vector at a time
    (its partial lanes summed at the row's end), the same results as numpy's."""
    import tvm
    from tvm import topi

    from kompile_compiler import schedules

    func = _rows(lambda x: [x, topi.nn.softmax(x, axis=-1)])
    with _tvm_target(host_target(), 2):
        scheduled = schedules.before_records(tvm.IRModule({"main": func}))["main"]
    assert scheduled.attrs["tirx.is_scheduled"]
    script = scheduled.script()
    assert {"parallel", "vectorized"} <= loop_kinds(scheduled)
    assert script.count("_rf[") and script.count("T.vectorized(") >= 4  # max and sum in lanes, exp, output
    x = np.random.default_rng(6).standard_normal((1, 12, 128, 128)).astype("float32") * 4
    out = tvm.runtime.tensor(np.zeros_like(x))
    tvm.compile(tvm.IRModule({"main": scheduled}), target=_tvm_target(host_target(), 2))(tvm.runtime.tensor(x), out)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    np.testing.assert_allclose(out.numpy(), e / e.sum(axis=-1, keepdims=True), rtol=1e-5, atol=1e-7)


def test_a_layer_norm_is_scheduled_a_row_at_a_time():
    """Its mean is read by two blocks (the variance and the output): kept as a value a row, not recomputed."""
    import tvm
    from tvm import te, topi

    from kompile_compiler import schedules

    gamma, beta = (te.placeholder((128,), "float32", name=n) for n in ("gamma", "beta"))
    func = _rows(lambda x: [x, gamma, beta, topi.nn.layer_norm(x, gamma, beta, axis=[3], epsilon=1e-5)])
    with _tvm_target(host_target(), 2):
        scheduled = schedules.row_reductions(tvm.IRModule({"main": func}))["main"]
    assert scheduled.attrs["tirx.is_scheduled"]
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 12, 128, 128)).astype("float32")
    g, b = rng.uniform(0.5, 1.5, (2, 128)).astype("float32")
    out = tvm.runtime.tensor(np.zeros_like(x))
    tvm.compile(tvm.IRModule({"main": scheduled}), target=_tvm_target(host_target(), 2))(
        *(tvm.runtime.tensor(a) for a in (x, g, b)), out
    )
    normed = (x - x.mean(axis=-1, keepdims=True)) / np.sqrt(x.var(axis=-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(out.numpy(), normed * g + b, rtol=1e-4, atol=1e-5)


def test_few_rows_or_other_axes_are_not_taken_for_row_reductions():
    # A classifier's softmax is one row (`SingleRowReduction`); a global pool reduces two axes.
    from tvm import te, topi

    from kompile_compiler import schedules

    target = _tvm_target(host_target(), 2)
    logits = te.placeholder((1, 1000), "float32", name="logits")
    softmax = te.create_prim_func([logits, topi.nn.softmax(logits)])
    assert schedules.RowReductions().apply(softmax, target, False) is None
    maps = te.placeholder((1, 7, 7, 64), "float32", name="maps")
    pooled = topi.sum(maps, axis=[1, 2], keepdims=True)
    assert schedules.RowReductions().apply(te.create_prim_func([maps, pooled]), target, False) is None
