"""The per-kernel profile a compile uses to spend a small tuning budget (and bench/kernel_times.py prints)."""

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from kompile.api.common import TensorSpec
from kompile_compiler import packaging, profile
from tests.compiler.models import compile_onnx, save


def twice(path):
    """Two dense layers of one shape, so one compiled kernel runs twice per inference."""
    rng = np.random.default_rng(5)
    weights = [numpy_helper.from_array(rng.standard_normal((64, 64)).astype(np.float32), f"w{i}") for i in (1, 2)]
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h1"]),
            helper.make_node("Relu", ["h1"], ["a1"]),
            helper.make_node("MatMul", ["a1", "w2"], ["h2"]),
            helper.make_node("Relu", ["h2"], ["y"]),
        ],
        "twice",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 64])],
        weights,
    )
    return save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_the_profile_counts_the_calls_of_a_kernel_used_twice(tmp_path):
    out = tmp_path / "artifact"
    compile_onnx(twice(tmp_path / "twice.onnx"), {"x": [4, 64]}, tmp_path / "work", output_dir=out)
    feed = {"x": np.ones((4, 64), np.float32)}
    times = profile.kernel_profile(out / packaging.LIBRARY, feed, [TensorSpec(name="x", shape=[4, 64])], runs=3)
    assert [k.calls for k in times.values()] == [2], times  # one fused matmul+relu, called per layer
    assert all(k.seconds > 0 for k in times.values())
    # Its arguments as the first call saw them: the activations in, the weights, the output last.
    (kernel,) = times.values()
    assert kernel.shapes[0] == (4, 64) and kernel.shapes[-1] == (4, 64) and len(kernel.shapes) >= 3, kernel
    assert profile.kernel_times(out / packaging.LIBRARY, feed, [TensorSpec(name="x", shape=[4, 64])]).keys() == (
        times.keys()
    )
