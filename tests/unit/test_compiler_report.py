"""The compiler pod's termination message round-trips through the operator's parser."""

import json

from kompile.api.result import CompilerResult, parse_termination_message
from kompile_compiler.report import (
    EXIT_INTERNAL_ERROR,
    EXIT_USER_ERROR,
    CompileError,
    report_failure,
    report_success,
)

RESULT = {
    "artifact": {"uri": "s3://artifacts/m/", "sha256": "ab" * 32, "sizeBytes": 10},
    "inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32"}],
}


def test_success_round_trips(tmp_path, monkeypatch):
    log = tmp_path / "termination-log"
    monkeypatch.setenv("KOMPILE_TERMINATION_LOG", str(log))
    assert report_success(CompilerResult.model_validate(RESULT)) == 0
    parsed = parse_termination_message(log.read_text())
    assert isinstance(parsed, CompilerResult) and parsed.artifact.sha256 == "ab" * 32


def test_oversized_results_still_fit(tmp_path, monkeypatch):
    log = tmp_path / "termination-log"
    monkeypatch.setenv("KOMPILE_TERMINATION_LOG", str(log))
    big = {**RESULT, "outputs": [{"name": f"out_{i}_" + "x" * 40, "shape": [1, 1000]} for i in range(200)]}
    report_success(CompilerResult.model_validate(big))
    assert len(log.read_bytes()) <= 4096
    assert isinstance(parse_termination_message(log.read_text()), CompilerResult)


def test_failures_are_one_line_with_reason(tmp_path, monkeypatch):
    log = tmp_path / "termination-log"
    monkeypatch.setenv("KOMPILE_TERMINATION_LOG", str(log))
    code = report_failure(CompileError("InputShapeMismatch", "input 'data' is [1,3,224,224]\nin the model"))
    assert code == EXIT_USER_ERROR
    assert (
        parse_termination_message(log.read_text()) == "InputShapeMismatch: input 'data' is [1,3,224,224] in the model"
    )
    assert report_failure(RuntimeError("boom")) == EXIT_INTERNAL_ERROR
    assert parse_termination_message(log.read_text()) == "InternalError: RuntimeError: boom"


def test_unreadable_results_are_reported_not_trusted():
    assert parse_termination_message('{"artifact": {"uri": 1}}').startswith("InvalidCompilerResult:")
    assert parse_termination_message("") is None
    assert parse_termination_message(json.dumps(RESULT)).artifact.size_bytes == 10
