"""``sdprobe bias`` and ``sdprobe bias-weights``: attribute distributions of neutral prompts, and the weights
behind a bias."""

from __future__ import annotations

import argparse
from pathlib import Path

from sdprobe.cli.common import (
    FRACTION, PROBABILITY, SEED, UNIT, add_clip_arg, add_generation_args, add_model_args, generation_config,
    positive_int,
)


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
    p.add_argument("--sparsities", type=FRACTION, nargs="+", default=(), help="pruning levels, e.g. 0.2 0.4 0.6")
    p.add_argument("--components", nargs="+", default=("text_encoder",), help="components to prune (default: text_encoder)")
    p.add_argument("--methods", nargs="+", default=("magnitude",), help="pruning methods (default: magnitude)")
    p.add_argument("--bootstrap", type=positive_int, default=2000, help="bootstrap resamples (default: %(default)s)")
    p.add_argument("--seed", type=SEED, default=0, help="first image seed (default: %(default)s)")
    add_clip_arg(p)
    p.add_argument("--metric", choices=("oracle", "clip-attributes"), default=None,
                   help="classify with this meaning metric instead of the probe's own classifier (clip-attributes "
                        "reads an oracle probe with --clip-model, describing values by --suite's template)")
    p.add_argument("--suite", default="builtin:tiny-shapes", metavar="SUITE",
                   help="prompt suite whose template describes the values for --metric clip-attributes "
                        "(default: %(default)s)")
    p.add_argument("--set", type=Path, default=None, dest="set_file",
                   help="a weight-set file (critical/<group>/set.json) to apply at --alphas")
    p.add_argument("--alphas", type=UNIT, nargs="+", default=(0.0,),
                   help="with --set: measure with the set's weights x alpha, each in [0, 1] (default: 0, removal)")
    p.add_argument("-o", "--out", type=Path, required=True, help="output run folder")
    p.set_defaults(func=run_bias_command)

    w = sub.add_parser("bias-weights", help="find, and confirm on fresh prompts, weights whose removal debiases a group",
                       description="On a search split: rank weights by how much removing them brings the neutral "
                                   "prompts' distribution closer to the probe's target (uniform unless declared) while "
                                   "sparing explicit prompts, remove growing top-ranked sets, and keep the one closest "
                                   "to the target (total variation over all values, so overshoot counts) with every "
                                   "explicit prompt holding and the other groups within the tolerance. On a "
                                   "confirmation split of fresh prompts and seeds: measure it against equal-size "
                                   "random controls (sequential test), Holm over the run's tests, and a dose-response "
                                   "(weights x alpha). Writes RUN_DIR/critical/<group>/.")
    w.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a bias run made by `sdprobe bias`")
    w.add_argument("--selectors", nargs="+", default=("text_encoder",), help="candidate weights (default: text_encoder)")
    w.add_argument("--group", default=None, help="probe group to unbias (default: the most biased by expectation)")
    w.add_argument("--objective", default="tv", choices=("tv", "kl"),
                   help="distance to the target distribution (default: %(default)s)")
    w.add_argument("--images", type=positive_int, default=64,
                   help="search: neutral images of the group per evaluation (default: %(default)s)")
    w.add_argument("--explicit-seeds", type=positive_int, default=4,
                   help="search: seeds per explicit prompt (default: %(default)s)")
    w.add_argument("--confirm-images", type=positive_int, default=96,
                   help="confirmation: neutral images of the group (default: %(default)s)")
    w.add_argument("--confirm-explicit-seeds", type=positive_int, default=16,
                   help="confirmation: seeds per explicit prompt (default: %(default)s)")
    w.add_argument("--controls", type=positive_int, default=200,
                   help="random controls of the confirmation, enough for p < --alpha (default: %(default)s)")
    w.add_argument("--alpha", type=PROBABILITY, default=0.01,
                   help="adjusted p a debiasing claim needs (default: %(default)s)")
    w.add_argument("--accuracy-floor", type=UNIT, default=0.9,
                   help="every explicit prompt keeps min(this, its dense accuracy) (default: %(default)s)")
    w.add_argument("--tolerance", type=UNIT, default=0.1,
                   help="most the other groups may move, in total variation (default: %(default)s)")
    w.add_argument("--doses", type=UNIT, nargs="+", default=(0.0, 0.25, 0.5, 0.75, 1.0),
                   help="dose-response alphas (the set's weights x alpha) (default: 0 0.25 0.5 0.75 1)")
    w.add_argument("--min-size", type=positive_int, default=2, help="smallest set tried (default: %(default)s)")
    w.add_argument("--ranking", default="log_odds", choices=("log_odds", "target_fit"),
                   help="first-order ranking of the candidates (default: %(default)s)")
    w.add_argument("--max-size", type=positive_int, default=16384, help="largest set tried (default: %(default)s)")
    w.add_argument("--latent-probe", type=Path, default=None,
                   help="latent probe file for the ranking (default: the built-in organism probe)")
    add_clip_arg(w)
    w.add_argument("--device", default=None, help="torch device (default: the run's)")
    w.set_defaults(func=run_bias_weights_command)


