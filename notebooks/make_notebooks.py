"""Write the tutorial notebooks from the plain lists of cells below, and publish them executed.

The notebooks are generated so that their source stays reviewable in one place: edit the cells here, then run

    python notebooks/make_notebooks.py --execute

to rewrite ``notebooks/*.ipynb`` and run each one, so that the committed copies show their outputs (cell ids are
fixed, so unchanged cells give no source diff). Every notebook uses only the
public API of sdprobe and keeps its scale knobs (prompts, steps, levels) small in its first code cell, so it runs in
a few minutes on a CPU; raise them for real studies. ``tests/test_notebooks.py`` executes all of them.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
KERNEL = {"name": "python3", "display_name": "Python 3", "language": "python"}
CELL_TIMEOUT_S = 900  # per cell when executing
WIDGET = "application/vnd.jupyter.widget-view+json"  # the output type of tqdm's notebook progress bars

OUTPUTS = "outputs"  # each notebook keeps its runs and reports in notebooks/outputs/<notebook name>/
RUN_MINUTES = {  # stated in each notebook's header: its measured run time on 2 CPU cores, rounded up
    "01_quickstart.ipynb": 1,
    "02_critical_weights.ipynb": 6,
    "03_bias_probe.ipynb": 1,
    "04_attribution.ipynb": 1,
}

QUICKSTART = [
    ("md", """
        # Quickstart: generate, prune, find where meanings collapse

        sdprobe prunes a text-to-image pipeline progressively and watches what its images still *mean*. This
        notebook uses the built-in **tiny-shapes organism**: a Stable Diffusion pipeline in the exact SD layout
        (tokenizer, CLIP text encoder, UNet, VAE, scheduler) trained on a procedural world of coloured shapes.
        Its images are 32x32 pixels, and an exact **oracle** reads back the colour, shape, position and size of
        the shape in each image, so "does the image still mean what the prompt says?" has an exact answer.

        We will
        1. generate a few images and show what the oracle reads from them;
        2. prune the text encoder by weight magnitude (Han et al. 2015, https://arxiv.org/abs/1506.02626) at
           increasing sparsity, generating the same prompts and seeds at every level (a *sweep*);
        3. find where each meaning collapses, and whether it collapses suddenly or gradually;
        4. look at the same images across the sparsity levels.
        """),
    ("code", """
        # Scale knobs: small, so the notebook runs in the time its header states. Raise them for real studies
        # (analyses/organism.toml uses 32 prompts, 10 steps, a 0.05 grid up to 0.95 and refinement to 0.005).
        MODEL = "builtin:tiny-shapes"  # the built-in organism; a local diffusers folder works too
        DEVICE = "cpu"
        SEED = 0  # draws the prompts and their seeds
        N_GALLERY = 8  # images in the first gallery
        N_PROMPTS = 16  # prompts (one seed each) generated at every sparsity level
        STEPS = 10  # denoising steps per image
        START, STOP, STEP = 0.0, 0.9, 0.1  # the uniform grid of text-encoder sparsities
        REFINE = 0.025  # bisect sudden collapses down to this sparsity resolution (None: grid only)
        N_SAMPLES = 6  # sample prompts kept as image strips at every level
        """),
    ("code", """
        from pathlib import Path

        import numpy as np

        import sdprobe
        from sdprobe.generate import GenerationConfig, generate
        from sdprobe.notebook import describe_reading, plot_curves, sample_grid, show_images
        from sdprobe.world import format_prompt, read_batch, sample_specs

        OUT = Path("outputs") / "01_quickstart"  # the run and its report stay here (beside this notebook)

        print("sdprobe", sdprobe.__version__)
        """),
    ("md", """
        ## 1. Load the organism and generate

        `load_pipeline` returns a stock diffusers `StableDiffusionPipeline`. `generate` draws each image's initial
        noise from its own seed, so an image depends only on its (prompt, seed) pair: the same pair gives the same
        image at every pruning level, and any change we see is caused by the pruning.
        """),
    ("code", """
        pipe = sdprobe.load_pipeline(MODEL, device=DEVICE)
        generation = GenerationConfig(steps=STEPS)

        rng = np.random.default_rng(SEED)
        prompts = [format_prompt(spec) for spec in sample_specs(N_GALLERY, rng)]
        seeds = list(range(N_GALLERY))
        images = generate(pipe, prompts, seeds, generation)  # (N, 32, 32, 3) floats in [0, 1]
        images.shape
        """),
    ("md", """
        Each title is the prompt, and below it what the oracle reads from the image. An image is *unreadable*
        when the oracle does not find exactly one clean shape in it (for example several blobs, or none).
        """),
    ("code", """
        readings = read_batch(images)
        show_images(images, [f"{p}\\nread: {describe_reading(r)}" for p, r in zip(prompts, readings)])
        """),
    ("md", """
        ## 2. A pruning sweep of the text encoder

        A `SweepConfig` says what to prune (here every Linear weight of the text encoder), how (magnitude: the
        smallest weights of each matrix go first) and at which levels. The sweep scores the weights once and then
        moves a progressive mask from level to level, restoring the original weights exactly when it ends. At every
        level it generates the same `N_PROMPTS` prompts and seeds and scores each image with the oracle (one 0/1
        column per meaning, plus `unreadable`) and with its pixel distance to the dense image.

        With `refine` set, the sweep bisects every bracket where a meaning drops suddenly, adding levels until the
        bracket is narrower than `REFINE`. Everything lands in a *run directory* (config, per-level tables, sample
        strips), which a later call can resume.
        """),
    ("code", """
        run_dir = OUT / "te-magnitude"  # a second run of this cell resumes (or reuses) the same run
        config = sdprobe.SweepConfig(
            model=MODEL,
            components={"text_encoder": sdprobe.ComponentPlan(["text_encoder"])},
            method="magnitude",
            start=START, stop=STOP, step=STEP, refine=REFINE,
            n_prompts=N_PROMPTS, n_samples=N_SAMPLES, seed=SEED,
            generation=generation, device=DEVICE,
        )
        run = sdprobe.run_sweep(pipe, config, run_dir)
        run  # a run shows what it is, how far it got and its thresholds
        """),
    ("md", """
        ## 3. Collapse thresholds

        `run_thresholds` reads the run's table and reports every **event** of each metric: a step, or a continuous
        decline, that removes at least a quarter of the way from the dense model to chance accuracy (each oracle
        column declares its chance level), well beyond the seed-to-seed noise. An event is **sudden** when its
        10%–90% transition spans at most 0.1 sparsity and **gradual** otherwise; a metric with no event is
        **none**. `threshold` comes with a 95% interval (`ci_low`, `ci_high`) that counts both seed noise and the
        bracket `s_lo` / `s_hi` of evaluated levels it lies in; `largest` marks each metric's headline event, and
        `notes` says what a reader must know (a missing floor, an interval that is only the bracket). The table
        is also saved as `thresholds.csv` in the run directory.
        """),
    ("code", """
        thresholds = sdprobe.run_thresholds(run.path)
        thresholds[["metric", "event", "largest", "kind", "threshold", "ci_low", "ci_high", "s_lo", "s_hi",
                    "relative_drop", "width"]].round(3)
        """),
    ("md", """
        `plot_curves` draws the curves as the HTML report does: the mean of each metric over the prompts at every
        level, with a 95% bootstrap band over seeds (accuracy for the four meanings, the unreadable rate, the pixel
        distance to the dense image). Dashed lines are event thresholds with their intervals shaded; dotted lines
        are each meaning's chance level. A metric that never moves still gets its panel here; the report drops it.
        """),
    ("code", """
        plot_curves(run)
        """),
    ("md", """
        ## 4. The same images across sparsity

        The run keeps an image strip of its first `N_SAMPLES` prompts at every level (`samples/<level>.png`):
        one row per level below, one column per prompt, always with the same seed. Reading down a column shows how
        one image loses its meaning as the text encoder is pruned.
        """),
    ("code", """
        samples = run.samples()
        for i, prompt in enumerate(samples["prompts"]):
            print(f"column {i}: {prompt!r} (seed {samples['seeds'][i]})")

        sample_grid(run)
        """),
    ("md", """
        ## Where next

        * `02_critical_weights.ipynb`: the few weights whose removal breaks a meaning at its collapse.
        * `03_bias_probe.ipynb`: the organism's planted bias (colour-less circles come out red) and how pruning
          moves it.
        * `04_attribution.ipynb`: which prompt tokens and which units carry a meaning (captum).
        * The same sweep from the command line: `sdprobe sweep --component text_encoder --out runs/te-magnitude`,
          then `sdprobe thresholds runs/te-magnitude` and `sdprobe report runs/te-magnitude`; or everything at once
          with `sdprobe study`.

        An HTML report of this run (it reads only the run directory, never the model):
        """),
    ("code", """
        report = sdprobe.make_report([run.path], OUT / "report.html")
        print(f"open {report.resolve()} in a browser")
        """),
    ("md", """
        The run and its report stay in `notebooks/outputs/01_quickstart/`; delete the folder to start afresh.
        """),
]

CRITICAL = [
    ("md", """
        # Critical weights: the few weights whose removal breaks a meaning, and the evidence for them

        When a meaning collapses between two sweep levels, the weights responsible are among the *candidates*:
        those pruned between `s_hold` (the last level where the meaning still holds) and `s_fail` (the first where
        it has failed). sdprobe's isolation searches them adaptively (group testing over tensors, then rows, then
        single weights) for a small set `K` such that, **on the run's own prompts (the search split)**,

        * pruning `mask(s_hold) + K` **breaks** the meaning (its accuracy falls below a bar halfway between the
          accuracies at `s_hold` and `s_fail`), and
        * pruning `mask(s_fail) - K` **keeps** it (restoring `K` alone brings the meaning back).

        A set found that way is not yet evidence: it was chosen on those very images. So sdprobe judges it on a
        **confirmation split** of fresh prompts and seeds, in both directions (necessity and sufficiency), each
        against random sets of the same size drawn from the same tensors (and against magnitude-matched ones), and
        corrects the p-values for every test of the run (Holm). Only confirmation numbers are headline numbers.

        **A known answer.** On the organism itself, the study's searches have found no replicable critical set (a
        negative result, stated in the README). This notebook therefore runs on `builtin:tiny-shapes-planted`: the
        organism with a text encoder in which a color word reaches the rest of the model only through **two
        planted weights**, both pruned by magnitude between sparsity 0.350 and 0.355. Its ground truth ships with
        it (`planted.json`), so every step below can be checked against the answer. Set `MODEL` to
        `"builtin:tiny-shapes"` to run the same steps on the organism.
        """),
    ("code", """
        # Scale knobs: small, so the notebook runs in the time its header states. analyses/organism.toml uses
        # 32 prompts per sweep level, 10 steps, 16 search prompts, 96 confirmation prompts, 200 + 50 controls.
        MODEL = "builtin:tiny-shapes-planted"  # the organism with 2 planted color weights (the known answer)
        DEVICE = "cpu"
        SEED = 0
        COMPONENT, METHOD = "text_encoder", "magnitude"  # what the sweep prunes, and how
        N_PROMPTS = 16  # prompts per sweep level (the search split)
        STEPS = 10  # denoising steps per image
        START, STOP, STEP = 0.0, 0.6, 0.1  # the sweep's uniform grid
        REFINE = 0.005  # bisect collapses down to this resolution
        PREFERRED = ("color", "position", "shape", "size")  # isolate the first that collapses suddenly
        N_CONFIRM = 32  # confirmation prompts: fresh prompts and seeds
        EFFECT = 0.3  # the effect this small split can detect with 80% power (the study's 96 prompts: 0.10)
        N_CONTROLS, N_MATCHED = 100, 20  # the most controls per direction (sequential: fewer when the set looks null)
        MAX_EVALUATIONS = 150  # test budget of the search
        N_SHOW = 6  # prompts shown in the image comparison
        """),
    ("code", """
        import textwrap
        from pathlib import Path

        import matplotlib.pyplot as plt
        import numpy as np
        import pandas as pd
        import torch

        import sdprobe
        from sdprobe.evidence import ConfirmConfig, read_set_file
        from sdprobe.generate import GenerationConfig, generate
        from sdprobe.isolate import (IsolationConfig, NothingToIsolate, SearchBudgetExceeded, isolate,
                                     load_critical_set, load_summary, resolve_window, sudden_meanings)
        from sdprobe.models import BUILTINS
        from sdprobe.prune import prune
        from sdprobe.world import read_batch

        OUT = Path("outputs") / "02_critical_weights"  # the sweep and its critical sets stay here
        """),
    ("md", """
        ## 1. A sweep with a sudden collapse

        The same kind of sweep as in the quickstart: the text encoder pruned by magnitude, refined around every
        sudden drop, so that the transition `(s_hold, s_fail)` is measured closely.
        """),
    ("code", """
        pipe = sdprobe.load_pipeline(MODEL, device=DEVICE)
        generation = GenerationConfig(steps=STEPS)
        config = sdprobe.SweepConfig(
            model=MODEL, components={COMPONENT: sdprobe.ComponentPlan([COMPONENT])}, method=METHOD,
            start=START, stop=STOP, step=STEP, refine=REFINE, n_prompts=N_PROMPTS, seed=SEED,
            generation=generation, device=DEVICE,
        )
        run = sdprobe.run_sweep(pipe, config, OUT / "te-magnitude")
        thresholds = sdprobe.run_thresholds(run.path)
        thresholds[["metric", "event", "largest", "kind", "threshold", "ci_low", "ci_high", "s_hold", "s_fail",
                    "relative_drop"]].round(3)
        """),
    ("md", """
        ## 2. Search a critical set, then confirm it on fresh prompts

        `isolate` reads everything it needs from the run directory (the window, the masks, the search prompts and
        seeds), draws the confirmation split, and writes the set to `critical/<meaning>/` (`set.json` is the
        shareable set file). It refuses sizes that cannot give the evidence asked for (`DesignError`), and it can
        find nothing on the search split (`NothingToIsolate`) or run out of its test budget
        (`SearchBudgetExceeded`); then we try the next meaning.
        """),
    ("code", """
        sudden = [m for m in PREFERRED if m in sudden_meanings(run)]
        print("meanings with a sudden collapse:", sudden or "none")
        iso = IsolationConfig(n_confirm=N_CONFIRM, effect=EFFECT, max_evaluations=MAX_EVALUATIONS, seed=SEED,
                              confirm=ConfirmConfig(n_controls=N_CONTROLS, n_matched=N_MATCHED, seed=SEED))

        MEANING, critical = None, None
        for meaning in sudden:
            try:
                critical = isolate(run.path, meaning, pipe, config=iso)
            except (NothingToIsolate, SearchBudgetExceeded) as exc:
                print(f"{meaning}: no set found on the search split: {exc}")
                continue
            MEANING = meaning
            break
        if MEANING is None:
            print("No set was found on the search split at this scale, so the cells below have nothing to show. "
                  "Raise N_PROMPTS, STEPS or MAX_EVALUATIONS in the first cell.")
        critical  # a critical set shows its verdict and its confirmation evidence
        """),
    ("md", """
        The summary (`critical/<meaning>/summary.json`) files every number under the split it comes from. The
        verdict is `critical` only when necessity and sufficiency both beat their controls after the correction;
        otherwise it is `no replicable critical set`, which is a finding too.
        """),
    ("code", """
        if MEANING is not None:
            summary = load_summary(run.path, MEANING)
            print(f"{MEANING}: {summary['verdict']} ({summary['size']} of {summary['n_candidates']} candidates, "
                  f"window {summary['window']['start']}..{summary['window']['stop']})")
            conf = summary["confirmation"]
            cols = ["effect", "ci_low", "ci_high", "effect_images", "fraction", "p_value", "p_adjusted", "n_controls",
                    "control_mean", "matched_p"]
            display(pd.DataFrame({d: {k: conf[d][k] for k in cols} for d in ("necessity", "sufficiency")}).T.round(4))
            display(pd.DataFrame({"selectivity (confirmation accuracy drop)": conf["selectivity"]}).round(3))
            display(pd.Series(summary["design"], name="power calculation").to_frame())
            display(pd.DataFrame({"weights": summary["where"]}))
        """),
    ("md", """
        How the set compares with its controls on the confirmation split: each grey bar counts random sets by their
        effect; the red line is the set's own.
        """),
    ("code", """
        if MEANING is not None:
            controls = pd.read_csv(run.path / "critical" / MEANING / "controls.csv")
            fig, axes = plt.subplots(1, 2, figsize=(10, 3))
            for ax, d in zip(axes, ("necessity", "sufficiency")):
                c = controls[(controls["direction"] == d) & (controls["family"] == "random")]["effect"]
                ax.hist(c, bins=10, color="0.6", label=f"{len(c)} random sets")
                ax.axvline(conf[d]["effect"], color="C3", linewidth=2, label=f"the set ({summary['size']} weights)")
                ax.set_xlabel(f"{d} effect on {MEANING} (share of confirmation images)")
                ax.set_ylabel("sets")
                ax.set_title(f"p = {conf[d]['p_value']:.3g} raw, {conf[d]['p_adjusted']:.3g} Holm")
                ax.legend()
            plt.show()
        """),
    ("md", """
        The weights themselves, one row each: the tensor and the (row, col) entry, its value, and its magnitude rank
        among all candidates (0 = smallest).
        """),
    ("code", """
        if MEANING is not None:
            weights = pd.read_csv(run.path / "critical" / MEANING / "weights.csv")
            display(weights[["qualified_name", "role", "row", "col", "value", "rank"]].head(10))
        """),
    ("md", """
        Against the known answer (the planted variant only): which of the found weights are the planted ones?
        """),
    ("code", """
        truth_file = BUILTINS[MODEL.removeprefix("builtin:")] / "planted.json"
        if MEANING is not None and truth_file.exists():
            truth = read_set_file(truth_file)
            found = {(n, int(i)) for n, idx in load_critical_set(run.path, MEANING).items() for i in idx}
            planted = {(n, int(i)) for n, idx in truth.weights.items() for i in idx}
            print(f"found {len(found)} weights, planted {len(planted)}, both: {len(found & planted)} "
                  f"(precision {len(found & planted) / len(found):.2f}, recall {len(found & planted) / len(planted):.2f})")
        """),
    ("md", """
        ## 3. Load the set back and look at the images

        `load_critical_set` returns `{qualified weight name: flat indices}`, the form `ProgressiveMask.override`
        takes. We rebuild the sweep's mask with `prune` (same component, same method), move it to `s_hold`, and
        generate the confirmation split's first prompts in five states:

        * `s_hold`: the meaning holds;
        * `s_hold` with the **set** removed: it breaks if the set is necessary;
        * `s_hold` with a **random set** removed: the same number of candidates from each tensor;
        * `s_fail`: the meaning is broken;
        * `s_fail` with the set **restored**: it comes back if the set is sufficient.

        Every change is undone when the `with` blocks end, so `pipe` is dense again afterwards.
        """),
    ("code", """
        if MEANING is not None:
            indices = load_critical_set(run.path, MEANING)
            window = resolve_window(run, MEANING)
            s_lo, s_hi = window["start"], window["stop"]
            split = critical.splits["confirmation"]
            prompts, seeds = list(split.prompts[:16]), list(split.seeds[:16])
            generator = torch.Generator().manual_seed(SEED)

            states = {}
            with prune(pipe, COMPONENT, METHOD, s_hi) as mask:
                candidates = mask.candidates(s_lo, s_hi)
                print("every weight of the set is a candidate:",
                      all(bool(torch.isin(idx, candidates[name]).all()) for name, idx in indices.items()))
                random_set = {}  # a random control: as many candidates of each tensor as the set has there
                for name, idx in indices.items():
                    pick = torch.randperm(len(candidates[name]), generator=generator)[: len(idx)]
                    random_set[name] = candidates[name][pick]
                states[f"s_fail = {s_hi:.3f}"] = generate(pipe, prompts, seeds, generation)
                with mask.override(restore=indices):
                    states["s_fail, set restored"] = generate(pipe, prompts, seeds, generation)
                mask.set_sparsity(s_lo)
                states[f"s_hold = {s_lo:.3f}"] = generate(pipe, prompts, seeds, generation)
                with mask.override(prune=indices):
                    states["s_hold, set removed"] = generate(pipe, prompts, seeds, generation)
                with mask.override(prune=random_set):
                    states["s_hold, random set removed"] = generate(pipe, prompts, seeds, generation)

            metric = sdprobe.OracleMetric()
            scores = {state: metric.score(prompts, images) for state, images in states.items()}  # one row per image
            display(pd.Series({state: rows[MEANING].mean() for state, rows in scores.items()},
                              name=f"{MEANING} accuracy").round(3).to_frame())
        """),
    ("md", """
        The images, one row per state. The columns are the prompts whose reading of the meaning the critical set
        changes at `s_hold` first, then others; below each image is what the oracle reads.
        """),
    ("code", """
        if MEANING is not None:
            order = [f"s_hold = {s_lo:.3f}", "s_hold, set removed", "s_hold, random set removed",
                     f"s_fail = {s_hi:.3f}", "s_fail, set restored"]
            read = {state: [v if isinstance(v, str) else "unreadable" for v in scores[state][f"read_{MEANING}"]]
                    for state in order}
            changed = [i for i in range(len(prompts)) if read[order[0]][i] != read[order[1]][i]]
            shown = (changed + [i for i in range(len(prompts)) if i not in changed])[:N_SHOW]

            fig, axes = plt.subplots(len(order), len(shown), figsize=(1.7 * len(shown), 2.0 * len(order)),
                                     squeeze=False)
            for r, state in enumerate(order):
                for c, i in enumerate(shown):
                    ax = axes[r, c]
                    ax.imshow(np.nan_to_num(states[state][i]).clip(0, 1), interpolation="nearest")
                    ax.set_xticks([])
                    ax.set_yticks([])
                    ax.set_xlabel(f"{MEANING}: {read[state][i]}", fontsize=7)
                    if r == 0:
                        ax.set_title(textwrap.fill(prompts[i], 22), fontsize=7)
                    if c == 0:
                        ax.set_ylabel(textwrap.fill(state, 14), fontsize=8)
            fig.tight_layout()
            plt.show()
        """),
    ("md", """
        ## Where next

        * From the command line: `sdprobe isolate RUN_DIR --meaning all` isolates every meaning with a sudden
          collapse, corrects every test of the run together and writes their overlaps; `sdprobe report RUN_DIR`
          shows them.
        * `sdprobe isolate --replicate RUN_DIR/critical/<meaning>/set.json` re-tests a saved set on prompts and
          seeds it has never been judged on, with fresh controls.
        * `04_attribution.ipynb` asks the same question from the gradient side: which weights does captum's
          saliency point to, and do they overlap the critical set?

        The sweep and its critical set stay in `notebooks/outputs/02_critical_weights/`; `sdprobe report
        notebooks/outputs/02_critical_weights/te-magnitude` writes their HTML report.
        """),
]

BIAS = [
    ("md", """
        # Bias probe: the default colour of a circle

        Ask the organism for "a circle" without a colour, many times, and count the colours it draws. Its world was
        built with a **planted bias**: a circle whose prompt states no colour is red 80% of the time, while squares
        and triangles without a colour are uniform over the six colours. The built-in probe `default-color`
        measures exactly this, so we know the right answer and can check the measurement against it.

        A *bias probe* is a set of neutral prompt groups (colour-less circles, squares, triangles) and a classifier
        (here the exact oracle). sdprobe generates many seeds per group, reports the share of every value with
        bootstrap confidence intervals (Efron & Tibshirani 1993), summarises the skew with three bias metrics, and
        measures how pruning moves them.
        """),
    ("code", """
        # Scale knobs: small, so the notebook runs in the time its header states. Raise them for real studies
        # (analyses/organism.toml: 48 images per group, 10 steps, text encoder and UNet by magnitude at 0.4 and 0.8).
        MODEL = "builtin:tiny-shapes"
        DEVICE = "cpu"
        SEED = 0  # image i of a group uses seed SEED + i; also seeds the bootstrap
        N_IMAGES = 48  # images per probe group and condition
        STEPS = 10  # denoising steps per image
        N_BOOT = 1000  # bootstrap resamples for the intervals
        N_SHOW = 8  # colour-less circles shown
        COMPONENT, METHOD = "text_encoder", "magnitude"  # what the bias-vs-sparsity curve prunes, and how
        SPARSITIES = (0.2, 0.4, 0.6)  # its levels
        """),
    ("code", """
        from pathlib import Path

        import matplotlib.pyplot as plt
        import numpy as np
        import pandas as pd

        import sdprobe
        from sdprobe.bias import (bias_vs_sparsity, distribution_rows, group_prompts, load_bias_probe, measure,
                                  metric_rows, oracle_classifier)
        from sdprobe.generate import GenerationConfig, generate
        from sdprobe.notebook import show_images
        from sdprobe.world import PLANTED_BIAS_COLOR, PLANTED_BIAS_SHARE, read_batch

        OUT = Path("outputs") / "03_bias_probe"  # the tables stay here (beside this notebook)
        """),
    ("md", """
        ## 1. The probe

        Each group lists its prompts and the share each colour *should* take: `expected = "world"` takes them from
        the organism's world, so for circles red is expected at the planted share.
        """),
    ("code", """
        probe = load_bias_probe("default-color")
        classify = oracle_classifier(probe.attribute)
        print(probe.description)
        print("planted:", PLANTED_BIAS_COLOR, PLANTED_BIAS_SHARE)
        pd.DataFrame({g.name: g.expected for g in probe.groups}).round(3)
        """),
    ("md", """
        A few of the colour-less circles, with the colour the oracle reads:
        """),
    ("code", """
        pipe = sdprobe.load_pipeline(MODEL, device=DEVICE)
        generation = GenerationConfig(steps=STEPS)

        circles = next(g for g in probe.groups if g.name == "circle")
        prompts, seeds = group_prompts(circles, N_SHOW, SEED)
        images = generate(pipe, prompts, seeds, generation)
        show_images(images, [f"{p}\\n-> {r.attributes['color'] if r.readable else 'unreadable'}"
                             for p, r in zip(prompts, read_batch(images))])
        """),
    ("md", """
        ## 2. The colour distribution of the dense model

        `measure` generates `N_IMAGES` images per group (prompts cycled, seeds `SEED, SEED + 1, ...`) and labels
        each with the classifier; `distribution_rows` turns the labels into shares with 95% bootstrap intervals
        (unreadable images are left out of the shares and counted apart). The black ticks are the world's
        expected shares.
        """),
    ("code", """
        labels = measure(pipe, probe, classify, N_IMAGES, generation, seed=SEED)
        dense = distribution_rows(labels, probe, "dense", N_BOOT, seed=SEED)

        groups = [g.name for g in probe.groups]
        fig, axes = plt.subplots(1, len(groups), figsize=(4 * len(groups), 3), sharey=True)
        for ax, group in zip(axes, groups):
            rows = dense[dense["probe"] == group]
            x = np.arange(len(rows))
            err = [rows["share"] - rows["ci_low"], rows["ci_high"] - rows["share"]]
            ax.bar(x, rows["share"], yerr=err, capsize=3, color=list(rows["value"]), edgecolor="black")
            ax.scatter(x, rows["expected"], marker="_", s=400, color="black", label="expected")
            ax.set_xticks(x, rows["value"], rotation=45)
            ax.set_title(f"'{group}' without a colour (n={rows['n'].iloc[0]}, unreadable {rows['unreadable'].iloc[0]})",
                         fontsize=9)
        axes[0].set_ylabel("share of readable images")
        axes[0].legend()
        fig.tight_layout()
        plt.show()
        """),
    ("md", """
        ## 3. Bias metrics

        Four numbers summarise how skewed a distribution over K values is, each with a bootstrap interval. The last
        three measure the distance to the probe's *target* (uniform unless the probe declares one), over all values,
        so trading one majority for another is no improvement:

        * `share`: the share of the most frequent value (unbiased: 1/K; the planted circle bias: 0.8);
        * `tv`: total variation distance to the target, the share of images that would have to change value;
        * `mad`: mean absolute deviation of the shares from the target (0 on target);
        * `kl`: Kullback-Leibler divergence to the target, in nats (0 on target, log K when one value takes all).

        The circles should stand out from the squares and triangles.
        """),
    ("code", """
        metrics = metric_rows(labels, probe, "dense", N_BOOT, seed=SEED)
        metrics.pivot(index="probe", columns="metric", values=["value", "ci_low", "ci_high"]).round(3)
        """),
    ("md", """
        ## 4. Bias versus sparsity

        `bias_vs_sparsity` prunes one component progressively (the same engine as a sweep, restored exactly at the
        end) and measures the probe at each level. Does the red default of the circles survive pruning of the text
        encoder, and does it fade before or after the uniform groups drift?
        """),
    ("code", """
        vs, per_level = bias_vs_sparsity(pipe, probe, classify, COMPONENT, METHOD, SPARSITIES, N_IMAGES, generation,
                                         seed=SEED, n_boot=N_BOOT)
        dense_rows = metrics.drop(columns="condition").assign(component=COMPONENT, method=METHOD, level=0.0)
        curve = pd.concat([dense_rows, vs], ignore_index=True)

        fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
        for ax, metric in zip(axes, ["share", "kl"]):
            for i, group in enumerate(groups):
                rows = curve[(curve["probe"] == group) & (curve["metric"] == metric)].sort_values("level")
                ax.plot(rows["level"], rows["value"], marker="o", color=f"C{i}", label=group)
                ax.fill_between(rows["level"], rows["ci_low"], rows["ci_high"], color=f"C{i}", alpha=0.15)
            ax.set_xlabel(f"{COMPONENT} sparsity ({METHOD})")
            ax.set_ylabel(metric)
        axes[0].axhline(PLANTED_BIAS_SHARE, color="black", linestyle=":", linewidth=1, label="planted share")
        axes[0].set_title("share of the most frequent colour")
        axes[1].set_title("KL divergence from uniform")
        axes[0].legend(fontsize=8, loc="lower left")
        fig.tight_layout()
        plt.show()
        """),
    ("md", """
        How the circles' red share moves, level by level (readable images only):
        """),
    ("code", """
        by_level = {0.0: labels, **per_level}  # per-image labels at each sparsity
        circle_colors = {level: lab.loc[lab["probe"] == "circle", "value"].dropna() for level, lab in by_level.items()}
        pd.DataFrame({
            "red share of circles": {level: (v == PLANTED_BIAS_COLOR).mean() for level, v in circle_colors.items()},
            "unreadable": {level: lab["value"].isna().mean() for level, lab in by_level.items()},
        }).rename_axis(f"{COMPONENT} sparsity").round(3)
        """),
    ("md", """
        ## Where next

        `sdprobe bias --probe default-color --sparsities 0.2 0.4 0.6 0.8 --out runs/bias` writes the same tables to
        a run directory; `sdprobe bias-weights runs/bias` then searches for *debiasing* weights: the few whose
        removal brings the circles closest to uniform while every explicit prompt, such as "a red circle", keeps
        drawing what it states and squares and triangles stay put. The search sees only its own prompts and seeds;
        the set is then confirmed on fresh ones against 200 random sets of the same size, and its verdict, whole
        distributions, per-prompt accuracies and dose-response (the set's weights x alpha) land in
        `runs/bias/critical/circle/`. Your own probes are TOML files in the format of
        `sdprobe/probes/default-color.toml`.

        This notebook's tables stay in `notebooks/outputs/03_bias_probe/`:
        """),
    ("code", """
        OUT.mkdir(parents=True, exist_ok=True)
        for name, table in {"labels": labels, "distribution": dense, "metrics": metrics, "vs_sparsity": curve}.items():
            table.to_csv(OUT / f"{name}.csv", index=False)
        sorted(p.name for p in OUT.iterdir())
        """),
]

ATTRIBUTION = [
    ("md", """
        # Attribution: which tokens and which units carry a meaning

        Pruning asks which weights a meaning *needs*; attribution asks which inputs and units *drive* it. sdprobe
        scores a meaning differentiably: a short sampler (`Trajectory`) turns token ids and the initial noise into
        final latents, and a head reads an attribute from them (for the organism, a small latent probe trained on
        its world; for real models, CLIP zero-shot). The score of a prompt is the log-probability the head gives to
        the target value, e.g. colour = red.

        * **Token attributions**: Layer Integrated Gradients (captum) on the token embeddings, from a baseline that
          removes every word (Sundararajan et al. 2017, https://arxiv.org/abs/1703.01365). For "a red circle" and
          the target colour, the word "red" should carry the largest share.
        * **Unit attributions**: for text-encoder Linear layers, neuron conductance (Dhamdhere et al. 2018,
          https://arxiv.org/abs/1805.12233); for UNet layers, Integrated Gradients on a gate scaling each unit.
        """),
    ("code", """
        # Scale knobs: small, so the notebook runs in the time its header states. Raise them for real studies
        # (analyses/organism.toml attributes 16 prompts; the defaults are 8 sampler steps, 32 IG steps and the
        # score averaged over 4 initial noises per prompt).
        MODEL = "builtin:tiny-shapes"
        DEVICE = "cpu"
        TARGET = "color"  # the attribute scored
        PROMPTS = ["a red circle", "a large blue square at the top left", "a small green triangle",
                   "a yellow circle at the bottom right"]
        SEEDS = [0, 1, 2, 3]  # one initial noise per prompt
        SAMPLER_STEPS = 8  # steps of the differentiable sampler
        IG_STEPS = 8  # points on the Integrated Gradients path
        NOISE_SAMPLES = 1  # initial noises whose scores are averaged per prompt (more: attributions of the prompt,
                           # not of one sample; the baseline then rarely shows the target value by chance)
        NEURON_SELECTOR = "unet.attn2"  # whose units are attributed (any architecture selector)
        TOP_K = 15  # units shown
        """),
    ("code", """
        from pathlib import Path

        import matplotlib.pyplot as plt
        import numpy as np
        import pandas as pd

        import sdprobe
        from sdprobe.attribution import (IGConfig, MeaningScore, Trajectory, TrajectoryConfig, attribute_neurons,
                                         attribute_tokens, load_probe, top1_rate)
        from sdprobe.generate import GenerationConfig, generate
        from sdprobe.notebook import show_images
        from sdprobe.world import parse_prompt, read_batch

        OUT = Path("outputs") / "04_attribution"  # the attribution tables stay here (beside this notebook)
        """),
    ("md", """
        ## 1. The meaning score

        `load_probe(vae=pipe.vae)` loads the organism's latent probe and refuses it if it was trained for another
        VAE. The images the sampler makes are those `generate` makes with the same steps and seeds; their titles
        show the prompt, what the oracle reads, and what the probe predicts from the latents.
        """),
    ("code", """
        pipe = sdprobe.load_pipeline(MODEL, device=DEVICE)
        head = load_probe(vae=pipe.vae)
        score = MeaningScore(Trajectory(pipe, TrajectoryConfig(steps=SAMPLER_STEPS)), head, TARGET)
        values = [getattr(parse_prompt(p), TARGET) for p in PROMPTS]  # the target value each prompt states

        traj = score.trajectory
        predicted = score.predict(traj.tokenize(PROMPTS), traj.noise(SEEDS))
        images = generate(pipe, PROMPTS, SEEDS, GenerationConfig(steps=SAMPLER_STEPS))
        show_images(images, [f"{p}\\noracle: {r.attributes[TARGET] if r.readable else 'unreadable'}, probe: {v}"
                             for p, r, v in zip(PROMPTS, read_batch(images), predicted)])
        """),
    ("md", """
        ## 2. Token attributions

        One row per token and prompt. `delta` is Integrated Gradients' completeness gap (how far the attributions'
        sum is from the score difference between prompt and baseline); `top_token_correct` says whether the
        highest-attributed word is the target's word.
        """),
    ("code", """
        ig = IGConfig(n_steps=IG_STEPS, noise_samples=NOISE_SAMPLES)
        tokens = attribute_tokens(score, PROMPTS, SEEDS, values=values, config=ig)
        print(f"the top word is the {TARGET} word for {top1_rate(tokens):.0%} of the prompts")
        tokens[["prompt", "value", "token", "attribution", "delta", "top_token_correct"]].round(3).head(12)
        """),
    ("code", """
        fig, axes = plt.subplots(len(PROMPTS), 1, figsize=(7, 1.8 * len(PROMPTS)))
        for ax, (prompt, rows) in zip(np.atleast_1d(axes), tokens.groupby("prompt", sort=False)):
            rows = rows.iloc[1:-1]  # without the start and end tokens (their attribution is 0 by construction)
            colors = ["C3" if t == rows["value"].iloc[0] else "C0" for t in rows["token"]]
            ax.bar(range(len(rows)), rows["attribution"], color=colors)
            ax.set_xticks(range(len(rows)), rows["token"])
            ax.axhline(0, color="black", linewidth=0.5)
            ax.set_title(f"{prompt!r}: {TARGET} = {rows['value'].iloc[0]} (bar of the target word in red)", fontsize=9)
        fig.tight_layout()
        plt.show()
        """),
    ("md", """
        ## 3. Unit attributions

        `attribute_neurons` attributes the same score to every output unit of the Linear modules a selector picks,
        averaged over the prompts. Here they are the UNet's cross-attention projections (`unet.attn2`), where the
        prompt enters the image; each unit gets a gate, and Integrated Gradients runs on the gates. The units with
        the largest absolute attribution are the candidates for carrying colour. Text-encoder selectors such as
        `text_encoder.mlp` use neuron conductance instead, one Integrated Gradients pass per layer, which takes
        several times longer.
        """),
    ("code", """
        neurons = attribute_neurons(score, NEURON_SELECTOR, PROMPTS, SEEDS, values=values,
                                    config=ig)
        top = neurons.reindex(neurons["attribution"].abs().sort_values(ascending=False).index).head(TOP_K)

        fig, ax = plt.subplots(figsize=(7, 0.3 * TOP_K + 1))
        ax.barh(range(len(top)), top["attribution"], color=["C3" if a > 0 else "C0" for a in top["attribution"]])
        ax.set_yticks(range(len(top)), [f"{layer} [{unit}]" for layer, unit in zip(top["layer"], top["unit"])],
                      fontsize=8)
        ax.invert_yaxis()
        ax.axvline(0, color="black", linewidth=0.5)
        ax.set_xlabel(f"mean attribution to {TARGET} ({top['method'].iloc[0]})")
        ax.set_title(f"top {TOP_K} units of {NEURON_SELECTOR}")
        plt.show()
        """),
    ("md", """
        Where those units sit: the summed absolute attribution per layer.
        """),
    ("code", """
        per_layer = neurons.assign(abs_attribution=neurons["attribution"].abs()).groupby("layer", sort=False)
        with pd.option_context("display.max_colwidth", None):
            display(per_layer["abs_attribution"].agg(["sum", "max"]).round(3))
        """),
    ("md", """
        ## Where next

        `sdprobe attribute --target color --prompt "a red circle" --neurons text_encoder.mlp unet.attn2
        --critical RUN_DIR` writes these tables to a run directory and compares weight saliency with the critical
        sets of a sweep run (precision at k and rank overlap); `sdprobe report` shows them next to the sweep.

        This notebook's tables stay in `notebooks/outputs/04_attribution/`:
        """),
    ("code", """
        OUT.mkdir(parents=True, exist_ok=True)
        tokens.to_csv(OUT / "tokens.csv", index=False)
        neurons.to_csv(OUT / "neurons.csv", index=False)
        sorted(p.name for p in OUT.iterdir())
        """),
]

NOTEBOOKS = {
    "01_quickstart.ipynb": QUICKSTART,
    "02_critical_weights.ipynb": CRITICAL,
    "03_bias_probe.ipynb": BIAS,
    "04_attribution.ipynb": ATTRIBUTION,
}


def build(cells: list[tuple[str, str]], minutes: int | None = None) -> nbformat.NotebookNode:
    """A notebook (no outputs) from ``(kind, source)`` pairs, kind ``"md"`` or ``"code"``.

    Args:
        cells (list[tuple[str, str]]): the cells in order; sources are dedented and stripped.
        minutes (int | None): the run time stated at the end of the first cell. Default: none stated.

    Returns:
        nbformat.NotebookNode: a valid nbformat 4 notebook with fixed cell ids ``cell-00``, ``cell-01``, ...

    Raises:
        ValueError: an unknown cell kind.

    Example:
        >>> build([("md", "# Title"), ("code", "1 + 1")]).cells[1].source
        '1 + 1'
    """
    makers = {"md": nbformat.v4.new_markdown_cell, "code": nbformat.v4.new_code_cell}
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": KERNEL, "language_info": {"name": "python"}})
    for i, (kind, source) in enumerate(cells):
        if kind not in makers:
            raise ValueError(f"unknown cell kind {kind!r}; valid: {', '.join(makers)}")
        text = textwrap.dedent(source).strip()
        if i == 0 and minutes is not None:
            text += (f"\n\n*Run time: about {minutes} minutes on 2 CPU cores at the scale set in the first code "
                     f"cell. Runs and reports stay in `{OUTPUTS}/` beside this notebook.*")
        nb.cells.append(makers[kind](text, id=f"cell-{i:02d}"))
    nbformat.validate(nb)
    return nb


def write_all(folder: Path = HERE, names: list[str] | None = None) -> list[Path]:
    """Write every notebook, or those ``names``, (sources only) into ``folder``; returns their paths."""
    paths = []
    for name, cells in NOTEBOOKS.items():
        if names is not None and name not in names:
            continue
        path = Path(folder) / name
        nbformat.write(build(cells, RUN_MINUTES[name]), path)
        paths.append(path)
    return paths


def execute(path: Path, cwd: Path, timeout: int = CELL_TIMEOUT_S) -> float:
    """Run a notebook top to bottom in ``cwd`` and save it with its outputs; returns the seconds it took.

    The time and the machine's core count are kept in the notebook's metadata (``sdprobe.seconds``, ``sdprobe.cpus``).
    """
    import os
    import time

    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    start = time.monotonic()
    NotebookClient(nb, timeout=timeout, kernel_name=KERNEL["name"], resources={"metadata": {"path": str(cwd)}}).execute()
    seconds = time.monotonic() - start
    for cell in nb.cells:  # live progress bars are widgets, which a published copy cannot show
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if WIDGET not in o.get("data", {})]
    nb.metadata["sdprobe"] = {"seconds": round(seconds, 1), "cpus": os.cpu_count()}
    nbformat.write(nb, path)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write into (default: this folder)")
    parser.add_argument("--execute", action="store_true",
                        help="also run each notebook (in the folder it is written to) and save its outputs")
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME", choices=list(NOTEBOOKS),
                        help="write (and execute) only these notebooks; the others stay as they are")
    args = parser.parse_args()
    for path in write_all(args.out, args.only):
        if args.execute:
            print(f"{path}: {execute(path, path.parent):.0f} s")
        else:
            print(path)


if __name__ == "__main__":
    main()
