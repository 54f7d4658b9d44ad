"""Search and confirmation splits: the prompts and seeds a claim is searched on, and the other ones it is judged on.

A search (isolation, bias-critical weights, and every adaptive choice such as a collapse window or a bar) only ever
sees its **search split**. Its claim is then tested on a **confirmation split** that shares no prompt and no seed
with it. Only confirmation numbers are headline numbers.

Example:
    >>> search = Split("search", ("a red circle",), (7,))
    >>> confirm = confirmation_split(search, 96, seed=1)
    >>> set(confirm.prompts) & set(search.prompts), set(confirm.seeds) & set(search.seeds)
    (set(), set())
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

MAX_SEED = 2**31 - 1  # seeds are drawn from [0, MAX_SEED)
MAX_DRAWS = 1000  # grammar draws per wanted prompt before the pool counts as exhausted


@dataclass(frozen=True)
class Split:
    """Prompts and their generation seeds, one seed per prompt.

    Attributes:
        name (str): ``"search"`` or ``"confirmation"``.
        prompts (tuple[str, ...]): the prompts, in image order.
        seeds (tuple[int, ...]): one generation seed per prompt.
    """

    name: str
    prompts: tuple[str, ...]
    seeds: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompts", tuple(str(p) for p in self.prompts))
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        if len(self.prompts) != len(self.seeds):
            raise ValueError(f"split {self.name!r}: {len(self.prompts)} prompts but {len(self.seeds)} seeds")
        if not self.prompts:
            raise ValueError(f"split {self.name!r} is empty")

    def __len__(self) -> int:
        return len(self.prompts)

    def to_dict(self) -> dict:
        return {"prompts": list(self.prompts), "seeds": list(self.seeds)}

    @classmethod
    def from_dict(cls, name: str, d: dict) -> "Split":
        return cls(name, tuple(d["prompts"]), tuple(d["seeds"]))

    def check_disjoint(self, other: "Split") -> None:
        """Raise ValueError when the two splits share a prompt or a seed."""
        shared_p, shared_s = set(self.prompts) & set(other.prompts), set(self.seeds) & set(other.seeds)
        if shared_p or shared_s:
            raise ValueError(f"splits {self.name!r} and {other.name!r} share {len(shared_p)} prompt(s) and "
                             f"{len(shared_s)} seed(s); a confirmation must use prompts and seeds the search never saw")


def _grammar_prompts(n: int, rng: np.random.Generator, exclude: set[str]) -> list[str]:
    from sdprobe.world import format_prompt, sample_specs

    out: list[str] = []
    for _ in range(n * MAX_DRAWS):
        prompt = format_prompt(sample_specs(1, rng)[0])
        if prompt not in exclude:
            out.append(prompt)
            if len(out) == n:
                return out
    raise ValueError(f"the grammar yields too few prompts outside the {len(exclude)} excluded ones")


def confirmation_split(search: Split | Sequence[Split], n: int, seed: int, pool: Sequence[str] | None = None,
                       name: str = "confirmation") -> Split:
    """A split of ``n`` prompts and seeds that shares none with ``search``.

    Args:
        search (Split | Sequence[Split]): the split(s) to stay away from (search, and any earlier confirmation).
        n (int): prompts (and seeds) wanted.
        seed (int): seeds the draw.
        pool (Sequence[str] | None): the prompts to draw from (a user's suite), each used at most once. Default:
            None, the organism's grammar with every attribute stated, the distribution of a sweep's prompts.
        name (str): the new split's name. Default: ``"confirmation"``.

    Returns:
        Split: prompts outside every excluded split, with seeds outside theirs.

    Raises:
        ValueError: ``n`` not positive, or the pool has fewer than ``n`` prompts left (the message says how many).
    """
    if n <= 0:
        raise ValueError(f"a confirmation split needs at least one prompt, got {n}")
    avoid = [search] if isinstance(search, Split) else list(search)
    used_p = {p for s in avoid for p in s.prompts}
    used_s = {x for s in avoid for x in s.seeds}
    rng = np.random.default_rng(seed)
    if pool is None:
        prompts = _grammar_prompts(n, rng, used_p)
    else:
        left = list(dict.fromkeys(p for p in pool if p not in used_p))
        if len(left) < n:
            raise ValueError(f"the prompt pool has {len(left)} prompts the search did not use; {n} are needed. "
                             f"Give more prompts, or ask for a smaller confirmation split")
        prompts = [left[i] for i in rng.permutation(len(left))[:n]]
    return Split(name, tuple(prompts), tuple(fresh_seeds(n, rng, used_s)))


def fresh_seeds(n: int, rng: np.random.Generator, taken=()) -> list[int]:
    """``n`` distinct seeds drawn from ``[0, MAX_SEED)``, none of them in ``taken``."""
    seeds: list[int] = []
    used = set(taken)
    while len(seeds) < n:
        s = int(rng.integers(0, MAX_SEED))
        if s not in used:
            used.add(s)
            seeds.append(s)
    return seeds
