"""`trellis2-worker` command line.

Each stage package may have a `cli` module with `register(subparsers)`; a registered command sets
`func(args) -> dict`, the report, and may set `resolve(args)`, argument checks run first whose result may move
`--report` (a shard's index from the environment). This module owns the exit-code contract: 0 success, 2 input at fault,
1 otherwise; on failure the report (when `--report` is given) holds `{"error": "<one line>"}`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys

from trellis2_worker import __version__
from trellis2_worker.errors import InputError, one_line

# Stage packages in dependency order (each imports only those before it: train evaluates with generate, generate
# loads adapters with formats); each contributes its subcommands when it has a `cli` module.
STAGES = ("ingest", "ovoxel", "models", "latents", "formats", "generate", "evaluate", "train")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trellis2-worker", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    for stage in STAGES:
        name = f"trellis2_worker.{stage}.cli"
        if importlib.util.find_spec(f"trellis2_worker.{stage}") and importlib.util.find_spec(name):
            importlib.import_module(name).register(sub)
    return parser


def write_report(uri: str | None, report: dict) -> None:
    if not uri:
        return
    from trellis2_worker.storage import write_bytes  # imported late: boto3 is slow to import

    write_bytes(uri, (json.dumps(report, indent=2) + "\n").encode())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "resolve", None):  # a command's own argument checks that may change --report (a shard's)
            args.resolve(args)
        report = args.func(args)
    except KeyboardInterrupt:
        print("trellis2-worker: interrupted", file=sys.stderr)
        return 130
    except InputError as exc:
        message = one_line(exc)
        print(f"trellis2-worker: {message}", file=sys.stderr)
        _safe_report(getattr(args, "report", None), {"error": message})  # as `resolve` left it
        return 2
    except Exception as exc:  # noqa: BLE001 - every other failure is retryable by contract
        message = one_line(exc)
        print(f"trellis2-worker: {type(exc).__name__}: {message}", file=sys.stderr)
        _safe_report(getattr(args, "report", None), {"error": message})  # as `resolve` left it
        if getattr(args, "debug", False):
            raise
        return getattr(exc, "exit_code", 1)
    write_report(getattr(args, "report", None), report or {})
    return 0


def _safe_report(uri: str | None, report: dict) -> None:
    try:
        write_report(uri, report)
    except Exception as exc:  # noqa: BLE001 - the original error matters more than the report
        print(f"trellis2-worker: could not write report: {one_line(exc)}", file=sys.stderr)