def run_bias_command(args: argparse.Namespace) -> int:
    from sdprobe.bias import BiasRunConfig, load_bias_probe, make_classifier, run_bias
    from sdprobe.cli.common import load

    probe = load_bias_probe(args.probe)
    if args.metric == "clip-attributes" and probe.classifier == "oracle":
        from sdprobe.bias.classify import suite_classes

        suite_classes(probe, args.suite)  # a suite that cannot describe the values fails before the model loads
    if args.set_file is not None:
        from sdprobe.evidence import read_set_file

        read_set_file(args.set_file)  # a missing or malformed set file fails before the model loads
    config = BiasRunConfig(probe=str(args.probe), model=args.model, n_images=args.images, seed=args.seed,
                           components=tuple(args.components), methods=tuple(args.methods),
                           sparsities=tuple(args.sparsities), n_boot=args.bootstrap, generation=generation_config(args),
                           set_file=None if args.set_file is None else str(args.set_file),
                           alphas=tuple(args.alphas) if args.set_file is not None else (), classifier=args.metric)
    pipe = load(args)
    classify = make_classifier(probe, args.clip_model, args.device, metric=args.metric, suite=args.suite)
    run = run_bias(pipe, probe, classify, config, args.out)
    print(run.path)
    return 0


def run_bias_weights_command(args: argparse.Namespace) -> int:
    import torch

    from sdprobe.attribution.heads import make_head
    from sdprobe.bias import (
        BiasSearchConfig, find_bias_critical, load_bias_probe, make_classifier, run_seeds, write_bias_critical,
    )
    from sdprobe.evidence import ConfirmConfig
    from sdprobe.generate import GenerationConfig
    from sdprobe.io import read_json
    from sdprobe.models import load_pipeline
    from sdprobe.provenance import verify
    from sdprobe.errors import RunError
    from sdprobe.runs import RunDir

    run = RunDir.open(args.run_dir, kind="bias")
    cfg = run.config()
    missing = [k for k in ("probe", "generation", "seed", "model") if k not in cfg]
    if missing:
        raise RunError(f"{run.path}/config.json lacks {missing}: not a bias run this sdprobe can extend; rerun "
                       "`sdprobe bias`")
    probe = load_bias_probe(cfg["probe"])
    generation = GenerationConfig(**cfg["generation"])
    device = args.device or "cpu"
    from sdprobe.bias import target_group

    target_group(probe, args.group)  # an unknown group fails before the model loads
    search = BiasSearchConfig(selectors=tuple(args.selectors), group=args.group, objective=args.objective,
                              n_images=args.images, explicit_seeds=args.explicit_seeds,
                              confirm_images=args.confirm_images, confirm_explicit_seeds=args.confirm_explicit_seeds,
                              accuracy_floor=args.accuracy_floor, tolerance=args.tolerance, alpha=args.alpha,
                              confirm=ConfirmConfig(n_controls=args.controls, n_matched=0, seed=cfg["seed"]),
                              doses=tuple(args.doses), min_size=args.min_size, max_size=args.max_size,
                              ranking=args.ranking,
                              generation=generation, seed=cfg["seed"])  # bad settings fail before any model loads
    pipe = load_pipeline(cfg["model"], device=device, dtype=torch.float32)
    verify(run.path, pipe)  # the weights the bias run measured
    classify = make_classifier(probe, args.clip_model, device)
    classes = {probe.attribute: probe.classes} if probe.classifier == "clip" else None
    head = make_head(pipe, probe=args.latent_probe, clip_model=args.clip_model, classes=classes)
    result = find_bias_critical(pipe, probe, classify, head, search, exclude_seeds=run_seeds(cfg))
    folder = write_bias_critical(run, probe, result)
    s, c = read_json(folder / "summary.json"), result.summary["confirmation"]
    print(f"{folder}: {s['size']} weights. Confirmation ({c['n_images']} images of {s['group']}): {s['objective']} to "
          f"the target {c.get('before', {}).get(s['objective'], {}).get('value', float('nan')):.3f} -> "
          f"{c.get('after', {}).get(s['objective'], {}).get('value', float('nan')):.3f}, effect {c['effect']:+.3f} "
          f"[{c['ci_low']:.3f}, {c['ci_high']:.3f}], p = {c['p_value']:.3g} over {c['n_controls']} controls, "
          f"adjusted {s['p_adjusted']:.3g}")
    print(f"verdict: {s['verdict']}" + (f" ({'; '.join(s['reasons'])})" if s["reasons"] else ""))
    return 0
