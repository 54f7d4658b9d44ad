"""The terms a report uses, defined once, in the words of the README's rules (shown at the end of every report)."""

from __future__ import annotations

GLOSSARY: tuple[tuple[str, str], ...] = (
    ("sparsity (level)", "the share of the pruned scope's weights set to zero (Linear weights only unless the sweep "
                         "adds Conv2d); level 0 is the dense model, which every sweep measures"),
    ("oracle", "the organism's exact reader: it reads color, shape, position and size back from an image, or calls "
               "it unreadable; accuracy is the share of stated attributes it reads as stated"),
    ("chance (floor)", "the value a metric has when the meaning is gone: 1/6 color, 1/3 shape, 1/4 position, 1/2 size "
                       "for the oracle; 1 for the unreadable rate"),
    ("event", "one decline of a metric found by change-point segmentation, removing at least 25% of the way from the "
              "dense value to the floor, with a drop above 4 standard errors"),
    ("sudden / gradual", "an event is sudden when its 10%-90% transition spans at most 0.1 sparsity, gradual "
                         "otherwise"),
    ("threshold", "for a sudden event, where the curve crosses the midpoint of its drop; for a gradual one, where it "
                  "has lost half of the way to the floor"),
    ("s_lo / s_hi", "the two evaluated levels around a threshold"),
    ("s_hold / s_fail", "the last level where the meaning still holds (10% of the drop lost) and the first where it "
                        "has failed (90% lost): the transition, and isolation's default window"),
    ("95% interval", "where the threshold lies, from replicate curves (seeds resampled) and the bracket a step may "
                     "sit anywhere inside"),
    ("search split", "the prompts and seeds a search looked at (the sweep's own); its numbers are diagnostics"),
    ("confirmation split", "fresh prompts and seeds no search saw; only its numbers are findings"),
    ("bar", "the search split's accuracy below which a meaning counts as broken; by default halfway between the "
            "accuracy at the window's two ends"),
    ("necessity", "removing the set where the model still works breaks the meaning (effect: the accuracy lost)"),
    ("sufficiency", "restoring the set where the model has failed brings the meaning back (effect: the accuracy "
                    "regained)"),
    ("controls", "random sets of the same size drawn like the set (same count per tensor; matched ones also per "
                 "magnitude quartile), scored on the confirmation split"),
    ("p-value", "(1 + controls whose effect reaches the set's) / (1 + controls); with n controls it cannot go below "
                "1/(n + 1), the p-value floor"),
    ("Holm-adjusted p", "the p-value corrected over every test of the run (meaning x direction); a set is critical "
                        "only when both directions have a positive effect and an adjusted p at or below alpha"),
    ("no replicable critical set", "the verdict when a search finds nothing or its set does not beat its controls on "
                                   "the confirmation split; a result, with its numbers"),
)
