"""The paper's claims, each with our measured figure and a plain verdict.

Two cells' FIDs are compared through the 95% interval of their difference,
from the metric records' bootstrap replicates (rdd.metrics.bootstrap.difference:
paired when both evaluated the same image seeds, as every method of a study
does), widened by the training noise when the rounds were trained with several
training seeds (rdd.metrics.combined.difference: the spread of the per-seed
differences when both cells were trained with the same training seeds). The
claim holds when the interval lies on the claimed side of zero, fails when it
lies on the other side, and is inconclusive otherwise, with the number of
images per evaluation (or of training seeds) that would resolve it. Records
without replicates fall back to Welch's t interval of the difference over
seeds (with one seed, no noise estimate: the means decide). Each claim
says which noise its intervals hold.
"""

import math

import numpy as np

from rdd import methods
from rdd.metrics import bootstrap, combined
from rdd.report.errors import ReportInputError
from rdd.report.summary import cell, interval_of_difference

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
UNTESTED_SCALE, NOT_RUN, PENDING = "not tested at this scale", "not tested in this run", "pending"
BASELINES = tuple(methods.baselines())  # the paper's claims compare RDD with each of these
INTERVAL_CAVEAT = "the intervals hold the sampling noise of the images only (each method is trained once)"
TRAINING_CAVEAT = ("the intervals hold the sampling noise of the images and the training noise over {seeds} "
                   "training seeds per method{paired}")
PAIRED_TRAINING = ", each difference paired on the training seeds"
MEMORY_SLOPE_TOLERANCE = 0.2  # M-P2P memory is linear in the batch when its log-log slope's interval is in 1 ± this
MEMORY_HELP = ("no memory benchmark in this run (the workflow runs none where evaluate.memory_benchmark is null); "
               "benchmarks/bench_relational_memory.py measures it, and its JSON record, listed in the manifest as "
               "a memory_benchmark entry, fills this row")


def _welch_half_width(a, b, level=bootstrap.LEVEL):
    """Half the width of Welch's t interval of FID(b) - FID(a) over the cells' seeds (None: a cell with
    one seed). For records without bootstrap replicates; few seeds, few degrees of freedom, wide."""
    if a["fid_n"] < 2 or b["fid_n"] < 2:
        return None
    parts = [c["fid_std"] ** 2 / c["fid_n"] for c in (a, b)]
    se = math.sqrt(sum(parts))
    if se == 0:
        return 0.0
    df = se**4 / sum(p**2 / (c["fid_n"] - 1) for p, c in zip(parts, (a, b)))
    return bootstrap.t_quantile(df, level) * se


def compare(a, b, replicates=None):
    """How cell a's FID compares with cell b's: {'outcome': 'better' | 'worse' | 'tie', 'gain': FID(b) -
    FID(a), 'margin': half the width of the gain's 95% interval (None: no noise estimate), 'noise': text}.

    `replicates`: {cell key: {(training replicate, image seed range): (FID, bootstrap replicates)}} from
    the metric records (rdd.report.context.sampling_replicates).
    """
    gain = b["fid_mean"] - a["fid_mean"]
    d = interval_of_difference(a, b, replicates)
    if d is not None:
        names = f"{methods.label(a['method'])} − {methods.label(b['method'])}"
        noise = (f"{'paired' if d['paired'] else 'unpaired'} 95% interval of {names}: "
                 f"[{-d['high']:.2f}, {-d['low']:.2f}]")
        outcome = "better" if d["low"] > 0 else "worse" if d["high"] < 0 else "tie"
        if outcome == "tie":
            noise += _resolution(d, int(max(a["num_generated"])))
        return {"outcome": outcome, "gain": gain, "margin": d["half_width"], "noise": noise, "interval": True,
                "training_seeds": min(d["training_seeds"]), "paired_training": d["paired_training"]}
    half = _welch_half_width(a, b)
    outcome = "tie" if gain == 0 or (half is not None and abs(gain) <= half) else "better" if gain > 0 else "worse"
    noise = (f"half-width of Welch's t 95% interval of the difference over seeds = {half:.2f}" if half is not None
             else "one seed: no noise estimate")
    return {"outcome": outcome, "gain": gain, "margin": half, "noise": noise, "interval": False}


def _resolution(d, num_images):
    """What would resolve an inconclusive difference `d`: more training seeds when the training noise
    is what spans zero, else more images per evaluation."""
    seeds = combined.seeds_needed(d)
    if seeds is not None:
        return f"; about {seeds} training seeds per method would resolve it"
    needed = bootstrap.images_needed(d["sampling_half_width"], d["estimate"], num_images)
    if needed is None:
        return "; no difference measured"
    more_seeds = " (and more training seeds)" if d["training_half_width"] > 0 else ""
    return f"; about {needed:,} images per evaluation{more_seeds} would resolve it"


