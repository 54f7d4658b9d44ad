import json

import pytest

from sdprobe.errors import RunError
from sdprobe.generate import GenerationConfig
from sdprobe.study import StudyConfig, load_study_config, run_study, study_config_from_dict


def _tiny_config(model: str) -> StudyConfig:
    return study_config_from_dict({
        "model": model,
        "n_prompts": 4,
        "metrics": ["oracle", "distance"],
        "generation": {"steps": 2, "batch_size": 4},
        "sweeps": [
            {"name": "te-magnitude", "components": {"text_encoder": {"selectors": ["text_encoder"]}},
             "method": "magnitude", "start": 0.0, "stop": 0.6, "step": 0.3, "refine": 0},
            {"name": "unet-random", "components": {"unet": {"selectors": ["unet.attn2"]}},
             "method": "random", "start": 0.0, "stop": 0.6, "step": 0.3, "refine": 0},
        ],
        "isolation": {"sweep": "te-magnitude", "search_prompts": 2, "confirm_prompts": 8, "effect": 0.9, "matched": 2,
                      "max_evaluations": 10},
        "bias": False,
        "attribution": False,
    })


@pytest.fixture(scope="module")
def organism_dir(tmp_path_factory, tiny_organism):
    path = tmp_path_factory.mktemp("organism")
    tiny_organism.save_pretrained(path, safe_serialization=True)
    return str(path)


def test_study_runs_every_stage_writes_the_report_and_refuses_to_overwrite(tmp_path, organism_dir):
    out = tmp_path / "study"
    report = run_study(_tiny_config(organism_dir), out, progress=False)
    state = json.loads((out / "study.json").read_text())
    assert report.exists() and "<html" in report.read_text()[:500].lower()
    assert state["state"] == "finished"
    assert set(state["stages"]) == {"sweep:te-magnitude", "sweep:unet-random", "isolation", "report"}
    assert (out / "te-magnitude" / "thresholds.csv").exists()
    # an untrained model never collapses suddenly, so isolation is skipped with the reason recorded
    assert state["stages"]["isolation"]["status"] == "skipped"
    with pytest.raises(RunError, match="finished study"):
        run_study(_tiny_config(organism_dir), out, progress=False)
    run_study(_tiny_config(organism_dir), out, overwrite=True, progress=False)


def test_study_resumes_and_skips_finished_stages(tmp_path, organism_dir, monkeypatch):
    import sdprobe.study.run as study_run

    out = tmp_path / "study"
    calls = []
    real = study_run.Study.sweep

    def flaky(self, spec):
        calls.append(spec.name)
        if spec.name == "unet-random" and calls.count("unet-random") == 1:
            raise KeyboardInterrupt
        return real(self, spec)

    monkeypatch.setattr(study_run.Study, "sweep", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_study(_tiny_config(organism_dir), out, progress=False)
    run_study(_tiny_config(organism_dir), out, progress=False)
    assert calls == ["te-magnitude", "unet-random", "unet-random"]


def test_a_different_config_is_refused_and_bad_recipes_name_valid_keys(tmp_path, organism_dir, monkeypatch):
    import sdprobe.study.run as study_run

    out = tmp_path / "study"
    cfg = _tiny_config(organism_dir)
    monkeypatch.setattr(study_run.Study, "sweep", lambda self, spec: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        run_study(cfg, out, progress=False)
    monkeypatch.undo()
    other = study_config_from_dict({**cfg.to_dict(), "seed": 1, "sweeps": [
        {"name": s.name, "components": {c: {"selectors": p.selectors} for c, p in s.components.items()},
         "method": s.method, "start": s.start, "stop": s.stop, "step": s.step, "refine": 0} for s in cfg.sweeps],
        "isolation": {"sweep": "te-magnitude"}, "bias": False, "attribution": False, "generation": {"steps": 2}})
    with pytest.raises(RunError, match="different configuration"):
        run_study(other, out, progress=False)
    with pytest.raises(ValueError, match="valid: name, components"):
        study_config_from_dict({"sweeps": [{"name": "x", "components": {}, "methd": "magnitude"}]})
    with pytest.raises(ValueError, match="not one of the sweeps"):
        study_config_from_dict({"isolation": {"sweep": "nope"}})
    with pytest.raises(ValueError, match=r"\[bias\] 20 controls cannot give p < 0.01"):  # refused before any model loads
        study_config_from_dict({"bias": {"controls": 20}})
    search = study_config_from_dict({"bias": {"controls": 19, "alpha": 0.05}}).bias.search_config(GenerationConfig(), 3)
    assert (search.confirm.n_controls, search.alpha, search.confirm.seed, search.seed) == (19, 0.05, 3, 3)


def test_shipped_recipes_parse():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "analyses"
    organism = load_study_config(root / "organism.toml")
    assert organism.to_dict() == StudyConfig().to_dict()  # the recipe documents the defaults
    sd2 = load_study_config(root / "sd2-study.toml")
    assert sd2.generation.steps == 50 and sd2.generation.guidance == 7.5
    assert [s.start for s in sd2.sweeps] == [0.3, 0.3, 0.1, 0.1]
    assert sd2.sweeps[-1].components["text_encoder"].offset == 0.125
    assert all(not s.include_conv for s in sd2.sweeps)
