"""Unit tests of the report's tables on hand-made result tables: statistics, best marks, paper cells,
pending cells, speed-ups over DDIM, claim verdicts, and clear errors on bad input."""

import json
import math
import re
import statistics

import numpy as np

import pandas as pd
import pytest
import torch
import yaml
from scipy import stats

from conftest import packages_loaded
from rdd import methods, provenance, records
from rdd.metrics import bootstrap
from rdd.provenance import environment_record
from rdd.report import claims
from rdd.report import summary as summary_module
from rdd.report.context import _reference_source, _stage_totals, ablation_tables, dataset_text, protocols
from rdd.report.errors import ReportInputError
from rdd.report.manifest import Entry, load_manifest
from rdd.report.paper import DEFAULT_PATH as DEFAULT_PAPER_PATH, load_paper_values
from rdd.report.summary import (cell, comparison_table, ddim_speedups, format_cell, speed_summary,
                                summarize)
from rdd.report.tables import METRIC_COLUMNS, SPEED_COLUMNS, machine_label, metrics_table

PAPER = load_paper_values()
MACHINE = "CPU x86_64, 2 threads (cpu) on box"


def metrics_frame(cells, ablation="", variant=""):
    """A metrics table: cells maps (method, steps) to per-seed FIDs, None for a pending seed."""
    rows = []
    for (method, steps), fids in cells.items():
        for seed, fid in enumerate(fids):
            row = dict.fromkeys(METRIC_COLUMNS)
            row.update(method=method, ablation=ablation, variant=variant, steps=steps, seed=seed,
                       status="pending" if fid is None else "done")
            if fid is not None:
                row.update(fid=fid, kid_mean=fid / 1000, protocol="P1", num_generated=500,
                           seed_first=1000 * seed, seed_last=1000 * seed + 499,
                           is_unavailable_reason="no logits")
            rows.append(row)
    return pd.DataFrame(rows, columns=METRIC_COLUMNS).astype({"steps": "Int64", "seed": "Int64"})


def speed_frame(cells, machine=MACHINE):
    """A speed table: cells maps (method, steps) to the benchmark's median images/s."""
    rows = []
    for (method, steps), ips in cells.items():
        row = dict.fromkeys(SPEED_COLUMNS)
        row.update(method=method, ablation="", variant="", steps=steps, status="done", nfe=steps,
                   images_per_second=ips, images_per_second_low=0.95 * ips, images_per_second_high=1.05 * ips,
                   latency_per_batch_s=250 / ips, batch_size=250, repeats=3, threads=2, machine=machine)
        rows.append(row)
    return pd.DataFrame(rows, columns=SPEED_COLUMNS).astype({"steps": "Int64", "seed": "Int64"})


# --- mean ± std over seeds, pending cells ---------------------------------------------------------

def test_a_cell_of_two_training_seeds_gets_an_interval_of_both_noises():
    from rdd.metrics import combined

    frame = metrics_frame({("rdd", 1): [60.0, 62.0]})
    frame["seed"], frame["seed_first"], frame["seed_last"] = 0, 0, 499  # both replicates sampled seeds 0-499
    frame["replicate"] = [0, 1]
    rng = np.random.default_rng(0)
    side = {(r, (0, 499)): (fid, fid + rng.normal(0.0, 1.0, 50)) for r, fid in ((0, 60.0), (1, 62.0))}
    row = cell(summarize(frame, {"fid": {("rdd", "", "", 1): side}}), "rdd", 1)
    expected = combined.cell_interval(side)
    assert row["fid_ci_kind"] == "training+sampling" and row["fid_mean"] == 61.0
    assert (row["fid_ci_low"], row["fid_ci_high"]) == (expected["low"], expected["high"])
    # KID without bootstrap replicates in the records: Student's t over the two training seeds.
    low, high = stats.t.interval(0.95, 1, loc=0.061, scale=stats.sem([0.060, 0.062]))
    assert row["kid_ci_kind"] == "training" and (row["kid_ci_low"], row["kid_ci_high"]) == pytest.approx((low, high))
    shown = format_cell(row, "fid")
    assert shown["seeds"] == "n=2, 2 training seeds" and shown["ci"].startswith("training+sampling 95% CI [")
    assert "training-seed sd" in shown["title"] and "image seeds 0–499;" in shown["title"]


def test_the_real_rows_tooltip_speaks_of_real_images_and_no_network():
    summary = summarize(metrics_frame({("real", 0): [18.3], ("rdd", 1): [50.0]}))
    real, model = (format_cell(cell(summary, m, s), "fid")["title"] for m, s in (("real", 0), ("rdd", 1)))
    assert real.endswith("500 real images per seed; image seeds 0–499; no network")
    assert model.endswith("500 generated images per seed; image seeds 0–499; 1 step")


def test_several_evaluation_seeds_of_one_training_get_the_sampling_interval_of_their_mean():
    """Three evaluation seeds (other images each) with bootstrap replicates in their records: the
    interval is that of the mean replicate, draw by draw (a naive loop), re-centred on the mean."""
    from rdd.metrics import bootstrap

    fids = [41.3, 44.9, 40.2]
    frame = metrics_frame({("rdd", 2): fids})
    rng = np.random.default_rng(8)
    side = {(0, (1000 * s, 1000 * s + 499)): (fid, fid + rng.normal(0.0, 1.5, 200)) for s, fid in enumerate(fids)}
    row = cell(summarize(frame, {"fid": {("rdd", "", "", 2): side}}), "rdd", 2)
    draws = [np.mean([side[k][1][r] for k in side]) for r in range(200)]
    assert (row["fid_ci_low"], row["fid_ci_high"]) == pytest.approx(bootstrap.interval(np.mean(fids), draws))
    assert row["fid_ci_kind"] == "sampling" and row["fid_ci_high"] - row["fid_ci_low"] < 2 * 1.96 * 1.5
    assert format_cell(row, "fid")["ci"].startswith("sampling 95% CI [")


def test_one_evaluation_shows_its_sampling_interval_of_each_metric():
    frame = metrics_frame({("rdd", 1): [60.0]})
    frame = frame.assign(fid_ci95_low=58.0, fid_ci95_high=62.5, kid_ci95_low=0.058, kid_ci95_high=0.0625,
                         is_mean=5.0, is_ci95_low=4.8, is_ci95_high=5.3, is_unavailable_reason=None)
    row = cell(summarize(frame), "rdd", 1)
    for metric, (low, high) in {"fid": (58.0, 62.5), "kid": (0.058, 0.0625), "is": (4.8, 5.3)}.items():
        assert row[f"{metric}_ci_kind"] == "sampling"
        assert (row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]) == (low, high)
    shown = format_cell(row, "is")
    assert (shown["ci"], shown["ci_name"], shown["ci_bounds"]) == ("sampling 95% CI [4.80, 5.30]", "sampling 95% CI",
                                                                   "[4.80, 5.30]")


def test_summary_mean_and_std_match_a_naive_computation():
    fids = [41.3, 44.9, 40.2]
    summary = summarize(metrics_frame({("rdd", 2): fids, ("pd", 2): [52.0], ("rcfd", 2): [None, None]}))
    rdd = cell(summary, "rdd", 2)
    assert rdd["n_done"] == rdd["fid_n"] == 3 and rdd["n_expected"] == 3
    assert rdd["fid_mean"] == pytest.approx(sum(fids) / 3)
    naive_var = sum((f - sum(fids) / 3) ** 2 for f in fids) / (len(fids) - 1)
    assert rdd["fid_std"] == pytest.approx(math.sqrt(naive_var))
    assert rdd["kid_std"] == pytest.approx(statistics.stdev(f / 1000 for f in fids))
    # Records without bootstrap replicates: Student's t over the seeds (a percentile bootstrap of three
    # values would stay inside [min, max]); a single seed has none.
    low, high = stats.t.interval(0.95, 2, loc=np.mean(fids), scale=stats.sem(fids))
    assert (rdd["fid_ci_low"], rdd["fid_ci_high"]) == pytest.approx((low, high), rel=1e-12)
    assert rdd["fid_ci_low"] < min(fids) and rdd["fid_ci_high"] > max(fids) and rdd["fid_ci_kind"] == "seeds"
    shown = format_cell(rdd, "fid")
    assert shown["ci"] == f"95% CI [{low:.2f}, {high:.2f}]" and shown["ci"] in shown["title"]
    assert math.isnan(cell(summary, "pd", 2)["fid_ci_low"]) and format_cell(cell(summary, "pd", 2), "fid")["ci"] == ""
    assert math.isnan(cell(summary, "pd", 2)["fid_std"])  # one seed: no spread
    assert cell(summary, "rcfd", 2)["n_done"] == 0
    assert cell(summary, "ddim", 2) is None


def test_format_cell_shows_mean_std_seed_count_and_pending():
    summary = summarize(metrics_frame({("rdd", 1): [60.0, 62.0], ("pd", 1): [70.0, None],
                                       ("rcfd", 1): [None, None]}))
    done = format_cell(cell(summary, "rdd", 1), "fid")
    assert (done["state"], done["text"], done["spread"], done["seeds"]) == ("done", "61.00", "± 1.41", "n=2")
    assert "1000–1499" in done["title"] and "P1" in done["title"]
    partial = format_cell(cell(summary, "pd", 1), "fid")
    assert (partial["state"], partial["seeds"], partial["spread"]) == ("partial", "n=1 of 2", "")
    assert format_cell(cell(summary, "rcfd", 1), "fid")["state"] == "pending"
    assert format_cell(None, "fid")["state"] == "absent"
    kid = format_cell(cell(summary, "rdd", 1), "kid")
    assert kid["text"] == "61.00"  # KID x 10^3
    is_cell = format_cell(cell(summary, "rdd", 1), "is")
    assert is_cell["state"] == "unavailable" and is_cell["title"] == "no logits"


