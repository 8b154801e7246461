"""Per-cell summaries of the tidy tables: mean, std and 95% interval, best values, speed-ups over DDIM.

A cell is one (method, ablation, variant, steps); its rows in the metrics table
are its evaluation seeds of each training replicate. The std is the sample std
(ddof=1) over the rows. The interval:
- several training replicates: the interval of their mean holding training and
  sampling noise (rdd.metrics.combined), from the records' bootstrap replicates;
  Student's t over the replicates for records without them;
- one training run, several evaluation seeds: the sampling interval of their
  mean, from the records' bootstrap replicates averaged over the seeds;
  Student's t over the seeds for records without them;
- one evaluation: its own sampling interval (a bootstrap over its images,
  rdd.metrics.bootstrap, kid_bootstrap and scores.isc_replicates).
"""

import math

import pandas as pd

from rdd import methods
from rdd.metrics import combined

CELL = ["method", "ablation", "variant", "steps"]
# name: (metrics-table column, label, lower is better, display scale)
METRICS = {
    "fid": ("fid", "FID", True, 1.0),
    "kid": ("kid_mean", "KID ×10³", True, 1e3),
    "is": ("is_mean", "IS", False, 1.0),
}


def _finite(value):
    return value is not None and not pd.isna(value) and math.isfinite(value)


def _seed_ranges(done):
    # Training replicates sample the same image seeds: each range once.
    return list(dict.fromkeys(f"{int(a)}–{int(b)}" for a, b in zip(done["seed_first"], done["seed_last"])
                              if _finite(a) and _finite(b)))


def _sampling_interval(done, metric):
    """The one evaluation's own sampling interval (bootstrap over its images), where it has one."""
    columns = (f"{metric}_ci95_low", f"{metric}_ci95_high")  # as rdd.records.METRIC_VALUES names them
    if len(done) != 1 or not all(c in done for c in columns):
        return {}
    low, high = (pd.to_numeric(done[c], errors="coerce").iloc[0] for c in columns)
    return {"ci_low": float(low), "ci_high": float(high)} if _finite(low) and _finite(high) else {}


def _over_seeds(values, replicate, side):
    """The interval of a cell's mean over several evaluations (`values`, each of training `replicate`):
    from the records' bootstrap replicates (`side`, all of the cell's evaluations), the sampling and
    training noise together (rdd.metrics.combined; the sampling noise alone with one training), else
    Student's t over the training replicates' means, or over the evaluation seeds of one training (a
    percentile bootstrap of two or three values would fall well short of 95%)."""
    trained = replicate.nunique() > 1
    if side and len(side) == len(values):
        found = combined.cell_interval(side)
        ci = {"ci_low": found["low"], "ci_high": found["high"]}
        if trained:
            ci["training_sd"] = found["training"]["sd"]
        return ci, "training+sampling" if trained else "sampling"
    low, high = combined.t_interval((values.groupby(replicate).mean() if trained else values).tolist())
    return {"ci_low": low, "ci_high": high}, "training" if trained else "seeds"


