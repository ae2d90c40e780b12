"""An artifact is loaded only when its manifest and every file match their digests."""

from __future__ import annotations

import numpy as np
import pytest

from kompile.cli import main
from kompile_runtime.artifact import ArtifactError, InvalidInput, fetch, load
from tests.compiler.models import compile_onnx
from tests.compiler.test_compile_onnx import mlp


@pytest.fixture
def artifact(tmp_path):
    out = tmp_path / "artifact"
    result, _ = compile_onnx(mlp(tmp_path / "mlp.onnx"), {"features": [2, 16]}, tmp_path / "work", output_dir=out)
    return out, result


def test_loads_and_runs_what_was_compiled(artifact):
    folder, result = artifact
    model = load(folder, result.artifact.sha256)
    x = np.ones((2, 16), np.float32)
    (logits,) = model({"features": x})
    assert logits.shape == (2, 4)
    assert [o.name for o in model.outputs] == ["logits"]


@pytest.mark.parametrize("tamper", ["library", "manifest", "missing"])
def test_tampering_refuses_to_load(artifact, tamper):
    folder, result = artifact
    if tamper == "library":
        data = bytearray((folder / "model.so").read_bytes())
        data[-1] ^= 0xFF
        # A new file, as a corrupted download would be: rewriting the library in place would
        # change the pages this process mapped when the compile step loaded it for parity.
        (folder / "model.so.new").write_bytes(bytes(data))
        (folder / "model.so.new").replace(folder / "model.so")
    elif tamper == "manifest":
        (folder / "manifest.json").write_text((folder / "manifest.json").read_text().replace("FP32", "FP16", 1))
    else:
        (folder / "model.so").unlink()
    with pytest.raises(ArtifactError) as err:
        load(folder, result.artifact.sha256)
    assert (
        err.value.reason
        == {"library": "DigestMismatch", "manifest": "DigestMismatch", "missing": "ArtifactIncomplete"}[tamper]
    )


@pytest.mark.parametrize(
    "feed, message",
    [
        ({"features": np.ones((2, 8), np.float32)}, "input 'features' has shape [2, 8], the model takes [2, 16]"),
        ({"features": np.ones((2, 16), np.float64)}, "input 'features' is float64, the model takes FP32"),
        ({}, "input 'features' is missing"),
        ({"features": np.ones((2, 16), np.float32), "extra": np.ones(1)}, "unknown input 'extra'"),
    ],
)
def test_bad_inputs_name_the_input(artifact, feed, message):
    model = load(artifact[0])
    with pytest.raises(InvalidInput) as err:
        model(feed)
    assert message in str(err.value)


def test_fetch_from_s3_then_verify(s3, artifact, tmp_path):
    from kompile_compiler import packaging

    store, _ = s3
    folder, result = artifact
    uri = packaging.upload(folder, "s3://kompile-artifacts/mlp-fetch/", store)
    fetched = fetch(uri, tmp_path / "fetched", store)
    assert load(fetched, result.artifact.sha256)({"features": np.zeros((2, 16), np.float32)})[0].shape == (2, 4)


def test_cli_run_and_bench(artifact, capsys):
    folder, result = artifact
    assert main(["run", str(folder), "--sha256", result.artifact.sha256]) == 0
    assert capsys.readouterr().out.startswith("logits [2, 4] float32")
    assert main(["bench", str(folder), "--repeats", "5"]) == 0
    assert "p50Ms" in capsys.readouterr().out
    with pytest.raises(SystemExit) as code:
        main(["run", str(folder), "--sha256", "0" * 64])
    assert code.value.code == 2


def test_an_uncompiled_onnx_artifact_serves_through_onnxruntime(artifact, tmp_path):
    """The recommender's baseline: the source model in the same artifact format, same loader."""
    import shutil

    from kompile_compiler import packaging

    compiled_folder, result = artifact
    folder = tmp_path / "uncompiled"
    folder.mkdir()
    shutil.copy(tmp_path / "mlp.onnx", folder / "model.onnx")
    written = packaging.write_manifest(
        folder,
        {
            "runtime": "onnxruntime",
            "inputs": [t.wire() for t in result.inputs],
            "outputs": [t.wire() for t in result.outputs],
        },
    )
    baseline, compiled = load(folder, written.sha256), load(compiled_folder, result.artifact.sha256)
    x = np.random.default_rng(3).standard_normal((2, 16)).astype(np.float32)
    np.testing.assert_allclose(baseline({"features": x})[0], compiled({"features": x})[0], atol=1e-4)
    manifest = folder / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"onnxruntime"', '"tensorrt"'))
    with pytest.raises(ArtifactError) as err:
        load(folder)
    assert (err.value.reason, "tensorrt" in err.value.detail) == ("ArtifactInvalid", True)
