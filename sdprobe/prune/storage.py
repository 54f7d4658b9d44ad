"""Where a progressive mask keeps what it needs to move between levels and restore: in memory or on disk.

A mask keeps, per tensor, ``(kmax, G)`` arrays in *level-major* order: row ``i`` holds, for every group, the
``i``-th lowest-scoring position (or its original value). Moving from level ``k`` to level ``k'`` reads rows
``k:k'``, one contiguous slice, wherever the array lives.

* :class:`MemorySlab` keeps the array as a tensor: beside the weight, or in (pinned) host memory for CUDA weights.
* :class:`DiskSlab` keeps it in an :class:`OffloadFile`, an anonymous temporary file (deleted by the operating
  system when it is closed or the process ends, also after a crash) in the temporary directory (``TMPDIR``).
  Slices are read with ``pread`` into fresh buffers, so the process holds only the rows it is moving, and the
  model plus the mask stay near the model's own memory however much of it is in scope.

Example:
    >>> with OffloadFile() as f:
    ...     slab = f.put(torch.arange(12).view(6, 2))
    ...     slab.rows(2, 4)  # tensor([[4, 5], [6, 7]])
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import torch

STORES = ("auto", "memory", "cpu", "disk")  # see resolve_store


def resolve_store(store: str | torch.device | None, device: torch.device) -> torch.device | str | None:
    """Where a mask over weights on ``device`` keeps its data.

    Args:
        store (str | torch.device | None): ``None`` or ``"memory"``: beside the weights; ``"cpu"`` or another
            device: there; ``"disk"``: a temporary file; ``"auto"``: host memory for weights on an accelerator
            (the device holds only the model), the file for weights on the CPU (the process holds only the model).
        device (torch.device): the weights' device.

    Returns:
        torch.device | str | None: a device, ``"disk"``, or ``None`` for beside the weights.

    Raises:
        ValueError: an unknown store (the message lists the valid ones).
    """
    if store is None or store == "memory":
        return None
    if store == "disk" or (store == "auto" and torch.device(device).type == "cpu"):
        return "disk"
    if store == "auto":
        return torch.device("cpu")
    try:
        return torch.device(store)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown store {store!r}; valid: {', '.join(STORES)} or a torch device") from None


def sort_device(store: torch.device | str | None, device: torch.device) -> torch.device:
    """Where a mask sorts a tensor's scores: where it keeps the result (the host for ``"disk"``), so that a store
    off the weights' device also keeps the sort's temporaries (tens of bytes per entry) off it."""
    if store is None:
        return torch.device(device)
    return torch.device("cpu") if store == "disk" else torch.device(store)


class MemorySlab:
    """A ``(rows, G)`` array held as a tensor."""

    def __init__(self, data: torch.Tensor) -> None:
        self.data = data.contiguous()
        self.shape = tuple(self.data.shape)

    @property
    def nbytes(self) -> int:
        return self.data.nbytes

    def rows(self, start: int, stop: int) -> torch.Tensor:
        return self.data[start:stop]

    def array(self) -> torch.Tensor:
        """The whole array (for binary searches)."""
        return self.data


class DiskSlab:
    """A ``(rows, G)`` array stored at ``offset`` in an :class:`OffloadFile`."""

    def __init__(self, file: "OffloadFile", offset: int, shape: tuple[int, int], dtype: torch.dtype) -> None:
        self.file, self.offset, self.shape, self.dtype = file, offset, shape, dtype
        self.row_bytes = shape[1] * torch.empty((), dtype=dtype).element_size()

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.row_bytes

    def rows(self, start: int, stop: int) -> torch.Tensor:
        start, stop = max(0, start), min(self.shape[0], stop)
        n = max(0, stop - start)
        if n == 0:
            return torch.empty((0, self.shape[1]), dtype=self.dtype)
        buf = self.file.read(self.offset + start * self.row_bytes, n * self.row_bytes)
        return torch.frombuffer(buf, dtype=torch.uint8).view(self.dtype).view(n, self.shape[1])

    def array(self) -> torch.Tensor:
        """The whole array, memory-mapped copy-on-write: a binary search pages in only what it reads."""
        if self.nbytes == 0:
            return torch.empty(self.shape, dtype=self.dtype)
        return torch.from_numpy(self.file.map(self.offset, self.nbytes)).view(self.dtype).view(self.shape)


class OffloadFile:
    """An anonymous temporary file that stores arrays and reads back slices of them.

    Args:
        directory (str | None): where to create it. Default: ``None``, the temporary directory (``TMPDIR``).
    """

    def __init__(self, directory: str | None = None) -> None:
        self._file = tempfile.TemporaryFile(dir=directory)
        self._size = 0

    def __enter__(self) -> "OffloadFile":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def put(self, data: torch.Tensor) -> DiskSlab:
        """Append a 2-D tensor (moved to the host) and return a slab that reads it back."""
        if data.dim() != 2:
            raise ValueError(f"an offloaded array must be 2-D, got shape {tuple(data.shape)}")
        host = data.detach().to("cpu").contiguous()
        raw = host.reshape(-1).view(torch.uint8).numpy() if host.numel() else np.empty(0, np.uint8)
        offset, view, done = self._size, memoryview(raw).cast("B"), 0
        while done < raw.nbytes:
            done += os.pwrite(self._file.fileno(), view[done:], offset + done)
        self._size += raw.nbytes
        return DiskSlab(self, offset, tuple(host.shape), host.dtype)

    def read(self, offset: int, nbytes: int) -> bytearray:
        buf = bytearray(nbytes)
        view, done = memoryview(buf), 0
        while done < nbytes:
            got = os.preadv(self._file.fileno(), [view[done:]], offset + done)
            if got <= 0:
                raise OSError(f"offload file ended after {offset + done} of {offset + nbytes} bytes")
            done += got
        return buf

    def map(self, offset: int, nbytes: int) -> np.ndarray:
        """Bytes ``offset:offset + nbytes`` memory-mapped copy-on-write (uint8)."""
        return np.memmap(self._file, dtype=np.uint8, mode="c", offset=offset, shape=(nbytes,))

    def close(self) -> None:
        self._file.close()


Slab = MemorySlab | DiskSlab  # what a mask reads positions, values and keys from