def summarize(metrics, sampling=None):
    """One row per cell: evaluations and training replicates expected and done, mean, std and interval of
    FID, KID and IS. `sampling`: {metric: {cell: {(replicate, image seed range): (value, bootstrap
    replicates)}}} from the metric records (rdd.report.context.sampling_replicates)."""
    rows = []
    metrics = metrics.assign(replicate=pd.to_numeric(metrics["replicate"]).fillna(0).astype(int))
    for key, group in metrics.groupby(CELL, sort=True, dropna=False):
        done = group[group["status"] == "done"]
        row = {**dict(zip(CELL, key)), "n_expected": len(group), "n_done": len(done),
               "replicates_expected": group["replicate"].nunique(), "replicates_done": done["replicate"].nunique()}
        for name, (column, *_rest) in METRICS.items():
            values = pd.to_numeric(done[column], errors="coerce").dropna()
            row[f"{name}_n"] = len(values)
            row[f"{name}_mean"] = float(values.mean()) if len(values) else math.nan
            row[f"{name}_std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
            side = ((sampling or {}).get(name) or {}).get(tuple(key[:3]) + (int(key[3]),))
            if len(values) > 1:
                ci, kind = _over_seeds(values, done.loc[values.index, "replicate"], side)
            else:
                ci = _sampling_interval(done, name)
                kind = "sampling" if ci else ""
            row[f"{name}_ci_low"], row[f"{name}_ci_high"] = ci.get("ci_low", math.nan), ci.get("ci_high", math.nan)
            row[f"{name}_ci_kind"] = kind
            row[f"{name}_training_sd"] = ci.get("training_sd", math.nan)
        reasons = done["is_unavailable_reason"].dropna()
        row["is_reason"] = reasons.iloc[0] if len(reasons) else None
        row["protocols"] = sorted(set(done["protocol"].dropna()))
        row["num_generated"] = sorted({int(n) for n in done["num_generated"].dropna()})
        row["seed_ranges"] = _seed_ranges(done)
        rows.append(row)
    columns = [*CELL, "n_expected", "n_done", "replicates_expected", "replicates_done",
               *(f"{m}_{s}" for m in METRICS
                 for s in ("n", "mean", "std", "ci_low", "ci_high", "ci_kind", "training_sd")),
               "is_reason", "protocols", "num_generated", "seed_ranges"]
    return pd.DataFrame(rows, columns=columns)


# How a cell's interval was made (summarize's `<metric>_ci_kind`): its label in the cell, and in words.
CI_PREFIX = {"sampling": "sampling ", "training+sampling": "training+sampling ", "training": "training-seed "}
CI_HOW = {"sampling": "bootstrap over the images of its evaluation(s)",
          "seeds": "Student's t over the evaluation seeds' values",
          "training+sampling": "mean over training seeds; sampling noise (bootstrap over the images) and "
                               "training noise (their spread beyond it, Student's t) combined",
          "training": "Student's t over the training seeds' values"}


def cell(summary, method, steps, ablation="", variant=""):
    """The summary row of one cell as a dict, or None when the study has no such cell."""
    match = summary[(summary["method"] == method) & (summary["steps"] == steps)
                    & (summary["ablation"] == ablation) & (summary["variant"] == variant)]
    return None if match.empty else match.iloc[0].to_dict()


def cell_key(c):
    """The key of a summary cell in the records' bootstrap replicates (rdd.report.context.sampling_replicates)."""
    return c["method"], c["ablation"], c["variant"], int(c["steps"])


def interval_of_difference(a, b, replicates, metric="fid"):
    """value(b) - value(a) of two summary cells with its 95% interval of both noises
    (rdd.metrics.combined.difference: paired when they sampled the same image seeds, widened by the
    training noise, paired too when both were trained with the same training seeds), or None when
    some evaluation of either cell has no bootstrap replicates.
    `replicates`: the metric's {cell key: {(training replicate, image seed range): (value, replicates)}}."""
    sides = [replicates.get(cell_key(c), {}) for c in (a, b)] if replicates else [{}, {}]
    if all(sides) and all(len(side) == c[f"{metric}_n"] for side, c in zip(sides, (a, b))):
        return combined.difference(*sides)
    return None


def best_keys(values, lower_is_better=True):
    """The keys of the best finite value(s) of a {key: value} mapping (ties all win)."""
    finite = {k: v for k, v in values.items() if _finite(v)}
    if not finite:
        return set()
    best = min(finite.values()) if lower_is_better else max(finite.values())
    return {k for k, v in finite.items() if v == best}


def format_cell(row, metric):
    """Display pieces of one summary cell: value, ± std, seed count, pending state, tooltip."""
    if row is None:
        return {"state": "absent", "text": "—", "title": "not part of this study"}
    column, label, _, scale = METRICS[metric]
    n, n_expected = row[f"{metric}_n"], row["n_expected"]
    if row["n_done"] == 0:
        return {"state": "pending", "text": "pending", "title": f"0 of {n_expected} seeds evaluated"}
    if n == 0:
        reason = row["is_reason"] if metric == "is" else None
        return {"state": "unavailable", "text": "n/a", "title": reason or f"{label} not in these records"}
    mean, std = row[f"{metric}_mean"] * scale, row[f"{metric}_std"] * scale
    seeds = f"n={n}" if n == n_expected else f"n={n} of {n_expected}"
    trained = row.get("replicates_expected", 1)
    if trained > 1:
        done = row["replicates_done"]
        seeds += f", {done}{'' if done == trained else f' of {trained}'} training seeds"
    ci_low, ci_high = row[f"{metric}_ci_low"] * scale, row[f"{metric}_ci_high"] * scale
    kind = row.get(f"{metric}_ci_kind")
    ci_name = ci_bounds = ""
    if _finite(ci_low):  # name and bounds apart too, so that a narrow cell breaks between them only
        ci_name, ci_bounds = f"{CI_PREFIX.get(kind, '')}95% CI", f"[{ci_low:.2f}, {ci_high:.2f}]"
    ci = f"{ci_name} {ci_bounds}".strip()
    how = CI_HOW.get(kind, "")
    if _finite(row.get(f"{metric}_training_sd")):
        how += f"; training-seed sd {row[f'{metric}_training_sd'] * scale:.2f}"
    real = row["method"] in methods.floor_names()  # held-out real images (rdd.generate.real_samples)
    title = (f"{label} over {n} evaluation(s){f' ({ci}: {how})' if ci else ''}; "
             f"protocol {', '.join(row['protocols'])}; "
             f"{', '.join(map(str, row['num_generated']))} {'real' if real else 'generated'} images per seed; "
             f"image seeds {', '.join(row['seed_ranges']) or 'not recorded'}; "
             + ("no network" if real else f"{row['steps']} step{'' if row['steps'] == 1 else 's'}"))
    return {"state": "partial" if n < n_expected else "done", "text": f"{mean:.2f}",
            "spread": f"± {std:.2f}" if _finite(std) else "", "ci": ci, "ci_name": ci_name, "ci_bounds": ci_bounds,
            "seeds": seeds, "title": title,
            "protocols": row["protocols"], "mean": mean}


def _delta(row, ref, replicates, metric):
    """A row's difference from the reference row, with its 95% interval where the records allow."""
    _, label, _, scale = METRICS[metric]
    out = {"delta": f"{(row[f'{metric}_mean'] - ref[f'{metric}_mean']) * scale:+.2f}", "delta_ci": "",
           "delta_title": ""}
    d = interval_of_difference(ref, row, replicates, metric)
    if d is not None:
        seeds = min(d["training_seeds"])
        out["delta_ci"] = f"[{d['low'] * scale:+.2f}, {d['high'] * scale:+.2f}]"
        out["delta_title"] = (f"95% interval of the {label} difference from the reference row, "
                              f"{'paired on the same image seeds' if d['paired'] else 'unpaired'}"
                              f"{' and training seeds' if d['paired_training'] else ''}; it holds the "
                              f"sampling noise of the images" + (f" and the training noise over {seeds} training "
                                                                 f"seeds" if seeds > 1 else " only (one training run)"))
    return out


def comparison_table(summary, rows, steps, metric, paper=None, paper_key=None, reference=None, replicates=None):
    """Rows x steps of formatted cells, best per column marked.

    rows: (key, label, method, ablation, variant) tuples; paper: PaperValues to put the
    paper's figure beside ours (when the study has a paper_key); reference: a row key whose values the
    others are compared to, each difference with its interval from `replicates` (the metric's, see
    `interval_of_difference`).
    """
    _, _, lower, _ = METRICS[metric]
    # The one place that decides whether a table has a paper column (the template only reads it).
    paper_column = paper is not None and paper_key is not None
    table = {"metric": metric, "label": METRICS[metric][1], "steps": list(steps), "rows": [], "floor": None,
             "paper_column": paper_column}
    cells, summary_rows = {}, {}
    for key, _, method, ablation, variant in rows:
        for s in steps:
            summary_rows[key, s] = cell(summary, method, s, ablation, variant)
            cells[key, s] = format_cell(summary_rows[key, s], metric)
    for s in steps:
        values = {key: cells[key, s].get("mean") for key, *_ in rows}
        # A lone value is not "best" of anything.
        best = best_keys(values, lower) if sum(_finite(v) for v in values.values()) > 1 else set()
        pending = sum(cells[key, s]["state"] in ("pending", "partial") for key, *_ in rows)
        for key, *_ in rows:
            cells[key, s]["best"] = key in best
            cells[key, s]["best_so_far"] = key in best and pending > 0
    for key, label, method, _, _ in rows:
        out = {"key": key, "label": label, "cells": []}
        for s in steps:
            c = dict(cells[key, s])
            if reference is not None and key != reference:
                if _finite(c.get("mean")) and _finite(cells[reference, s].get("mean")):
                    c.update(_delta(summary_rows[key, s], summary_rows[reference, s], replicates, metric))
            if paper_column:
                c["paper"] = paper.lookup(paper_key, method, s, metric)
            out["cells"].append(c)
        table["rows"].append(out)
    return table


def speed_summary(speed):
    """Per cell: measured images/s (the benchmark's median over repeats, and their range), latency of
    one batch, and where it was measured."""
    rows = []
    for key, group in speed.groupby(CELL, sort=True, dropna=False):
        done = group[group["status"] == "done"]
        number = {c: pd.to_numeric(done[c], errors="coerce").dropna() for c in
                  ("images_per_second", "images_per_second_low", "images_per_second_high", "latency_per_batch_s")}
        rows.append({**dict(zip(CELL, key)), "n_done": len(done),
                     "nfe": int(done["nfe"].iloc[0]) if len(done) else key[3],
                     **{c: float(v.median()) if len(v) else math.nan for c, v in number.items()},
                     "batch_size": ", ".join(sorted({str(int(b)) for b in done["batch_size"].dropna()})),
                     "machine": "; ".join(sorted(set(done["machine"].dropna())))})
    return pd.DataFrame(rows, columns=[*CELL, "n_done", "nfe", "images_per_second", "images_per_second_low",
                                       "images_per_second_high", "latency_per_batch_s", "batch_size", "machine"])


def _ratio_range(mine, theirs):
    """(lowest, highest) ratio of images/s the two cells' ranges over repeats allow; None without both."""
    slowest, fastest = mine["images_per_second_low"], mine["images_per_second_high"]
    ddim_slowest, ddim_fastest = theirs["images_per_second_low"], theirs["images_per_second_high"]
    if not all(_finite(v) and v > 0 for v in (slowest, fastest, ddim_slowest, ddim_fastest)):
        return None
    return slowest / ddim_fastest, fastest / ddim_slowest


def _speed_of(speed_sum, method, steps):
    match = speed_sum[(speed_sum["method"] == method) & (speed_sum["steps"] == steps)
                      & (speed_sum["ablation"] == "") & (speed_sum["variant"] == "")]
    return None if match.empty else match.iloc[0].to_dict()


def _speedup_range(model, ddim_done, replicates):
    """The NFE speed-ups the FIDs' noise allows: (from the fewest DDIM steps not resolved worse than the
    model, to the fewest resolved better; None: not within the DDIM steps evaluated), each judged by
    the 95% interval of FID(DDIM) - FID(model); None when a record lacks replicates or no DDIM
    evaluation is done."""
    if ddim_done.empty:
        return None
    low = high = None
    for _, ddim in ddim_done.iterrows():
        d = interval_of_difference(model, ddim.to_dict(), replicates)
        if d is None:
            return None
        if low is None and d["low"] <= 0:
            low = int(ddim["steps"])
        if d["high"] < 0:
            high = int(ddim["steps"])
            break
    steps = int(model["steps"])
    return tuple(None if s is None else s / steps for s in (low, high))


def _speedup_range_text(row):
    """The range of a speed-up row's NFE speed-up the FIDs' intervals allow, in words ('' without one)."""
    if row.get("nfe_speedup_range") is None:
        return ""
    low, high = row["nfe_speedup_range"]
    top = row["ddim_max_steps"] / row["steps"]
    if low is None:
        return f"above {top:g}× within the 95% intervals"
    if low == high:
        return f"{low:g}× at both ends of the 95% intervals"
    return f"{low:g}× to {f'{high:g}×' if high is not None else f'above {top:g}×'} within the 95% intervals"


NO_DDIM = "the study samples the teacher with DDIM at no step count (evaluate.teacher_steps is empty)"


def ddim_speedups(summary, speed_sum, replicates=None, speed_benchmark=True):
    """For each distilled main-row model: the fewest DDIM steps reaching its FID, and the speed-up.

    NFE speed-up = DDIM steps / model steps (one network evaluation per step), with the range the
    FIDs' 95% intervals allow (`_speedup_range`; `replicates`: the FID's, as interval_of_difference
    takes them); the measured speed-up is the ratio of the median images/s, given only when both ran
    on the same machine, with the range their repeats allow (the model's slowest repeat over DDIM's
    fastest, to its fastest over DDIM's slowest); `speed_benchmark` False: the study measures none.
    """
    main = summary[(summary["ablation"] == "") & (summary["variant"] == "")]
    ddim = main[main["method"] == "ddim"].sort_values("steps")
    ddim_done = ddim[ddim["fid_n"] > 0]
    ddim_pending = sorted(int(s) for s in ddim.loc[ddim["fid_n"] == 0, "steps"])
    ddim_max = int(ddim_done["steps"].max()) if len(ddim_done) else None
    out = []
    for method in methods.method_names(distilled=True):
        for _, model in main[main["method"] == method].sort_values("steps").iterrows():
            steps = int(model["steps"])
            row = {"method": method, "label": methods.label(method), "steps": steps, "nfe": steps,
                   "fid": model["fid_mean"], "ddim_steps": None, "ddim_fid": None, "nfe_speedup": None,
                   "time_speedup": None, "time_speedup_range": None, "ddim_max_steps": ddim_max, "note": "",
                   "provisional": False, "nfe_speedup_range": None, "range_text": ""}
            if model["fid_n"] == 0:
                row.update(state="pending", note="model FID pending")
                out.append(row)
                continue
            if ddim.empty:
                row.update(state="no_ddim", note=NO_DDIM)
                out.append(row)
                continue
            row["nfe_speedup_range"] = _speedup_range(model.to_dict(), ddim_done, replicates)
            row["range_text"] = _speedup_range_text(row)
            reached = ddim_done[ddim_done["fid_mean"] <= model["fid_mean"]]
            if reached.empty:
                top = f" (DDIM evaluated up to {ddim_max} steps)" if ddim_max else ""
                row.update(state="unreached", note="no DDIM setting reached this FID" + top)
                row["provisional"] = bool(ddim_pending)
            else:
                match = reached.iloc[0]
                d = int(match["steps"])
                row.update(state="reached", ddim_steps=d, ddim_fid=match["fid_mean"], nfe_speedup=d / steps)
                row["provisional"] = any(p < d for p in ddim_pending)
                mine, theirs = _speed_of(speed_sum, method, steps), _speed_of(speed_sum, "ddim", d)
                if mine and theirs and _finite(mine["images_per_second"]) and _finite(theirs["images_per_second"]):
                    if mine["machine"] == theirs["machine"]:
                        row["time_speedup"] = mine["images_per_second"] / theirs["images_per_second"]
                        row["time_speedup_range"] = _ratio_range(mine, theirs)
                    else:
                        row["note"] = "speed measured on different machines: not compared"
                else:
                    row["note"] = ("measured speed pending" if speed_benchmark else
                                   "speed not measured: no speed benchmark in this run")
            if row["provisional"]:
                row["note"] = (row["note"] + "; " if row["note"] else "") + \
                    f"provisional: DDIM at {', '.join(map(str, ddim_pending))} steps pending"
            out.append(row)
    return out
