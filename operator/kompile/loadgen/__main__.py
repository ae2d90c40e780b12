"""`python -m kompile.loadgen`: one load test, its summary as the pod's termination message."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from pydantic import ValidationError

from kompile.api.result import failure_line, write_termination_message
from kompile.loadgen import CONFIG_ENV, LoadTestConfig, LoadTestSummary
from kompile.loadgen.payloads import PayloadError, npz_feeds

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


def fail(reason: str, detail: str) -> int:
    line = failure_line(reason, detail)
    sys.stderr.write(line)
    write_termination_message(line)
    return 2


def main() -> int:
    try:
        config = LoadTestConfig.model_validate_json(os.environ.get(CONFIG_ENV, ""))
    except ValidationError as err:
        return fail("InvalidLoadTest", f"{CONFIG_ENV}: {err.errors()[0]['msg']}")
    work = Path(tempfile.mkdtemp(prefix="kompile-load-"))
    env = {**os.environ, "KOMPILE_LOADTEST_SUMMARY": str(work / "summary.json")}
    if config.sample_payload_s3_uri:
        from kompile.storage import ObjectStore, S3Location, StorageError

        try:
            ObjectStore().download(S3Location.parse(config.sample_payload_s3_uri), work / "payload.npz")
        except StorageError as err:
            return fail("InvalidSamplePayload", str(err))
        try:
            npz_feeds(work / "payload.npz", config.inputs)
        except PayloadError as err:
            return fail("InvalidSamplePayload", f"{config.sample_payload_s3_uri}: {err}")
        env["KOMPILE_LOADTEST_PAYLOAD"] = str(work / "payload.npz")
    # Locust in its own process: it monkey-patches the standard library with gevent.
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        config.url,
        "--exit-code-on-error",
        "0",
        "--only-summary",
        "--loglevel",
        "WARNING",
    ]
    done = subprocess.run(command, env=env, cwd=work)
    summary_file = work / "summary.json"
    if not summary_file.exists():
        return fail("LoadGeneratorFailed", f"locust exited with {done.returncode} before summarising the test")
    summary = LoadTestSummary.model_validate_json(summary_file.read_text())
    if summary.requests == summary.failures:
        return fail("NoSuccessfulRequests", f"none of {summary.requests} requests to {config.url} succeeded")
    line = summary.model_dump_json(by_alias=True, exclude_none=True)
    print(line, flush=True)
    write_termination_message(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