def _caveat(found):
    """Which noise the intervals of differences hold, said once per claim."""
    intervals = [f for f in found if f["interval"]]
    if not intervals:
        return ""
    seeds = min(f["training_seeds"] for f in intervals)
    if seeds < 2:
        return f"; {INTERVAL_CAVEAT}"
    paired = PAIRED_TRAINING if all(f["paired_training"] for f in intervals) else ""
    return f"; {TRAINING_CAVEAT.format(seeds=seeds, paired=paired)}"


def _fid(c):
    return f"{c['fid_mean']:.2f}" + (f" ± {c['fid_std']:.2f}" if c["fid_n"] > 1 else "")


def _claim(paper, key, verdict, measured, detail, label=None):
    claim = paper.claim(key)
    return {"key": key, "text": label or claim["text"], "source": claim["label"], "citation": claim["citation"],
            "url": claim["url"],
            "verdict": verdict, "measured": measured, "detail": detail}


def _done(c):
    return c is not None and c["fid_n"] > 0


def _steps(s):
    return f"{s} step" + ("s" if s != 1 else "")


def _provisional(cells):
    """A note naming the cells that still miss seeds (their verdict may change)."""
    partial = dict.fromkeys(
        f"{methods.label(c['method'])} at {_steps(int(c['steps']))} ({c['fid_n']} of {c['n_expected']} seeds)"
        for c in cells if c is not None and 0 < c["fid_n"] < c["n_expected"])
    return f"; provisional: {', '.join(partial)}" if partial else ""


def one_step_claims(summary, paper, small_scale, replicates=None):
    """1a: RDD's 1-step FID is below the best baseline's; 1b: by at least the paper's 1.47 (less its noise margin)."""
    claimed = paper.claim("one_step_gain")["value"]
    text_a = "RDD's 1-step FID is below the best baseline's (PD, RCFD)"
    text_b = f"RDD's 1-step FID gain over the best baseline reaches the paper's {claimed}"
    rdd = cell(summary, "rdd", 1)
    bases = {m: cell(summary, m, 1) for m in BASELINES if cell(summary, m, 1) is not None}
    if rdd is None or not bases:
        why = "this study has no 1-step RDD and baseline evaluations"
        return [_claim(paper, "one_step_gain", NOT_RUN, "—", why, text_a),
                _claim(paper, "one_step_gain", NOT_RUN, "—", why, text_b)]
    if not _done(rdd) or not all(_done(c) for c in bases.values()):
        waiting = [methods.label(m) for m, c in {"rdd": rdd, **bases}.items() if not _done(c)]
        why = f"1-step FID of {', '.join(waiting)} pending"
        return [_claim(paper, "one_step_gain", PENDING, "—", why, text_a),
                _claim(paper, "one_step_gain", PENDING, "—", why, text_b)]
    best_name, best = min(bases.items(), key=lambda kv: kv[1]["fid_mean"])
    found = compare(rdd, best, replicates)
    gain = found["gain"]
    measured = (f"RDD {_fid(rdd)} vs {methods.label(best_name)} {_fid(best)}: "
                f"RDD {'lower' if gain >= 0 else 'higher'} by {abs(gain):.2f}")
    verdict_a = {"better": HOLDS, "worse": FAILS, "tie": INCONCLUSIVE}[found["outcome"]]
    detail_a = (f"orderings are comparable at any scale; {found['noise']}" + _caveat([found])
                + _provisional([rdd, best]))
    # The size of a gap is a statement at the paper's scale (50,000 samples); its direction is claim (a).
    if small_scale:
        verdict_b = UNTESTED_SCALE
        detail_b = (f"an FID gap at this sample count and dataset is not on the paper's scale "
                    f"(claimed {claimed}, at 50,000 samples)")
    elif found["outcome"] == "worse":
        verdict_b, detail_b = FAILS, "RDD's 1-step FID is not below the best baseline's"
    else:
        margin = found["margin"] or 0.0
        verdict_b = HOLDS if gain >= claimed - margin else FAILS
        detail_b = f"holds when the gain is at least {claimed} minus its noise margin ({margin:.2f})"
    return [_claim(paper, "one_step_gain", verdict_a, measured, detail_a, text_a),
            _claim(paper, "one_step_gain", verdict_b, f"gain {gain:.2f} FID", detail_b, text_b)]


