"""Everything the report template shows, computed from a study's tidy tables."""

import json
from collections import Counter

import pandas as pd

from rdd import methods
from rdd.data.registry import IMAGE_IDENTITY
from rdd.report import claims, plots
from rdd.report.training_protocol import training_protocol
from rdd.report.summary import (METRICS, cell, comparison_table, ddim_speedups, format_cell, speed_summary,
                                summarize)
from rdd.report.tables import PROTOCOL_COLUMNS, machine_label

MAX_MAIN_STEPS = 8  # the paper's columns are 1, 2, 4, 8 steps


def _main(frame):
    return frame[(frame["ablation"] == "") & (frame["variant"] == "")]


def main_steps(metrics):
    """The main table's columns: the distilled models' step counts (DDIM's up to 8 if there are none;
    the real-data row's 0 steps is no column, it stands at every one)."""
    main = _main(metrics)
    steps = main.loc[main["method"].isin(methods.method_names(distilled=True)), "steps"]
    if steps.empty:
        steps = main.loc[main["method"].isin(methods.method_names(models=True))
                         & (main["steps"] <= MAX_MAIN_STEPS), "steps"]
    return sorted(int(s) for s in steps.unique())


def _rows(metrics):
    present = set(_main(metrics)["method"])
    return [(m, methods.label(m), m, "", "") for m in methods.method_names(models=True) if m in present]


# What a real-data row of fewer images than the models' means, by metric.
FEWER_REAL_IMAGES = {
    "fid": "FID is biased upward more at fewer images, so a perfect generator would score lower than this "
           "at {asked:,}",
    "kid": "KID is unbiased at any N, so only its interval is wider",
    "is": "IS from fewer images",
}


def floor_row(summary, manifest, metric):
    """The real-data row of a table: held-out real images at the models' sample count (None without it)."""
    for name in methods.floor_names():
        row = cell(summary, name, 0)
        if row is not None:
            evaluate = (manifest.get("config") or {}).get("evaluate") or {}
            reference = evaluate.get("reference") or {}
            split = methods.HELD_OUT_SPLIT.get(reference.get("split", "train"))
            sizes = ", ".join(f"{n:,}" for n in row["num_generated"])
            asked = evaluate.get("num_samples")
            # A split smaller than the models' sample count (CIFAR-10's 10,000 test images against
            # 50,000 samples) gives a floor at fewer images, where FID's upward bias is larger.
            fewer = ""
            if asked and row["num_generated"] and max(row["num_generated"]) < asked:
                fewer = (f"at N = {sizes}, fewer than the models' {asked:,}: "
                         + FEWER_REAL_IMAGES[metric].format(asked=asked))
            return {"key": name, "label": methods.label(name) + (f", {split} split" if split else "")
                    + (f", N = {sizes}" if sizes else ""),
                    "cell": {**format_cell(row, metric), "best": False, "best_so_far": False},
                    "help": methods.METHODS[name].help, "fewer_images": fewer}
    return None


def _labels_text(entry):
    labels = entry.labels()
    parts = [labels["stage"], labels["method"], labels["ablation"], labels["variant"],
             f"{labels['steps']} steps" if labels["steps"] is not None else "",
             f"seed {labels['seed']}" if labels["seed"] is not None else "",
             f"training replicate {labels['replicate']}" if labels["replicate"] else "",
             f"round {labels['round']}" if labels["round"] else ""]
    return " · ".join(p for p in parts if p)


def scale_banner(manifest, metrics, summary):
    """The first lines of a small-scale report: what the run is and how far it compares with the paper."""
    if not manifest.get("scale_note"):
        return None
    counts = sorted({int(n) for n in metrics["num_generated"].dropna()})
    samples = (f"{', '.join(map(str, counts))} generated images per evaluation" if counts
               else "the sample count of this study (no evaluation has finished yet)")
    floor = floor_row(summary, manifest, "fid")
    floor_fid = floor["cell"]["text"] if floor and floor["cell"]["state"] in ("done", "partial") else None
    return {"note": manifest["scale_note"], "samples": samples, "floor_fid": floor_fid,
            "floor_label": floor["label"] if floor else None}


