"""``sdprobe bias`` and ``sdprobe bias-weights``: attribute distributions of neutral prompts, and the weights
behind a bias."""

from __future__ import annotations

import argparse
from pathlib import Path

from sdprobe.cli.common import add_generation_args, add_model_args, generation_config, positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("bias", help="measure a bias probe, dense and under pruning",
                       description="Generate many seeds of a probe's neutral prompts (the attribute left out), "
                                   "classify the attribute, and report its distribution and bias metrics (majority "
                                   "share, mean absolute deviation and KL from uniform) with bootstrap intervals; "
                                   "with --sparsities, also versus sparsity of the pruned components.")
    add_model_args(p)
    add_generation_args(p)
    p.add_argument("--probe", default="default-color", help="built-in probe name or a .toml file (default: %(default)s)")
    p.add_argument("--images", type=positive_int, default=200, help="images per probe group and condition (default: %(default)s)")
    p.add_argument("--sparsities", type=float, nargs="+", default=(), help="pruning levels, e.g. 0.2 0.4 0.6")
    p.add_argument("--components", nargs="+", default=("text_encoder",), help="components to prune (default: text_encoder)")
    p.add_argument("--methods", nargs="+", default=("magnitude",), help="pruning methods (default: magnitude)")
    p.add_argument("--bootstrap", type=positive_int, default=2000, help="bootstrap resamples (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="first image seed (default: %(default)s)")
    p.add_argument("--clip-model", type=Path, default=None, help="local CLIP model folder (clip probes)")
    p.add_argument("-o", "--out", type=Path, required=True, help="output run folder")
    p.set_defaults(func=run_bias_command)

    w = sub.add_parser("bias-weights", help="find the weights whose removal reduces a measured bias",
                       description="Rank weights by how much removing them lowers the biased value's log-odds on "
                                   "neutral prompts while sparing explicit prompts, remove growing top-ranked sets, "
                                   "keep the one that moves the distribution furthest toward uniform with explicit "
                                   "accuracy held, and test it against random sets with the same per-tensor layout. "
                                   "Writes RUN_DIR/critical/.")
    w.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a bias run made by `sdprobe bias`")
    w.add_argument("--selectors", nargs="+", default=("text_encoder",), help="candidate weights (default: text_encoder)")
    w.add_argument("--group", default=None, help="probe group to unbias (default: the most biased by expectation)")
    w.add_argument("--images", type=positive_int, default=64, help="neutral images per evaluation (default: %(default)s)")
    w.add_argument("--controls", type=positive_int, default=20, help="random controls, at least 20 (default: %(default)s)")
    w.add_argument("--accuracy-floor", type=float, default=0.9, help="explicit accuracy to keep (default: %(default)s)")
    w.add_argument("--min-size", type=positive_int, default=16, help="smallest set tried (default: %(default)s)")
    w.add_argument("--max-size", type=positive_int, default=16384, help="largest set tried (default: %(default)s)")
    w.add_argument("--probe-file", type=Path, default=None, help="latent probe for the ranking (default: built-in)")
    w.add_argument("--clip-model", type=Path, default=None, help="local CLIP model folder (clip probes)")
    w.add_argument("--device", default=None, help="torch device (default: the run's)")
    w.set_defaults(func=run_bias_weights_command)


def run_bias_command(args: argparse.Namespace) -> int:
    from sdprobe.bias import BiasRunConfig, load_bias_probe, make_classifier, run_bias
    from sdprobe.cli.common import load

    probe = load_bias_probe(args.probe)
    config = BiasRunConfig(probe=str(args.probe), model=args.model, n_images=args.images, seed=args.seed,
                           components=tuple(args.components), methods=tuple(args.methods),
                           sparsities=tuple(args.sparsities), n_boot=args.bootstrap, generation=generation_config(args))
    pipe = load(args)
    classify = make_classifier(probe, args.clip_model, args.device)
    run = run_bias(pipe, probe, classify, config, args.out)
    print(run.path)
    return 0


def run_bias_weights_command(args: argparse.Namespace) -> int:
    import torch

    from sdprobe.attribution.heads import make_head
    from sdprobe.bias import BiasSearchConfig, find_bias_critical, load_bias_probe, make_classifier, write_bias_critical
    from sdprobe.generate import GenerationConfig
    from sdprobe.models import load_pipeline
    from sdprobe.runs import RunDir

    run = RunDir.open(args.run_dir, kind="bias")
    cfg = run.config()
    probe = load_bias_probe(cfg["probe"])
    generation = GenerationConfig(**cfg["generation"])
    device = args.device or "cpu"
    pipe = load_pipeline(cfg["model"], device=device, dtype=torch.float32)
    classify = make_classifier(probe, args.clip_model, device)
    classes = {probe.attribute: probe.classes} if probe.classifier == "clip" else None
    head = make_head(pipe, probe=args.probe_file, clip_model=args.clip_model, classes=classes)
    search = BiasSearchConfig(selectors=tuple(args.selectors), group=args.group, n_images=args.images,
                              n_controls=args.controls, accuracy_floor=args.accuracy_floor, min_size=args.min_size,
                              max_size=args.max_size, generation=generation, seed=cfg["seed"])
    result = find_bias_critical(pipe, probe, classify, head, search)
    write_bias_critical(run, probe, classify, result, pipe, cfg["n_images"], generation, cfg["seed"], cfg["n_boot"])
    s = result.summary
    print(f"{run.path / 'critical'}: {s['size']} weights; {probe.biased_value} share {s['bias_before']:.3f} -> "
          f"{s['bias_after']:.3f} (unbiased {s['unbiased']:.3f}); explicit accuracy {s['explicit_accuracy']:.3f}; "
          f"p = {s['p_value']:.3f}")
    return 0
