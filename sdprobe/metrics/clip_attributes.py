"""``clip-attributes``: a CLIP zero-shot reader of the attributes each prompt states, for models without an oracle.

For every image and every attribute its prompt states (from a labelled prompt suite, :mod:`sdprobe.suites`), the
image is compared with the description of each value of that attribute (the suite's template, e.g. ``"a photo of a
{value} {object}"``); the image is **correct** for that attribute when the stated value's description is the most
similar. The per-image table has one column per attribute (1.0 / 0.0, NaN when the prompt does not state it), what
was read (``read_<attribute>``) and the margin of the stated value over the best other one
(``margin_<attribute>``, cosine units).

Paper: zero-shot classification as in CLIP, Radford et al. 2021, https://arxiv.org/abs/2103.00020; the per-attribute
reading of prompts follows compositional benchmarks (GenEval, Ghosh et al. 2023, https://arxiv.org/abs/2310.11513;
T2I-CompBench, Huang et al. 2023, https://arxiv.org/abs/2307.06350).

Known weaknesses (measured for the tiny-shapes CLIP in the organism's model card; documented for real CLIPs by the
papers above):

* **Position and relations.** CLIP embeddings are nearly blind to left/right and to spatial relations; GenEval
  reads positions with an object detector for this reason. Treat a position column from a real CLIP as weak
  evidence, and check its agreement before trusting a threshold on it.
* **Counting** beyond two or three objects is unreliable.
* **Attribute binding.** With two objects, CLIP may credit a color to the wrong one.
* **No unreadable flag.** A collapsed image is still given the most similar value, so accuracy falls to chance
  (the declared floor, 1/number of values), not to 0 as the oracle's does.

Example:
    >>> metric = ClipAttributesMetric("builtin:tiny-shapes-clip", suite="builtin:tiny-shapes")
    >>> metric.score(["a red circle at the top left"], images)[["color", "shape", "position"]]
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from sdprobe.metrics.base import Quantity, check_pairs, directions
from sdprobe.metrics.clip_model import image_embeddings, load_clip, text_embeddings
from sdprobe.suites import PromptSuite, load_suite

DEFAULT_SUITE = "builtin:tiny-shapes"
DEFAULT_BATCH_SIZE = 64  # images per CLIP forward pass


class ClipAttributesMetric:
    """Per-image correctness of each attribute a prompt states, read by CLIP zero-shot.

    Args:
        clip_path (str | Path): ``builtin:tiny-shapes-clip`` or a local ``transformers`` CLIP folder.
        suite (str | Path | PromptSuite): the prompts' labels (``builtin:tiny-shapes`` or a suite file).
            Default: ``builtin:tiny-shapes``.
        device (str | torch.device): where CLIP runs. Default: ``"cpu"``.
        batch_size (int): images per forward pass. Default: 64.

    Attributes:
        meanings (tuple[str, ...]): the suite's attributes: the columns isolation, thresholds and bias can judge.
        quantities (dict[str, Quantity]): one per meaning, higher is better, floor at chance (1 / its values).

    Raises:
        ClipLoadError: the CLIP folder is missing or not a CLIP model in safetensors.
        SuiteError: the suite is missing or malformed.
    """

    name = "clip-attributes"
    cost = "one CLIP image embedding per image; the text side is cached per description"

    def __init__(self, clip_path: str | Path, suite: str | Path | PromptSuite = DEFAULT_SUITE,
                 device: str | torch.device = "cpu", batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.suite = suite if isinstance(suite, PromptSuite) else load_suite(suite)
        self.clip_path, self.batch_size = str(clip_path), batch_size
        self.model, self.tokenizer = load_clip(clip_path, device)
        self.meanings = self.suite.meanings
        self.quantities = _quantities(self.suite)
        self.higher_is_better = directions(self.quantities)
        self._texts: dict[str, torch.Tensor] = {}

    @classmethod
    def declared(cls, suite: str | Path | PromptSuite = DEFAULT_SUITE, **_) -> dict[str, Quantity]:
        """The quantities a metric built with these options measures, without loading CLIP (for the registry)."""
        return _quantities(suite if isinstance(suite, PromptSuite) else load_suite(suite))

    def check_prompts(self, prompts: Sequence[str], meanings: Sequence[str] | None = None) -> None:
        """Every prompt is labelled by the suite (and states the meanings asked for); raises ``SuiteError``."""
        self.suite.check(list(prompts), meanings)

    def _text(self, texts: Sequence[str]) -> torch.Tensor:
        """(K, E) embeddings of ``texts``, computed once per distinct text."""
        new = [t for t in dict.fromkeys(texts) if t not in self._texts]
        if new:
            for text, emb in zip(new, text_embeddings(self.model, self.tokenizer, new)):
                self._texts[text] = emb
        return torch.stack([self._texts[t] for t in texts])

    @torch.no_grad()
    def embed(self, images: np.ndarray) -> torch.Tensor:
        """(N, E) unit image embeddings of images (N, H, W, 3) in [0, 1]; NaN pixels count as 0."""
        out = []
        for start in range(0, len(images), self.batch_size):
            batch = np.nan_to_num(np.asarray(images[start : start + self.batch_size], dtype=np.float32))
            x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(self.model.device)
            out.append(image_embeddings(self.model, x).cpu())
        return torch.cat(out)

    def score(self, prompts: Sequence[str], images: np.ndarray, reference: np.ndarray | None = None) -> pd.DataFrame:
        """One row per image: each meaning's correctness, what was read and the stated value's margin."""
        check_pairs(prompts, images)
        emb = self.embed(images)  # (N, E)
        rows = []
        for prompt, e in zip(prompts, emb):
            stated = self.suite.stated(prompt)
            row: dict[str, float | str | None] = {}
            for m in self.meanings:
                if m not in stated:
                    row.update({m: np.nan, f"read_{m}": None, f"margin_{m}": np.nan})
                    continue
                described = self.suite.descriptions(prompt, m)
                sims = (self._text(list(described.values())) @ e).numpy()  # (K,)
                values = list(described)
                read = values[int(sims.argmax())]
                own = sims[values.index(stated[m])]
                other = np.max(np.delete(sims, values.index(stated[m])))
                row.update({m: float(read == stated[m]), f"read_{m}": read, f"margin_{m}": float(own - other)})
            rows.append(row)
        return pd.DataFrame(rows)


def _quantities(suite: PromptSuite) -> dict[str, Quantity]:
    """One per attribute: higher is better, floor at chance (one over its number of values)."""
    return {m: Quantity(True, floor=1.0 / len(a.values)) for m, a in suite.attributes.items()}
