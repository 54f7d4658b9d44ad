"""The report explains itself: a findings summary built from the runs' numbers, one folded reproduction section,
chance lines only where a metric declares chance, and no panel for a metric that never moves."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from fixtures_runs import write_study, write_sweep

from sdprobe.report import ReportOptions, build, discover, render
from sdprobe.report import compute
from sdprobe.report.findings import findings
from sdprobe.report.load import load_run
from sdprobe.report.sections_probes import with_dense
from sdprobe.report.structure import all_runs

FAST = ReportOptions(n_boot=50, dpi=40)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = write_study(tmp_path_factory.mktemp("findings") / "study")
    sources = discover([root])
    report = build(sources, opts=FAST)
    return sources, report, render(report)


def test_the_findings_come_first_and_quote_each_sweeps_thresholds_with_intervals(study):
    _, report, _ = study
    assert report.sections[0].title == "Findings"
    statements = report.sections[0].children[0].items
    wanda = next(s for s in statements if s.startswith("te-wanda ("))
    assert "color sudden at 0.550 [0.530, 0.570]" in wanda  # the fixture's te-wanda collapses color at 0.55
    assert "shape sudden at 0.450 [0.430, 0.470]" in wanda
    assert "no collapse in distance" in wanda  # its distance row names a kind but no threshold
    assert not any(s.startswith("unet-magnitude (") and "at 0." in s for s in statements)  # it has no thresholds.csv


def test_findings_follow_the_numbers_not_a_template(tmp_path):
    a = write_sweep(tmp_path / "a", collapse={"color": 0.3}, samples=False, layers=False, critical=False)
    b = write_sweep(tmp_path / "b", collapse={"color": 0.7}, samples=False, layers=False, critical=False)
    (sa,), _ = findings([load_run(a)])
    (sb,), _ = findings([load_run(b)])
    assert "color sudden at 0.300 [0.280, 0.320]" in sa and "color sudden at 0.700 [0.680, 0.720]" in sb


def test_findings_state_sets_bias_attribution_and_caveats(study):
    sources, _, _ = study
    statements, caveats = findings(all_runs(sources))
    critical = [s for s in statements if s.startswith("Critical weights for ")]
    assert {s.split(" in ")[0] for s in critical} == {"Critical weights for color", "Critical weights for shape"}
    assert any(s.startswith("Bias probe ") and "] of " in s for s in statements)
    assert any(s.startswith("Attribution (attribution)") for s in statements)
    assert any("te-random prune at random" in c for c in caveats)  # the control run is named as a baseline
    assert any("confirmation split" in c for c in caveats)


def test_one_folded_reproduction_section_shows_a_shared_environment_once(study):
    _, report, page = study
    repro = report.sections[-1]
    assert repro.title == "Reproduction" and repro.collapsed
    envs = [c for c in repro.children if getattr(c, "caption", "").startswith("environment of")]
    assert [e.caption for e in envs] == ["environment of every run"]  # the fixture's runs share one environment
    configs = [s.title for s in repro.subsections if s.title.startswith("Configuration: ")]
    assert len(configs) == 6
    body = page.split('id="reproduction"', 1)
    assert "<details>" in body[1] and "<details>" not in body[0]
    assert body[0].count("config.json</caption>") == 0 and body[1].count("config.json</caption>") == 6
    assert "environment.json</caption>" not in page


def test_a_metric_that_never_moves_gets_no_panel_and_the_caption_says_so(tmp_path):
    path = write_sweep(tmp_path / "flat", samples=False, layers=False, critical=False)
    results = pd.read_parquet(path / "results.parquet").assign(unreadable=0.0)
    results.to_parquet(path / "results.parquet", index=False)
    results.to_csv(path / "results.csv", index=False)
    report = build(discover([path]), opts=FAST)
    page = render(report)
    assert "Not drawn, the same at every level: unreadable = 0.000." in page
    summary = compute.curve_summary(results, ["color", "unreadable"], n_boot=20)
    assert compute.flat_metrics(summary, ["color", "unreadable"]) == {"unreadable": 0.0}


def test_chance_lines_only_for_declared_floors_of_accuracy_like_metrics():
    t = pd.DataFrame({"metric": ["color", "shape", "unreadable", "distance"],
                      "floor": [1 / 6, 0.41, 1.0, 1.0],
                      "floor_source": ["given", "curve", "given", "given"],
                      "higher_is_better": [True, True, False, False]})
    assert compute.declared_floors(t) == {"color": pytest.approx(1 / 6)}
    assert compute.declared_floors(t.drop(columns="floor_source")) == {}


def test_bias_vs_sparsity_starts_from_the_dense_model(study):
    sources, _, _ = study
    bias = next(r for r in all_runs(sources) if r.kind == "bias")
    vs, metrics = bias.table("vs_sparsity"), bias.table("metrics")
    vs = vs[vs["level"] > 0].reset_index(drop=True)  # as the bias command writes it: pruned levels only
    out = with_dense(vs, metrics)
    lines = vs[["component", "method"]].drop_duplicates()
    dense = out[out["level"] == 0.0]
    assert len(dense) == len(lines) * (metrics["condition"] == "dense").sum()
    first = metrics[metrics["condition"] == "dense"].iloc[0]
    row = dense[(dense["probe"] == first["probe"]) & (dense["metric"] == first["metric"])].iloc[0]
    assert row["value"] == pytest.approx(first["value"])
    assert with_dense(out, metrics) is out  # already has a dense level: unchanged


def test_findings_are_visible_html_before_any_run_section(study):
    _, _, page = study
    first_run = page.index('id="study-study')
    findings_at = page.index('id="findings"')
    assert findings_at < first_run
    assert re.search(r'<ul class="bullets plain">\s*<li>', page[findings_at:first_run])
