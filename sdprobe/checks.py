"""The rules every number a user gives must pass, shared by the library's configs and the command line.

Each check returns the value (converted) or raises ``ValueError`` with a message that names the setting, the value
and what is allowed; the CLI turns the same checks into argparse types (:func:`sdprobe.cli.common.arg`), so
``--guidance nan`` and ``GenerationConfig(guidance=float("nan"))`` fail the same way, before anything is written.

Example:
    >>> fraction("stop", 0.95)
    0.95
    >>> seed("seed", -1)
    Traceback (most recent call last):
    ValueError: seed must be an integer in [0, 9223372036854775807], got -1
"""

from __future__ import annotations

import math
from numbers import Integral, Real

MAX_SEED = 2**63 - 1  # torch and numpy generators accept every seed in [0, MAX_SEED]; images use seed + i
BUILTIN_PREFIX = "builtin:"  # names what ships with sdprobe: models, CLIPs, prompt suites


def builtin(value, known, what: str, error: type[Exception] = ValueError) -> str | None:
    """The NAME of a ``builtin:NAME`` value, which must be among ``known``; None for any other value.

    Example:
        >>> builtin("builtin:tiny-shapes", {"tiny-shapes": ...}, "model")
        'tiny-shapes'
    """
    text = str(value)
    if not text.startswith(BUILTIN_PREFIX):
        return None
    name = text[len(BUILTIN_PREFIX):]
    if name not in known:
        raise error(f"unknown built-in {what} {text!r}; built-ins: {', '.join(BUILTIN_PREFIX + n for n in known)}")
    return name


def finite(name: str, value) -> float:
    """A finite real number (no NaN, no infinity, no bool)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def non_negative(name: str, value) -> float:
    """A finite number >= 0."""
    v = finite(name, value)
    if v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def positive(name: str, value) -> float:
    """A finite number > 0."""
    v = finite(name, value)
    if not v > 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def fraction(name: str, value) -> float:
    """A sparsity: a finite number in [0, 1) (pruning every weight leaves nothing to measure)."""
    v = finite(name, value)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"{name} must be a sparsity in [0, 1), got {value!r}")
    return v


def unit(name: str, value) -> float:
    """A finite number in [0, 1] (a share, a scale factor alpha, a tolerance)."""
    v = finite(name, value)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return v


def probability(name: str, value) -> float:
    """A level or coverage strictly inside (0, 1)."""
    v = finite(name, value)
    if not 0.0 < v < 1.0:
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    return v


def offset(name: str, value) -> float:
    """A per-component sparsity offset: a finite number in (-1, 1)."""
    v = finite(name, value)
    if not -1.0 < v < 1.0:
        raise ValueError(f"{name} must be an offset in (-1, 1), got {value!r}")
    return v


def integer(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """An integer (not a bool, not a float) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return v


def positive_int(name: str, value) -> int:
    """An integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def non_negative_int(name: str, value) -> int:
    """An integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def seed(name: str, value) -> int:
    """A generator seed: an integer in [0, MAX_SEED]."""
    if isinstance(value, bool) or not isinstance(value, Integral) or not 0 <= int(value) <= MAX_SEED:
        raise ValueError(f"{name} must be an integer in [0, {MAX_SEED}], got {value!r}")
    return int(value)