def main_tables(metrics, summary, paper, paper_key, manifest):
    """FID, KID and IS tables (rows DDIM, PD, RCFD, RDD; columns steps) with the paper's values beside."""
    steps, rows = main_steps(metrics), _rows(metrics)
    tables = [comparison_table(summary, rows, steps, "fid", paper, paper_key),
              comparison_table(summary, rows, steps, "kid", paper, paper_key)]
    is_unavailable = None
    if (summary["is_n"] > 0).any():
        tables.append(comparison_table(summary, rows, steps, "is", paper, paper_key))
    else:
        reasons = summary["is_reason"].dropna()
        is_unavailable = reasons.iloc[0] if len(reasons) else "no evaluation has finished yet"
    for table in tables:
        table["floor"] = floor_row(summary, manifest, table["metric"])
    caveats = sorted({c["paper"].caveat for t in tables for r in t["rows"] for c in r["cells"]
                      if c.get("paper") is not None and c["paper"].caveat})
    ddim = _main(summary)
    extra = sorted(int(s) for s in ddim.loc[(ddim["method"] == "ddim") & ~ddim["steps"].isin(steps), "steps"])
    ddim_more = (comparison_table(summary, [("ddim", methods.label("ddim"), "ddim", "", "")], extra, "fid")
                 if extra else None)
    return {"tables": tables, "is_unavailable": is_unavailable, "caveats": caveats, "ddim_more": ddim_more}


MAIN_RUN = "__main__"  # row key of an ablation's reference row (cannot clash with a variant name)


def ablation_tables(manifest, metrics, summary, sampling=None):
    """One table per ablation: each variant against the ablated method's main run, FID and KID, each
    difference with its interval from the records' bootstrap replicates (`sampling`, as
    `sampling_replicates` returns them)."""
    out = []
    for name, ablation in (manifest.get("ablations") or {}).items():
        method = ablation["method"]
        part = metrics[metrics["ablation"] == name]
        steps = sorted(int(s) for s in part["steps"].unique())
        reference = f"{methods.label(method)} (main run)"
        rows = [(MAIN_RUN, reference, method, "", "")] + [
            (v, v, spec["labelled_as"], name, v) for v, spec in ablation["variants"].items()]
        out.append({"name": name, "description": ablation.get("description", ""), "reference": reference,
                    "variants": [{"name": v, "description": spec.get("description", ""),
                                  "changes": ", ".join(f"{k}: {json.dumps(c)}"
                                                       for k, c in (spec.get("changes") or {}).items()),
                                  "same_as": methods.label(spec.get("same_as")),
                                  "unread": ", ".join(spec.get("unread") or [])}
                                 for v, spec in ablation["variants"].items()],
                    "tables": [comparison_table(summary, rows, steps, m, reference=MAIN_RUN,
                                                replicates=(sampling or {}).get(m)) for m in ("fid", "kid")]
                    if steps else []})
    return out


