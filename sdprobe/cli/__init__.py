"""The ``sdprobe`` command line. Each sub-command lives in its own module of this package and exposes
``add_parser(subparsers)``; the command's function imports what it needs, so ``--help`` stays fast.
Only this package turns command lines into library calls.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from sdprobe.errors import SdprobeError

COMMANDS = (  # module names under sdprobe.cli, in the order --help lists them
    "study",
    "generate",
    "evaluate",
    "train_organism",
    "train_clip",
    "train_planted",
    "sweep",
    "thresholds",
    "isolate",
    "attribute", "bias",
    "export",
    "report",
    "track",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdprobe",
        description="Find the critical weights of text-to-image diffusion models by pruning them.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"sdprobe.cli.{name}").add_parser(sub)
    return parser


def _fit_threads_to_cpus() -> None:
    """Use no more torch threads than the CPUs this process may run on (oversubscribed threads stall each other)."""
    import os

    import torch

    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if torch.get_num_threads() > allowed:
        torch.set_num_threads(allowed)


def _user_error(exc: BaseException) -> str | None:
    """The one-line message for an error the user can fix (bad input, paths, devices, corrupt files), or None
    for an internal error."""
    if isinstance(exc, (SdprobeError, ValueError)):
        return str(exc)
    if isinstance(exc, OSError):  # permissions, is-a-directory, not-a-directory, read-only file system, disk full
        where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        reason = exc.strerror or str(exc)
        return f"{where}: {reason}" if where else reason
    if type(exc).__name__ == "SafetensorError":
        return f"a safetensors file is corrupt or truncated: {exc}"
    if type(exc).__name__ == "OutOfMemoryError":
        return f"the device ran out of memory ({exc}); lower --batch-size or use a larger device"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _fit_threads_to_cpus()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"sdprobe {args.command}: interrupted; finished work is kept and the command resumes", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every error ends in one line (user) or a traceback with a hint (bug)
        message = _user_error(exc)
        if message is None:
            raise InternalError(args.command) from exc
        print(f"sdprobe {args.command}: error: {message}", file=sys.stderr)
        return 2


class InternalError(RuntimeError):
    """An error that is sdprobe's fault, not the input's: shown with its traceback and a request to report it."""

    def __init__(self, command: str):
        super().__init__(f"sdprobe {command} failed on an internal error (the traceback above). This is a bug: please "
                         "report it with the command line, `pip freeze` and this traceback")
