"""Several processes, one run: split the work, gather it on the main process, agree on every decision.

A sweep started with ``accelerate launch --num_processes P -m sdprobe sweep ...`` (or ``torchrun
--nproc_per_node P -m sdprobe sweep ...``) runs as P processes. Each holds the whole pipeline, prunes it to the
same level and generates a contiguous share of the prompts; the images are gathered on the main process (rank
0), which alone scores them and writes the run directory. Decisions that depend on what is on disk (which
levels are done, where to refine) are made on the main process and broadcast, so every process walks the same
levels. An exception on any process is re-raised on all of them (as :class:`ProcessFailed` on the others), so
no process is left waiting in a collective.

Each process computes the pruning scores itself. Magnitude, random and N:M scores agree bit for bit; Wanda and
OWL-Wanda agree as long as their calibration pass is deterministic (always on the CPU; on GPUs see
``torch.use_deterministic_algorithms``). Images are scored on the main process over the whole prompt set, so set
metrics such as FID see the same images as in a single-process run.

On a machine without GPUs, ``accelerate launch --multi_gpu --num_processes P`` starts the P processes (plain
``--cpu`` starts one process unless MPI is set up); sdprobe then joins them over gloo.

Without a launcher (``WORLD_SIZE`` unset or 1) :func:`current` returns a single-process :class:`Processes`
whose methods call the function they are given and nothing else: no import of Accelerate, no overhead.

The process group is Accelerate's (``accelerate.PartialState``): NCCL for CUDA pipelines, gloo on the CPU.
Broadcasts use ``accelerate.utils.broadcast_object_list``. Gathers use ``torch.distributed.gather_object``
towards rank 0 rather than ``accelerate.utils.gather_object``, which gathers to every process and would put
every image in every process's memory.

Example:
    >>> procs = current("cpu")
    >>> images = procs.gather_shares(lambda part: generate(pipe, prompts[part], seeds[part]), len(prompts))
    >>> done = procs.on_main(lambda: run.done_levels())  # the same list on every process
"""

from __future__ import annotations

import atexit
import datetime
import functools
import logging
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from sdprobe.errors import SdprobeError

log = logging.getLogger(__name__)
T = TypeVar("T")
J = TypeVar("J")
MAIN_RANK = 0  # the process that scores, decides and writes
WORLD_SIZE_ENV, RANK_ENV, LOCAL_RANK_ENV = "WORLD_SIZE", "RANK", "LOCAL_RANK"  # set by accelerate launch / torchrun
WAIT_HOURS = 12  # how long a process waits in a collective: the others wait while the main one runs a whole stage
ERROR_LINES = 12  # lines of a failed process's traceback quoted in the error the other processes raise


class ProcessFailed(SdprobeError):
    """Another process of the same run raised; the message quotes its rank and error."""


