"""`kompile compile`: the compiler pods' pipeline, run on a laptop."""

import json

from kompile.cli import main
from tests.compiler.test_compile_onnx import mlp


def test_compile_to_a_folder(tmp_path, capsys):
    model = mlp(tmp_path / "mlp.onnx")
    out = tmp_path / "artifact"
    assert main(["compile", str(model), "--framework", "onnx", "--input", "features=4,16", "-o", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"] == [{"name": "features", "shape": [4, 16], "datatype": "FP32"}]
    assert "sha256" in capsys.readouterr().out


def test_compile_for_a_catalog_target(root, tmp_path):
    out = tmp_path / "artifact"
    code = main(
        [
            "compile",
            str(mlp(tmp_path / "mlp.onnx")),
            "--framework",
            "ONNX",
            "--input",
            "features=1,16",
            "--target",
            "arm64-graviton3",
            "--catalog",
            str(root / "examples"),
            "-o",
            str(out),
        ]
    )
    assert code == 0
    assert json.loads((out / "manifest.json").read_text())["target"]["name"] == "arm64-graviton3"


def test_errors_are_one_line_and_exit_2(tmp_path, capsys):
    code = main(
        [
            "compile",
            str(mlp(tmp_path / "mlp.onnx")),
            "--framework",
            "ONNX",
            "--input",
            "x=1,16",
            "-o",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "UnknownInput: dataInputConfig names input 'x', but the model's inputs are ['features']"
    )
