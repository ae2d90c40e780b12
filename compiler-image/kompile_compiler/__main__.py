"""The compiler pod's entry point: `python -m kompile_compiler`, the job in KOMPILE_JOB."""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from pathlib import Path

from pydantic import ValidationError

from kompile.api.result import CompilerJob
from kompile_compiler.pipeline import compile_job
from kompile_compiler.report import CompileError, report_failure, report_success


def main() -> int:
    try:
        try:
            job = CompilerJob.model_validate_json(os.environ["KOMPILE_JOB"])
        except KeyError:
            raise CompileError("InvalidJob", "KOMPILE_JOB is not set; the operator passes the job there") from None
        except ValidationError as err:
            raise CompileError("InvalidJob", f"KOMPILE_JOB is not a valid job: {err.errors()[0]['msg']}") from None
        with tempfile.TemporaryDirectory(prefix="kompile-") as workdir:
            result, _ = compile_job(job, Path(workdir))
        print(result.model_dump_json(by_alias=True, exclude_none=True))
        return report_success(result)
    except CompileError as err:
        print(f"{err.reason}: {err.detail}", file=sys.stderr)
        return report_failure(err)
    except Exception as err:  # noqa: BLE001 - anything else is ours; the traceback goes to the log
        traceback.print_exc()
        return report_failure(err)


if __name__ == "__main__":
    sys.exit(main())
