"""Tidy tables from a study's records: metrics, speed, curves and stages (one row per record or point).

Entries whose file does not exist yet are kept as rows with status "pending",
so a report built mid-run shows what is missing instead of failing.
"""

import json

import pandas as pd

from rdd.records import METRIC_VALUES
from rdd.settings import DEFAULT_INCEPTION_INPUT, DEFAULT_ISC_SPLIT_ORDER
from rdd.report.errors import ReportInputError

LABEL_COLUMNS = ["method", "ablation", "variant", "steps", "seed", "replicate"]  # replicate: training replicate
# What identifies a metric's protocol apart from the seeds and steps of the cell.
PROTOCOL_COLUMNS = ["extractor", "inception_input", "weights_source", "weights_sha256", "reference_path",
                    "reference_sha256", "reference_dataset", "reference_split", "reference_num_images",
                    "num_generated", "kid_subset_size", "isc_splits"]
# How the images were sampled (network batch, float32 precision; both None for real images).
SAMPLING_COLUMNS = ["net_batch", "sampling_precision"]
METRIC_COLUMNS = [*LABEL_COLUMNS, "status", *METRIC_VALUES, *PROTOCOL_COLUMNS, "seed_first", "seed_last",
                  *SAMPLING_COLUMNS, "wall_seconds", "protocol", "path"]
SPEED_COLUMNS = [*LABEL_COLUMNS, "status", "nfe", "images_per_second", "images_per_second_low",
                 "images_per_second_high", "latency_per_batch_s", "batch_size", "repeats", "threads", "machine",
                 "git_commit", "git_dirty", "path"]
CURVE_COLUMNS = ["stage", "method", "ablation", "variant", "replicate", "round", "step", "term", "value"]
STAGE_COLUMNS = ["stage", "method", "ablation", "variant", "replicate", "round", "steps", "seed", "status", "seconds",
                 "final_loss", "final_loss_steps", "test_accuracy", "world_size", "machine", "git_commit", "git_dirty",
                 "path"]


def _get(record, dotted, entry, required=True):
    value = record
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            if required:
                raise ReportInputError(f"{entry.kind} record {entry.path} lacks '{dotted}'")
            return None
        value = value[part]
    return value


def _check_labels(entry, record):
    """A record whose own labels contradict its manifest entry means the workflow wired it wrongly."""
    labels = record.get("labels") or {}
    for key in ("method", "ablation", "variant", "steps", "seed", "replicate"):
        if key in labels and labels[key] != getattr(entry, key):
            raise ReportInputError(f"{entry.kind} record {entry.path} has {key}={labels[key]!r}, "
                                   f"its manifest entry says {getattr(entry, key)!r}")


def machine_label(machine):
    """A short description of the machine and device a record ran on."""
    if not machine:
        return "unknown machine"
    device = machine.get("device") or "?"
    cpu = ", ".join(filter(None, (machine.get("cpu_model"), machine.get("processor", "?"))))
    cpu += f" ({machine['cpu_capability']})" if machine.get("cpu_capability") else ""
    hardware = machine.get("gpu") or f"CPU {cpu}, {machine.get('cpu_threads', '?')} threads"
    return f"{hardware} ({device}) on {machine.get('host', '?')}"


def _labels(entry):
    labels = entry.labels()
    return {k: labels[k] for k in LABEL_COLUMNS}


def _metric_fields(entry, record):
    _check_labels(entry, record)
    reference = _get(record, "protocol.reference", entry)
    dataset = reference.get("dataset")
    return {
        **{k: _get(record, f"metrics.{k}", entry, required=False) for k in METRIC_VALUES},
        "fid": float(_get(record, "metrics.fid", entry)),
        "extractor": _get(record, "protocol.extractor", entry),
        # Records written before the choice existed fed torch-fidelity's input.
        "inception_input": _get(record, "protocol.inception_input", entry, required=False) or DEFAULT_INCEPTION_INPUT,
        "weights_source": _get(record, "protocol.weights_source", entry, required=False),
        "weights_sha256": _get(record, "protocol.weights_sha256", entry),
        "reference_path": reference.get("path"),
        "reference_sha256": reference.get("sha256"),
        "reference_dataset": json.dumps(dataset, sort_keys=True) if isinstance(dataset, dict) else dataset,
        "reference_split": reference.get("split"),
        "reference_num_images": reference.get("num_images"),
        "num_generated": _get(record, "protocol.num_generated", entry),
        "kid_subset_size": _get(record, "protocol.kid_subset_size", entry, required=False),
        "isc_splits": _isc_splits(_get(record, "protocol.settings.isc", entry, required=False)),
        "seed_first": _get(record, "protocol.seed_first", entry, required=False),
        "seed_last": _get(record, "protocol.seed_last", entry, required=False),
        **{k: _get(record, f"protocol.{k}", entry, required=False) for k in SAMPLING_COLUMNS},
        "wall_seconds": record.get("wall_seconds"),
    }


