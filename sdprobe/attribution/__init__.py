"""Attribution of meanings with captum: tokens, units and weights of a Stable Diffusion pipeline.

A meaning score (:class:`MeaningScore`) runs a short differentiable sampler and reads an attribute from the
final latents with a head (the organism's :class:`LatentProbe`, or CLIP zero-shot via :class:`ClipHead`).
"""

from sdprobe.attribution.clip_head import ClipHead, load_clip
from sdprobe.attribution.hooks import hook_count, hooked, injected_output
from sdprobe.attribution.neurons import NEURON_METHODS, attribute_neurons
from sdprobe.attribution.probe_classifier import (
    BUILTIN_PROBE, LatentProbe, ProbeTrainConfig, load_probe, save_probe, train_probe, vae_fingerprint,
)
from sdprobe.attribution.score import SCORE_KINDS, MeaningScore
from sdprobe.attribution.tokens import IGConfig, attribute_tokens, baseline_ids, top1_rate
from sdprobe.attribution.trajectory import Trajectory, TrajectoryConfig
from sdprobe.attribution.validate import probe_agreement
from sdprobe.attribution.weights import compare_with_critical, load_indices, saliency_table, weight_saliency

__all__ = [
    "ClipHead", "load_clip", "hook_count", "hooked", "injected_output", "NEURON_METHODS", "attribute_neurons",
    "BUILTIN_PROBE", "LatentProbe", "ProbeTrainConfig", "load_probe", "save_probe", "train_probe", "vae_fingerprint",
    "SCORE_KINDS", "MeaningScore", "IGConfig", "attribute_tokens", "baseline_ids", "top1_rate",
    "Trajectory", "TrajectoryConfig", "probe_agreement",
    "compare_with_critical", "load_indices", "saliency_table", "weight_saliency",
]
