"""Error kinds that map onto the worker's exit-code contract (ARCHITECTURE.md)."""


class InputError(Exception):
    """The input is at fault: exit code 2, never retried by the orchestrator."""

    exit_code = 2


class WorkerError(Exception):
    """Anything else that stops a command: exit code 1, the orchestrator may retry."""

    exit_code = 1


def one_line(exc: BaseException) -> str:
    """The single-line error message the report and the orchestrator show to users."""
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())