# --- best per column, paper columns -----------------------------------------------------------------

ROWS = [(m, m.upper(), m, "", "") for m in ("ddim", "pd", "rcfd", "rdd")]


def test_best_value_per_column_is_marked_and_pending_columns_say_so():
    summary = summarize(metrics_frame({
        ("ddim", 1): [280.0, 290.0], ("pd", 1): [70.0, 72.0], ("rcfd", 1): [66.0, None], ("rdd", 1): [61.0, 62.0],
        ("ddim", 2): [160.0, 162.0], ("pd", 2): [50.0, 50.0], ("rcfd", 2): [50.0, 50.0], ("rdd", 2): [None, None],
    }))
    table = comparison_table(summary, ROWS, [1, 2], "fid")
    marks = {(row["key"], s): c["best"] for row in table["rows"] for s, c in zip(table["steps"], row["cells"])}
    assert [k for k, best in marks.items() if best] == [("pd", 2), ("rcfd", 2), ("rdd", 1)]  # a tie marks both
    cells = {row["key"]: row["cells"] for row in table["rows"]}
    assert cells["rdd"][0]["best_so_far"]  # RCFD's second seed is still pending at 1 step
    assert cells["rdd"][1]["state"] == "pending" and not cells["rdd"][1]["best"]


def test_lone_value_is_not_marked_best_and_deltas_use_the_reference_row():
    summary = summarize(pd.concat([metrics_frame({("rdd", 4): [44.0, 46.0]}),
                                   metrics_frame({("rdd", 4): [47.0, 49.0]}, "loss", "cfd_only")]))
    lone = comparison_table(summary, [("ddim", "DDIM", "rdd", "", "")], [4], "fid")
    assert not lone["rows"][0]["cells"][0]["best"]
    table = comparison_table(summary, [("full", "full", "rdd", "", ""), ("cfd_only", "cfd", "rdd", "loss", "cfd_only")],
                             [4], "fid", reference="full")
    assert table["rows"][1]["cells"][0]["delta"] == "+3.00"
    assert "delta" not in table["rows"][0]["cells"][0]


def test_paper_column_cites_only_the_listed_figures():
    published = {(v["method"], v["steps"], v["metric"]): v["value"]
                 for v in PAPER.datasets["cifar10"]["values"]}
    # METHOD.md, "Published numbers we can cite": PD on CIFAR-10, nothing else.
    assert published == {("pd", 1, "fid"): 9.12, ("pd", 2, "fid"): 4.51, ("pd", 4, "fid"): 3.00,
                         ("pd", 8, "fid"): 2.57}
    assert PAPER.datasets["imagenet64"]["values"] == []
    pd1 = PAPER.lookup("cifar10", "pd", 1, "fid")
    assert (pd1.value, pd1.status, pd1.source_short) == (9.12, "published", "PD paper")
    assert "8192-step" in pd1.caveat and "2202.00512" in pd1.note
    for method, metric in (("rdd", "fid"), ("rcfd", "fid"), ("ddim", "fid"), ("pd", "kid"), ("pd", "is")):
        assert PAPER.lookup("cifar10", method, 1, metric).text == "unknown"
    with pytest.raises(ValueError, match="without a paper_key"):
        PAPER.lookup(None, "pd", 1, "fid")
    with pytest.raises(ReportInputError, match="paper_key 'cifar100'"):
        PAPER.lookup("cifar100", "pd", 1, "fid")
    summary = summarize(metrics_frame({("pd", 1): [70.0], ("rdd", 1): [60.0]}))
    table = comparison_table(summary, ROWS[1::2], [1], "fid", PAPER, "cifar10")
    assert table["paper_column"]
    assert [row["cells"][0]["paper"].text for row in table["rows"]] == ["9.12", "unknown"]
    # A study without a paper_key: no paper column and no paper cell.
    for without in (comparison_table(summary, ROWS[1::2], [1], "fid", PAPER, None),
                    comparison_table(summary, ROWS[1::2], [1], "fid")):
        assert not without["paper_column"] and all("paper" not in row["cells"][0] for row in without["rows"])


# --- speed-up over DDIM ------------------------------------------------------------------------------

DDIM = {("ddim", 1): [300.0], ("ddim", 2): [160.0], ("ddim", 4): [90.0], ("ddim", 8): [50.0], ("ddim", 16): [38.0]}


def naive_speedup(ddim_fids, model_fid, model_steps):
    """The smallest DDIM step count with FID <= the model's, as a loop."""
    for steps in sorted(ddim_fids):
        if ddim_fids[steps] <= model_fid:
            return steps / model_steps
    return None


def test_speedup_is_the_fewest_ddim_steps_reaching_the_model_fid():
    models = {("rdd", 1): [55.0], ("rdd", 2): [50.0], ("rdd", 4): [30.0], ("pd", 1): [95.0]}
    summary = summarize(metrics_frame({**DDIM, **models}))
    speed = speed_summary(speed_frame({("ddim", s): 2000.0 / s for (_, s) in DDIM} | {k: 2000.0 / k[1] for k in models}))
    rows = {(r["method"], r["steps"]): r for r in ddim_speedups(summary, speed)}
    ddim_fids = {s: v[0] for (_, s), v in DDIM.items()}
    for (method, steps), fids in models.items():
        assert rows[method, steps]["nfe_speedup"] == naive_speedup(ddim_fids, fids[0], steps)
    assert rows["rdd", 1]["ddim_steps"] == 8 and rows["rdd", 1]["time_speedup"] == pytest.approx(8.0)
    # Each cell's repeats span 0.95 to 1.05 of its median: the ratio 8 x 0.95 / 1.05 to 8 x 1.05 / 0.95.
    assert rows["rdd", 1]["time_speedup_range"] == pytest.approx((8 * 0.95 / 1.05, 8 * 1.05 / 0.95))
    assert rows["rdd", 2]["ddim_steps"] == 8  # equal FID counts as reached
    assert rows["rdd", 4]["state"] == "unreached"
    assert rows["rdd", 4]["note"] == "no DDIM setting reached this FID (DDIM evaluated up to 16 steps)"
    assert rows["pd", 1]["nfe_speedup"] == 4.0


