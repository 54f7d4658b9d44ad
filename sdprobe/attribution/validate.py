"""Agreement of a latent head with the exact oracle on generated images.

The images come from the same differentiable sampler that attribution uses (:class:`Trajectory`), so the
agreement measured here is the reliability of the score on exactly the latents it will see.

Example:
    >>> report = probe_agreement(pipe, load_probe(vae=pipe.vae), TrajectoryConfig(steps=8), n=64)
    >>> sorted(report["agreement"])
    ['color', 'position', 'shape', 'size']
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from sdprobe.attribution.trajectory import Trajectory, TrajectoryConfig
from sdprobe.world import MEANINGS, format_prompt, read_batch, sample_specs


@torch.no_grad()
def probe_agreement(pipe, head, config: TrajectoryConfig = TrajectoryConfig(), n: int = 128, seed: int = 0,
                    batch: int = 32, progress: bool = True) -> dict:
    """Generate ``n`` images of random grammar prompts; compare the head's reading of the latents with the oracle's.

    Args:
        pipe: the organism pipeline.
        head: a latent head (``logits(latents) -> {attribute: (N, K)}``, ``attributes``).
        config (TrajectoryConfig): sampler settings. Default: :class:`TrajectoryConfig`.
        n (int): images. Default: 128.
        seed (int): seeds prompts and noise. Default: 0.
        batch (int): images per sampler call. Default: 32.
        progress (bool): show a progress bar. Default: ``True``.

    Returns:
        dict: ``agreement`` (attribute -> share of readable images where head and oracle agree), ``readable``
        (share of images the oracle could read), ``oracle_accuracy`` (attribute -> share of readable images
        whose oracle reading matches the prompt), ``n``.
    """
    rng = np.random.default_rng(seed)
    prompts = [format_prompt(s) for s in sample_specs(n, rng)]
    seeds = rng.integers(0, 2**31 - 1, size=n).tolist()
    traj = Trajectory(pipe, config)
    agree = {m: [] for m in MEANINGS}
    correct = {m: [] for m in MEANINGS}
    readable = 0
    for start in tqdm(range(0, n, batch), desc="agreement", disable=not progress):
        p, s = prompts[start : start + batch], seeds[start : start + batch]
        latents = traj(traj.tokenize(p), traj.noise(s))
        images = traj.decode(latents).permute(0, 2, 3, 1).float().cpu().numpy()  # (B, H, W, 3)
        logits = head.logits(latents)
        readings = read_batch(images)
        for b, r in enumerate(readings):
            if not r.readable:
                continue
            readable += 1
            stated = dict(zip(MEANINGS, _stated(p[b])))
            for m in MEANINGS:
                guess = head.attributes[m][int(logits[m][b].argmax())]
                agree[m].append(guess == r.attributes[m])
                correct[m].append(r.attributes[m] == stated[m])
    return {"agreement": {m: float(np.mean(v)) if v else float("nan") for m, v in agree.items()},
            "oracle_accuracy": {m: float(np.mean(v)) if v else float("nan") for m, v in correct.items()},
            "readable": readable / n, "n": n}


def _stated(prompt: str) -> list[str | None]:
    from sdprobe.world import parse_prompt

    spec = parse_prompt(prompt)
    return [getattr(spec, m) for m in MEANINGS]
