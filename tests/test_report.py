"""Report structure and rendering on synthetic runs: sections, escaping, self-containment, partial banner, CLI."""

from __future__ import annotations

import base64
import html
import io
import re
import subprocess
import sys

import pytest
from fixtures_runs import LEVELS, XSS, write_study, write_sweep
from PIL import Image

from sdprobe.cli import main
from sdprobe.io import write_json
from sdprobe.report import ReportOptions, build, discover, make_report, render
from sdprobe.report.tree import Section

FAST = ReportOptions(n_boot=100, dpi=40)  # small figures and few resamples keep tests quick


def _titles(sections: list[Section]) -> list[str]:
    out = []
    for s in sections:
        out.append(s.title)
        out += _titles(s.subsections)
    return out


def _section(sections: list[Section], title: str) -> Section:
    for s in sections:
        if s.title == title:
            return s
        try:
            return _section(s.subsections, title)
        except KeyError:
            pass
    raise KeyError(title)


@pytest.fixture(scope="module")
def study_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    report = build(discover([write_study(root / "study")]), opts=FAST)
    return report, render(report)


@pytest.fixture(scope="module")
def partial_html(tmp_path_factory):
    """A small study: one finished sweep, one still running, and a planned run not on disk yet."""
    study = tmp_path_factory.mktemp("partial") / "study"
    small = {"levels": [0.0, 0.5], "samples": False, "layers": False, "critical": False}
    write_sweep(study / "te-magnitude", **small)
    write_sweep(study / "te-random", method="random", state="running", **small)
    write_json(study / "study.json", {"runs": ["te-magnitude", "te-random", "joint-magnitude"]})
    return render(build(discover([study]), opts=FAST))


def test_study_has_every_section(study_report):
    report, _ = study_report
    titles = _titles(report.sections)
    assert titles[:3] == ["Findings", "Overview", "Method comparison: text_encoder"]
    for expected in ("te-magnitude (sweep, magnitude)", "Metrics vs sparsity", "Sample images", "Per-layer sparsity",
                     "Critical weights", "Bias distributions", "Bias metrics", "Bias vs sparsity",
                     "Debiasing weights: circle", "Token attributions", "Neuron attributions", "Saliency vs critical sets"):
        assert expected in titles, expected
    assert titles.count("Metrics vs sparsity") == 4  # four sweeps
    assert titles.count("Critical weights") == 1  # only te-magnitude has critical sets
    anchors = []

    def walk(sections):
        for s in sections:
            anchors.append(s.anchor)
            walk(s.subsections)

    walk(report.sections)
    assert len(anchors) == len(set(anchors)) and all(re.fullmatch(r"[a-z0-9-]+", a) for a in anchors)
    assert not report.partial


def test_method_comparison_tables_thresholds_side_by_side(study_report):
    report, _ = study_report
    table = next(c for c in _section(report.sections, "Method comparison: text_encoder").children if getattr(c, "kind", "") == "table")
    assert table.columns == ["metric", "magnitude (te-magnitude)", "wanda (te-wanda)", "random (te-random)"]
    color = next(r for r in table.rows if r[0] == "color")
    assert color[1:] == ["0.450 [0.430, 0.470] sudden", "0.550 [0.530, 0.570] sudden", "0.850 [0.830, 0.870] sudden"]


def test_image_grid_has_one_row_per_level_in_order(study_report):
    report, _ = study_report
    run = _section(report.sections, "te-wanda (sweep, wanda)")
    grid = next(c for c in _section([run], "Sample images").children if getattr(c, "kind", "") == "images")
    assert [r.label for r in grid.rows] == [f"level {lv:.4f}" for lv in LEVELS]
    assert grid.columns[-1].endswith(XSS)


def test_missing_tables_are_skipped(tmp_path):
    path = write_sweep(tmp_path / "bare", levels=[0.0, 0.2], thresholds=False, samples=False, layers=False,
                       critical=False)
    report = build(discover([path]), opts=FAST)
    run = _section(report.sections, "bare (sweep, magnitude)")
    assert [s.title for s in run.subsections] == ["Run", "Metrics vs sparsity"]
    curves = run.subsections[1]
    assert any(getattr(c, "text", "").startswith("No thresholds yet") for c in curves.children)
    render(report)  # renders without the skipped parts


def test_sweep_without_levels_is_partial_and_says_so(tmp_path):
    path = write_sweep(tmp_path / "new", levels=[], state="running", samples=False, layers=False, critical=False,
                       thresholds=False)
    report = build(discover([path]), opts=FAST)
    assert report.partial and any("running" in r for r in report.partial_reasons)
    assert "No level has been evaluated yet." in render(report)


def test_token_rows_keep_seeds_apart(tmp_path):
    from fixtures_runs import DEFAULT_PROMPTS, write_attribution

    from sdprobe.report.load import load_run
    from sdprobe.report.sections_probes import _token_rows

    run = load_run(write_attribution(tmp_path / "attr", n_seeds=2))
    rows = _token_rows(run.table("tokens"), limit=100)
    assert len(rows) == len(DEFAULT_PROMPTS) * 2 * 2  # prompts x targets x seeds
    for label, tokens, values in rows:
        prompt = label.split(" | ")[1]
        assert tokens == prompt.split() and len(values) == len(tokens)
    assert len(_token_rows(run.table("tokens"), limit=3)) == 3


def test_user_strings_are_escaped(study_report):
    _, page = study_report
    assert XSS not in page
    assert "<script" not in page.lower()
    assert html.escape(XSS, quote=True) in page
    assert page.count(html.escape(XSS, quote=True)) >= 3  # prompt lists, grid columns, sample table


