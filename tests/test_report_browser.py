"""End to end: build a realistic study's report with the command line, open it in headless Chromium,
and check what a person sees (tables, images, no script errors, provenance); partial and empty runs;
rebuilds that touch nothing upstream.

Needs Debian's `chromium` (apt-get install -y chromium); CI installs it.
"""

import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from fixtures_report import COMMIT, STUDY, TITLE, WEIGHTS_SHA, make_study
from rdd import layout

REPO = Path(__file__).resolve().parents[1]
MANIFEST, TABLES_DIR, REPORT = (layout.path(p, study=STUDY)
                                for p in (layout.MANIFEST, layout.TABLES_DIR, layout.REPORT))
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
# Injected into a copy of the page: collects, after load, what the page shows.
PROBE = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(String(e.message || (e.target && e.target.src) || e.type)), true);
window.addEventListener("load", () => {
  const table = document.getElementById("main-fid");
  const out = {
    errors: window.__errors,
    images: [...document.images].map(i => ({alt: i.alt, natural: i.naturalWidth, shown: i.getBoundingClientRect().width})),
    heads: [...table.tHead.rows[0].cells].map(c => c.innerText.trim()),
    rows: [...table.tBodies[0].rows].map(r => [...r.cells].map(c => c.innerText.replace(/\\s+/g, " ").trim())),
    sections: [...document.querySelectorAll("main > section[id]")].map(s => [s.id, s.getBoundingClientRect().height]),
    first: document.querySelector("main").innerText.slice(0, 1000),
    text: document.body.innerText,
  };
  const pre = document.createElement("pre");
  pre.id = "probe-result";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""
# Injected likewise: how wide the page lays out against the window.
WIDTH_PROBE = """<script>
window.addEventListener("load", () => {
  const pre = document.createElement("pre");
  pre.id = "probe-result";
  const client = document.documentElement.clientWidth;
  pre.textContent = JSON.stringify({scroll: document.documentElement.scrollWidth, client: client,
    cut: [...document.querySelectorAll("table")].filter(t => t.getBoundingClientRect().right > client)
                                                .map(t => t.id || t.className || t.rows[0].innerText.slice(0, 40))});
  document.body.appendChild(pre);
});
</script>"""


def chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("headless Chromium not found: install it with `apt-get install -y chromium` (Debian/Ubuntu); "
                    "the report's browser test needs it")
    return path


def run_chromium(page, profile, *extra):
    """Run Chromium on a local file; returns (stdout, stderr)."""
    out = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout, out.stderr


def report_command(root, *args):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-m", "rdd.report", *args], cwd=root, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def build(root):
    return report_command(root, "build", "--manifest", MANIFEST, "--tables-dir", TABLES_DIR, "--out", REPORT)


def snapshot(folder, skip):
    """Content hash and mtime of every file under `folder` outside `skip`."""
    return {p: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file() and skip not in p.parents}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    make_study(root)
    build(root)
    report_command(root, "index", "--reports", "reports/fashion_mnist.html", "--out", "reports/index.html")
    return root


def probe(root, page, script=PROBE, *extra):
    copy = page.with_name(page.stem + ".probe.html")
    copy.write_text(page.read_text().replace("<head>", "<head>" + script, 1))
    dom, _ = run_chromium(copy, root / "profile-probe", *extra, "--dump-dom")
    match = re.search(r'<pre id="probe-result">(.*?)</pre>', dom, re.S)
    assert match, "the probe did not run: page failed to load"
    return json.loads(html.unescape(match.group(1)))


def test_report_in_a_browser(built):
    page = built / "reports/fashion_mnist.html"
    source = page.read_text()
    # Epoch counts as counts: the classifier ran 20 epochs and kept the 17th (not "20.00", "17.00").
    assert "<td>20</td><td>17</td>" in source
    assert "inputs mean_std; BatchNorm: one process" in source  # the recipe says how BatchNorm ran
    # The config's title heads the page; the study's name and dataset follow it.
    heading = f'<h1>RDD benchmark: {TITLE} <span class="sub">(study {STUDY}, dataset fashion_mnist)</span></h1>'
    assert heading in source
    # Self-contained: no external scripts, styles, fonts or images.
    assert not re.search(r'<(script|link)\b[^>]*\b(src|href)=|@import|url\(\s*["\']?http|src="(?!data:)', source)

    # The page as shipped: no console errors.
    _, log = run_chromium(page, built / "profile-log", "--enable-logging=stderr", "--v=0", "--dump-dom")
    console = [line for line in log.splitlines() if "CONSOLE" in line]
    assert not [line for line in console if "Uncaught" in line or ":ERROR:" in line], console

    seen = probe(built, page)
    assert seen["errors"] == []
    # Every image (plots, sample grids, training curves) decoded and is on screen.
    assert len(seen["images"]) == source.count("<img ") >= 25
    assert all(i["natural"] > 0 and i["shown"] > 0 for i in seen["images"]), seen["images"]
    alts = " ".join(i["alt"] for i in seen["images"])
    assert "FID and KID against the number of network evaluations" in alts and "RDD, 4 steps, samples" in alts

    # First lines: the small-scale warning.
    assert seen["first"].splitlines()[1].startswith("Small-scale run. ")
    assert "KID is unbiased" in seen["first"] and "not comparable with these in absolute value" in seen["first"]

    # Main table: every method and step count, pending and partial cells, paper values with source.
    assert seen["heads"] == ["FID", "1 step", "2 steps", "4 steps", "8 steps"]
    rows = {r[0]: r[1:] for r in seen["rows"]}
    floor = rows.pop("Real images (held out), test split, N = 500")
    assert list(rows) == ["DDIM (teacher)", "PD", "RCFD", "RDD"]
    assert all(len(cells) == 8 for cells in rows.values())  # ours + paper for 4 step counts
    # The real-data row: one cell across every column, the mean of its two seeds.
    assert len(floor) == 1 and floor[0].startswith("18.30") and "the same at every step count" in floor[0]
    assert "score FID 18.30" in seen["first"] and "floor a perfect generator would reach" in seen["first"]
    assert rows["PD"][6] == "pending"  # PD at 8 steps: no evaluation yet
    assert "n=1 of 2" in rows["RCFD"][0]
    # One seed: that evaluation's own sampling interval; two seeds: the sampling interval of their mean.
    assert "sampling 95% CI [" in rows["RCFD"][0]
    assert "n=2" in rows["RDD"][0] and "sampling 95% CI [" in rows["RDD"][0]
    # Two training seeds: their mean, with an interval of training and sampling noise.
    assert "n=4, 2 training seeds" in rows["RDD"][4] and "training+sampling 95% CI [" in rows["RDD"][4]
    assert rows["PD"][1].startswith("9.12") and "PD paper" in rows["PD"][1]
    assert rows["RDD"][1] == "unknown"
    assert [c.startswith("★") for c in rows["RDD"][0::2]] == [True, True, True, True]
    assert rows["DDIM (teacher)"][0].startswith("287.") and "± " in rows["DDIM (teacher)"][0]

    # Every section is rendered; provenance names the commit, extractor and weights.
    sections = dict(seen["sections"])
    assert set(sections) >= {"scale", "main-results", "claims", "cost", "ablations", "samples", "curves", "provenance"}
    assert all(height > 0 for height in sections.values())
    text = seen["text"]
    for expected in (COMMIT, WEIGHTS_SHA, "inception-v3-compat, torch-fidelity input", "Wall time per stage",
                     "Full configuration", "8192-step chain",
                     "DDIM needs 8 steps (FID 52.60) to reach RDD's 1-step FID 61.90",
                     "not tested at this scale", "paired 95% interval of RDD − PD: [",
                     "The 8-step model is the shared PD chain's last",
                     "as often as the warm-up said would last 1.0 s (1 to 8 times, by model)",
                     "differ by at most 4.2% (at 2 steps): a measure of this benchmark's own noise"):
        assert expected in text, expected

    # What a person sees first: a screenshot of the top of the page with the yellow scale banner.
    shot = built / "top.png"
    run_chromium(page, built / "profile-shot", "--window-size=1280,1600", f"--screenshot={shot}")
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    assert pixels.shape == (1600, 1280, 3) and pixels.std() > 20
    banner = np.all(np.abs(pixels[:300] - np.array([255, 244, 214])) <= 3, axis=-1)
    assert banner.sum() > 20_000


def test_index_links_the_report(built):
    index = built / "reports/index.html"
    dom, _ = run_chromium(index, built / "profile-index", "--dump-dom")
    assert 'href="fashion_mnist.html"' in dom and "small-scale" in dom and TITLE in dom
    summary = json.loads((built / "reports/fashion_mnist.summary.json").read_text())
    assert summary["progress"]["metric"] == {"done": 45, "expected": 52}
    assert len(summary["claims"]) == 5
    with_interval = [h for h in summary["headline"] if h["ci"]]
    assert with_interval and all(f"{h['fid']}" in dom and h["ci"] in dom for h in with_interval)


@pytest.fixture(scope="module")
def built_with_cifar10_steps(tmp_path_factory):
    """The study again, its teacher sampled at the cifar10 study's step counts (a table column each)."""
    root = tmp_path_factory.mktemp("study_cifar10_steps")
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    make_study(root, ddim_steps=tuple(config["studies"]["cifar10"]["evaluate"]["teacher_steps"]))
    build(root)
    return root


@pytest.mark.parametrize("study, page", [("built", "fashion_mnist.html"), ("built", "index.html"),
                                         ("built_with_cifar10_steps", "fashion_mnist.html")])
def test_the_page_fits_a_window_1280_pixels_wide(request, study, page):
    """Neither the page nor any of its tables reaches past the right edge of a laptop's window."""
    root = request.getfixturevalue(study)
    seen = probe(root, root / "reports" / page, WIDTH_PROBE, "--window-size=1280,900")
    assert seen["client"] == 1280 and seen["scroll"] <= seen["client"] and seen["cut"] == [], seen


def test_index_reads_summaries_written_before_they_kept_intervals(built, tmp_path):
    """A summary from an older report (headline without 'ci', no title) still renders, without them."""
    old = json.loads((built / "reports/fashion_mnist.summary.json").read_text())
    del old["title"]
    for h in old["headline"]:
        del h["ci"]
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports/old.summary.json").write_text(json.dumps(old))
    report_command(tmp_path, "index", "--reports", "reports/old.html", "--out", "reports/index.html")
    assert "95% CI" not in (index := (tmp_path / "reports/index.html").read_text()) and TITLE not in index


def test_tables_written_and_rebuild_touches_nothing_upstream(built):
    tables = built / TABLES_DIR
    metrics = (tables / "metrics.csv").read_text().splitlines()
    assert len(metrics) == 1 + 52 and sum(",pending," in line for line in metrics) == 7
    assert {p.name for p in tables.iterdir()} == {f"{name}.csv" for name in layout.TABLES}
    before = snapshot(built / "results", tables)
    html_before = (built / "reports/fashion_mnist.html").read_bytes()
    build(built)
    assert snapshot(built / "results", tables) == before
    assert (built / "reports/fashion_mnist.html").read_bytes() == html_before  # deterministic


def test_report_before_any_result_exists(tmp_path):
    manifest = make_study(tmp_path, memory=False, scale_note=None, paper_key=None, title=None)
    for path in (tmp_path / "results").rglob("*"):
        if path.is_file() and path != tmp_path / manifest:
            path.unlink()
    build(tmp_path)
    page = (tmp_path / "reports/fashion_mnist.html").read_text()
    assert 'id="scale"' not in page  # paper scale: no banner
    assert f"<h1>RDD benchmark: {STUDY} <span" in page  # no title: the study's name
    assert page.count(">pending<") > 40
    # No paper figures for the dataset: a sentence says so, and the main tables have no paper column.
    assert "The paper published no figures for fashion_mnist" in page
    assert 'class="paper"' not in page and "<th>paper (" not in page and "<th>paper<" not in page
    assert "no evaluation has finished yet" in page
    assert "not tested in this run" in page and "bench_relational_memory.py" in page


def test_report_of_a_study_that_runs_no_benchmark(tmp_path):
    """`evaluate.memory_benchmark: null` and `speed_benchmark: null`: the report says that they were not
    run, not that they are pending."""
    make_study(tmp_path, memory=False, speed=False)
    build(tmp_path)
    page = (tmp_path / "reports/fashion_mnist.html").read_text()
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())
    assert "This study runs no speed benchmark ( evaluate.speed_benchmark: null )" in text
    assert 'id="speed"' not in page and "no speed measured yet" not in page  # no empty table
    assert "speed not measured: no speed benchmark in this run" in text  # the speed-ups' notes and the claim
    assert "measured speed pending" not in text and "Speed benchmark pending" not in text
    assert "no memory benchmark in this run (the workflow runs none where evaluate.memory_benchmark is null)" in text