def test_speed_protocol_states_timing_sizes_and_the_benchmarks_own_noise(tmp_path):
    """The protocol names how many batches a timing sampled, and how far apart the medians of the models at
    one step count lie (they run the same network as often); a record from before timings were sized
    (no min_seconds) sampled each batch once."""
    from rdd.report.context import speed_protocol
    from rdd.report.study import Study

    rates = {("ddim", 1): 500.0, ("pd", 1): 520.0, ("rdd", 1): 510.0, ("ddim", 2): 250.0, ("rdd", 2): 240.0,
             ("ddim", 8): 60.0}
    cases = [{"model": f"{m}.pt", "method": m, "steps": s, "images_per_second": r, "batches_per_timing": 9 // s}
             for (m, s), r in rates.items()]
    record = records.speed_benchmark(results=cases, batch_size=100, net_batch=16, precision="fp32", repeats=3,
                                     min_seconds=1.0, threads=2, device="cpu", wall_seconds=9.0, environment={})
    path = tmp_path / "speed.json"
    path.write_text("{}")
    entry = Entry("speed_benchmark", path)
    protocol = speed_protocol(Study({"config": {}}, [entry], {entry: record}))
    # naive: per step count with two or more models, the fastest median over the slowest
    spreads = {1: 520 / 500 - 1, 2: 250 / 240 - 1}
    worst = max(spreads, key=spreads.get)
    assert protocol["disagreement"] == {"percent": pytest.approx(100 * spreads[worst]), "steps": worst} and worst == 2
    assert (protocol["min_seconds"], protocol["batches"]) == (1.0, (1, 9))
    old = {k: v for k, v in record.items() if k != "min_seconds"}
    old["cases"] = [{k: v for k, v in case.items() if k != "batches_per_timing"} for case in cases[-1:]]
    protocol = speed_protocol(Study({"config": {}}, [entry], {entry: old}))
    assert (protocol["min_seconds"], protocol["batches"], protocol["disagreement"]) == (0, (1, 1), None)


def test_machine_label_names_the_cpu_model_and_kernels_where_recorded():
    # Records carry the processor and the kernels PyTorch chose for it, so runs that differ in them can
    # be told apart.
    record = environment_record()["machine"]
    assert record["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert record["cpu_model"] == provenance.cpu_model()
    with_kernels = {"host": "box", "processor": "x86_64", "cpu_model": "AMD EPYC", "cpu_capability": "AVX512",
                    "cpu_threads": 2, "device": "cpu"}
    assert machine_label(with_kernels) == "CPU AMD EPYC, x86_64 (AVX512), 2 threads (cpu) on box"
    older = {k: v for k, v in with_kernels.items() if k != "cpu_model"}
    assert machine_label(older) == "CPU x86_64 (AVX512), 2 threads (cpu) on box"
    older = {k: v for k, v in older.items() if k != "cpu_capability"}
    assert machine_label(older) == MACHINE


INTEL = ("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz\n"
         "flags\t\t: fpu avx512f\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz\n")
ARM = "processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n"


@pytest.mark.parametrize("text, model", [(INTEL, "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"), (ARM, None),
                                         (None, None)])
def test_the_cpu_model_is_read_from_cpuinfo_where_it_names_one(text, model, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    if text is not None:
        cpuinfo.write_text(text)
    assert provenance.cpu_model(cpuinfo) == model


def test_speedup_pending_provisional_and_other_machine():
    ddim = {**DDIM, ("ddim", 4): [None]}
    summary = summarize(metrics_frame({**ddim, ("rdd", 1): [85.0], ("rdd", 2): [None]}))
    speed = speed_summary(pd.concat([speed_frame({("ddim", 8): 250.0}, "GPU A"), speed_frame({("rdd", 1): 2000.0})]))
    rows = {(r["method"], r["steps"]): r for r in ddim_speedups(summary, speed)}
    assert rows["rdd", 2]["state"] == "pending"
    first = rows["rdd", 1]
    assert first["ddim_steps"] == 8 and first["provisional"]  # DDIM at 4 steps may still reach 85
    assert first["time_speedup"] is None and first["time_speedup_range"] is None
    assert "different machines" in first["note"]
    assert "DDIM at 4 steps pending" in first["note"]


# --- claims -------------------------------------------------------------------------------------------

def _cell(mean, std, n):
    return {"fid_mean": mean, "fid_std": std, "fid_n": n}


def test_compare_without_replicates_uses_welchs_t_interval_of_the_difference():
    """Records without bootstrap replicates: the margin is half of scipy's Welch interval."""
    def cell_of(values):
        return _cell(float(np.mean(values)), float(np.std(values, ddof=1)), len(values))

    a, b = [10.0, 11.2, 9.1, 10.4], [12.9, 11.8, 13.5]
    welch = stats.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    found = claims.compare(cell_of(a), cell_of(b))
    assert found["margin"] == pytest.approx((welch.high - welch.low) / 2, rel=1e-10)
    assert found["outcome"] == ("better" if welch.low > 0 else "tie") and "Welch" in found["noise"]
    # 4 seeds of sd 1 a side: SE 0.707, 6 degrees of freedom, half-width 1.73 (2 SE would be 1.41).
    assert claims.compare(_cell(10.0, 1.0, 4), _cell(11.5, 1.0, 4))["outcome"] == "tie"
    assert claims.compare(_cell(10.0, 1.0, 4), _cell(11.8, 1.0, 4))["outcome"] == "better"
    assert claims.compare(_cell(12.0, 1.0, 4), _cell(10.0, 1.0, 4))["outcome"] == "worse"
    assert claims.compare(_cell(10.0, math.nan, 1), _cell(10.1, math.nan, 1))["outcome"] == "better"  # one seed


def _replicated(fids, noise, seeds=(0,), replicate=0):
    """Bootstrap replicates of one cell per evaluation seed of one training replicate: its FID plus `noise`
    (one array per seed), keyed as rdd.report.context.sampling_replicates keys them."""
    return {(replicate, (1000 * s, 1000 * s + 499)): (fid, fid + n) for s, fid, n in zip(seeds, fids, noise)}


def test_difference_interval_matches_a_naive_paired_bootstrap():
    rng = np.random.default_rng(0)
    a = {(0, 99): (60.0, 60 + rng.normal(0, 3, 200)), (100, 199): (61.0, 61 + rng.normal(0, 3, 200))}
    b = {(0, 99): (70.0, 70 + rng.normal(0, 3, 200)), (100, 199): (69.0, 69 + rng.normal(0, 3, 200))}
    d = bootstrap.difference(a, b)
    naive = [(b[(0, 99)][1][r] + b[(100, 199)][1][r]) / 2 - (a[(0, 99)][1][r] + a[(100, 199)][1][r]) / 2
             for r in range(200)]
    low, high = np.percentile(naive, [2.5, 97.5]) - np.mean(naive) + 9.0
    assert d["estimate"] == pytest.approx(9.0) and d["paired"]
    assert (d["low"], d["high"]) == pytest.approx((low, high))
    assert bootstrap.images_needed(4.0, 2.0, 100) == 400 and bootstrap.images_needed(4.0, 0.0, 100) is None


def test_claims_from_the_interval_of_the_paired_difference():
    """Holds, fails or is inconclusive by where the difference's interval lies; pairing cancels shared noise."""
    shared = np.random.default_rng(1).normal(0, 8, 200)  # noise of the image seeds both models sampled
    own = np.random.default_rng(2).normal(0, 8, 200)     # the same size, from other images
    summary = summarize(metrics_frame({("pd", 1): [70.0], ("rdd", 1): [66.0]}))
    rdd, pd_cell = cell(summary, "rdd", 1), cell(summary, "pd", 1)

    def compare(rdd_fid, pd_fid, pd_noise, pd_seed=0):
        replicates = {("rdd", "", "", 1): _replicated([rdd_fid], [shared]),
                      ("pd", "", "", 1): _replicated([pd_fid], [pd_noise], seeds=(pd_seed,))}
        return claims.compare({**rdd, "fid_mean": rdd_fid}, {**pd_cell, "fid_mean": pd_fid}, replicates)

    holds = compare(66.0, 70.0, shared + np.random.default_rng(3).normal(0, 0.5, 200))
    assert holds["outcome"] == "better" and "paired 95% interval of RDD − PD" in holds["noise"] and holds["margin"] < 2
    fails = compare(74.0, 70.0, shared + np.random.default_rng(3).normal(0, 0.5, 200))
    assert fails["outcome"] == "worse"
    # Another model's images: the same 4-point gap is now within the noise of both evaluations.
    unpaired = compare(66.0, 70.0, own, pd_seed=1)
    assert unpaired["outcome"] == "tie" and "unpaired 95% interval of RDD − PD" in unpaired["noise"]
    needed = int(re.search(r"about ([\d,]+) images", unpaired["noise"]).group(1).replace(",", ""))
    assert needed == bootstrap.images_needed(unpaired["margin"], 4.0, 500) > 500
    claim = claims.one_step_claims(summary, PAPER, small_scale=True,
                                   replicates={("rdd", "", "", 1): _replicated([66.0], [shared]),
                                               ("pd", "", "", 1): _replicated([70.0], [own], seeds=(1,))})[0]
    assert claim["verdict"] == claims.INCONCLUSIVE and "images per evaluation would resolve it" in claim["detail"]
    assert claims.INTERVAL_CAVEAT in claim["detail"]


def test_claims_over_training_seeds_widen_the_interval_and_ask_for_seeds():
    """Two training seeds per method whose FIDs scatter far more than the images' noise: a gap the
    paired sampling interval alone would call decided is inconclusive, resolved by more training seeds."""
    rng = np.random.default_rng(4)
    shared = rng.normal(0, 0.5, 200)
    frame = metrics_frame({("pd", 1): [69.0, 71.0], ("rdd", 1): [64.0, 68.0]})
    frame["replicate"], frame["seed"] = [0, 1, 0, 1], 0
    summary = summarize(frame)
    replicates = {("pd", "", "", 1): {**_replicated([69.0], [shared]), **_replicated([71.0], [shared], replicate=1)},
                  ("rdd", "", "", 1): {**_replicated([64.0], [shared]), **_replicated([68.0], [shared], replicate=1)}}
    found = claims.compare(cell(summary, "rdd", 1), cell(summary, "pd", 1), replicates)
    assert found["outcome"] == "tie" and found["training_seeds"] == 2
    seeds = int(re.search(r"about (\d+) training seeds per method would resolve it", found["noise"]).group(1))
    assert seeds > 2
    sampling_only = bootstrap.difference(*(replicates[k] for k in (("rdd", "", "", 1), ("pd", "", "", 1))))
    assert sampling_only["low"] > 0  # the images' noise alone: decided
    claim = claims.one_step_claims(summary, PAPER, small_scale=True, replicates=replicates)[0]
    assert claim["verdict"] == claims.INCONCLUSIVE
    caveat = claims.TRAINING_CAVEAT.format(seeds=2, paired=claims.PAIRED_TRAINING)
    assert caveat in claim["detail"] and claims.INTERVAL_CAVEAT not in claim["detail"]


def test_one_step_claims_direction_and_size_by_scale():
    summary = summarize(metrics_frame({("pd", 1): [70.0, 70.4], ("rcfd", 1): [66.0, 66.4], ("rdd", 1): [61.0, 61.4]}))
    small = claims.one_step_claims(summary, PAPER, small_scale=True)
    assert [c["verdict"] for c in small] == ["holds", "not tested at this scale"]
    assert "RCFD" in small[0]["measured"] and "5.00" in small[0]["measured"]
    assert [c["verdict"] for c in claims.one_step_claims(summary, PAPER, small_scale=False)] == ["holds", "holds"]
    # A gain of 0.7 over RCFD: beyond Welch's half-width over two seeds a side (0.61), short of 1.47 minus it.
    close = summarize(metrics_frame({("pd", 1): [9.1, 9.3], ("rcfd", 1): [9.0, 9.2], ("rdd", 1): [8.3, 8.5]}))
    assert [c["verdict"] for c in claims.one_step_claims(close, PAPER, False)] == ["holds", "does not hold"]
    worse = summarize(metrics_frame({("pd", 1): [60.0, 60.4], ("rcfd", 1): [66.0, 66.4], ("rdd", 1): [70.0, 70.4]}))
    assert [c["verdict"] for c in claims.one_step_claims(worse, PAPER, True)] == ["does not hold",
                                                                                  "not tested at this scale"]
    assert [c["verdict"] for c in claims.one_step_claims(worse, PAPER, False)] == ["does not hold", "does not hold"]
    assert claims.one_step_claims(worse, PAPER, True)[0]["measured"].endswith("RDD higher by 10.00")
    pending = summarize(metrics_frame({("pd", 1): [70.0], ("rdd", 1): [None]}))
    assert {c["verdict"] for c in claims.one_step_claims(pending, PAPER, True)} == {"pending"}


def test_every_step_claim_verdicts():
    good = {("pd", s): [50.0 + s, 50.2 + s] for s in (1, 2)} | {("rcfd", s): [45.0 + s, 45.2 + s] for s in (1, 2)}
    # PD's 8-step row is the shared chain's model, every method's: nothing is compared there.
    holds = summarize(metrics_frame(good | {("pd", 8): [30.0, 30.2], ("rdd", 1): [40.0, 40.2],
                                            ("rdd", 2): [41.0, 41.2]}))
    claim = claims.every_step_claim(holds, PAPER)
    assert claim["verdict"] == "holds" and "every step count compared (1, 2)" in claim["detail"]
    fails = summarize(metrics_frame(good | {("rdd", 1): [40.0, 40.2], ("rdd", 2): [60.0, 60.2]}))
    claim = claims.every_step_claim(fails, PAPER)
    assert claim["verdict"] == "does not hold" and "2 steps vs PD" in claim["detail"]
    pending = summarize(metrics_frame(good | {("rdd", 1): [40.0, 40.2], ("rdd", 2): [None, None]}))
    assert claims.every_step_claim(pending, PAPER)["verdict"] == "pending"


def test_ablation_table_rows_follow_their_models():
    main = metrics_frame({("rdd", 1): [50.0], ("rcfd", 1): [60.0]})
    aliased = metrics_frame({("rcfd", 1): [60.0]}, ablation="losses", variant="cfd_only")  # trains like RCFD
    own = metrics_frame({("rdd", 1): [45.0]}, ablation="losses", variant="full")  # a name like the main run's
    metrics = pd.concat([main, aliased, own], ignore_index=True)
    manifest = {"ablations": {"losses": {"description": "d", "method": "rdd", "variants": {
        "cfd_only": {"description": "CFD only", "same_as": "rcfd", "labelled_as": "rcfd",
                     "changes": {"losses": ["cfd"]}},
        "full": {"description": "all terms", "same_as": None, "labelled_as": "rdd", "changes": {"tau": 2.0}}}}}}
    [table] = ablation_tables(manifest, metrics, summarize(metrics))
    fid = table["tables"][0]
    values = {row["label"]: (row["cells"][0]["mean"], row["cells"][0].get("delta")) for row in fid["rows"]}
    assert values == {"RDD (main run)": (50.0, None), "cfd_only": (60.0, "+10.00"), "full": (45.0, "-5.00")}
    assert [(v["changes"], v["same_as"]) for v in table["variants"]] == [('losses: ["cfd"]', "RCFD"),
                                                                         ("tau: 2.0", None)]
    assert fid["rows"][1]["cells"][0]["delta_ci"] == ""  # records without replicates: no interval claimed


def test_a_variant_that_trains_like_the_main_run_says_what_its_rounds_do_not_read():
    metrics = metrics_frame({("pd", 1): [50.0]})
    manifest = {"ablations": {"inert": {"description": "d", "method": "pd", "variants": {
        "tau": {"description": "CFD's tau", "same_as": "pd", "labelled_as": "pd", "unread": ["tau"],
                "changes": {"tau": 0.5}},
        "old": {"description": "a manifest of before the key", "same_as": "pd", "labelled_as": "pd",
                "changes": {"dropout": 0.0}}}}}}
    [table] = ablation_tables(manifest, metrics, summarize(metrics))
    assert [(v["same_as"], v["unread"]) for v in table["variants"]] == [("PD", "tau"), ("PD", "")]


def test_ablation_differences_carry_their_paired_interval():
    """Each Δ from the main run comes with the 95% interval of the difference: replicate r of the
    variant minus replicate r of the main run (the same image seeds resampled), percentiles re-centred
    on the Δ. Noise the two share cancels; KID's is shown at the table's ×10³ scale."""
    rng = np.random.default_rng(3)
    shared, own = rng.normal(0, 5.0, 200), rng.normal(0, 0.5, 200)
    main = metrics_frame({("rdd", 1): [50.0]})
    variant = metrics_frame({("rdd", 1): [53.0]}, ablation="losses", variant="cfd_is_p2p")
    metrics = pd.concat([main, variant], ignore_index=True)
    evaluation = (0, (0, 499))
    sampling = {
        "fid": {("rdd", "", "", 1): {evaluation: (50.0, 50.0 + shared)},
                ("rdd", "losses", "cfd_is_p2p", 1): {evaluation: (53.0, 53.0 + shared + own)}},
        "kid": {("rdd", "", "", 1): {evaluation: (0.050, (50.0 + shared) / 1000)},
                ("rdd", "losses", "cfd_is_p2p", 1): {evaluation: (0.053, (53.0 + shared + own) / 1000)}}}
    manifest = {"ablations": {"losses": {"description": "d", "method": "rdd", "variants": {
        "cfd_is_p2p": {"description": "CFD + IS-P2P", "same_as": None, "labelled_as": "rdd",
                       "changes": {"losses": ["cfd", "is_p2p"]}}}}}}
    [table] = ablation_tables(manifest, metrics, summarize(metrics, sampling), sampling)
    diffs = sorted((53.0 + shared + own) - (50.0 + shared))
    low, high = 3.0 + np.percentile(diffs, [2.5, 97.5]) - np.mean(diffs)
    assert high - low < 3  # the shared noise (sd 5) cancels: only the variant's own noise (sd 0.5) is left
    for t in table["tables"]:
        c = t["rows"][1]["cells"][0]
        assert c["delta"] == "+3.00" and c["delta_ci"] == f"[{low:+.2f}, {high:+.2f}]", t["metric"]
        assert "paired on the same image seeds" in c["delta_title"] and "one training run" in c["delta_title"]


def test_a_variant_trained_like_the_main_run_differs_by_zero_over_training_seeds():
    """Two training seeds whose FIDs scatter widely: the variant that holds the main run's records
    differs by exactly 0 at each seed, so its Δ is 0 with the interval [0, 0], for FID and KID alike;
    a variant of its own gets the spread of its per-seed differences (paired on training seeds)."""
    rng = np.random.default_rng(7)
    noise = [rng.normal(0, 1.0, 200) for _ in range(2)]
    fids = {"main": [50.0, 58.0], "full": [50.0, 58.0], "cfd_m_p2p": [52.0, 61.0]}
    frames, sampling = [], {"fid": {}, "kid": {}}
    for name, values in fids.items():
        ablation, variant = ("", "") if name == "main" else ("losses", name)
        frame = metrics_frame({("rdd", 1): values}, ablation=ablation, variant=variant)
        frame["replicate"], frame["seed"], frame["seed_first"], frame["seed_last"] = [0, 1], 0, 0, 499
        frames.append(frame)
        for metric, scale in (("fid", 1.0), ("kid", 1e-3)):
            sampling[metric][("rdd", ablation, variant, 1)] = {
                (r, (0, 499)): (v * scale, (v + noise[r]) * scale) for r, v in enumerate(values)}
    metrics = pd.concat(frames, ignore_index=True)
    manifest = {"ablations": {"losses": {"description": "d", "method": "rdd", "variants": {
        "full": {"description": "all", "same_as": "rdd", "labelled_as": "rdd",
                 "changes": {"losses": ["cfd", "is_p2p", "m_p2p"]}},
        "cfd_m_p2p": {"description": "CFD + M-P2P", "same_as": None, "labelled_as": "rdd",
                      "changes": {"losses": ["cfd", "m_p2p"]}}}}}}
    [table] = ablation_tables(manifest, metrics, summarize(metrics, sampling), sampling)
    for t in table["tables"]:
        cells = {row["label"]: row["cells"][0] for row in t["rows"]}
        assert (cells["full"]["delta"], cells["full"]["delta_ci"]) == ("+0.00", "[+0.00, +0.00]"), t["metric"]
        assert "and training seeds" in cells["full"]["delta_title"]
    own = {row["label"]: row["cells"][0] for row in table["tables"][0]["rows"]}["cfd_m_p2p"]
    differences = [2.0, 3.0]  # per training seed; the sampling noise cancels (the same images' draws)
    half = stats.t.ppf(0.975, 1) * np.std(differences, ddof=1) / math.sqrt(2)
    assert own["delta"] == "+2.50" and own["delta_ci"] == f"[{2.5 - half:+.2f}, {2.5 + half:+.2f}]"


def test_stage_totals_count_a_reused_record_once():
    stages = pd.DataFrame([
        {"stage": "round", "status": "done", "seconds": 10.0, "path": "rcfd/default/student_4.json"},
        {"stage": "round", "status": "done", "seconds": 10.0, "path": "rcfd/default/student_4.json"},  # cfd_only
        {"stage": "round", "status": "done", "seconds": 5.0, "path": "rdd/default/student_4.json"},
        {"stage": "round", "status": "pending", "seconds": None, "path": "rdd/default/student_2.json"}])
    assert _stage_totals(stages) == [{"stage": "round", "done": 2, "expected": 3, "seconds": 15.0}]


def test_reference_source_is_read_through_the_workflow_pointer():
    pointer = records.reference(stats_path="cache/refstats/a.npz", stats_sha256="abc", stats_record={"source": "computed"},
                                dataset={"name": "fashion_mnist"}, split="train", limit=None, inception={})
    refstats = {Entry("reference", "results/s/reference/train.json"): pointer}
    assert _reference_source("abc", refstats) == "computed, record results/s/reference/train.json"
    assert _reference_source("def", refstats) == "no reference-statistics record with this sha256 in the manifest"


def test_log_log_slope_and_its_interval_match_a_naive_least_squares():
    xs, ys = [8, 16, 32, 64], [3.0e6, 5.5e6, 1.2e7, 2.3e7]
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / 4, sum(ly) / 4
    sxx = sum((a - mx) ** 2 for a in lx)
    naive = sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sxx
    residuals = [b - my - naive * (a - mx) for a, b in zip(lx, ly)]
    t_975_2df = 4.302652729911275  # Student's t table: 97.5% quantile at 2 degrees of freedom
    half = t_975_2df * math.sqrt(sum(r * r for r in residuals) / 2 / sxx)
    slope, half_width = claims.log_log_slope(xs, ys)
    assert (slope, half_width) == (pytest.approx(naive), pytest.approx(half))
    assert claims.log_log_slope(xs[:2], ys[:2])[1] is None  # two points: a line, no interval


def test_memory_claim_from_a_benchmark_record(tmp_path):
    entry = Entry("memory_benchmark", tmp_path / "memory.json")
    absent = claims.memory_claim(None, None, PAPER)
    assert absent["verdict"] == "not tested in this run"
    assert absent["detail"].startswith("no memory benchmark in this run")
    assert "benchmarks/bench_relational_memory.py measures it" in absent["detail"]
    assert claims.memory_claim(entry, None, PAPER)["verdict"] == "pending"
    batches = [8, 16, 32, 64]

    def record(m_p2p):
        return {"device": "cpu", "batch_sweep": {"batch": batches,
                "is_p2p": [{"peak_bytes": 30.0 * b * b} for b in batches[:3]] + [{"skipped": 1e10}],
                "m_p2p": [{"peak_bytes": m_p2p(b)} for b in batches]}}

    linear = claims.memory_claim(entry, record(lambda b: 1e6 * b), PAPER)
    assert linear["verdict"] == "holds"
    assert "slope 1.00 [1.00, 1.00]" in linear["measured"] and "IS-P2P slope 2.00 [2.00, 2.00]" in linear["measured"]
    assert claims.memory_claim(entry, record(lambda b: 1e4 * b * b), PAPER)["verdict"] == "does not hold"
    # A slope of 1.03, inside 1 ± 0.2, from points that stray from one line: its interval reaches past both ends.
    scattered = claims.memory_claim(entry, record(lambda b: 1e6 * b ** 1.1 * (1.6 if b == 16 else 1.0)), PAPER)
    assert scattered["verdict"] == "inconclusive", scattered["measured"]
    with pytest.raises(ReportInputError, match="memory.json"):
        claims.memory_claim(entry, {"batch_sweep": {"batch": batches}}, PAPER)


def test_speedup_claim_verdicts():
    base = {"method": "rdd", "steps": 1, "fid": 60.0, "ddim_fid": 59.0, "time_speedup": None, "note": "",
            "provisional": False, "nfe_speedup_range": None, "range_text": ""}
    reached = [{**base, "state": "reached", "ddim_steps": 8, "nfe_speedup": 8.0, "ddim_max_steps": 32}]
    at_paper_scale = claims.speedup_claim(reached, PAPER, False)
    assert at_paper_scale["verdict"] == "does not hold" and "8x fewer" in at_paper_scale["measured"]
    timed = claims.speedup_claim([{**reached[0], "time_speedup": 6.9, "time_speedup_range": (5.1, 9.3)}], PAPER, True)
    assert "6.9x measured images/s (5.1x to 9.3x over the benchmark's repeats)" in timed["measured"]
    small = claims.speedup_claim(reached, PAPER, True)
    assert small["verdict"] == "not tested at this scale" and "8x fewer" in small["measured"]
    far = {**base, "state": "unreached", "ddim_steps": None, "nfe_speedup": None}
    assert claims.speedup_claim([{**far, "ddim_max_steps": 512}], PAPER, False)["verdict"] == "holds"
    assert claims.speedup_claim([{**far, "ddim_max_steps": 32}], PAPER, True)["verdict"] == "not tested at this scale"
    assert claims.speedup_claim([], PAPER, True)["verdict"] == "not tested in this run"



def test_a_study_without_ddim_evaluations_has_no_speedup_to_claim():
    """evaluate.teacher_steps: [] is allowed: the speed-ups and the 256x claim say that nothing was
    compared (the claim said "the study's DDIM runs stop at 0 steps; the speed-up is above 0x")."""
    summary = summarize(metrics_frame({("rdd", 1): [60.0], ("pd", 1): [62.0]}))
    rows = ddim_speedups(summary, speed_summary(speed_frame({})))
    assert {r["state"] for r in rows} == {"no_ddim"} and all(r["note"] == summary_module.NO_DDIM for r in rows)
    claim = claims.speedup_claim(rows, PAPER, True)
    assert (claim["verdict"], claim["measured"]) == ("not tested in this run", "—")
    assert claim["detail"] == summary_module.NO_DDIM
    # DDIM configured but not evaluated yet is another state: pending.
    waiting = summarize(metrics_frame({("rdd", 1): [60.0], ("ddim", 8): [None]}))
    assert claims.speedup_claim(ddim_speedups(waiting, speed_summary(speed_frame({}))), PAPER, True)["verdict"] == \
        "pending"


def test_speedup_range_and_claim_follow_the_intervals_of_the_fid_differences():
    """The NFE speed-up's range: from the fewest DDIM steps whose paired FID difference from the model
    is not resolved positive, to the fewest resolved negative (a naive loop over the replicates here).
    The mean reaches 256x, but within the noise 128x is possible: the 256x claim is inconclusive."""
    rng = np.random.default_rng(7)
    ddim = {64: 70.0, 128: 62.0, 256: 59.0, 512: 50.0}
    cells = {("ddim", s): (f, f + rng.normal(0, 2.0, 200)) for s, f in ddim.items()}
    cells["rdd", 1] = (60.0, 60.0 + rng.normal(0, 2.0, 200))
    summary = summarize(metrics_frame({k: [v] for k, (v, _) in cells.items()}))
    replicates = {(m, "", "", s): {(0, (0, 499)): v} for (m, s), v in cells.items()}
    [row] = [r for r in ddim_speedups(summary, speed_summary(speed_frame({})), replicates) if r["steps"] == 1]

    def interval(steps):  # FID(DDIM) - FID(model), percentiles re-centred on the difference
        diffs = cells["ddim", steps][1] - cells["rdd", 1][1]
        return ddim[steps] - 60.0 + np.percentile(diffs, [2.5, 97.5]) - diffs.mean()
    low = next(s for s in sorted(ddim) if interval(s)[0] <= 0)
    high = next(s for s in sorted(ddim) if interval(s)[1] < 0)
    assert (low, high) == (128, 512)  # the setting: 64 resolved worse, 128 and 256 within the noise
    assert row["nfe_speedup"] == 256 and row["nfe_speedup_range"] == (128, 512)
    assert row["range_text"] == "128× to 512× within the 95% intervals"
    assert summary_module._speedup_range_text({**row, "nfe_speedup_range": (4, 4)}) == \
        "4× at both ends of the 95% intervals"
    claim = claims.speedup_claim([row], PAPER, False)
    assert claim["verdict"] == "inconclusive" and "128× to 512×" in claim["measured"]
    # Without replicates the means decide, as before.
    [plain] = [r for r in ddim_speedups(summary, speed_summary(speed_frame({}))) if r["steps"] == 1]
    assert plain["nfe_speedup_range"] is None and claims.speedup_claim([plain], PAPER, False)["verdict"] == "holds"
    # No DDIM evaluation done yet: no range, the claim pending on them.
    waiting = summarize(metrics_frame({("ddim", 64): [None], ("rdd", 1): [60.0]}))
    [early] = [r for r in ddim_speedups(waiting, speed_summary(speed_frame({})), replicates) if r["steps"] == 1]
    assert early["state"] == "unreached" and early["nfe_speedup_range"] is None and early["range_text"] == ""
    assert claims.speedup_claim([early], PAPER, False)["verdict"] == "pending"


# --- input errors ---------------------------------------------------------------------------------------

def _manifest(tmp_path, entries, **extra):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"study": "s", "dataset": "d", "entries": entries, **extra}))
    return path