def share(n: int, rank: int, world_size: int) -> slice:
    """The contiguous block of ``n`` items that process ``rank`` of ``world_size`` handles.

    Blocks are in rank order and their sizes differ by at most one (the first ``n % world_size`` processes take
    one more), as with ``accelerate.PartialState.split_between_processes``. A process gets an empty slice when
    there are fewer items than processes.

    Args:
        n (int): number of items, >= 0.
        rank (int): the process, in ``[0, world_size)``.
        world_size (int): number of processes, >= 1.

    Returns:
        slice: ``items[share(...)]`` is the process's block.

    Example:
        >>> [share(5, r, 2) for r in range(2)]
        [slice(0, 3, None), slice(3, 5, None)]
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size) with world_size >= 1, got rank {rank} of {world_size}")
    if n < 0:
        raise ValueError(f"the number of items must be non-negative, got {n}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


@dataclass(frozen=True)
class Processes:
    """The processes of one run, as seen from one of them.

    Attributes:
        rank (int): this process, 0 is the main one. Default: 0.
        world_size (int): number of processes. Default: 1 (every method then just calls its function).
        local_rank (int): this process's index on its machine (picks its GPU). Default: 0.

    Example:
        >>> procs = Processes()  # one process
        >>> procs.on_main(lambda: 42), procs.gather(lambda: "x")
        (42, ['x'])
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank must be in [0, world_size) with world_size >= 1, got {self.rank} of {self.world_size}")

    @property
    def is_main(self) -> bool:
        return self.rank == MAIN_RANK

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def share(self, n: int) -> slice:
        """This process's contiguous block of ``n`` items (see :func:`share`)."""
        return share(n, self.rank, self.world_size)

    def barrier(self) -> None:
        """Wait until every process reaches this point."""
        if self.distributed:
            from accelerate import PartialState

            PartialState().wait_for_everyone()

    def on_main(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` on the main process only and return its result on every process.

        Use it for everything that reads or writes the run directory. The result is broadcast (it must pickle).

        Raises:
            Exception: on the main process, whatever ``fn`` raised; on the others :class:`ProcessFailed`
                quoting it.
        """
        if not self.distributed:
            return fn()
        from accelerate.utils import broadcast_object_list

        error, result = None, None
        if self.is_main:
            try:
                result = fn()
            except Exception as exc:
                error = exc
        message = [None if error is None else _describe(error), result if error is None else None]
        broadcast_object_list(message, from_process=MAIN_RANK)
        if error is not None:
            raise error
        if message[0] is not None:
            raise ProcessFailed(f"the main process failed:\n{message[0]}")
        return message[1]

    def gather(self, fn: Callable[[], T]) -> list[T] | None:
        """Call ``fn`` on every process; the main process gets the results in rank order, the others ``None``.

        Raises:
            Exception: on a process whose ``fn`` raised, that exception; on every other process
                :class:`ProcessFailed` naming the failed rank(s).
        """
        if not self.distributed:
            return [fn()]
        import torch.distributed as dist

        try:
            result, error = fn(), None
        except Exception as exc:
            result, error = None, exc
        errors: list[str | None] = [None] * self.world_size
        dist.all_gather_object(errors, None if error is None else _describe(error))
        if error is not None:
            raise error
        failed = {rank: e for rank, e in enumerate(errors) if e is not None}
        if failed:
            raise ProcessFailed("; ".join(f"process {rank} failed:\n{e}" for rank, e in failed.items()))
        out: list[T] | None = [None] * self.world_size if self.is_main else None  # type: ignore[list-item]
        dist.gather_object(result, out, dst=MAIN_RANK)
        return out

    def gather_shares(self, fn: Callable[[slice], np.ndarray], n: int) -> np.ndarray | None:
        """Split ``n`` items, call ``fn(block)`` on each process's block and concatenate the results on main.

        Args:
            fn (Callable[[slice], np.ndarray]): computes the rows of one block (axis 0 = items); not called for an
                empty block.
            n (int): number of items.

        Returns:
            np.ndarray | None: on the main process the rows of all ``n`` items in their original order (what
            ``fn(slice(0, n))`` would return, up to batch-composition round-off); ``None`` on the others.
        """
        if not self.distributed:
            return fn(slice(0, n))
        block = self.share(n)
        parts = self.gather(lambda: fn(block) if block.stop > block.start else None)
        if parts is None:
            return None
        return np.concatenate([p for p in parts if p is not None])


    def lead(self, main: Callable[[Callable[[J], list | None]], T], work: Callable[[J], object]) -> T:
        """Run ``main`` on the main process while the other processes serve the jobs it hands out.

        ``main`` gets ``ask``: ``ask(job)`` sends ``job`` to every process, calls ``work(job)`` on each (the main
        one included) and returns their results in rank order on the main process. The other processes do
        nothing but serve jobs until ``main`` returns. Use it for an adaptive procedure (a search whose next step
        depends on the last result) whose every step shares out the same expensive work: the decisions, the
        scoring and every write stay on the main process.

        Args:
            main (Callable): ``main(ask)``, called on the main process only.
            work (Callable): ``work(job)``, called on every process for every job; it picks its own share
                (e.g. with :meth:`share`).

        Returns:
            T: what ``main`` returned, on every process (it is broadcast: it must pickle).

        Raises:
            Exception: on the main process, whatever ``main`` raised; on the others :class:`ProcessFailed`
                quoting it. A failure inside a job is raised on every process (see :meth:`gather`).

        Example:
            >>> procs.lead(lambda ask: sum(sum(ask(n)) for n in (10, 20)),
            ...            lambda n: len(range(n)[procs.share(n)]))
            30
        """
        if not self.distributed:
            return main(lambda job: [work(job)])
        from accelerate.utils import broadcast_object_list

        if not self.is_main:
            while True:
                message = [None, None]
                broadcast_object_list(message, from_process=MAIN_RANK)
                kind, payload = message
                if kind == _JOB:
                    self.gather(lambda: work(payload))
                elif kind == _DONE:
                    return payload
                else:
                    raise ProcessFailed(f"the main process failed:\n{payload}")

        serving = [True]  # False once a job failed: the other processes have left their loop

        def ask(job: J) -> list:
            if not serving[0]:
                raise RuntimeError("a job failed earlier; the other processes no longer serve")
            broadcast_object_list([_JOB, job], from_process=MAIN_RANK)
            try:
                return self.gather(lambda: work(job))
            except BaseException:
                serving[0] = False
                raise

        try:
            result = main(ask)
        except BaseException as exc:
            if serving[0]:
                broadcast_object_list([_FAILED, _describe(exc)], from_process=MAIN_RANK)
            raise
        broadcast_object_list([_DONE, result], from_process=MAIN_RANK)
        return result


_JOB, _DONE, _FAILED = "job", "done", "failed"  # what the main process of Processes.lead tells the others


def _describe(error: BaseException) -> str:
    lines = traceback.format_exception(type(error), error, error.__traceback__)
    return "".join(lines[-ERROR_LINES:]).rstrip()


def launched_world_size() -> int:
    """The number of processes the launcher started (``WORLD_SIZE``); 1 without a launcher."""
    value = os.environ.get(WORLD_SIZE_ENV, "1")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{WORLD_SIZE_ENV} must be an integer number of processes, got {value!r}") from None


def current(device: str | torch.device = "cpu") -> Processes:
    """The processes of this run, starting Accelerate's process group when a launcher started several.

    Args:
        device (str | torch.device): where the pipeline runs; a CPU pipeline communicates over gloo even on a
            machine with GPUs, a CUDA one over NCCL. Default: ``"cpu"``.

    Returns:
        Processes: ``Processes()`` (one process) unless ``WORLD_SIZE`` > 1.

    Example:
        >>> current("cpu").world_size  # under `accelerate launch --num_processes 2`
        2
    """
    if launched_world_size() <= 1:
        return Processes()
    from accelerate import PartialState

    state = PartialState(cpu=torch.device(device).type == "cpu", timeout=datetime.timedelta(hours=WAIT_HOURS))
    if state.num_processes <= 1:
        raise RuntimeError(f"{WORLD_SIZE_ENV}={launched_world_size()} but Accelerate started a single process "
                           f"(distributed type {state.distributed_type}); launch with `accelerate launch "
                           "--multi_gpu --num_processes N` or `torchrun --nproc_per_node N`")
    _leave_at_exit()
    log.info("process %d of %d (%s)", state.process_index, state.num_processes, state.backend)
    return Processes(rank=state.process_index, world_size=state.num_processes, local_rank=state.local_process_index)


