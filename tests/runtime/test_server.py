"""The serving pod's server, as a process, against real v2 clients and bad input."""

from __future__ import annotations

import json
import signal
import threading
import time

import httpx
import numpy as np
import pytest

from tests.runtime.conftest import Server, reference

SHAPE = [1, 3, 224, 224]


def image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(SHAPE).astype(np.float32)


def test_tritonclient_binary_tensors_match_onnxruntime(served_squeezenet):
    import tritonclient.http as triton

    server, source, _ = served_squeezenet
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("squeezenet")
    meta = client.get_model_metadata("squeezenet")
    assert meta["inputs"] == [{"name": "data_0", "datatype": "FP32", "shape": SHAPE}]
    assert meta["outputs"][0]["shape"] == [1, 1000, 1, 1]

    x = image(1)
    tensor = triton.InferInput("data_0", SHAPE, "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    answer = client.infer(
        "squeezenet", [tensor], outputs=[triton.InferRequestedOutput("softmaxout_1", binary_data=True)]
    )
    got = answer.as_numpy("softmaxout_1")
    np.testing.assert_allclose(got, reference(source, x), atol=1e-4)


def test_kserve_client_json_tensors_match_onnxruntime(served_squeezenet):
    import asyncio

    from kserve import InferInput, InferRequest
    from kserve.inference_client import InferenceRESTClient, RESTConfig

    server, source, _ = served_squeezenet
    x = image(2)

    async def call():
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
        try:
            tensor = InferInput("data_0", SHAPE, "FP32")
            tensor.set_data_from_numpy(x, binary_data=False)
            request = InferRequest(model_name="squeezenet", infer_inputs=[tensor], request_id="r-1")
            return await client.infer(server.url, request, model_name="squeezenet")
        finally:
            await client.close()

    response = asyncio.run(call())
    assert response.id == "r-1"
    got = response.outputs[0].as_numpy()
    np.testing.assert_allclose(got, reference(source, x), atol=1e-4)


def _json_request(x: np.ndarray, name="data_0", datatype="FP32", shape=None) -> dict:
    return {
        "inputs": [{"name": name, "datatype": datatype, "shape": shape or list(x.shape), "data": x.ravel().tolist()}]
    }


@pytest.mark.parametrize(
    "body, status, message",
    [
        (_json_request(image(), name="input"), 400, "unknown input 'input'; the model's inputs are ['data_0']"),
        (_json_request(image(), datatype="INT64"), 400, "input 'data_0' has datatype INT64, the model takes FP32"),
        (
            _json_request(np.zeros([1, 3, 8, 8], np.float32)),
            400,
            "input 'data_0' has shape [1, 3, 8, 8], the model takes [1, 3, 224, 224]",
        ),
        (_json_request(np.zeros(10, np.float32), shape=SHAPE), 400, "input 'data_0': data does not fit shape"),
        ({"inputs": []}, 400, "input 'data_0' is missing"),
        (b"{not json", 400, "invalid inference request: JSON decode error"),
        ({"outputs": []}, 400, "Field required at body.InferenceRequest.inputs"),
    ],
    ids=["unknown-name", "datatype", "shape", "data-count", "missing", "malformed-json", "no-inputs"],
)
def test_bad_requests_are_400_with_a_reason(served_squeezenet, body, status, message):
    server = served_squeezenet[0]
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = httpx.post(
        f"{server.url}/v2/models/squeezenet/infer",
        content=content,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def _binary(x: np.ndarray, shape=None, size=None) -> tuple[bytes, dict]:
    params = {"binary_data_size": x.nbytes if size is None else size}
    header = json.dumps(
        {"inputs": [{"name": "data_0", "datatype": "FP32", "shape": shape or list(x.shape), "parameters": params}]}
    ).encode()
    return header + x.tobytes(), {"inference-header-content-length": str(len(header))}


@pytest.mark.parametrize(
    "shape, size, message",
    [
        ([1, 3, 8, 8], None, "input 'data_0' has shape [1, 3, 8, 8], the model takes [1, 3, 224, 224]"),
        (None, 10**9, "binary_data_size 1000000000 runs past the body"),
        (None, 12, "input 'data_0': data does not fit shape [1, 3, 224, 224]"),
    ],
    ids=["shape", "size-past-body", "size-short"],
)
def test_bad_binary_requests_are_400_with_a_reason(served_squeezenet, shape, size, message):
    server = served_squeezenet[0]
    x = np.zeros([1, 3, 8, 8] if shape else SHAPE, np.float32)
    content, headers = _binary(x, shape=shape, size=size)
    r = httpx.post(f"{server.url}/v2/models/squeezenet/infer", content=content, headers=headers, timeout=30)
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]