def test_manifest_errors_name_the_file_and_the_problem(tmp_path):
    with pytest.raises(ReportInputError, match=r"manifest not found: .*nope\.json; the Snakemake workflow"):
        load_manifest(tmp_path / "nope.json")
    with pytest.raises(ReportInputError, match=r"entries\[0\] has kind 'figure'"):
        load_manifest(_manifest(tmp_path, [{"kind": "figure", "path": "x"}]))
    with pytest.raises(ReportInputError, match="method 'ddpm'"):
        load_manifest(_manifest(tmp_path, [{"kind": "metric", "path": "x", "method": "ddpm", "steps": 1, "seed": 0}]))
    with pytest.raises(ReportInputError, match="ablation 'loss'"):
        load_manifest(_manifest(tmp_path, [{"kind": "metric", "path": "x", "method": "rdd", "steps": 1, "seed": 0,
                                            "ablation": "loss", "variant": "a"}]))
    twice = {"kind": "metric", "path": "x", "method": "rdd", "steps": 1, "seed": 0}
    with pytest.raises(ReportInputError, match="same labels"):
        load_manifest(_manifest(tmp_path, [twice, {**twice, "path": "y"}]))
    with pytest.raises(ReportInputError, match=r"'ablations' must map names to \{'description', 'method', 'variants'"):
        load_manifest(_manifest(tmp_path, [], ablations={"loss": {"variants": {}}}))  # the method it varies?
    with pytest.raises(ReportInputError, match=r"each variant naming the method its entries are labelled with"):
        load_manifest(_manifest(tmp_path, [], ablations={"loss": {"method": "rdd", "variants": {"a": {}}}}))
    with pytest.raises(ReportInputError, match=r"has method 'rdd', but the entries of 'loss': 'a' are labelled 'rcfd'"):
        load_manifest(_manifest(tmp_path, [{**twice, "ablation": "loss", "variant": "a"}], ablations={
            "loss": {"method": "rdd", "variants": {"a": {"labelled_as": "rcfd"}}}}))


