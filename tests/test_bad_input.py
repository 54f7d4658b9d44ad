"""Bad input, tried as a careless user and an attacker would: every case below must exit 2 with one line on stderr
that names the problem, print no traceback, write nothing, and so leave the paths free for the corrected command.

The table covers every command: non-finite and out-of-range numbers (guidance, sparsities, offsets, steps, seeds,
shares), unknown names (methods, groups, selectors, metrics, probes, meanings, levels, devices), paths (missing,
a file where a folder is expected and the reverse, an output under a regular file, non-UTF-8 text), corrupt files
(truncated JSON, a corrupt safetensors header, invalid TOML, TOML values of the wrong type) and pickles, which are
refused unread. Commands run in-process through :func:`sdprobe.cli.main`.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest

from fixtures_runs import write_bias, write_sweep
from sdprobe.cli import main

USAGE_ERROR = 2


def exit_status(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


class Payload:
    """Unpickling this runs code that writes a marker file: a file read through pickle would give itself away."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "unpickled"))


@pytest.fixture(scope="module")
def organism_dir(tiny_organism, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("organism") / "pipe"
    tiny_organism.save_pretrained(path, safe_serialization=True)
    return path


@pytest.fixture(scope="module")
def inputs(organism_dir, tmp_path_factory) -> dict[str, Path]:
    """Prepared inputs, outside the folder each case writes to (so "nothing written" is checkable)."""
    root = tmp_path_factory.mktemp("inputs")
    paths = {"model": organism_dir, "root": root}
    (root / "empty.txt").write_text("\n  \n")
    paths["empty"] = root / "empty.txt"
    (root / "latin1.txt").write_bytes("une cercle rouge \xe9t\xe9\n".encode("latin-1"))
    paths["latin1"] = root / "latin1.txt"
    (root / "outside.txt").write_text("a photo of an astronaut riding a horse\n")
    paths["outside"] = root / "outside.txt"
    (root / "regular").write_text("a regular file\n")
    paths["file"] = root / "regular"
    (root / "folder.png").mkdir()
    paths["folder_png"] = root / "folder.png"
    marker = root / "UNPICKLED"
    paths["marker"] = marker
    for name in ("evil.bin", "evil.pt", "evil.pkl", "evil.safetensors", "evil.toml", "evil.json"):
        (root / name).write_bytes(pickle.dumps(Payload(marker)))
        paths[name.replace(".", "_")] = root / name
    corrupt = root / "corrupt-model"
    shutil.copytree(organism_dir, corrupt)
    unet = corrupt / "unet" / "diffusion_pytorch_model.safetensors"
    unet.write_bytes(b"\xff" * 8 + unet.read_bytes()[8:64])
    paths["corrupt_model"] = corrupt
    pickled = root / "pickle-model"
    shutil.copytree(organism_dir, pickled)
    (pickled / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    (pickled / "unet" / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps(Payload(marker)))
    paths["pickle_model"] = pickled
    clip = root / "pickle-clip"  # a CLIP folder whose only weights are a pickle
    clip.mkdir()
    (clip / "config.json").write_text('{"model_type": "clip"}')
    (clip / "pytorch_model.bin").write_bytes(pickle.dumps(Payload(marker)))
    paths["pickle_clip"] = clip
    (root / "suite.toml").write_text('[attributes.object]\nvalues = ["dog", "cat"]\ntemplate = "a photo of a {value}"\n'
                                     '[[prompts]]\nprompt = "a photo of a dog"\nobject = "dog"\n')
    paths["suite"] = root / "suite.toml"
    (root / "prompts.txt").write_text("a photo of a dog\na photo of a horse\n")
    paths["prompts"] = root / "prompts.txt"
    sweep = write_sweep(root / "sweep")
    paths["sweep"] = sweep
    broken = root / "broken-run"
    shutil.copytree(sweep, broken)
    (broken / "config.json").write_text('{"kind": "sweep", "model": ')
    paths["broken_run"] = broken
    bias = write_bias(root / "bias")
    config = json.loads((bias / "config.json").read_text())
    config.update(probe="default-color", seed=0, generation={"steps": 2, "guidance": 2.0, "batch_size": 64,
                                                              "height": None, "width": None})
    (bias / "config.json").write_text(json.dumps(config))
    paths["bias"] = bias
    (root / "badtype.toml").write_text('n_prompts = "many"\n')
    (root / "unknown.toml").write_text("n_promts = 4\n")
    (root / "invalid.toml").write_text("n_prompts = = 4\n")
    (root / "badrange.toml").write_text("[generation]\nguidance = nan\n")
    (root / "badsweep.toml").write_text('[[sweeps]]\nname = "a"\ncomponents = { text_encoder = 3 }\n')
    (root / "curve.csv").write_text("sparsity,clip_score\n0.0,0.3\n0.1,0.3\n0.2,0.1\n")
    for name in ("badtype", "unknown", "invalid", "badrange", "badsweep"):
        paths[f"{name}_toml"] = root / f"{name}.toml"
    paths["curve"] = root / "curve.csv"
    return paths


GEN = ["generate", "--model", "{model}", "--prompt", "a red circle", "-o", "{out}/a.png"]
SWEEP = ["sweep", "--model", "{model}", "--out", "{out}/run", "--steps", "2", "-n", "2"]
BIAS = ["bias", "--model", "{model}", "-o", "{out}/bias", "--steps", "2", "--images", "2"]
WEIGHTS = ["bias-weights", "{bias}"]
ISO = ["isolate", "{sweep}", "--meaning", "color"]
ATTR = ["attribute", "--model", "builtin:tiny-shapes", "--target", "color", "--prompt", "a red circle", "-o", "{out}/attr"]
PROBE = ["train-probe", "--model", "{model}", "-o", "{out}/probe.safetensors"]
EXPORT = ["export", "{sweep}", "--sparsity", "0.5", "-o", "{out}/export"]
THR = ["thresholds", "--csv", "{curve}"]
REPORT = ["report", "{sweep}", "-o", "{out}/r.html"]
STUDY = ["study", "--out", "{out}/study", "--quick"]
TRAIN = ["train-organism", "-o", "{out}/organism"]
EVAL = ["evaluate", "--model", "{model}", "--steps", "2", "-n", "2", "--n-bias", "2"]

# (arguments, a piece of the expected message). {out} is the case's own folder, which must stay empty.
CASES = [
    # generate: numbers, devices, paths, models
    ([*GEN, "--guidance", "nan"], "--guidance: must be a finite number, got nan"),
    ([*GEN, "--guidance", "inf"], "--guidance: must be a finite number, got inf"),
    ([*GEN, "--guidance", "-1"], "--guidance: must be a finite number >= 0, got -1.0"),
    ([*GEN, "--seed", "-1"], "--seed: must be an integer in [0, 9223372036854775807], got -1"),
    ([*GEN, "--seed", str(2**64)], "--seed: must be an integer in [0, 9223372036854775807]"),
    ([*GEN, "--seed", "one"], "--seed: expected an integer, got 'one'"),
    ([*GEN, "--steps", "1.5"], "--steps: expected an integer, got '1.5'"),
    ([*GEN, "--steps", "0"], "--steps: must be a positive integer, got 0"),
    ([*GEN, "--batch-size", "-2"], "--batch-size: must be a positive integer, got -2"),
    ([*GEN, "--device", "bogus"], "device 'bogus' is not a torch device"),
    ([*GEN, "--device", "cuda"], "CUDA is not available here"),
    ([*GEN, "--device", "cuda:7"], "CUDA is not available here"),
    ([*GEN, "--dtype", "float16"], "needs a CUDA device"),
    ([*GEN, "--dtype", "int8"], "invalid choice: 'int8'"),
    (["generate", "--model", "{model}", "--prompt", "a red circle", "-o", "{file}/a.png"], "regular: Not a directory"),
    (["generate", "--model", "{model}", "--prompt", "a red circle", "-o", "{folder_png}"], "folder.png: Is a directory"),
    (["generate", "--model", "{model}", "--prompt", "a red circle", "-o", "{out}/a.jpg"], "output must be a .png"),
    (["generate", "--model", "{model}", "--prompt", "", "-o", "{out}/a.png"], "the prompt is empty"),
    (["generate", "--model", "{corrupt_model}", "--prompt", "a red circle", "-o", "{out}/a.png"], "corrupt"),
    (["generate", "--model", "{pickle_model}", "--prompt", "a red circle", "-o", "{out}/a.png"],
     "holds only pickle weights"),
    (["generate", "--model", "{file}", "--prompt", "a red circle", "-o", "{out}/a.png"], "not a diffusers pipeline"),
    (["generate", "--model", "builtin:nope", "--prompt", "a red circle", "-o", "{out}/a.png"],
     "unknown built-in model 'builtin:nope'"),
    (["generate", "--model", "no/such/folder", "--prompt", "a red circle", "-o", "{out}/a.png"],
     "Built-ins: builtin:tiny-shapes"),
    # sweep: numbers
    ([*SWEEP, "--step", "nan"], "--step: must be a finite number, got nan"),
    ([*SWEEP, "--step", "0"], "--step: must be a finite number > 0, got 0.0"),
    ([*SWEEP, "--step", "-0.05"], "--step: must be a finite number > 0, got -0.05"),
    ([*SWEEP, "--refine", "nan"], "--refine: must be a finite number, got nan"),
    ([*SWEEP, "--refine", "-0.01"], "--refine: must be a finite number >= 0, got -0.01"),
    ([*SWEEP, "--start", "nan"], "--start: must be a finite number, got nan"),
    ([*SWEEP, "--start", "-0.1"], "--start: must be a sparsity in [0, 1), got -0.1"),
    ([*SWEEP, "--stop", "1.0"], "--stop: must be a sparsity in [0, 1), got 1.0"),
    ([*SWEEP, "--stop", "inf"], "--stop: must be a finite number, got inf"),
    ([*SWEEP, "--start", "0.6", "--stop", "0.3"], "start (0.6) must not exceed stop (0.3)"),
    ([*SWEEP, "--offset", "text_encoder=nan"], "expected COMPONENT=OFFSET"),
    ([*SWEEP, "--offset", "text_encoder=1.5"], "offset in (-1, 1)"),
    ([*SWEEP, "--offset", "text_encoder:0.1"], "expected COMPONENT=OFFSET"),
    ([*SWEEP, "--component", "unet", "--offset", "text_encoder=0.1"], "which this sweep does not prune (unet)"),
    ([*SWEEP, "--seed", "-1"], "--seed: must be an integer in [0,"),
    ([*SWEEP, "--seed", str(2**64)], "--seed: must be an integer in [0,"),
    ([*SWEEP, "--guidance", "nan"], "--guidance: must be a finite number, got nan"),
    ([*SWEEP, "-n", "0"], "must be a positive integer, got 0"),
    ([*SWEEP, "--steps", "0"], "--steps: must be a positive integer, got 0"),
    # sweep: names
    ([*SWEEP, "--group", "bogus"], "unknown comparison group 'bogus'"),
    ([*SWEEP, "--group", "nm:1"], "unknown comparison group 'nm:1'"),
    ([*SWEEP, "--method", "prune-it"], "invalid choice: 'prune-it'"),
    ([*SWEEP, "--component", "vae"], "invalid choice: 'vae'"),
    ([*SWEEP, "--select", "text_encoder.nope"], "unknown filter 'nope' in selector 'text_encoder.nope'"),
    ([*SWEEP, "--select", "unet.attn2"], "outside --component text_encoder"),
    ([*SWEEP, "--metrics", "nope"], "invalid choice: 'nope'"),
    ([*SWEEP, "--metrics", "oracle", "unreadable"], "metrics 'oracle' and 'unreadable' both measure 'unreadable'"),
    ([*SWEEP, "--store", "cloud"], "invalid choice: 'cloud'"),
    ([*SWEEP, "--device", "cuda"], "CUDA is not available here"),
    # sweep: prompts and paths
    ([*SWEEP, "--prompts", "{empty}"], "holds no prompt"),
    ([*SWEEP, "--prompts", "{latin1}"], "is not UTF-8 text"),
    ([*SWEEP, "--prompts", "{root}/missing.txt"], "No such file or directory"),
    ([*SWEEP, "--prompts", "{outside}"], "the oracle metric reads only the organism's prompts"),
    (["sweep", "--model", "{model}", "--out", "{file}", "--steps", "2", "-n", "2"], "is a file, not a run folder"),
    (["sweep", "--model", "{model}", "--out", "{file}/run", "--steps", "2", "-n", "2"], "Not a directory"),
    (["sweep", "--model", "{model}", "--out", "{sweep}", "--steps", "2", "-n", "2"],
     "was made with a different configuration"),
    (["sweep", "--model", "builtin:nope", "--out", "{out}/run"], "built-ins: builtin:tiny-shapes"),
    # thresholds
    (["thresholds", "{out}/run"], "is not an sdprobe run"),
    (["thresholds"], "give either RUN_DIR or --csv FILE"),
    (["thresholds", "--csv", "{out}/curve.csv"], "no such CSV"),
    (["thresholds", "--csv", "{empty}", "--digits", "0"], "must be a positive integer, got 0"),
    (["thresholds", "{broken_run}"], "is not valid JSON"),
    ([*THR, "--ci", "0"], "--ci: must be a number in (0, 1), got 0.0"),
    ([*THR, "--ci", "nan"], "--ci: must be a finite number, got nan"),
    ([*THR, "--bootstrap", "-1"], "--bootstrap: must be an integer >= 0, got -1"),
    ([*THR, "--min-event", "1.5"], "--min-event: must be a number in (0, 1), got 1.5"),
    ([*THR, "--max-width", "-1"], "--max-width: must be a finite number > 0, got -1.0"),
    ([*THR, "--floor", "nan"], "--floor: must be a finite number, got nan"),
    ([*THR, "--dense", "inf"], "--dense: must be a finite number, got inf"),
    ([*THR, "--seed", "-1"], "--seed: must be an integer in [0,"),
    (["thresholds", "--csv", "{latin1}"], "is not UTF-8 text"),
    # report
    (["report", "{out}/run", "-o", "{out}/r.html"], "does not exist or is not a folder"),
    (["report", "{empty}", "-o", "{out}/r.html"], "does not exist or is not a folder"),
    ([*REPORT, "--top-k", "0"], "must be a positive integer, got 0"),
    ([*REPORT, "--ci", "1.5"], "--ci: must be a number in (0, 1), got 1.5"),
    ([*REPORT, "--bootstrap", "0"], "--bootstrap: must be a positive integer, got 0"),
    ([*REPORT, "--dpi", "0"], "--dpi: must be a positive integer, got 0"),
    ([*REPORT, "--seed", "-3"], "--seed: must be an integer in [0,"),
    (["report", "{broken_run}", "-o", "{out}/r.html"], "is not valid JSON"),
    (["report", "{sweep}", "-o", "{file}/r.html"], "Not a directory"),
    # bias
    ([*BIAS, "--sparsities", "1.5"], "--sparsities: must be a sparsity in [0, 1), got 1.5"),
    ([*BIAS, "--sparsities", "nan"], "--sparsities: must be a finite number, got nan"),
    ([*BIAS, "--sparsities", "0.5", "--components", "bogus"], "unknown component(s) ['bogus']"),
    ([*BIAS, "--sparsities", "0.5", "--methods", "bogus"], "unknown pruning method(s) ['bogus']"),
    ([*BIAS, "--seed", "-5"], "--seed: must be an integer in [0,"),
    ([*BIAS, "--images", "0"], "--images: must be a positive integer, got 0"),
    ([*BIAS, "--bootstrap", "0"], "--bootstrap: must be a positive integer, got 0"),
    ([*BIAS, "--guidance", "inf"], "--guidance: must be a finite number, got inf"),
    ([*BIAS, "--device", "bogus"], "device 'bogus' is not a torch device"),
    ([*BIAS, "--probe", "no-such-probe"], "no-such-probe"),
    ([*BIAS, "--probe", "{evil_bin}"], "evil.bin"),
    ([*BIAS, "--probe", "{evil_toml}"], "evil.toml"),
    ([*BIAS, "--probe", "{latin1}"], "latin1.txt"),
    ([*BIAS, "--set", "{root}/missing.json", "--alphas", "0.5"], "missing.json"),
    ([*BIAS, "--set", "{evil_json}", "--alphas", "0.5"], "evil.json"),
    ([*BIAS, "--set", "{root}/missing.json", "--alphas", "1.5"], "--alphas: must be a number in [0, 1], got 1.5"),
    (["bias", "--model", "{model}", "-o", "{file}/bias", "--steps", "2", "--images", "2"], "Not a directory"),
    # bias-weights
    (["bias-weights", "{out}/none"], "is not an sdprobe run"),
    (["bias-weights", "{sweep}"], "expected a 'bias' run"),
    ([*WEIGHTS, "--alpha", "0"], "--alpha: must be a number in (0, 1), got 0.0"),
    ([*WEIGHTS, "--alpha", "1.5"], "--alpha: must be a number in (0, 1), got 1.5"),
    ([*WEIGHTS, "--tolerance", "-1"], "--tolerance: must be a number in [0, 1], got -1.0"),
    ([*WEIGHTS, "--accuracy-floor", "2"], "--accuracy-floor: must be a number in [0, 1], got 2.0"),
    ([*WEIGHTS, "--doses", "nan"], "--doses: must be a finite number, got nan"),
    ([*WEIGHTS, "--controls", "0"], "--controls: must be a positive integer, got 0"),
    ([*WEIGHTS, "--objective", "l2"], "invalid choice: 'l2'"),
    ([*WEIGHTS, "--min-size", "0"], "--min-size: must be a positive integer, got 0"),
    ([*WEIGHTS, "--group", "no-such-group"], "no-such-group"),
    # isolate
    (["isolate", "{out}/none", "--meaning", "color"], "is not an sdprobe run"),
    (["isolate", "{broken_run}", "--meaning", "color"], "is not valid JSON"),
    ([*ISO, "--window", "0.5,0.4"], "need 0 <= START < STOP < 1"),
    ([*ISO, "--window", "nan,0.5"], "need 0 <= START < STOP < 1"),
    ([*ISO, "--window", "middle"], "use transition, bracket, sudden, or two sweep levels"),
    ([*ISO, "--alpha", "0"], "--alpha: must be a number in (0, 1), got 0.0"),
    ([*ISO, "--power", "1"], "--power: must be a number in (0, 1), got 1.0"),
    ([*ISO, "--effect", "2"], "--effect: must be a number in (0, 1), got 2.0"),
    ([*ISO, "--seed", "-1"], "--seed: must be an integer in [0,"),
    ([*ISO, "--matched", "-1"], "--matched: must be an integer >= 0, got -1"),
    ([*ISO, "--confirm", "0"], "--confirm: must be a positive integer, got 0"),
    ([*ISO, "--levels", "tensor,atom"], "unknown level(s) ['atom']"),
    ([*ISO, "--confirm-prompts", "{latin1}"], "is not UTF-8 text"),
    ([*ISO, "--window", "0.4,0.5", "--device", "bogus"], "device 'bogus' is not a torch device"),
    (["isolate", "--replicate", "{root}/missing.json"], "missing.json"),
    (["isolate", "--replicate", "{evil_json}"], "evil.json"),
    (["isolate", "--replicate", "{latin1}"], "latin1.txt"),
    # attribute and train-probe
    ([*ATTR, "--seed", "-1"], "--seed: must be an integer in [0,"),
    ([*ATTR, "--guidance", "nan"], "--guidance: must be a finite number, got nan"),
    ([*ATTR, "--steps", "0"], "--steps: must be a positive integer, got 0"),
    ([*ATTR, "--ig-steps", "0"], "--ig-steps: must be a positive integer, got 0"),
    ([*ATTR, "--neurons", "bogus"], "bogus"),
    ([*ATTR, "--critical", "{out}/not-a-run"], "is not an sdprobe run"),
    ([*ATTR, "--latent-probe", "{evil_pt}"], "evil.pt"),
    ([*ATTR, "--device", "cuda"], "CUDA is not available here"),
    ([*ATTR, "--clip-model", "{pickle_clip}"], "no file named model.safetensors"),
    (["attribute", "--model", "builtin:tiny-shapes", "--target", "color", "-o", "{out}/attr"], "give at least one non-empty"),
    (["attribute", "--model", "builtin:tiny-shapes", "--target", "mood", "--prompt", "a red circle", "-o", "{out}/attr"],
     "unknown target 'mood'"),
    (["attribute", "--model", "builtin:tiny-shapes", "--target", "color", "--prompt", "a red circle", "--value", "red",
      "--value", "blue", "-o", "{out}/attr"], "give one --value per --prompt"),
    ([*PROBE[:-1], "{out}/probe.pt"], "output must be a .safetensors file"),
    ([*PROBE, "--seed", "-1"], "--seed: must be an integer in [0,"),
    ([*PROBE, "--train-steps", "0"], "--train-steps: must be a positive integer, got 0"),
    # export
    (["export", "{out}/none", "--sparsity", "0.5", "-o", "{out}/export"], "is not an sdprobe run"),
    ([*EXPORT[:3], "1.5", *EXPORT[4:]], "1.5"),
    ([*EXPORT[:3], "nan", *EXPORT[4:]], "nan"),
    ([*EXPORT, "--nm", "5:4"], "5:4"),
    ([*EXPORT, "--device", "bogus"], "device 'bogus' is not a torch device"),
    # study
    ([*STUDY, "--config", "{root}/missing.toml"], "missing.toml"),
    ([*STUDY, "--config", "{badtype_toml}"], "n_prompts = 'many': expected an integer"),
    ([*STUDY, "--config", "{unknown_toml}"], "unknown key(s) ['n_promts']"),
    ([*STUDY, "--config", "{invalid_toml}"], "is not valid TOML"),
    ([*STUDY, "--config", "{badrange_toml}"], "guidance must be a finite number, got nan"),
    ([*STUDY, "--config", "{badsweep_toml}"], "components.text_encoder = 3"),
    ([*STUDY, "--config", "{latin1}"], "is not UTF-8 text"),
    ([*STUDY, "--config", "{evil_toml}"], "evil.toml"),
    ([*STUDY, "--jobs", "0"], "--jobs: must be a positive integer, got 0"),
    ([*STUDY, "--device", "bogus"], "device 'bogus' is not a torch device"),
    (["study", "--out", "{file}", "--quick"], "regular: Not a directory"),
    # train-organism
    ([*TRAIN, "--seed", "-1"], "--seed: must be an integer in [0,"),
    ([*TRAIN, "--finetune-steps", "-1"], "--finetune-steps: must be an integer >= 0, got -1"),
    ([*TRAIN, "--batch-size", "0"], "--batch-size: must be a positive integer, got 0"),
    ([*TRAIN, "--vae-checkpoint", "{evil_pt}"], "evil.pt"),
    ([*TRAIN, "--vae-checkpoint", "{evil_safetensors}"], "evil.safetensors"),
    ([*TRAIN, "--vae-checkpoint", "{root}/missing.safetensors"], "missing.safetensors"),
    (["train-organism", "-o", "{file}/organism"], "Not a directory"),
    # train-clip
    (["train-clip", "-o", "{out}/clip", "--steps", "0"], "--steps: must be a positive integer, got 0"),
    (["train-clip", "-o", "{out}/clip", "--lr", "nan"], "--lr: must be a finite number"),
    (["train-clip", "-o", "{file}/clip", "--steps", "1", "--batch-size", "2"], "Not a directory"),
    # train-planted
    (["train-planted", "-o", "{out}/p", "--sparsity", "1.5"], "--sparsity: must lie in (0, 1), got 1.5"),
    (["train-planted", "-o", "{out}/p", "--paths", "4"], "paths must lie in 1..3, got 4"),
    (["train-planted", "-o", "{out}/p", "--steps", "0"], "--steps: must be a positive integer, got 0"),
    (["train-planted", "-o", "{file}/p", "--steps", "1", "--batch-size", "2"], "Not a directory"),
    # meaning metrics: CLIP readers and prompt suites
    ([*SWEEP, "--metrics", "clip-attributes"], "reads images with CLIP: give a CLIP model"),
    ([*SWEEP, "--metrics", "clip-attributes", "--clip-model", "{root}/no-clip"], "CLIP model folder"),
    ([*SWEEP, "--metrics", "clip-attributes", "--clip-model", "{root}"], "not a CLIP model folder (no config.json)"),
    ([*SWEEP, "--metrics", "fd-clip", "--clip-model", "{pickle_clip}"], "no file named model.safetensors"),
    ([*SWEEP, "--metrics", "clip-attributes", "--clip-model", "{model}/text_encoder"], "not a CLIP model"),
    ([*SWEEP, "--metrics", "clip-attributes", "--clip-model", "builtin:tiny-shapes-clip", "--suite", "{root}/x.toml"],
     "prompt suite file"),
    ([*SWEEP, "--metrics", "clip-attributes", "--clip-model", "builtin:tiny-shapes-clip", "--suite", "builtin:coco"],
     "unknown built-in prompt suite"),
    ([*SWEEP, "--metrics", "clip-attributes", "--clip-model", "builtin:tiny-shapes-clip", "--suite", "{suite}",
      "--prompts", "{prompts}"], "is not in the prompt suite"),
    ([*ISO, "--metric", "clipscore"], "invalid choice: 'clipscore'"),
    ([*ISO, "--clip-model", "builtin:tiny-shapes-clip"], "give --metric clip-attributes with them"),
    ([*ISO, "--metric", "clip-attributes", "--clip-model", "builtin:tiny-shapes-clip", "--suite", "{suite}"],
     "unknown meaning 'color'; valid: object"),
    ([*BIAS, "--metric", "clip-attributes", "--clip-model", "builtin:tiny-shapes-clip", "--suite", "{suite}"],
     "cannot describe every 'color'"),
    ([*BIAS, "--metric", "oracle", "--probe", "occupations"], "the oracle reads only the organism's attributes"),
    ([*ATTR, "--clip-model", "builtin:tiny-shapes-clip", "--suite", "{root}/none.toml"], "prompt suite file"),
    # trackers
    (["track", "{sweep}", "--to", "wandb:{out}/x"], "expected KIND:DIR with KIND one of tensorboard, mlflow"),
    (["track", "{out}/none", "--to", "tensorboard:{out}/tb"], "does not exist or is not a folder"),
    (["track", "{sweep}", "--to", "tensorboard:{out}/tb", "--report", "{root}/none.html"], "write one with"),
    ([*SWEEP, "--tracker", "mlflow"], "expected KIND:DIR"),
    (["study", "--out", "{out}/s", "--tracker", "tensorboard:"], "expected KIND:DIR"),
    # evaluate
    ([*EVAL, "--seed", "-1"], "--seed: must be an integer in [0,"),
    ([*EVAL, "--guidance", "inf"], "--guidance: must be a finite number, got inf"),
    ([*EVAL, "--device", "cuda"], "CUDA is not available here"),
    (["evaluate", "--model", "{model}", "-n", "0"], "-n: must be a positive integer, got 0"),
]


def _fill(argv: list[str], inputs: dict[str, Path], out: Path) -> list[str]:
    return [a.format(out=out, **inputs) for a in argv]


def _listing(root: Path) -> list:
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*") if p.name != ".lock"
                  and p.is_file())


def test_the_table_is_large_and_covers_every_command():
    from sdprobe.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    assert len(CASES) >= 100
    assert set(sub.choices) <= {argv[0] for argv, _ in CASES}


@pytest.mark.parametrize("argv, message", CASES, ids=[f"{i:03d}-{a[0]}" for i, (a, _) in enumerate(CASES)])
def test_bad_input_exits_2_names_the_problem_and_writes_nothing(argv, message, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    before = _listing(inputs["root"])
    assert exit_status(_fill(argv, inputs, out)) == USAGE_ERROR
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert message in err, err
    assert not out.exists(), sorted(out.rglob("*"))  # the corrected command finds its paths free
    assert _listing(inputs["root"]) == before  # inputs untouched (a run's lock file aside)
    assert not inputs["marker"].exists(), "a pickle was unpickled"


def test_a_rejected_sweep_does_not_block_the_corrected_one(inputs, tmp_path):
    out = tmp_path / "run"
    base = ["sweep", "--model", str(inputs["model"]), "--out", str(out), "--steps", "1", "-n", "1",
            "--metrics", "distance", "--start", "0.5", "--stop", "0.5", "--refine", "0"]
    assert exit_status([*base, "--group", "bogus"]) == USAGE_ERROR
    assert exit_status(base) == 0
    assert (out / "results.parquet").exists()


def test_a_run_with_no_finished_work_restarts_with_a_corrected_config(inputs, tmp_path):
    from sdprobe.runs import RunDir, unlock_run

    run = RunDir.open_or_create(tmp_path / "run", {"a": 1})
    unlock_run(run.path)
    again = RunDir.open_or_create(tmp_path / "run", {"a": 2})
    assert again.config()["a"] == 2
    unlock_run(run.path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_exits_2(inputs, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert exit_status(_fill([*GEN[:-1], str(ro / "a.png")], inputs, tmp_path)) == USAGE_ERROR
        assert "Permission denied" in capsys.readouterr().err
    finally:
        ro.chmod(0o755)