def test_unknown_model_is_404_and_oversized_body_is_413(served_squeezenet):
    server = served_squeezenet[0]
    r = httpx.post(f"{server.url}/v2/models/resnet/infer", json=_json_request(image()), timeout=30)
    assert r.status_code == 404 and "resnet" in r.json()["error"]
    big = b"0" * (5 * 1024 * 1024)  # the fixture's limit is 4 MiB
    r = httpx.post(f"{server.url}/v2/models/squeezenet/infer", content=big, timeout=30)
    assert r.status_code == 413 and "limit" in r.json()["error"]
    # Still serving afterwards.
    assert httpx.get(f"{server.url}/v2/health/live", timeout=5).status_code == 200


def _sample(metrics: str, name: str, **labels) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name} {labels} in /metrics")


def test_metrics_count_requests_by_status_and_name_the_digest(served_squeezenet):
    server, _, result = served_squeezenet
    before = httpx.get(f"{server.url}/metrics", timeout=10).text
    # The series a rate is taken on are there from the start (at 0 before any request).
    ok_before = _sample(before, "kompile_requests_total", model="squeezenet", code="200")
    assert _sample(before, "kompile_inference_seconds_count", model="squeezenet") >= 0
    httpx.post(f"{server.url}/v2/models/squeezenet/infer", json=_json_request(image()), timeout=30).raise_for_status()
    httpx.post(f"{server.url}/v2/models/squeezenet/infer", json=_json_request(image(), name="x"), timeout=30)
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert _sample(metrics, "kompile_requests_total", model="squeezenet", code="200") == ok_before + 1
    assert _sample(metrics, "kompile_requests_total", model="squeezenet", code="400") >= 1
    assert _sample(metrics, "kompile_inference_seconds_count", model="squeezenet") >= 1
    assert _sample(metrics, "kompile_request_seconds_bucket", model="squeezenet", le="+Inf") >= 2
    assert _sample(metrics, "kompile_batch_size_count", model="squeezenet") >= 1
    assert _sample(metrics, "kompile_model_load_seconds", model="squeezenet") > 0
    info = {"model": "squeezenet", "digest": result.artifact.sha256, "framework": "ONNX", "precision": "FP32"}
    assert _sample(metrics, "kompile_model_info", **info) == 1


def test_a_tampered_artifact_never_serves(s3, served_squeezenet, tmp_path):
    _, _, result = served_squeezenet
    store, env = s3
    server = Server(
        {
            **env,
            "KOMPILE_MODEL_NAME": "squeezenet",
            "KOMPILE_ARTIFACT_URI": result.artifact.uri,
            "KOMPILE_ARTIFACT_SHA256": "0" * 64,
        },
        tmp_path,
    )
    assert server.process.wait(timeout=120) == 1
    line = server.termination_log.read_text()
    assert line.startswith("DigestMismatch: manifest.json has sha256 ")
    assert "the CompiledModel expects 0000" in line


def test_sigterm_drains_requests_in_flight(s3, served_squeezenet, tmp_path):
    """Requests accepted before SIGTERM are answered; then the process exits cleanly."""
    _, _, result = served_squeezenet
    server = Server(
        {
            **s3[1],
            "KOMPILE_MODEL_NAME": "squeezenet",
            "KOMPILE_ARTIFACT_URI": result.artifact.uri,
            "KOMPILE_ARTIFACT_SHA256": result.artifact.sha256,
        },
        tmp_path,
    ).wait_ready()
    codes: list[int] = []

    def call():
        r = httpx.post(f"{server.url}/v2/models/squeezenet/infer", json=_json_request(image()), timeout=60)
        codes.append(r.status_code)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    # Wait until all four are inside the server, then ask it to stop.
    for _ in range(200):
        metrics = httpx.get(f"{server.url}/metrics", timeout=5).text
        if _sample(metrics, "kompile_requests_in_flight", model="squeezenet") >= 4:
            break
        time.sleep(0.05)
    server.process.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(timeout=60)
    assert codes == [200, 200, 200, 200]
    assert server.process.wait(timeout=60) in (0, -signal.SIGTERM)
