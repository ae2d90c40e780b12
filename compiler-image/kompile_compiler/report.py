"""How a compiler pod tells the operator how it ended: its termination message.

Success: one JSON `CompilerResult`. Failure: one line `Reason: detail`, which the
operator copies into `status.failureReason`. Exit codes separate the user's errors
(bad model, bad shapes: retrying cannot help) from ours.
"""

from __future__ import annotations

from kompile.api.result import TERMINATION_MESSAGE_LIMIT, CompilerResult, failure_line, write_termination_message

EXIT_OK = 0
EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 3


class CompileError(Exception):
    """A failure with a reason the user can act on, e.g. InputShapeMismatch."""

    exit_code = EXIT_USER_ERROR

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def report_success(result: CompilerResult) -> int:
    text = result.model_dump_json(by_alias=True, exclude_none=True)
    if len(text.encode()) > TERMINATION_MESSAGE_LIMIT:
        # The kubelet keeps 4 KiB; tensor lists are in the manifest beside the artifact anyway.
        text = result.model_copy(update={"inputs": [], "outputs": []}).model_dump_json(by_alias=True, exclude_none=True)
    write_termination_message(text)
    return EXIT_OK


def report_failure(error: BaseException) -> int:
    if isinstance(error, CompileError):
        line, code = failure_line(error.reason, error.detail), error.exit_code
    else:
        line, code = failure_line("InternalError", f"{type(error).__name__}: {error}"), EXIT_INTERNAL_ERROR
    write_termination_message(line)
    return code