def test_page_references_nothing_outside_itself(study_report):
    _, page = study_report
    refs = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]*)""", page, flags=re.IGNORECASE)
    assert refs, "expected images and links"
    assert not [r for r in refs if re.match(r"(https?:)?//", r, flags=re.IGNORECASE)]
    assert all(r.startswith(("data:", "#")) for r in refs)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page, flags=re.IGNORECASE)
    assert not re.search(r"@import", page)


def test_every_embedded_image_is_a_decodable_png(study_report):
    _, page = study_report
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(uris) == page.count("<img ")
    for data in uris:
        img = Image.open(io.BytesIO(base64.b64decode(data)))
        img.load()
        assert img.format == "PNG" and img.width > 0 and img.height > 0


def test_partial_banner_only_when_partial(study_report, partial_html):
    _, finished = study_report
    assert 'id="partial-banner"' not in finished and "PARTIAL" not in finished
    assert 'id="partial-banner"' in partial_html
    banner = partial_html.split('id="partial-banner"', 1)[1].split("</div>", 1)[0]
    assert "PARTIAL" in banner and "te-random" in banner and "joint-magnitude" in banner


def test_cli_writes_the_report(tmp_path, capsys):
    run = write_sweep(tmp_path / "run", levels=[0.0, 0.5], critical=False)
    out = tmp_path / "reports" / "run.html"
    assert main(["report", str(run), "-o", str(out), "--bootstrap", "50", "--dpi", "40", "--title", "T <b>"]) == 0
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<title>T &lt;b&gt;</title>" in page
    assert not list(out.parent.glob(".*.tmp"))  # atomic write leaves no temporary file


def test_cli_rejects_a_folder_that_is_not_a_run_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "notarun").mkdir()
    (tmp_path / "notarun" / "data.csv").write_text("a,b\n1,2\n")
    out = tmp_path / "reports" / "x.html"
    assert main(["report", str(tmp_path / "notarun"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "not an sdprobe run" in err and "config.json" in err
    assert not out.exists() and not out.parent.exists()
    good = write_sweep(tmp_path / "good", levels=[0.0], critical=False)
    assert main(["report", str(good), str(tmp_path / "notarun"), "-o", str(out)]) == 2  # one bad folder is enough
    assert not out.exists()


def test_report_package_never_imports_torch(tmp_path):
    path = write_sweep(tmp_path / "run", levels=[0.0, 0.5])
    code = ("import sys; from pathlib import Path; from sdprobe.report import make_report, ReportOptions;"
            f"make_report([Path({str(path)!r})], Path({str(tmp_path / 'r.html')!r}), opts=ReportOptions(n_boot=10, dpi=30));"
            "bad = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert (tmp_path / "r.html").exists()


def test_make_report_replaces_an_existing_page(tmp_path):
    path = write_sweep(tmp_path / "run", levels=[0.0], critical=False)
    out = tmp_path / "r.html"
    out.write_text("old")
    make_report([path], out, opts=FAST)
    assert out.read_text().startswith("<!DOCTYPE html>")


def test_an_isolation_without_a_set_is_reported_with_its_reason(tmp_path):
    import json

    path = write_sweep(tmp_path / "run", levels=LEVELS[:3], critical=False)
    (path / "critical").mkdir()
    (path / "critical" / "skipped.json").write_text(json.dumps({"color": "the search used its budget of 300 tests"}))
    out = tmp_path / "r.html"
    make_report([path], out, opts=FAST)
    page = out.read_text()
    assert "no replicable critical set (none found on the search split)" in page
    assert "the search used its budget of 300 tests" in page


def test_figures_and_strips_are_stored_as_palette_pngs_that_look_the_same():
    from sdprobe.report.images import compact_png
    from sdprobe.report.plots import new_figure

    fig = new_figure(4, 3)
    ax = fig.add_subplot()
    for k in range(5):
        ax.plot(range(20), [i * k for i in range(20)], label=f"line {k}")
    ax.legend()
    raw = io.BytesIO()
    fig.savefig(raw, format="png", dpi=100)
    raw = raw.getvalue()
    small = compact_png(raw)
    assert len(small) < 0.7 * len(raw)
    a = Image.open(io.BytesIO(raw)).convert("RGBA")
    flat = Image.new("RGB", a.size, (255, 255, 255))
    flat.paste(a, mask=a.getchannel("A"))
    b = Image.open(io.BytesIO(small))
    assert b.mode == "P" and b.size == a.size
    diff = [abs(x - y) for p, q in zip(flat.getdata(), b.convert("RGB").getdata()) for x, y in zip(p, q)]
    assert sum(diff) / len(diff) < 0.5 and sum(d > 32 for d in diff) < 0.001 * len(diff)  # the same, to the eye
    tiny = io.BytesIO()
    Image.new("P", (4, 4)).save(tiny, format="PNG")
    assert compact_png(tiny.getvalue()) == tiny.getvalue()  # never larger than what it was given


def test_the_example_report_stays_at_most_2_mb():
    from pathlib import Path

    page = Path(__file__).resolve().parents[1] / "reports" / "organism.html"
    assert page.stat().st_size <= 2_000_000, f"{page} is {page.stat().st_size / 1e6:.2f} MB"


def test_every_report_ends_with_a_glossary_of_its_terms(study_report):
    report, page = study_report
    assert [s.title for s in report.sections[-2:]] == ["Glossary", "Reproduction"]
    terms = [row[0] for row in report.sections[-2].children[0].rows]
    for term in ("sudden / gradual", "oracle", "bar", "s_lo / s_hi", "s_hold / s_fail", "p-value", "Holm-adjusted p"):
        assert term in terms
    assert 'href="#glossary"' in page  # listed in the table of contents