def _plain(value):
    """Whole floats (pandas' NaN-capable columns) as integers, missing values as a dash."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "—"
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _reference_source(sha256, refstats):
    for entry, record in refstats.items():
        if record.get("sha256") == sha256:
            # The reference record points at the cached statistics and holds their own record.
            return f"{record['record'].get('source', 'source not recorded')}, record {entry.path}"
    return "no reference-statistics record with this sha256 in the manifest"


def precision_text(precision):
    """A recorded sampling precision in words (records older than the setting lack it)."""
    return {"fp32": "fp32", "tf32": "TF32"}.get(precision, "precision not recorded")


def _sampling_text(row):
    """How a metric row's images were made: the network's batch and precision, or real images."""
    if pd.isna(row["net_batch"]):
        return "real images (no network)" if row["method"] == "real" else "not recorded"
    return f"network batch {int(row['net_batch'])}, {precision_text(row['sampling_precision'])}"


def dataset_text(dataset):
    """A reference's dataset identity (the JSON of the tables) in words: "cifar10, 32x32, 3 channels,
    resize: resize", then any other key of it (a folder's root and listing); a user-supplied reference's
    name, or anything unexpected, as it is."""
    try:
        spec = json.loads(dataset)
    except (TypeError, ValueError):
        return dataset
    if not isinstance(spec, dict) or not set(IMAGE_IDENTITY) <= set(spec):
        return dataset
    size, channels = spec.pop("image_size"), spec.pop("channels")
    words = [spec.pop("name"), f"{size}x{size}", f"{channels} channel{'s' * (channels != 1)}",
             f"resize: {spec.pop('resize')}"]
    return ", ".join(words + [f"{key}: {value}" for key, value in spec.items()])


def _steps_text(group):
    """The step counts of a protocol's records; the real-data row's 0 steps in words."""
    floor = group["method"].isin(methods.floor_names())
    steps = [str(s) for s in sorted(group.loc[~floor, "steps"].unique())]
    return "; ".join(filter(None, [", ".join(steps), "real images" if floor.any() else ""]))


def protocols(metrics, refstats):
    """One row per distinct metric protocol (extractor, input, weights, reference and its source, sample
    count, IS splits)."""
    done = metrics[metrics["status"] == "done"]
    out = []
    for pid, group in done.groupby("protocol", sort=False):
        first = group.iloc[0]
        out.append({"id": pid, **{c: _plain(first[c]) for c in PROTOCOL_COLUMNS}, "records": len(group),
                    "reference_source": _reference_source(first["reference_sha256"], refstats),
                    "reference_dataset_text": dataset_text(first["reference_dataset"]),
                    "steps": _steps_text(group),
                    "sampling": "; ".join(sorted({_sampling_text(row) for _, row in group.iterrows()})),
                    "seeds": ", ".join(sorted({f"{int(a)}–{int(b)}" for a, b in
                                               zip(group["seed_first"], group["seed_last"])
                                               if pd.notna(a) and pd.notna(b)})) or "not recorded"})
    return out


def _grid_cells(study, ablation, variant, method_rows, seed):
    # Evaluation seed `seed` of the first training replicate: the other replicates sampled the same
    # noise with a retrained model. (A grid entry without a seed comes from an older manifest.)
    samples = {(e.method, e.steps): study.records.get(e) for e in study.of_kind("samples")
               if (e.ablation or "") == ablation and (e.variant or "") == variant and e.seed == seed
               and e.replicate == 0}
    grids = {(e.method, e.steps): e for e in study.of_kind("grid")
             if (e.ablation or "") == ablation and (e.variant or "") == variant and e.seed in (seed, None)
             and e.replicate == 0}
    steps = sorted({s for _, s in grids})
    rows, first_seeds = [], set()
    for method, label in method_rows:
        cells = []
        for s in steps:
            entry = grids.get((method, s))
            if entry is None:
                cells.append({"state": "absent"})
            elif entry in study.images:
                record = samples.get((method, s))
                if record is not None:
                    first_seeds.add(record.get("seed_first"))
                cells.append({"state": "done", "uri": plots.png_data_uri(study.images[entry]),
                              "alt": f"{label}, {s} steps, samples", "path": str(entry.path)})
            else:
                cells.append({"state": "pending", "path": str(entry.path)})
        if any(c["state"] != "absent" for c in cells):
            rows.append({"label": label, "cells": cells})
    return {"steps": steps, "rows": rows, "first_seeds": sorted(first_seeds, key=str)}


def sample_grids(study):
    """Grids per method and steps (main rows), then per ablation variant: every one of the study's first
    evaluation seed, so that the same initial noise stands at the same place in each."""
    seed = min((e.seed for e in study.of_kind("grid") if e.seed is not None), default=0)
    main = _grid_cells(study, "", "", [(m, methods.label(m)) for m in methods.method_names(models=True)], seed)
    ablations = []
    for name, ablation in (study.manifest.get("ablations") or {}).items():
        for variant, spec in ablation["variants"].items():
            grid = _grid_cells(study, name, variant, [(spec["labelled_as"], f"{name}: {variant}")], seed)
            if grid["rows"]:
                ablations.append(grid)
    return {"main": main, "ablations": ablations, "seed": seed}


def chain_end(manifest):
    """The step count of the shared PD chain's last model, where every method's rounds start; None
    when the study has no chain (shared_steps = T_base: the rounds start from the teacher)."""
    config = manifest.get("config") or {}
    shared_steps = config.get("shared_steps")
    return shared_steps if shared_steps != config.get("T_base") else None


def _lineage_title(stage, method, ablation, variant, shared_steps):
    chain = f"Shared PD chain (base teacher down to {shared_steps} steps)" if shared_steps else "Shared PD chain"
    name = {"teacher": "Base teacher", "classifier": "Feature classifier", "pd_chain": chain}.get(stage)
    if name is None:
        name = f"{methods.label(method)} rounds" if method else (stage or "Training run")
    return name + (f" · ablation {ablation}: {variant}" if ablation else "")


def _replicate_label(replicate):
    """How the report names a training replicate (trained with the study's seed + replicate)."""
    return f"training replicate {replicate} (seed + {replicate})" if replicate else "training replicate 0 (seed)"


def training_curves(study, curves):
    """One figure per run lineage (stage, method, ablation, variant), panels per round and loss term, one
    line per training replicate. A variant that trains exactly like an earlier lineage (the same curve
    files: its models stand in) names that figure instead of drawing it again."""
    shared_steps = chain_end(study.manifest)
    lineages = {}
    for entry in study.of_kind("curves"):
        labels = entry.labels()
        key = (labels["stage"], labels["method"], labels["ablation"], labels["variant"])
        lineages.setdefault(key, []).append(entry)
    out, drawn = [], {}
    for key, entries in lineages.items():
        stage, method, ablation, variant = key
        title = _lineage_title(stage, method, ablation, variant, shared_steps)
        paths = frozenset(e.path for e in entries)
        if paths in drawn:
            out.append({"title": title, "same_as": drawn[paths], "uri": None, "pending": [], "replicates": []})
            continue
        drawn[paths] = title
        part = curves[(curves["stage"] == stage) & (curves["method"] == method) & (curves["ablation"] == ablation)
                      & (curves["variant"] == variant)]
        replicates = sorted({e.replicate for e in entries})
        named = len(replicates) > 1  # which replicate a pending round belongs to
        pending = [(e.labels()["round"] or str(e.path)) + (f" ({_replicate_label(e.replicate)})" if named else "")
                   for e in entries if not e.exists]
        out.append({"title": title, "same_as": None, "pending": pending, "terms": sorted(set(part["term"])),
                    "uri": plots.training_curves(part, {r: _replicate_label(r) for r in replicates}),
                    "replicates": [_replicate_label(r) for r in replicates] if named else []})
    return out


def _versions(study):
    codes, packages, machines = Counter(), {}, Counter()
    for entry, record in study.records.items():
        code = record.get("code")
        if isinstance(code, dict):
            codes[(code.get("git_commit"), code.get("git_dirty"))] += 1
        for name, version in (record.get("packages") or {}).items():
            # torch_fidelity and torch-fidelity are one package (PEP 503 names).
            packages.setdefault(name.lower().replace("_", "-"), Counter())[str(version)] += 1
        if isinstance(record.get("machine"), dict):
            machines[machine_label(record["machine"])] += 1
    return {
        "codes": [{"commit": c or "unknown (not a git checkout)", "dirty": d, "records": n}
                  for (c, d), n in codes.most_common()],
        "packages": [{"name": k, "versions": ", ".join(f"{v} ({n} records)" if len(c) > 1 else v
                                                        for v, n in c.most_common()), "mixed": len(c) > 1}
                     for k, c in sorted(packages.items())],
        "machines": [{"label": m, "records": n} for m, n in machines.most_common()],
    }


STAGE_ORDER = ("teacher", "classifier", "pd_chain", "round", "training", "sampling", "evaluation")


def _stage_totals(stages):
    out = []
    groups = sorted(stages.groupby("stage", sort=False), key=lambda kv: (
        STAGE_ORDER.index(kv[0]) if kv[0] in STAGE_ORDER else len(STAGE_ORDER), kv[0]))
    for stage, group in groups:
        # An ablation variant that reuses a main run lists that run's records again: count them once.
        group = group.drop_duplicates("path")
        done = group[group["status"] == "done"]
        out.append({"stage": stage, "done": len(done), "expected": len(group),
                    "seconds": float(pd.to_numeric(done["seconds"], errors="coerce").sum())})
    return out


def provenance(study, tables):
    """Config, code versions, packages, machines, wall times, metric protocols, reference statistics."""
    stages = tables["stages"]
    training = stages[~stages["stage"].isin(["sampling", "evaluation"])]
    ref_records = {e: study.records[e] for e in study.of_kind("reference") if e in study.records}
    refstats = [{"path": str(e.path), "record": json.dumps(r, indent=2, sort_keys=True)} for e, r in ref_records.items()]
    return {"config": json.dumps(study.manifest.get("config") or {}, indent=2, sort_keys=True),
            **_versions(study), "stage_totals": _stage_totals(stages),
            "training": training.to_dict("records"), "protocols": protocols(tables["metrics"], ref_records),
            "refstats": refstats,
            "refstats_pending": [str(e.path) for e in study.of_kind("reference") if not e.exists]}


def _speed_cell(r):
    if r is None or not r["n_done"]:
        return {"state": "absent"}
    return {"state": "done", "ips": f"{r['images_per_second']:.1f}",
            "spread": f"[{r['images_per_second_low']:.1f}, {r['images_per_second_high']:.1f}]",
            "latency": f"{r['latency_per_batch_s']:.3f} s" if pd.notna(r["latency_per_batch_s"]) else "—",
            "batch": r["batch_size"]}


def speed_by_steps(speed_sum):
    """Measured speed as rows (methods, then ablation variants) by columns (steps)."""
    steps = sorted(int(s) for s in speed_sum["steps"].unique())
    by_cell = {(r["method"], r["ablation"], r["variant"], int(r["steps"])): r for r in speed_sum.to_dict("records")}
    keys = sorted({k[:3] for k in by_cell}, key=lambda k: (k[1] != "", methods.method_names().index(k[0]), k[1], k[2]))
    rows = [{"label": methods.label(m) + (f" · {a}: {v}" if a else ""),
             "cells": [_speed_cell(by_cell.get((m, a, v, s))) for s in steps]} for m, a, v in keys]
    machines = sorted({m for text in speed_sum["machine"] if text for m in text.split("; ")})
    return {"steps": steps, "rows": rows, "machines": machines}


def speed_protocol(study):
    """How the speed benchmark measured (None when the study has none; 'pending' until it ran)."""
    entry = next(iter(study.of_kind("speed_benchmark")), None)
    if entry is None:
        return None
    record = study.records.get(entry)
    if record is None:
        return {"state": "pending", "path": str(entry.path)}
    # Records from before timings were sized (no min_seconds) sampled each batch once per timing.
    batches = [case.get("batches_per_timing", 1) for case in record["cases"]] or [1]
    # The benchmark's own control: every model at one step count runs the same network as often.
    rates = {}
    for case in record["cases"]:
        rates.setdefault(case["steps"], []).append(case["images_per_second"])
    spreads = [(max(r) / min(r) - 1, steps) for steps, r in rates.items() if len(r) > 1 and min(r) > 0]
    disagreement = max(spreads) if spreads else None
    return {"state": "done", "path": str(entry.path), "repeats": record["repeats"], "threads": record["threads"],
            "batch_size": record["batch_size"], "net_batch": record["net_batch"],
            "precision": precision_text(record.get("precision")), "device": record["device"],
            "min_seconds": record.get("min_seconds", 0), "batches": (min(batches), max(batches)),
            "disagreement": disagreement and {"percent": 100 * disagreement[0], "steps": disagreement[1]}}


def _paper_points(paper, paper_key, small_scale):
    """Published FIDs to draw beside ours: only at paper scale (absolute values are comparable there)."""
    dataset = paper.dataset(paper_key)
    if dataset is None or small_scale:
        return None
    points = {}
    for v in dataset.get("values", []):
        if v["metric"] == "fid":
            points.setdefault(v["method"], []).append((int(v["steps"]), float(v["value"])))
    return points or None


def sampling_replicates(study):
    """{metric: {(method, ablation, variant, steps): {(training replicate, image seed range): (value,
    bootstrap replicates)}}} of every metric record that holds its replicates: the cells' intervals over
    training seeds and the claims' intervals of differences."""
    out = {metric: {} for metric in METRICS}
    for entry in study.of_kind("metric"):
        record = study.records.get(entry)
        settings = ((record or {}).get("protocol", {}).get("settings") or {})
        # The value is named in a record's "metrics" as in the metrics table; rdd.metrics.scores keeps
        # its replicates in the settings block <metric>_interval.
        for metric, (value, *_) in METRICS.items():
            reps = (settings.get(f"{metric}_interval") or {}).get(f"{metric}_replicates")
            if reps is not None and record["metrics"].get(value) is not None:
                protocol = record["protocol"]
                cell = (entry.method, entry.ablation or "", entry.variant or "", entry.steps)
                evaluation = (entry.replicate, (protocol["seed_first"], protocol["seed_last"]))
                out[metric].setdefault(cell, {})[evaluation] = (record["metrics"][value], reps)
    return out


def build_context(study, tables, paper):
    """The full template context of one study's report."""
    manifest = study.manifest
    metrics, speed = tables["metrics"], tables["speed"]
    sampling = sampling_replicates(study)
    summary = summarize(metrics, sampling)
    small_scale = bool(manifest.get("scale_note"))
    paper_key = manifest.get("paper_key")
    speed_sum = speed_summary(speed)
    timing = speed_protocol(study)
    speedups = ddim_speedups(summary, speed_sum, sampling["fid"], speed_benchmark=timing is not None)
    memory = next(iter(study.of_kind("memory_benchmark")), None)
    claim_rows = [*claims.one_step_claims(summary, paper, small_scale, sampling["fid"]),
                  claims.every_step_claim(summary, paper, sampling["fid"]),
                  claims.memory_claim(memory, study.records.get(memory), paper),
                  claims.speedup_claim(speedups, paper, small_scale)]
    dataset = paper.dataset(paper_key)
    return {
        "study": manifest["study"], "title": manifest.get("title"), "dataset": manifest["dataset"],
        "paper_key": paper_key,
        "paper_dataset": dataset["name"] if dataset else None,
        "paper_protocol": dataset["protocol"] if dataset else None,
        "scale": scale_banner(manifest, metrics, summary), "progress": study.progress(),
        "pending": [{"kind": e.kind, "labels": _labels_text(e), "path": str(e.path)}
                    for e in study.entries if not e.exists],
        "main": main_tables(metrics, summary, paper, paper_key, manifest),
        "shared_steps": chain_end(manifest),
        "claims": claim_rows,
        "quality_plot": plots.quality_vs_cost(metrics, _paper_points(paper, paper_key, small_scale)),
        "speed_plot": plots.speed_plot(speed),
        "speed": speed_by_steps(speed_sum), "speed_protocol": timing, "speedups": speedups,
        "ablations": ablation_tables(manifest, metrics, summary, sampling),
        "grids": sample_grids(study),
        "curves": training_curves(study, tables["curves"]),
        "provenance": provenance(study, tables),
        "training_protocol": training_protocol(study),
    }