def test_paper_values_errors_name_the_file(tmp_path):
    path = tmp_path / "paper.yaml"
    with pytest.raises(ReportInputError, match=r"paper values file not found: .*paper\.yaml"):
        load_paper_values(path)
    path.write_text("sources: [\n")
    with pytest.raises(ReportInputError, match=r"paper\.yaml is not valid YAML: while parsing"):
        load_paper_values(path)
    path.write_bytes(b"\x9c\x00")
    with pytest.raises(ReportInputError, match=r"paper\.yaml is not valid YAML: 'utf-8' codec"):
        load_paper_values(path)
    path.write_text("{}")
    with pytest.raises(ReportInputError, match=r"paper\.yaml: missing sources, datasets, claims"):
        load_paper_values(path)
    path.write_text("a line of text that YAML reads as one string\n" * 100)  # another file given by mistake
    with pytest.raises(ReportInputError) as error:
        load_paper_values(path)
    assert str(error.value) == (f"{path}: must be a mapping, got 'a line of text that YAML reads as one string a "
                                "line of text that YAML reads as ... (4,501 characters)")


def _shipped_with(change):
    data = yaml.safe_load(DEFAULT_PAPER_PATH.read_text())
    change(data)
    return data


PD_1 = ("datasets", "cifar10", "values", 0)  # the PD 1-step FID
DELETE = object()


