"""Dose-response of a weight set: scale its weights by alpha in [0, 1] and measure the bias at each dose.

Alpha 1 is the dense model and alpha 0 removes the set. A set that carries the bias moves the distance to the
target smoothly (or not) as alpha falls; equal-size random controls (the confirmation's first ones, whose removal
images are already made) show what scaling that many weights does anyway. This is what a user needs to choose an
edit, not only to find one. The measurements are on the confirmation split's target-group images, scaled inside a
restoring mask override (:meth:`sdprobe.prune.ProgressiveMask.override` with ``keep=alpha``).

Example:
    >>> table = dose_response(evaluator, candidates, ids, confirm_split, probe, cfg)
    >>> table.pivot(index="alpha", columns="set", values="objective")
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sdprobe.bias.confirm import confirmation_controls
from sdprobe.bias.evaluate import DebiasEvaluator, DebiasSplit
from sdprobe.bias.objective import codes, objective, shares_of

SET = "set"


def dose_response(ev: DebiasEvaluator, candidates, ids: np.ndarray, split: DebiasSplit, probe, cfg) -> pd.DataFrame:
    """The distance to the target (and the share of every value) at each dose, for the set and ``cfg.dose_controls``
    equal-size random controls.

    Returns:
        pandas.DataFrame: one row per (set, alpha): ``set`` ("set" or "control j"), ``alpha``, ``objective``
        (``cfg.objective`` to the probe's target), ``share_<value>`` for every value, ``n``.
    """
    sets = [(SET, np.asarray(ids))]
    if cfg.dose_controls:
        controls = confirmation_controls(candidates, ids, cfg, cfg.dose_controls)  # removal images already made
        sets += [(f"control {j}", c) for j, c in enumerate(controls)]
    rows = []
    for name, members in sets:
        for alpha in sorted(set(cfg.doses)):
            labels = ev.labels(split, "target", members if alpha < 1 else np.zeros(0, dtype=np.int64), keep=alpha)
            shares = shares_of(codes(labels, probe.values), len(probe.values))
            rows.append({"set": name, "alpha": float(alpha),
                         "objective": objective(labels, probe.values, probe.target_shares(), cfg.objective),
                         **{f"share_{v}": float(shares[k]) for k, v in enumerate(probe.values)},
                         "n": int((codes(labels, probe.values) >= 0).sum())})
    return pd.DataFrame(rows)
