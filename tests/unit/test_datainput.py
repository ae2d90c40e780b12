"""dataInputConfig rules per framework, as seed 003 states them."""

import pytest

from kompile.api import DataInputConfigError, Framework, parse_data_input_config


@pytest.mark.parametrize(
    "framework, raw, expected",
    [
        ("KERAS", {"input_1": [1, 3, 224, 224]}, {"input_1": (1, 3, 224, 224)}),
        (
            "KERAS",
            {"input_1": [1, 3, 224, 224], "input_2": [1, 3, 224, 224]},
            {"input_1": (1, 3, 224, 224), "input_2": (1, 3, 224, 224)},
        ),
        ("MXNET", {"data": [1, 3, 1024, 1024]}, {"data": (1, 3, 1024, 1024)}),
        ("ONNX", {"var1": [1, 1, 28, 28], "var2": [1, 1, 28, 28]}, {"var1": (1, 1, 28, 28), "var2": (1, 1, 28, 28)}),
        ("PYTORCH", {"input0": [1, 3, 224, 224]}, {"input0": (1, 3, 224, 224)}),
        ("PYTORCH", [[1, 3, 224, 224]], {"input0": (1, 3, 224, 224)}),
        ("PYTORCH", [[1, 3, 224, 224], [1, 3, 224, 224]], {"input0": (1, 3, 224, 224), "input1": (1, 3, 224, 224)}),
        ("TENSORFLOW", {"input": [1, 1024, 1024, 3]}, {"input": (1, 1024, 1024, 3)}),
        (
            "TENSORFLOW",
            {"data1": [1, 28, 28, 1], "data2": [1, 28, 28, 1]},
            {"data1": (1, 28, 28, 1), "data2": (1, 28, 28, 1)},
        ),
        ("TFLITE", {"input": [1, 224, 224, 3]}, {"input": (1, 224, 224, 3)}),
        ("XGBOOST", None, {}),
        ("ONNX", {"input_ids": [1, 128]}, {"input_ids": (1, 128)}),
    ],
)
def test_seed_examples_parse(framework, raw, expected):
    parsed = parse_data_input_config(raw, framework)
    assert parsed.inputs == expected
    assert list(parsed.inputs) == list(expected)  # order is kept: it is the model's input order


def test_layouts_follow_the_framework():
    assert parse_data_input_config({"a": [1, 3, 8, 8]}, "ONNX").layout == "NCHW"
    assert parse_data_input_config({"a": [1, 8, 8, 3]}, "TENSORFLOW").layout == "NHWC"
    assert parse_data_input_config(None, "XGBOOST").layout is None


@pytest.mark.parametrize(
    "text",
    ['{"data": [1, 3, 224, 224]}', "{'data':[1,3,224,224]}", '  {"data":[1,3,224,224]}  '],
)
def test_neo_string_forms(text):
    # Neo's API takes a JSON string; its documentation writes Python dictionaries.
    assert parse_data_input_config(text, "MXNET").inputs == {"data": (1, 3, 224, 224)}


@pytest.mark.parametrize(
    "framework, raw, fragment",
    [
        ("ONNX", [[1, 3, 224, 224]], "list form of dataInputConfig is only accepted for PYTORCH"),
        ("TENSORFLOW", [[1, 224, 224, 3]], "only accepted for PYTORCH"),
        ("PYTORCH", [1, 3, 224, 224], "write [[1, 3, 224, 224]]"),
        ("ONNX", None, "dataInputConfig is required for ONNX"),
        ("KERAS", {}, "required for KERAS"),
        ("ONNX", {"data": [1, 3, -1, 224]}, "input 'data': dimension 2 is -1"),
        ("ONNX", {"data": [1, 3, 0, 224]}, "input 'data': dimension 2 is 0"),
        ("ONNX", {"data": [1, 3, None, 224]}, "input 'data': dimension 2 is None"),
        ("ONNX", {"data": [1, 3, "?", 224]}, "dimension 2 is '?'"),
        ("ONNX", {"data": [1, 3, 2.5, 224]}, "dimension 2 is 2.5"),
        ("ONNX", {"data": [1, True, 4]}, "dimension 1 is True"),
        ("ONNX", {"data": []}, "input 'data': shape is empty"),
        ("ONNX", {"data": 224}, "input 'data': shape must be a list"),
        ("ONNX", {"": [1, 3]}, "empty name"),
        ("ONNX", "data=1,3,224,224", "not valid JSON"),
        ("ONNX", 42, "must be a dictionary"),
    ],
)
def test_violations_name_the_input_and_the_rule(framework, raw, fragment):
    with pytest.raises(DataInputConfigError) as err:
        parse_data_input_config(raw, framework)
    assert fragment in str(err.value)
    assert err.value.reason == "InvalidDataInputConfig"


def test_channel_position_hints():
    # Keras artifacts are NHWC but dataInputConfig is NCHW: the classic slip is a hint.
    hint = parse_data_input_config({"input_1": [1, 224, 224, 3]}, Framework.KERAS).warnings
    assert hint == ["input 'input_1' [1, 224, 224, 3] looks channel-last (NHWC); KERAS expects NCHW"]
    assert parse_data_input_config({"input": [1, 3, 224, 224]}, "TFLITE").warnings
    assert parse_data_input_config({"input_1": [1, 3, 224, 224]}, "KERAS").warnings == []
    assert parse_data_input_config({"x": [1, 128]}, "ONNX").warnings == []


def test_unknown_framework_is_rejected():
    with pytest.raises(ValueError):
        parse_data_input_config({"a": [1]}, "CAFFE")