def _set(*keys_and_value):
    *keys, last, value = keys_and_value

    def change(data):
        for key in keys:
            data = data[key]
        if value is DELETE:
            del data[last]
        else:
            data[last] = value
    return change


@pytest.mark.parametrize("change,message", [
    (_set(*PD_1, "method", "RDD"), "datasets.cifar10.values.0.method: 'RDD' is not one of ddim, pd, rcfd, rdd"),
    (_set(*PD_1, "metric", "FID"), "datasets.cifar10.values.0.metric: 'FID' is not one of fid, kid, is"),
    (_set(*PD_1, "steps", "1"), "datasets.cifar10.values.0.steps: must be a positive integer, got '1'"),
    (_set(*PD_1, "value", "9.12"), "datasets.cifar10.values.0.value: must be a number, got '9.12'"),
    (_set(*PD_1, "value", float("nan")), "datasets.cifar10.values.0.value: must be a number, got nan"),
    (_set(*PD_1, "steps", True), "datasets.cifar10.values.0.steps: must be a positive integer, got True"),
    (_set(*PD_1, "source", "rcfd_paper"), "values.0.source: 'rcfd_paper' is not one of pd_paper, rdd_paper"),
    (_set(*PD_1, "caveat", "teacher"), "values.0.caveat: 'teacher' is not one of pd_teacher"),
    (_set(*PD_1, "value", DELETE), "datasets.cifar10.values.0: missing value"),
    (_set("datasets", "cifar10", "values", 1, "steps", 1), "datasets.cifar10.values.1: a second figure for "
                                                           "('pd', 1, 'fid')"),
    (_set("datasets", "imagenet64", "protocol", DELETE), "datasets.imagenet64: missing protocol"),
    (_set("sources", "pd_paper", "citation", DELETE), "sources.pd_paper: missing citation"),
    (_set("claims", "speedup_over_ddim", DELETE), "claims: missing speedup_over_ddim"),
    (_set("claims", "one_step_gain", "value", "1.47"), "claims.one_step_gain.value: must be a number"),
    (_set("claims", "memory_linear", "source", "blog"), "claims.memory_linear.source: 'blog' is not one of"),
])
def test_paper_values_are_checked_field_by_field(tmp_path, change, message):
    """A researcher adding a figure learns of a typo when the run starts (the workflow's config check
    reads the file the same way), not when its report is built."""
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(_shipped_with(change)))
    with pytest.raises(ReportInputError) as error:
        load_paper_values(path)
    assert message in str(error.value) and str(path) in str(error.value)


def test_record_errors_name_the_file(tmp_path):
    good = {"metrics": {"fid": 50.0}, "protocol": {"extractor": "e", "weights_sha256": "h", "num_generated": 10,
                                                   "reference": {}}, "labels": {"steps": 4}}
    path = tmp_path / "m.json"
    entry = Entry("metric", path, method="rdd", steps=2, seed=0)
    with pytest.raises(ReportInputError, match=r"m\.json has steps=4, its manifest entry says 2"):
        metrics_table([entry], {entry: good})
    del good["labels"], good["protocol"]["weights_sha256"]
    with pytest.raises(ReportInputError, match=r"m\.json lacks 'protocol\.weights_sha256'"):
        metrics_table([entry], {entry: good})
    path.write_text("{not json")
    with pytest.raises(ReportInputError, match=r"metric record .*m\.json: cannot parse .*; remove it and run the workflow"):
        entry.read_json()
    path.write_text(json.dumps({"kind": "samples", "steps": 2}))
    with pytest.raises(ReportInputError, match=r"m\.json holds a record of kind 'samples', its manifest entry expects"):
        entry.read_json()


def _round_study(tmp_path, rounds):
    """A Study of main-round training records: rounds maps (stage, method) to (settings, loss weights, extra)."""
    from rdd.report.study import Study
    from rdd.settings import resolve

    entries, records = [], {}
    for i, ((stage, method), (settings, weights, extra)) in enumerate(rounds.items()):
        path = tmp_path / f"r{i}.json"
        path.write_text("{}")
        entry = Entry("training", path, method=method, stage=stage, round="8->4")
        entries.append(entry)
        records[entry] = {"settings": resolve("distill", {"method": method, **settings}), "loss_weights": weights,
                          "world_size": 1, **extra}
    return Study({"config": {}}, entries, records)


def test_every_ablation_variant_shows_its_sample_grids(tmp_path):
    """Grids carry the labels the workflow gives them: a variant that trains like the RCFD main run
    holds RCFD's grids (method rcfd), and an ablation of RCFD its own; each variant gets its row."""
    from fixtures_report import grid_png
    from rdd.report.context import sample_grids
    from rdd.report.study import Study

    variants = {("losses", "rdd"): {"cfd_is_p2p": None, "cfd_only": "rcfd"},
                ("dataset_terms", "rcfd"): {"entropy": None}}
    entries, images = [], {}
    for (ablation, method), specs in variants.items():
        for variant, same_as in specs.items():
            path = tmp_path / f"{ablation}-{variant}.png"
            grid_png(path, 0.5)
            entry = Entry("grid", path, method=same_as or method, ablation=ablation, variant=variant, steps=1, seed=0)
            entries.append(entry)
            images[entry] = path.read_bytes()
    manifest = {"ablations": {ablation: {"method": method, "variants": {
        v: {"same_as": same_as, "labelled_as": same_as or method} for v, same_as in specs.items()}}
        for (ablation, method), specs in variants.items()}}
    grids = sample_grids(Study(manifest, entries, images=images))["ablations"]
    shown = [(g["rows"][0]["label"], [c["state"] for c in g["rows"][0]["cells"]]) for g in grids]
    assert shown == [("losses: cfd_is_p2p", ["done"]), ("losses: cfd_only", ["done"]),
                     ("dataset_terms: entropy", ["done"])]


def test_main_columns_are_the_students_steps_or_ddims_never_the_real_rows():
    from rdd.report.context import main_steps

    real = {("real", 0): [18.3]}
    assert main_steps(metrics_frame({**real, ("ddim", 1): [90.0], ("ddim", 16): [40.0], ("rdd", 2): [50.0]})) == [2]
    # A study that evaluates no student: DDIM's step counts up to 8; the real-data row (0 steps) is no column.
    assert main_steps(metrics_frame({**real, ("ddim", 1): [90.0], ("ddim", 8): [45.0], ("ddim", 16): [40.0]})) == [1, 8]


