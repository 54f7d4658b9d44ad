"""``sdprobe attribute``: captum attributions of a meaning to prompt tokens, units and weights."""

from __future__ import annotations

import argparse
from pathlib import Path

from sdprobe.cli.common import NON_NEGATIVE, SEED, add_clip_arg, add_model_args, positive_int


def add_parser(sub) -> None:
    from sdprobe.generate import GenerationConfig

    p = sub.add_parser("attribute", help="attribute a meaning to prompt tokens, units and weights (captum)",
                       description="Score an attribute (e.g. color) of the image a prompt produces through a short "
                                   "differentiable sampler, and attribute it with Integrated Gradients to the prompt's "
                                   "tokens, with conductance to text-encoder / UNet units, and with saliency to the "
                                   "weights of a sweep run's critical sets. Writes tokens.csv (+ neurons.csv, "
                                   "weights.csv, overlap.csv) and PNG plots.")
    add_model_args(p)
    p.add_argument("--prompt", action="append", default=None, help="a prompt (repeat for several)")
    p.add_argument("--random-prompts", type=positive_int, default=None,
                   help="also attribute N random tiny-shapes prompts that state the target (default: none)")
    p.add_argument("--target", required=True, help="attribute to score, e.g. color, shape, position, size")
    p.add_argument("--value", action="append", default=None,
                   help="target value per prompt, e.g. red (default: the value a tiny-shapes prompt states, else "
                        "the value read from each prompt's output)")
    p.add_argument("--seed", type=SEED, nargs="+", default=[0], help="one seed, or one per prompt (default: 0)")
    p.add_argument("--steps", type=positive_int, default=8, help="denoising steps of the sampler (default: %(default)s)")
    p.add_argument("--guidance", type=NON_NEGATIVE, default=GenerationConfig.guidance,
                   help="classifier-free guidance (default: %(default)s)")
    p.add_argument("--ig-steps", type=positive_int, default=None,
                   help="Integrated Gradients path steps of token attributions (default: IGConfig's)")
    p.add_argument("--noise-samples", type=positive_int, default=None,
                   help="initial noises per prompt whose scores are averaged (default: IGConfig's)")
    p.add_argument("--neurons", nargs="+", default=(), metavar="SELECTOR",
                   help="unit attributions for these selectors, e.g. text_encoder.mlp unet.attn2 unet.ff")
    p.add_argument("--neuron-method", default="auto", choices=("auto", "conductance", "gate"),
                   help="auto: conductance for text-encoder modules, gated IG for UNet modules (default: auto)")
    p.add_argument("--critical", type=Path, default=None, metavar="SWEEP_RUN",
                   help="compare weight saliency with this sweep run's critical sets")
    p.add_argument("--meaning", nargs="+", default=None, help="critical sets to compare (default: the target)")
    p.add_argument("--latent-probe", type=Path, default=None,
                   help="latent probe file scoring the meaning (default: the built-in organism probe)")
    add_clip_arg(p)
    p.add_argument("--suite", default="builtin:tiny-shapes", metavar="SUITE",
                   help="with --clip-model: the prompt suite whose templates describe each value to CLIP "
                        "(default: %(default)s)")
    p.add_argument("--gradient-checkpointing", action="store_true", help="recompute UNet calls to save memory")
    p.add_argument("-o", "--out", type=Path, default=None, help="output run folder (default: runs/attribute-TARGET)")
    p.set_defaults(func=run)

    t = sub.add_parser("train-probe", help="train the latent probe that scores meanings of a tiny-shapes organism",
                       description="Train a small CNN that reads color, shape, position and size from the organism's "
                                   "latents (rendered scenes encoded by its VAE; no generation), then report its "
                                   "agreement with the exact oracle on generated images.")
    add_model_args(t)
    t.add_argument("--train-steps", type=positive_int, default=1500, help="optimiser steps (default: %(default)s)")
    t.add_argument("--check-images", type=positive_int, default=128,
                   help="generated images for the oracle agreement (default: %(default)s)")
    t.add_argument("--steps", type=positive_int, default=8, help="denoising steps of the check (default: %(default)s)")
    t.add_argument("--seed", type=SEED, default=0, help="seed (default: %(default)s)")
    t.add_argument("-o", "--out", type=Path, required=True, help="output .safetensors file")
    t.set_defaults(func=train_probe_command)


