"""XGBoost tree models: trained here, compiled to a library by treelite + tl2cgen, checked
against XGBoost's own predictions, loaded by the serving pod's loader."""

from __future__ import annotations

import numpy as np
import pytest

from kompile.api import Framework, Precision
from kompile.api.hardwaretarget import HardwareTargetSpec
from kompile_compiler.pipeline import compile_model
from kompile_compiler.report import CompileError
from kompile_compiler.targets import from_hardware_target, host_target
from kompile_runtime.artifact import load
from tests.compiler.deps import need
from tests.compiler.test_cross_targets import EM_AARCH64, elf_machine

xgb = need("xgboost")
FEATURES = 12


def data(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, FEATURES)).astype(np.float32)
    classes = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(int) + (x[:, 3] > 0.8).astype(int)
    return x, classes


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """Three classes, 40 trees of depth 5, trained on 2,000 rows; saved as XGBoost JSON."""
    x, y = data(2000)
    model = xgb.XGBClassifier(n_estimators=40, max_depth=5, learning_rate=0.3).fit(x, y)
    path = tmp_path_factory.mktemp("xgb") / "model.json"
    model.get_booster().save_model(str(path))
    return model, path


def compile_trees(path, tmp_path, config=None, target=None, **options):
    return compile_model(
        model_uri=str(path),
        framework=Framework.XGBOOST,
        data_input_config=config,
        target=target or host_target(),
        workdir=tmp_path / "work",
        output_dir=tmp_path / "artifact",
        progress=lambda _: None,
        **options,
    )


def test_classifier_compiles_and_serves_xgboosts_probabilities(classifier, tmp_path):
    model, path = classifier
    result, manifest = compile_trees(path, tmp_path, {"input": [64, FEATURES]})
    assert manifest["runtime"] == "tl2cgen"
    assert manifest["parity"]["reference"].startswith("treelite GTIL")
    assert manifest["parity"]["maxAbsError"] <= 1e-5
    assert [t.wire() for t in result.inputs] == [{"name": "input", "shape": [64, FEATURES], "datatype": "FP32"}]
    assert [t.wire() for t in result.outputs] == [{"name": "output", "shape": [64, 3], "datatype": "FP32"}]
    assert result.latency.p50_ms > 0

    # The serving pod's loader runs it, and it answers what XGBoost itself answers.
    served = load(tmp_path / "artifact", result.artifact.sha256)
    x, _ = data(64, seed=5)
    (probabilities,) = served({"input": x})
    np.testing.assert_allclose(probabilities, model.predict_proba(x), atol=1e-5)


def test_regressor_without_data_input_config_takes_one_row(tmp_path):
    x, y = data(500)
    model = xgb.XGBRegressor(n_estimators=20, max_depth=4).fit(x, y.astype(np.float32) * 1.5)
    path = tmp_path / "regressor.ubj"
    model.get_booster().save_model(str(path))
    result, _ = compile_trees(path, tmp_path)  # seed 003: XGBoost needs no dataInputConfig
    assert result.inputs[0].shape == [1, FEATURES] and result.outputs[0].shape == [1, 1]
    (prediction,) = load(tmp_path / "artifact")({"input": x[:1]})
    np.testing.assert_allclose(prediction.ravel(), model.predict(x[:1]), atol=1e-5)


@pytest.mark.parametrize(
    "config, reason, detail",
    [
        (
            {"input": [8, 5]},
            "InputShapeMismatch",
            f"input 'input' is [batch,{FEATURES}] in the model, dataInputConfig gives [8,5]",
        ),
        ({"features": [8, FEATURES]}, "UnknownInput", "an XGBoost model has one input, 'input'"),
    ],
)
def test_input_errors_name_the_input(classifier, tmp_path, config, reason, detail):
    with pytest.raises(CompileError) as err:
        compile_trees(classifier[1], tmp_path, config)
    assert err.value.reason == reason and detail in err.value.detail


def test_what_trees_cannot_do_is_refused_clearly(classifier, tmp_path):
    with pytest.raises(CompileError) as err:
        compile_trees(classifier[1], tmp_path, precision=Precision.FP16)
    assert (err.value.reason, err.value.detail) == ("UnsupportedPrecision", "FP16: tree models compile in FP32")
    gpu = from_hardware_target(
        "nvidia-sm80",
        HardwareTargetSpec.model_validate(
            {"platform": {"arch": "x86_64", "accelerator": "nvidia"}, "tvm": {"kind": "cuda", "arch": "sm_80"}}
        ),
    )
    with pytest.raises(CompileError) as err:
        compile_trees(classifier[1], tmp_path, target=gpu)
    assert err.value.reason == "UnsupportedTarget" and "CPU targets only" in err.value.detail
    (tmp_path / "junk.json").write_text('{"not": "a booster"}')
    with pytest.raises(CompileError) as err:
        compile_trees(tmp_path / "junk.json", tmp_path)
    assert err.value.reason == "InvalidModel"


def test_arm64_tree_library_is_cross_compiled(classifier, tmp_path):
    arm = from_hardware_target(
        "arm64-graviton3",
        HardwareTargetSpec.model_validate(
            {"platform": {"arch": "arm64"}, "tvm": {"kind": "llvm", "mtriple": "aarch64-linux-gnu"}}
        ),
    )
    _, manifest = compile_trees(classifier[1], tmp_path, target=arm)
    assert elf_machine(tmp_path / "artifact" / "model.so") == EM_AARCH64
    assert "skipped" in manifest["parity"]
