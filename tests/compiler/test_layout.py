"""CPU convolutions in NHWC: the layout change stays at the model's edges, and the results match.

The network is small but has what blocked TVM's ConvertLayout in the zoo models: ONNX's Sum
(ResNet's residual connections), Dropout (SqueezeNet) and a (C, 1, 1) constant multiplied into
feature maps (DenseNet's Caffe-born batch norms).
"""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from kompile.api import Framework, parse_data_input_config
from kompile_compiler import frontends, layout
from tests.compiler.models import compile_onnx, save

SHAPE = [1, 8, 16, 16]


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    rng = np.random.default_rng(5)

    def weight(name, *shape, low=None):
        value = rng.uniform(0.5, 1.5, shape) if low else rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))
        return numpy_helper.from_array(value.astype(np.float32), name)

    weights = [
        weight("w1", 16, 8, 3, 3),
        weight("w2", 16, 16, 3, 3),
        *(weight(n, 16, low=True) for n in ("scale", "bias", "mean", "var")),
        weight("k", 16, 1, 1, low=True),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "scale", "bias", "mean", "var"], ["b1"]),
        helper.make_node("Mul", ["b1", "k"], ["m"]),
        helper.make_node("Relu", ["m"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Sum", ["c2", "r1"], ["s"]),
        helper.make_node("Dropout", ["s"], ["d"]),
        helper.make_node("Concat", ["d", "r1"], ["cat"], axis=1),
        helper.make_node("GlobalAveragePool", ["cat"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 1, 1])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return save(model, tmp_path_factory.mktemp("cnn") / "cnn.onnx")


def test_the_layout_changes_only_at_the_edges(cnn):
    import tvm
    from tvm import relax, tirx

    imported = frontends.load(Framework.ONNX, cnn, parse_data_input_config({"x": SHAPE}, Framework.ONNX), 2)
    mod = layout.for_cpu(imported.mod)
    text = mod.script()
    assert "R.stack" not in text and "R.nn.dropout" not in text
    assert text.count('data_layout="NHWC", kernel_layout="HWIO"') == 2, text
    with tvm.target.Target({"kind": "llvm"}):
        mod = tvm.transform.Sequential([relax.transform.DecomposeOpsForInference(), relax.pipeline.zero_pipeline()])(
            mod
        )
    kernels = [gv.name_hint for gv, f in mod.functions.items() if isinstance(f, tirx.PrimFunc)]
    # The input into NHWC and the output back to NCHW; the weights' transposes are folded away.
    assert sum("transpose" in name for name in kernels) == 2, kernels


def test_an_nhwc_compile_matches_onnxruntime(cnn, tmp_path):
    _, manifest = compile_onnx(cnn, {"x": SHAPE}, tmp_path)
    parity = manifest["parity"]
    assert parity["reference"].startswith("onnxruntime") and parity["maxAbsError"] < 1e-4, parity


def test_only_the_broadcasts_of_a_sum_go():
    """A broadcast elsewhere in a model stays: removing it would change that kernel, and records
    tuned for the model as imported (MiniLM's) would no longer match it."""
    import tvm
    from tvm.script import relax as R

    @tvm.script.ir_module
    class Module:
        @R.function
        def main(a: R.Tensor((1, 4, 8, 8), "float32"), b: R.Tensor((1, 4, 1, 1), "float32")):
            with R.dataflow():
                kept = R.broadcast_to(a, R.shape([1, 4, 8, 8]))
                x = R.broadcast_to(kept, R.shape([1, 4, 8, 8]))
                y = R.broadcast_to(b, R.shape([1, 4, 8, 8]))
                total = R.sum(R.stack((x, y), axis=0), axis=[0])
                out = R.multiply(total, kept)
                R.output(out)
            return out

    text = layout.sums_as_adds(Module).script()
    assert "R.stack" not in text and "R.add(kept, b)" in text, text
    assert text.count("R.broadcast_to") == 1, text