@functools.cache
def _leave_at_exit() -> None:
    """Register :func:`_leave_process_group` to run at exit, once per process."""
    atexit.register(_leave_process_group)


def _leave_process_group() -> None:
    """Destroy the process group while the interpreter is still whole.

    A gloo group left to interpreter finalization can abort the process ("terminate called without an active
    exception", SIGABRT) after all work finished; destroying it at exit makes a finished run exit with status 0.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def launched_main() -> bool:
    """Whether this is the main process of what the launcher started (``RANK`` 0, or no launcher): the one that
    prints a command's summary."""
    return int(os.environ.get(RANK_ENV, "0") or 0) == MAIN_RANK


def process_device(device: str) -> str:
    """The device this process should load the pipeline on: ``"cuda"`` becomes ``"cuda:<local rank>"``.

    Several processes on one machine each take their own GPU; an explicit index (``"cuda:1"``) or the CPU is
    kept as given.

    Example:
        >>> process_device("cuda")  # process 1 of `accelerate launch --num_processes 2`
        'cuda:1'
    """
    if device != "cuda" or launched_world_size() <= 1:
        return device
    return f"cuda:{int(os.environ.get(LOCAL_RANK_ENV, '0'))}"


__all__ = ["Processes", "ProcessFailed", "share", "current", "process_device", "launched_world_size", "launched_main"]