def test_the_shared_chain_is_named_only_where_the_study_has_one():
    """With shared_steps = T_base every method's rounds start from the teacher: no sentence or curve
    title may speak of a shared PD chain's last model."""
    from rdd.report.context import chain_end

    assert chain_end({"config": {"T_base": 1024, "shared_steps": 8}}) == 8
    assert chain_end({"config": {"T_base": 8, "shared_steps": 8}}) is None
    assert chain_end({}) is None  # a manifest without its config: nothing to say


def test_training_curves_draw_each_training_replicate_as_a_line_and_a_stand_in_once(tmp_path):
    """One figure per method's rounds, one line per training replicate (its CSV's points, in step order);
    a variant whose rounds are the main run's (the same curve files) names that figure instead of a copy;
    a pending round says which replicate it belongs to."""
    from rdd.report.context import training_curves
    from rdd.report.plots import curves_figure
    from rdd.report.study import Study
    from rdd.report.tables import curves_table

    values = {}  # (replicate, round) -> loss per step
    entries = []
    for replicate in (0, 1):
        for round_ in ("4->2", "2->1"):
            path = tmp_path / f"rdd-r{replicate}-{round_.replace('->', 'to')}.csv"
            losses = [1.0 + replicate + 0.1 * k for k in (3, 1, 2)]  # steps written out of order
            if (replicate, round_) != (1, "2->1"):  # still training
                path.write_text("step,loss\n" + "".join(f"{s},{v}\n" for s, v in zip((30, 10, 20), losses)))
                values[replicate, round_] = [losses[1], losses[2], losses[0]]
            for ablation, variant in ((None, None), ("losses", "full")):
                entries.append(Entry("curves", path, method="rdd", stage="round", round=round_, replicate=replicate,
                                     ablation=ablation, variant=variant))
    study = Study({}, entries, csv_frames={e: pd.read_csv(e.path) for e in entries if e.exists})
    curves = curves_table(study.entries, study.csv_frames)
    shown = training_curves(study, curves)

    assert [c["title"] for c in shown] == ["RDD rounds", "RDD rounds · ablation losses: full"]
    main, stand_in = shown
    assert main["uri"].startswith("data:image/png;base64,") and main["same_as"] is None
    assert main["replicates"] == ["training replicate 0 (seed)", "training replicate 1 (seed + 1)"]
    assert main["pending"] == ["2->1 (training replicate 1 (seed + 1))"]
    assert stand_in["same_as"] == "RDD rounds" and stand_in["uri"] is None

    labels = {0: "zero", 1: "one"}
    figure = curves_figure(curves[(curves["ablation"] == "")], labels)
    first, second = figure.axes  # one row (the loss), a column per round
    for ax, round_ in ((first, "4->2"), (second, "2->1")):
        assert ax.get_title() == round_
        lines = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}
        expected = {labels[r]: ([10, 20, 30], values[r, round_]) for r in (0, 1) if (r, round_) in values}
        assert lines == expected
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["zero", "one"]
    # A replicate drawn only in a later panel is in the legend too, in replicate order.
    later_only = curves[(curves["ablation"] == "") & ~((curves["replicate"] == 0) & (curves["round"] == "4->2"))]
    figure = curves_figure(later_only, labels)
    assert [line.get_label() for line in figure.axes[0].get_lines()] == ["one"]
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["zero", "one"]


@pytest.mark.parametrize("seeds", [(0, 1), (2, 1, 3)])
def test_sample_grids_are_those_of_the_first_evaluation_seed(tmp_path, seeds):
    """The workflow writes a grid per evaluation seed; every row shows the first seed's (the same noise
    at the same place in each grid), the seed the report names, whatever the manifest's order."""
    from fixtures_report import grid_png
    from rdd.report.context import sample_grids
    from rdd.report.study import Study

    entries, images = [], {}
    for seed in seeds:
        for method, steps in (("ddim", 1), ("ddim", 2), ("rdd", 1)):
            path = tmp_path / f"{method}-{steps}-seed{seed}.png"
            grid_png(path, 0.5)
            entry = Entry("grid", path, method=method, steps=steps, seed=seed)
            entries.append(entry)
            images[entry] = path.read_bytes()
    grids = sample_grids(Study({}, entries, images=images))
    first = min(seeds)
    assert grids["seed"] == first
    shown = {(row["label"], cell["path"]) for row in grids["main"]["rows"] for cell in row["cells"]
             if cell["state"] == "done"}
    assert shown == {(methods.label(m), str(tmp_path / f"{m}-{s}-seed{first}.png"))
                     for m, s in (("ddim", 1), ("ddim", 2), ("rdd", 1))}


def test_training_protocol_names_the_behaviours_each_method_ran(tmp_path):
    from rdd.report.training_protocol import behaviours

    study = _round_study(tmp_path, {
        ("pd_chain", "pd"): ({"train": {"batch_size": 32}}, {"pd": 1.0}, {}),
        ("round", "rcfd"): ({"feature_map": "pre_relu", "dropout": None, "train": {"noise_group_size": 32}},
                            {"cfd": 1.0}, {}),
        ("round", "rdd"): ({"m_p2p_enqueue": "pixels", "is_p2p_group_size": 16},
                           {"cfd": 1.0, "is_p2p": 1.0, "m_p2p": 0.1},
                           {"m_p2p_head_norm": "BatchNorm per process (SyncBatchNorm needs CUDA)"}),
    })
    chain = next(r for e, r in study.records.items() if e.stage == "pd_chain")
    del chain["settings"]["train"]["noise_group_size"]  # a record older than the setting drew per sample
    table = behaviours(study)
    assert table["methods"] == ["pd chain", "rcfd", "rdd"]
    cells = {r["key"]: [(c["text"], c["tag"]) for c in r["cells"]] for r in table["rows"]}
    assert cells["dropout"] == [("0.0", "released"), ("null", "paper's description"), ("0.0", "released")]
    # RCFD relates no maps: its pre-ReLU setting is not used; RDD's post-ReLU default is released.
    assert cells["feature_map"] == [("not used", "unused"), ("not used", "unused"), ("post_relu", "released")]
    assert cells["m_p2p_enqueue"][2] == ("pixels", "paper's description")
    assert cells["classifier_input"][1] == ("raw", "released")
    assert cells["is_p2p_group_size"][2] == ("16 (64 images per process x 1)", "other")
    assert cells["m_p2p_sync_bn"][2][1] == "other"
    # A draw per image at a batch of 32 (the chain's) is what each released GPU drew.
    assert cells["train.noise_group_size"] == [("32 for 32 images", "released"), ("32 for 64 images", "released"),
                                               ("64 for 64 images", "paper's description")]


def test_main_tables_carry_the_real_data_row_and_is_when_measured():
    from rdd.report.context import main_tables

    metrics = metrics_frame({("pd", 1): [70.0, 71.0], ("rdd", 1): [60.0, 61.0], ("real", 0): [20.0, 21.0]})
    metrics["is_mean"], metrics["is_unavailable_reason"] = 5.0, None
    manifest = {"config": {"evaluate": {"reference": {"split": "train"}}}}
    main = main_tables(metrics, summarize(metrics), PAPER, None, manifest)
    assert [t["metric"] for t in main["tables"]] == ["fid", "kid", "is"] and main["is_unavailable"] is None
    assert [r["key"] for r in main["tables"][0]["rows"]] == ["pd", "rdd"]  # the floor is not a model row
    floor = main["tables"][0]["floor"]
    assert floor["label"] == "Real images (held out), test split, N = 500" and floor["cell"]["text"] == "20.50"
    assert not floor["cell"]["best"] and main["tables"][0]["rows"][1]["cells"][0]["best"]


def test_index_headline_leaves_out_step_counts_without_an_rdd_model():
    from rdd.report.render import summary_record
    cells = {1: {"state": "done", "text": "61.90", "ci": "sampling 95% CI [60.1, 63.9]"},
             8: {"state": "absent", "text": "—"}}  # 8 steps: the shared chain's model, not RDD's
    rows = [{"key": "rdd", "label": "RDD", "cells": list(cells.values())}]
    context = {"main": {"tables": [{"steps": list(cells), "rows": rows}]},
               "study": "s", "dataset": "d", "scale": None, "progress": {}, "claims": []}
    record = summary_record(context, "reports/s.html")
    assert [(h["steps"], h["fid"]) for h in record["headline"]] == [(1, "61.90")]


def test_floor_row_says_when_the_held_out_split_is_smaller_than_the_models_sample_count():
    from rdd.report.context import floor_row

    summary = summarize(metrics_frame({("rdd", 1): [60.0], ("real", 0): [20.0]}))  # 500 images each
    manifest = {"config": {"evaluate": {"num_samples": 500, "reference": {"split": "train"}}}}
    same = floor_row(summary, manifest, "fid")
    assert same["label"] == "Real images (held out), test split, N = 500" and same["fewer_images"] == ""
    # CIFAR-10: 50,000 samples per model, a test split of 10,000 (here: 500 of 2,000 asked for).
    manifest["config"]["evaluate"]["num_samples"] = 2000
    fewer = floor_row(summary, manifest, "fid")["fewer_images"]
    assert fewer.startswith("at N = 500, fewer than the models' 2,000") and "would score lower" in fewer
    assert "KID is unbiased at any N" in floor_row(summary, manifest, "kid")["fewer_images"]