def _isc_splits(isc):
    """IS's splits and their order in words ("10, shuffled"), or None where the record has no IS. Records
    written before the choice existed shuffled."""
    if not isc:
        return None
    return f"{isc['splits']}, {isc.get('split_order', DEFAULT_ISC_SPLIT_ORDER)}"


def _frame(rows, columns):
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({c: "Int64" for c in ("steps", "seed", "replicate") if c in columns})


def metrics_table(entries, records):
    """One row per metric entry; `records` maps each existing entry to its parsed JSON."""
    rows = []
    for entry in entries:
        if entry.kind != "metric":
            continue
        row = {**_labels(entry), "status": "pending", "path": str(entry.path)}
        if entry in records:
            row.update(_metric_fields(entry, records[entry]), status="done")
        rows.append(row)
    # Records sharing extractor, input, weights, reference, sample count and IS splits share one protocol id.
    ids = {}
    for row in rows:
        if row["status"] == "done":
            key = tuple(str(row[c]) for c in PROTOCOL_COLUMNS)
            row["protocol"] = ids.setdefault(key, f"P{len(ids) + 1}")
    return _frame(rows, METRIC_COLUMNS)


def speed_table(entries, records):
    """One row per case of the speed benchmark (a model at a step count, timed alone on the machine):
    the median images/s over its repeats with their range, and the median latency of one batch."""
    rows = []
    for entry in entries:
        record = records.get(entry) if entry.kind == "speed_benchmark" else None
        if record is None:
            continue
        code = record.get("code") or {}
        for case in _get(record, "cases", entry):
            rows.append({
                "method": case["method"], "ablation": "", "variant": "", "steps": case["steps"], "seed": None,
                "replicate": 0,
                "status": "done", "nfe": case["steps"], "images_per_second": case["images_per_second"],
                "images_per_second_low": case["images_per_second_low"],
                "images_per_second_high": case["images_per_second_high"],
                "latency_per_batch_s": case["latency_per_batch_s"], "batch_size": record["batch_size"],
                "repeats": record["repeats"], "threads": record["threads"],
                "machine": machine_label(record.get("machine")), "git_commit": code.get("git_commit"),
                "git_dirty": code.get("git_dirty"), "path": str(entry.path)})
    return _frame(rows, SPEED_COLUMNS)


def curves_table(entries, csv_frames):
    """Training curves in long form: one row per (run, step, loss term)."""
    parts = []
    for entry in entries:
        if entry.kind != "curves" or entry not in csv_frames:
            continue
        frame = csv_frames[entry]
        if "step" not in frame.columns:
            raise ReportInputError(f"curves CSV {entry.path} has no 'step' column (columns: {list(frame.columns)})")
        # steps_averaged: a row's window (curves written before it existed lack it: one batch each)
        keys = [c for c in ("step", "steps_averaged") if c in frame.columns]
        long = frame.melt(id_vars=keys, var_name="term", value_name="value").dropna(subset=["value"])
        labels = entry.labels()
        for key in ("stage", "method", "ablation", "variant", "replicate", "round"):
            long[key] = labels[key]
        parts.append(long)
    if not parts:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    return pd.concat(parts, ignore_index=True)[CURVE_COLUMNS]


def stages_table(entries, records):
    """Wall time and provenance of every training, sampling and evaluation record."""
    rows = []
    for entry in entries:
        if entry.kind not in ("training", "samples", "metric"):
            continue
        labels = entry.labels()
        stage = {"samples": "sampling", "metric": "evaluation"}.get(entry.kind, labels["stage"] or "training")
        row = {**{k: labels[k] for k in ("method", "ablation", "variant", "replicate", "round", "steps", "seed")},
               "stage": stage, "status": "pending", "path": str(entry.path)}
        record = records.get(entry)
        if record is not None:
            code = record.get("code") or {}
            final = record.get("final_terms") or {}
            seconds = record.get("train_seconds_this_run", record.get("wall_seconds"))
            row.update(status="done", seconds=seconds, final_loss=final.get("loss"),
                       final_loss_steps=final.get("steps_averaged", 1) if final else None,
                       test_accuracy=record.get("test_accuracy"), world_size=record.get("world_size"),
                       machine=machine_label(record.get("machine")) if record.get("machine") else None,
                       git_commit=code.get("git_commit"), git_dirty=code.get("git_dirty"))
        rows.append(row)
    return _frame(rows, STAGE_COLUMNS)
