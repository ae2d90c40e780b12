"""The weights' arithmetic folded in numpy gives what TVM's FoldConstant gives, bit for bit.

DenseNet-121 is the model the folding was made for (42 s in FoldConstant); it takes too long
for a test that folds it both ways, so the test models are SqueezeNet (26 filter transposes) and
a small CNN with a batch norm (the scale-and-shift arithmetic of its decomposition).
"""

import numpy as np
import pytest
import tvm_ffi
from onnx import TensorProto, helper, numpy_helper

from kompile.api import Framework, parse_data_input_config
from kompile_compiler import fastmath, folding, frontends, layout
from tests.compiler.models import constants, save, with_random_weights, zoo


def _batchnorm_cnn(folder):
    rng = np.random.default_rng(3)
    tensor = lambda name, *shape: numpy_helper.from_array(rng.uniform(0.5, 1.5, shape).astype(np.float32), name)  # noqa: E731
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"], epsilon=1e-3),
            helper.make_node("Relu", ["n"], ["y"]),
        ],
        "bn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])],
        [tensor("w", 8, 4, 3, 3), tensor("s", 8), tensor("b", 8), tensor("m", 8), tensor("v", 8)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return save(model, folder / "bn.onnx"), {"x": [1, 4, 8, 8]}


def _squeezenet(folder):
    return save(with_random_weights(zoo("squeezenet")), folder / "squeezenet.onnx"), {"data_0": [1, 3, 224, 224]}


def _decomposed(path, inputs):
    """A model as `tuning.prepare` has it just before folding: laid out for the CPU, batch norms decomposed."""
    import tvm
    from tvm import relax

    imported = frontends.load(Framework.ONNX, path, parse_data_input_config(inputs, Framework.ONNX), 2)
    mod = fastmath.apply(layout.for_cpu(imported.mod))
    with tvm.target.Target("llvm"):
        return tvm.transform.Sequential(
            [relax.transform.DecomposeOpsForInference(), relax.transform.CanonicalizeBindings()]
        )(mod)


def _calls_on_constants(mod) -> list[str]:
    import tvm
    from tvm import relax

    found = []

    def visit(expr):
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and expr.args:
            if all(isinstance(a, tvm.ir.GenericConst) for a in expr.args):
                found.append(expr.op.name)

    relax.analysis.post_order_visit(mod["main"], visit)
    return found


@pytest.fixture(scope="module", params=["batchnorm", "squeezenet"])
def decomposed(request, tmp_path_factory):
    make = {"batchnorm": _batchnorm_cnn, "squeezenet": _squeezenet}[request.param]
    return _decomposed(*make(tmp_path_factory.mktemp("folding")))


def test_numpy_folding_then_tvm_equals_tvm_alone(decomposed):
    import tvm
    from tvm import relax

    assert _calls_on_constants(decomposed), "the model has no weight arithmetic to fold"
    with tvm.target.Target("llvm"):
        by_tvm = relax.transform.FoldConstant()(decomposed)
        both = relax.transform.FoldConstant()(folding.apply(decomposed))
    # Structural equality compares the constants' bytes too.
    assert tvm_ffi.structural_equal(both, by_tvm)


def test_numpy_folds_every_layout_and_batchnorm_call(decomposed):
    assert _calls_on_constants(decomposed)
    assert _calls_on_constants(folding.apply(decomposed)) == []


def test_a_call_numpy_has_no_form_for_is_left_to_tvm():
    import tvm
    from tvm import relax

    x = relax.const(np.arange(6, dtype=np.float32).reshape(2, 3) - 2)
    builder = relax.BlockBuilder()
    with builder.function("main", []):
        with builder.dataflow():
            relu = builder.emit(relax.op.nn.relu(x))  # not in numpy's table
            out = builder.emit_output(relax.op.add(relu, x))
        builder.emit_func_output(out)
    mod = folding.apply(builder.get())
    assert _calls_on_constants(mod) == ["relax.nn.relu"]
    with tvm.target.Target("llvm"):
        folded = relax.transform.FoldConstant()(mod)
    assert _calls_on_constants(folded) == []
    (value,) = constants(folded)
    np.testing.assert_array_equal(value, np.maximum(x.value.numpy(), 0) + x.value.numpy())


def _padded_repacking():
    """A `call_tir` on a constant whose kernel lays 1000 values out as (6, 168), as a record's
    weight repacking does for a classifier's biases, and writes only the 1000."""
    from tvm import relax
    from tvm.script import tirx as T

    @T.prim_func(private=True, s_tir=True)
    def repack(b: T.Buffer((1000,), "float32"), packed: T.Buffer((6, 168), "float32")):
        for i in range(1000):
            with T.sblock("packed"):
                v = T.axis.spatial(1000, i)
                packed[v // 168, v % 168] = b[v]

    values = np.arange(1, 1001, dtype=np.float32)
    builder = relax.BlockBuilder()
    with builder.function("main", []):
        with builder.dataflow():
            gv = builder.add_func(repack, "repack")
            out = builder.emit_output(relax.call_tir(gv, [relax.const(values)], relax.TensorType((6, 168), "float32")))
        builder.emit_func_output(out)
    return builder.get(), values


def test_repacking_leaves_the_padding_it_never_writes_zero():
    import tvm

    mod, values = _padded_repacking()
    folded = []
    for _ in range(2):
        # Memory the repacked tensor may be given next holds NaNs, as freed memory holds anything.
        junk = [tvm.runtime.tensor(np.full((6, 168), np.nan, np.float32)) for _ in range(8)]
        del junk
        (constant,) = constants(folding.kernels_on_constants(mod))
        folded.append(constant)
    for packed in folded:
        np.testing.assert_array_equal(packed.reshape(-1)[:1000], values)
        np.testing.assert_array_equal(packed.reshape(-1)[1000:], 0)