def every_step_claim(summary, paper, replicates=None):
    """RDD's FID is lower than PD's and RCFD's at every step count where both have a model of their own
    (the shared chain's last model, 8 steps in the paper, is every method's, so it compares nothing)."""
    main = summary[(summary["ablation"] == "") & (summary["variant"] == "")]
    steps = sorted(int(s) for s in main.loc[main["method"].isin(["rdd", *BASELINES]), "steps"].unique())
    outcomes, pending, parts, used, compared = {}, [], [], [], []
    for s in steps:
        rdd = cell(summary, "rdd", s)
        line = []
        for base in BASELINES:
            other = cell(summary, base, s)
            if rdd is None or other is None:
                continue
            if not (_done(rdd) and _done(other)):
                pending.append(_steps(s))
                continue
            found = compare(rdd, other, replicates)
            outcomes[s, base] = found["outcome"]
            compared.append(found)
            used += [rdd, other]
            line.append(f"{methods.label(base)} {other['fid_mean']:.2f} ({found['outcome']}; {found['noise']})")
        if line:
            parts.append(f"{_steps(s)}: RDD {rdd['fid_mean']:.2f} vs " + ", ".join(line))
    measured = "; ".join(parts) or "—"
    compared_steps = sorted({str(s) for s, _ in outcomes}, key=int)
    worse = [f"{_steps(s)} vs {methods.label(b)}" for (s, b), o in outcomes.items() if o == "worse"]
    ties = [f"{_steps(s)} vs {methods.label(b)}" for (s, b), o in outcomes.items() if o == "tie"]
    if not steps or (not outcomes and not pending):
        verdict, detail = NOT_RUN, "this study has no RDD and baseline evaluations at a shared step count"
    elif worse:
        verdict, detail = FAILS, "RDD's FID is higher at " + ", ".join(worse)
    elif pending:
        verdict, detail = PENDING, "still pending: " + ", ".join(sorted(set(pending)))
    elif ties:
        verdict, detail = INCONCLUSIVE, "within the noise at " + ", ".join(ties)
    else:
        verdict, detail = HOLDS, f"RDD lower at every step count compared ({', '.join(compared_steps)})"
    if verdict in (HOLDS, INCONCLUSIVE):
        detail += _caveat(compared) + _provisional(used)
    return _claim(paper, "every_step_count", verdict, measured, detail)


def log_log_slope(xs, ys, level=bootstrap.LEVEL):
    """Least-squares slope of log(y) against log(x), and the half width of its t interval (None with
    fewer than 3 points): how far the points stray from one straight line, each batch measured once."""
    lx, ly = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    slope, intercept = np.polyfit(lx, ly, 1)
    if len(lx) < 3:
        return float(slope), None
    residual_var = float(np.sum((ly - (slope * lx + intercept)) ** 2)) / (len(lx) - 2)
    se = math.sqrt(residual_var / float(np.sum((lx - lx.mean()) ** 2)))
    return float(slope), bootstrap.t_quantile(len(lx) - 2, level) * se


def _slope_text(slope, half):
    return f"{slope:.2f}" + (f" [{slope - half:.2f}, {slope + half:.2f}]" if half is not None else "")


def memory_sweep(record, path):
    """(batches, IS-P2P peaks, M-P2P peaks) of a memory-benchmark record's batch sweep; None = skipped."""
    try:
        sweep = record["batch_sweep"]
        batches = [int(b) for b in sweep["batch"]]
        peaks = {kind: [case.get("peak_bytes") for case in sweep[kind]] for kind in ("is_p2p", "m_p2p")}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ReportInputError(f"memory benchmark record {path} is malformed ({type(exc).__name__}: {exc}); "
                               "see reports/README.md for its format") from exc
    if any(len(p) != len(batches) for p in peaks.values()):
        raise ReportInputError(f"memory benchmark record {path}: one result per batch size expected")
    return batches, peaks["is_p2p"], peaks["m_p2p"]