def _stated_values(prompts: list[str], target: str) -> list[str] | None:
    """The target value each tiny-shapes prompt states; None when any prompt is outside the grammar or omits it."""
    from sdprobe.world import ATTRIBUTES, parse_prompt

    if target not in ATTRIBUTES:
        return None
    try:
        values = [getattr(parse_prompt(p), target) for p in prompts]
    except ValueError:
        return None
    return values if all(values) else None


def _prompts(args: argparse.Namespace) -> tuple[list[str], list[str] | None]:
    import numpy as np

    from sdprobe.world import ATTRIBUTES, format_prompt, sample_specs

    prompts = list(args.prompt or [])
    if args.value and len(args.value) != len(prompts):
        raise ValueError(f"give one --value per --prompt: got {len(args.value)} values for {len(prompts)} prompts")
    if args.random_prompts:
        if args.target not in ATTRIBUTES:
            raise ValueError(f"--random-prompts needs a tiny-shapes target; valid: {', '.join(ATTRIBUTES)}")
        specs = sample_specs(args.random_prompts, np.random.default_rng(args.seed[0]))
        prompts += [format_prompt(s) for s in specs]
    if not prompts or any(not p.strip() for p in prompts):
        raise ValueError("give at least one non-empty --prompt, or --random-prompts N")
    if args.value:
        stated = _stated_values(prompts[len(args.value):], args.target) if len(prompts) > len(args.value) else []
        if stated is None:
            raise ValueError("give a --value for every prompt, or none")
        return prompts, list(args.value) + stated
    return prompts, _stated_values(prompts, args.target)


def run(args: argparse.Namespace) -> int:
    from sdprobe.attribution.heads import make_head
    from sdprobe.attribution.run import AttributionConfig, run_attribution
    from sdprobe.attribution.tokens import IGConfig
    from sdprobe.attribution.trajectory import TrajectoryConfig
    from sdprobe.cli.common import load

    prompts, values = _prompts(args)
    seeds = args.seed if len(args.seed) > 1 else [args.seed[0] + i for i in range(len(prompts))]
    pipe = load(args)
    head = make_head(pipe, probe=args.latent_probe, clip_model=args.clip_model, suite=args.suite)
    if args.target not in head.attributes:
        raise ValueError(f"unknown target {args.target!r}; valid: {', '.join(head.attributes)}")
    config = AttributionConfig(
        prompts=tuple(prompts), target=args.target, values=tuple(values) if values else None, seeds=tuple(seeds),
        model=args.model, neurons=tuple(args.neurons), neuron_method=args.neuron_method,
        critical_run=str(args.critical) if args.critical else None,
        critical_meanings=tuple(args.meaning or [args.target]) if args.critical else (),
        ig=IGConfig(n_steps=args.ig_steps or IGConfig.n_steps,
                    noise_samples=args.noise_samples or IGConfig.noise_samples),
        trajectory=TrajectoryConfig(steps=args.steps, guidance=args.guidance,
                                    gradient_checkpointing=args.gradient_checkpointing),
    )
    out = args.out or Path("runs") / f"attribute-{args.target}"
    run_attribution(pipe, head, config, out)
    print(out)
    return 0


def train_probe_command(args: argparse.Namespace) -> int:
    import json

    from sdprobe.attribution import ProbeTrainConfig, TrajectoryConfig, probe_agreement, save_probe, train_probe
    from sdprobe.cli.common import load

    if args.out.suffix != ".safetensors":
        raise ValueError(f"output must be a .safetensors file, got {args.out}")
    pipe = load(args)
    probe, report = train_probe(pipe, ProbeTrainConfig(steps=args.train_steps, seed=args.seed))
    report["oracle_agreement"] = probe_agreement(pipe, probe, TrajectoryConfig(steps=args.steps), n=args.check_images,
                                                 seed=args.seed)
    save_probe(probe, args.out, extra=report)
    print(json.dumps({k: report[k] for k in ("valid_accuracy", "oracle_agreement", "seconds")}, indent=2))
    return 0
