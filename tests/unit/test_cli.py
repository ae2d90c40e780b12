"""`kompile validate`: the operator's checks before `kubectl apply`."""

from kompile.cli import main


def test_examples_are_valid(root, capsys):
    assert main(["validate", str(root / "examples")]) == 0
    assert "invalid" in capsys.readouterr().out


def test_problems_name_file_object_and_field(tmp_path, capsys):
    bad = tmp_path / "jobs.yaml"
    bad.write_text(
        """
apiVersion: kompile.dev/v1alpha1
kind: CompilationJob
metadata: {name: dynamic}
spec:
  inputConfig: {s3Uri: "s3://models/m.onnx", framework: ONNX, dataInputConfig: {data: [1, 3, -1, 224]}}
  outputConfig: {s3OutputLocation: "s3://artifacts/m/", targetDevice: x86-avx2}
---
apiVersion: kompile.dev/v1alpha1
kind: InferenceEndpoint
metadata: {name: scaled}
spec: {compiledModelName: m, autoscaling: {minReplicas: 4, maxReplicas: 2}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: not-ours}
"""
    )
    assert main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (
        f"{bad}: CompilationJob/dynamic: inputConfig.dataInputConfig: input 'data': dimension 2 is -1; "
        "dynamic or empty dimensions cannot be compiled ahead of time, give the size the model will be served with"
    )
    assert err[1] == f"{bad}: InferenceEndpoint/scaled: autoscaling: maxReplicas (2) is below minReplicas (4)"
