"""The frozen configuration of an isolation: where to search, how large each split is, how sets are confirmed.

Default sizes and their power (``shared`` rules: a true 10-point effect must be found with at least 80% power):
the confirmation split holds 96 prompts, each with its own seed. With a family of 8 tests (4 meanings x 2
directions) Holm's first step works at ``alpha / 8 = 0.00625``; a random control changes about 5% of images
(``discordance``), so control effects spread by ``sqrt(0.05 / 96) = 0.023``. A set whose true effect is 0.10 then
passes with probability ``Phi((0.10 - 2.50 * 0.023) / sqrt((0.05 + 0.10 - 0.01) / 96)) = 0.87``
(:func:`sdprobe.evidence.power`); the minimal detectable effect at 80% power is 0.088 (8.5 of 96 images), and
77 prompts would be the least that reach 80%. 200 random controls make ``p = 1/201 = 0.005`` reachable, below
``0.00625``.

Example:
    >>> cfg = IsolationConfig(n_confirm=128, window="bracket")
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from sdprobe.evidence.confirm import ConfirmConfig
from sdprobe.isolate.candidates import LEVELS
from sdprobe.isolate.search import DEFAULT_LEVELS

WINDOWS = ("transition", "bracket", "sudden")  # s_hold..s_fail of the largest collapse, its narrow s_lo..s_hi
# bracket, or s_hold..s_fail of the largest sudden collapse (which may be a smaller step than a gradual decline)
PRIORS = ("score", "magnitude")  # search priors: the run's pruning score, or |W|


@dataclass(frozen=True)
class IsolationConfig:
    """How one isolation runs.

    Attributes:
        window (str | tuple[float, float]): ``"transition"`` (the weights pruned between ``s_hold`` and ``s_fail``
            of the detected collapse), ``"bracket"`` (between ``s_lo`` and ``s_hi``, the two levels around the
            threshold), ``"sudden"`` (``s_hold``..``s_fail`` of the meaning's largest sudden collapse, when its
            largest event is a gradual decline), or explicit ``(start, stop)`` sweep levels. Default:
            ``"transition"``.
        n_search (int | None): search-split prompts, the run's first ones (the prompts its thresholds were found
            on). Default: None (all of the run's prompts).
        n_confirm (int): confirmation-split prompts, fresh prompts and seeds. Default: 96 (see the module doc).
        confirm (ConfirmConfig): controls, sequential test, bootstrap. Default: 200 random + 50 matched controls.
        alpha (float): family-wise error rate of the Holm correction. Default: 0.05.
        power (float): power the confirmation split must have for ``effect``. Default: 0.8.
        effect (float): the effect that matters, a share of images. Default: 0.10.
        discordance (float): share of images a random control is assumed to change, for the power calculation.
            Default: 0.05.
        bar (float | None): broken means accuracy below the bar on the search split. Default: None, halfway
            between the search split's accuracy at the window's two ends.
        levels (tuple[str, ...]): the search hierarchy. Default: tensor, row, weight.
        prior (str | None): search order, ``"score"`` or ``"magnitude"``. Default: None (score; |W| for random).
        max_evaluations (int | None): test budget of the search. Default: None.
        seed (int): seeds the confirmation split, the controls and the bootstrap. Default: 0.
    """

    window: str | tuple[float, float] = "transition"
    n_search: int | None = None
    n_confirm: int = 96
    confirm: ConfirmConfig = field(default_factory=ConfirmConfig)
    alpha: float = 0.05
    power: float = 0.8
    effect: float = 0.10
    discordance: float = 0.05
    bar: float | None = None
    levels: tuple[str, ...] = DEFAULT_LEVELS
    prior: str | None = None
    max_evaluations: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.window, str):
            if self.window not in WINDOWS:
                raise ValueError(f"unknown window {self.window!r}; valid: {', '.join(WINDOWS)}, or two sweep levels")
        else:
            a, b = (float(x) for x in self.window)
            if not 0 <= a < b < 1:
                raise ValueError(f"a window needs 0 <= start < stop < 1, got {self.window}")
            object.__setattr__(self, "window", (a, b))
        if self.n_search is not None and self.n_search < 1:
            raise ValueError(f"n_search must be positive, got {self.n_search}")
        if self.n_confirm < 2:
            raise ValueError(f"n_confirm must be at least 2, got {self.n_confirm}")
        for name in ("alpha", "power", "effect", "discordance"):
            v = getattr(self, name)
            if not 0 < v < 1:
                raise ValueError(f"{name} must lie in (0, 1), got {v}")
        bad = [lv for lv in self.levels if lv not in LEVELS]
        if bad or not self.levels:
            raise ValueError(f"unknown level(s) {bad or list(self.levels)}; valid: {', '.join(LEVELS)}")
        object.__setattr__(self, "levels", tuple(self.levels))
        if self.prior is not None and self.prior not in PRIORS:
            raise ValueError(f"unknown prior {self.prior!r}; valid: {', '.join(PRIORS)}")
        if self.max_evaluations is not None and self.max_evaluations < 1:
            raise ValueError(f"max_evaluations must be positive, got {self.max_evaluations}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["window"] = self.window if isinstance(self.window, str) else list(self.window)
        d["levels"] = list(self.levels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "IsolationConfig":
        d = dict(d)
        if "confirm" in d:
            d["confirm"] = ConfirmConfig(**d["confirm"])
        if isinstance(d.get("window"), list):
            d["window"] = tuple(d["window"])
        if "levels" in d:
            d["levels"] = tuple(d["levels"])
        return cls(**d)