def memory_claim(entry, record, paper):
    """M-P2P's memory grows linearly in the batch: the 95% interval of the log-log slope of its peak memory
    within 1 ± 0.2."""
    if entry is None:
        return _claim(paper, "memory_linear", NOT_RUN, "—", MEMORY_HELP)
    if record is None:
        return _claim(paper, "memory_linear", PENDING, "—", f"memory benchmark record {entry.path} pending")
    batches, is_peaks, m_peaks = memory_sweep(record, entry.path)
    measured_m = [(b, p) for b, p in zip(batches, m_peaks) if p is not None and p > 0]
    measured_is = [(b, p) for b, p in zip(batches, is_peaks) if p is not None and p > 0]
    if len(measured_m) < 3:
        return _claim(paper, "memory_linear", NOT_RUN, f"{len(measured_m)} measured batch sizes",
                      "fewer than 3 measured batch sizes: no slope")
    slope_m, half_m = log_log_slope(*zip(*measured_m))
    is_text = (f"; IS-P2P slope {_slope_text(*log_log_slope(*zip(*measured_is)))} (quadratic would be 2)"
               if len(measured_is) >= 2 else "; IS-P2P: too few measured cases")
    device = record.get("device", "unknown device")
    measured = (f"M-P2P peak memory vs batch ({', '.join(str(b) for b, _ in measured_m)}) on {device}: "
                f"log-log slope {_slope_text(slope_m, half_m)}{is_text}")
    # The verdict takes the slope's whole 95% interval: inside 1 ± tolerance, or wholly outside it.
    low, high = slope_m - half_m, slope_m + half_m
    if 1 - MEMORY_SLOPE_TOLERANCE <= low and high <= 1 + MEMORY_SLOPE_TOLERANCE:
        verdict = HOLDS
    elif high < 1 - MEMORY_SLOPE_TOLERANCE or low > 1 + MEMORY_SLOPE_TOLERANCE:
        verdict = FAILS
    else:
        verdict = INCONCLUSIVE
    return _claim(paper, "memory_linear", verdict, measured,
                  f"linear means a log-log slope of 1 ± {MEMORY_SLOPE_TOLERANCE}; in brackets, the slope's 95% "
                  "interval from the points' scatter about one line, each batch size measured once "
                  f"(benchmark record {entry.path})")


def _speedup_verdict(low, high, claimed, small_scale, provisional):
    """Holds when even the lowest speed-up the noise allows reaches the claim; fails when even the
    highest does not (untested at small scale, whose teacher cannot show it); else inconclusive."""
    if low is not None and low >= claimed:
        return PENDING if provisional else HOLDS
    if high is not None and high < claimed:
        return UNTESTED_SCALE if small_scale else FAILS
    return UNTESTED_SCALE if small_scale else PENDING if provisional else INCONCLUSIVE


def speedup_claim(speedups, paper, small_scale):
    """The paper's 256x: DDIM steps needed to reach RDD's 1-step FID, over 1, judged with the range the
    FIDs' 95% intervals allow (rdd.report.summary._speedup_range) where the records have replicates."""
    claimed = paper.claim("speedup_over_ddim")["value"]
    row = next((r for r in speedups if r["method"] == "rdd" and r["steps"] == 1), None)
    if row is None:
        return _claim(paper, "speedup_over_ddim", NOT_RUN, "—", "this study has no 1-step RDD model")
    if row["state"] == "pending":
        return _claim(paper, "speedup_over_ddim", PENDING, "—", "RDD's 1-step FID pending")
    if row["state"] == "no_ddim":
        return _claim(paper, "speedup_over_ddim", NOT_RUN, "—", row["note"])
    noise = f" ({row['range_text']})" if row["range_text"] else ""
    if row["state"] == "reached":
        factor = row["nfe_speedup"]
        measured = f"DDIM needs {_steps(row['ddim_steps'])} (FID {row['ddim_fid']:.2f}) to reach RDD's 1-step FID " \
                   f"{row['fid']:.2f}: {factor:g}x fewer network evaluations{noise}"
        if row["time_speedup"] is not None:
            spread = row["time_speedup_range"]
            measured += f", {row['time_speedup']:.1f}x measured images/s" + \
                (f" ({spread[0]:.1f}x to {spread[1]:.1f}x over the benchmark's repeats)" if spread else "")
        low, high = row["nfe_speedup_range"] or (factor, factor)
        verdict = _speedup_verdict(low, high, claimed, small_scale, row["provisional"])
        context = "; measured with this study's small-scale teacher and students" if small_scale else ""
        return _claim(paper, "speedup_over_ddim", verdict, measured,
                      (row["note"] or f"claimed {claimed}x") + context)
    measured = row["note"] + noise
    if row["provisional"]:
        return _claim(paper, "speedup_over_ddim", PENDING, measured, "DDIM evaluations pending")
    ceiling = row["ddim_max_steps"] or 0
    low, _ = row["nfe_speedup_range"] or (None, None)
    if low is not None and low < claimed:
        # No DDIM mean reached the FID, but within the noise one may have, below the claimed factor.
        return _claim(paper, "speedup_over_ddim", UNTESTED_SCALE if small_scale else INCONCLUSIVE, measured,
                      f"within the 95% intervals the speed-up may be as low as {low:g}x, below the claimed "
                      f"{claimed}x")
    if ceiling >= claimed:
        return _claim(paper, "speedup_over_ddim", HOLDS, measured, f"speed-up above {ceiling}x")
    return _claim(paper, "speedup_over_ddim", UNTESTED_SCALE, measured,
                  f"the study's DDIM runs stop at {ceiling} steps; the speed-up is above {ceiling}x, "
                  f"the claim ({claimed}x) needs DDIM at {claimed}+ steps")