def test_protocol_table_says_how_the_images_were_sampled():
    from fixtures_report import metric_record, samples_record

    def metric(method, sampling, drop=()):
        record = metric_record({"method": method, "steps": sampling["steps"], "seed": 0}, 30.0, sampling)
        for key in drop:
            del record["protocol"][key]
        return Entry("metric", f"{method}.json", method=method, steps=sampling["steps"], seed=0), record

    real = records.samples(model="real images", steps=0, T=None, seeds=range(4), batch_size=4, net_batch=None,
                           precision=None, latencies=[], wall_seconds=1.0, environment={})
    found = dict([metric("rdd", samples_record("rdd", 1, 0, "rdd.pt")), metric("real", real),
                  metric("pd", samples_record("pd", 1, 0, "pd.pt"), drop=["sampling_precision"])])
    [protocol] = protocols(metrics_table(list(found), found), {})
    assert protocol["sampling"] == ("network batch 16, fp32; network batch 16, precision not recorded; "
                                    "real images (no network)")
    # The real-data row's records have 0 steps: no step count of a network.
    assert protocol["steps"] == "1; real images"
    assert protocol["reference_dataset_text"] == "fashion_mnist, 32x32, 1 channel, resize: pad"


@pytest.mark.parametrize("dataset,expected", [
    ({"name": "cifar10", "image_size": 32, "channels": 3, "resize": "resize"},
     "cifar10, 32x32, 3 channels, resize: resize"),
    ({"name": "folder", "image_size": 16, "channels": 1, "resize": "pad", "root": "/d", "files": 8,
      "listing_sha256": "ab"}, "folder, 16x16, 1 channel, resize: pad, files: 8, listing_sha256: ab, root: /d"),
    ({"name": "cifar10", "image_size": 32}, '{"image_size": 32, "name": "cifar10"}'),  # not an identity: as it is
    (None, None), ("—", "—"),
])
def test_the_reference_dataset_reads_in_words(dataset, expected):
    """The protocol table names the reference's images in words (the tables keep the JSON); a dataset
    field that is no dataset identity (a user-supplied file's, an unknown record's) stays as it is."""
    as_table = json.dumps(dataset, sort_keys=True) if isinstance(dataset, dict) else dataset
    assert dataset_text(as_table) == expected


def test_the_inception_input_is_part_of_the_protocol():
    """Another Inception input is another protocol; a record from before the setting fed torch-fidelity's."""
    from fixtures_report import metric_record, samples_record

    found = {}
    for method, inception_input in (("pd", "pytorch-fid"), ("rdd", "torch-fidelity"), ("rcfd", None)):
        record = metric_record({"method": method, "steps": 1, "seed": 0}, 30.0, samples_record(method, 1, 0, "m.pt"))
        if inception_input is None:
            del record["protocol"]["inception_input"]
        else:
            record["protocol"]["inception_input"] = inception_input
        found[Entry("metric", f"{method}.json", method=method, steps=1, seed=0)] = record
    table = metrics_table(list(found), found)
    assert table.set_index("method")["inception_input"].to_dict() == {
        "pd": "pytorch-fid", "rdd": "torch-fidelity", "rcfd": "torch-fidelity"}
    assert sorted(p["inception_input"] for p in protocols(table, {})) == ["pytorch-fid", "torch-fidelity"]


def test_the_is_split_order_is_part_of_the_protocol():
    """IS of images split in their order is another protocol than of shuffled ones; a record from before
    the setting shuffled; a record without IS has no splits."""
    from fixtures_report import metric_record, samples_record

    found = {}
    for method, isc in (("pd", {"splits": 10, "split_order": "in-order", "rng_seed": None}),
                        ("rdd", {"splits": 10, "split_order": "shuffled", "rng_seed": 2020}),
                        ("rcfd", {"splits": 10, "rng_seed": 2020}), ("real", None)):
        record = metric_record({"method": method, "steps": 1, "seed": 0}, 30.0, samples_record(method, 1, 0, "m.pt"))
        if isc is not None:
            record["protocol"]["settings"]["isc"] = isc
        found[Entry("metric", f"{method}.json", method=method, steps=1, seed=0)] = record
    table = metrics_table(list(found), found)
    splits = table.set_index("method")["isc_splits"]
    assert splits.drop("real").to_dict() == {"pd": "10, in-order", "rdd": "10, shuffled", "rcfd": "10, shuffled"}
    assert pd.isna(splits["real"])
    assert sorted(str(p["isc_splits"]) for p in protocols(table, {})) == ["10, in-order", "10, shuffled", "—"]


@pytest.mark.parametrize("args,expected", [
    (["build", "--manifest", "m.json", "--tables-dir", "{tmp}/file", "--out", "r.html"],
     "argument --tables-dir: {tmp}/file is a file; give a folder path"),
    (["build", "--manifest", "m.json", "--tables-dir", "{tmp}/t", "--out", "{tmp}"],
     "argument --out: {tmp} is a directory; give a file path"),
    (["index", "--reports", "r.html", "--out", "{tmp}/file/index.html"],
     "argument --out: {tmp}/file/index.html cannot be created: {tmp}/file is not a folder"),
    (["index", "--reports", "r.html", "--out", "{tmp}/index.htm"],
     "argument --out: {tmp}/index.htm must end in .html"),
])
def test_report_outputs_that_cannot_be_written_are_one_line_and_exit_2(args, expected, tmp_path, capsys):
    from rdd.report.__main__ import main

    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as exit_:
        main([a.format(tmp=tmp_path) for a in args])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == f"error: python -m rdd.report {args[0]}: {expected.format(tmp=tmp_path)}\n"


@pytest.mark.parametrize("args,expected", [
    (["index", "--reports", "{tmp}/a.html", "{tmp}/b.html", "--out", "{tmp}/b.html"],
     "--out would overwrite --reports, {tmp}/b.html"),
    (["build", "--manifest", "{tmp}/t/metrics.csv", "--tables-dir", "{tmp}/t", "--out", "{tmp}/r.html"],
     "--tables-dir's metrics.csv would overwrite --manifest, {tmp}/t/metrics.csv"),
    (["build", "--manifest", "{tmp}/r.summary.json", "--tables-dir", "{tmp}/t", "--out", "{tmp}/r.html"],
     "--out's summary would overwrite --manifest, {tmp}/r.summary.json"),
])
def test_a_report_output_on_an_input_is_refused_before_reading_it(args, expected, tmp_path, capsys):
    from rdd.report.__main__ import main

    assert main([a.format(tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {expected.format(tmp=tmp_path)}") and len(err.splitlines()) == 1, err
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("summary,expected", [
    (None, "{tmp}/r.summary.json not found: build the report first (python -m rdd.report build --manifest "
           "results/<study>/manifest.json --tables-dir results/<study>/tables --out {tmp}/r.html)"),
    ("{", "cannot parse JSON file {tmp}/r.summary.json: Expecting property name enclosed in double quotes: line 1 "
          "column 2 (char 1); build the report again (python -m rdd.report build"),
    ("[1]", "{tmp}/r.summary.json holds a list, not a report's summary; build the report again"),
    ('{"study": "s", "dataset": "d", "progress": [], "headline": [], "claims": []}',
     "{tmp}/r.summary.json is not a summary written by `python -m rdd.report build` (missing or of another type: "
     "progress); build the report again"),
    ('{"study": "s", "dataset": "d", "scale_note": null, "progress": {"metric": {"done": 1}}, '
     '"headline": ["1: 50.0", {"steps": 2, "fid": "40.1", "spread": ""}], "claims": [{"text": "t"}, 1, 2, 3]}',
     "{tmp}/r.summary.json is not a summary written by `python -m rdd.report build` (entries not of its form: "
     "progress['metric'], headline[0], claims[0] and 3 more); build the report again"),
])
def test_the_index_names_a_summary_it_cannot_read(summary, expected, tmp_path, capsys):
    from rdd.report.__main__ import main

    if summary is not None:
        (tmp_path / "r.summary.json").write_text(summary)
    assert main(["index", "--reports", str(tmp_path / "r.html"), "--out", str(tmp_path / "index.html")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {expected.format(tmp=tmp_path)}")
    assert not (tmp_path / "index.html").exists()


def test_the_index_refuses_a_report_named_twice_or_not_a_report(tmp_path, capsys):
    from rdd.report.__main__ import main

    out = ["--out", str(tmp_path / "index.html")]
    assert main(["index", "--reports", "a/r.html", "a/../a/r.html", *out]) == 2
    assert capsys.readouterr().err == "error: --reports names one report twice: a/r.html and a/../a/r.html\n"
    with pytest.raises(SystemExit) as exit_:
        main(["index", "--reports", "results/fmnist/manifest.json", *out])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == ("error: python -m rdd.report index: argument --reports: "
                                       "results/fmnist/manifest.json must end in .html (a report written by `build`)\n")


def test_the_report_loads_no_torch():
    """The report job reads records and draws tables and plots: it starts without torch (README)."""
    loaded = packages_loaded("import rdd.report.__main__, rdd.report.render, rdd.report.context")
    assert not loaded & {"torch", "torchvision", "torch_fidelity"}
    assert "pandas" in loaded  # the probe saw the report's own imports
