"""What each study trained: the released-vs-described behaviours of its rounds, and its classifier."""

from rdd import methods
from rdd.metrics.proportion import wilson_interval
from rdd.settings import RELEASED_VS_DESCRIBED


def _text(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _tag(key, value):
    _, released, described = RELEASED_VS_DESCRIBED[key]
    if value == released:
        return "released"
    return "paper's description" if value == described else "other"


def _cell(values):
    """One table cell from the distinct values a method's rounds used ([] when none ran yet)."""
    if not values:
        return {"text": "pending", "tag": "pending"}
    if values == ["not used"]:
        return {"text": "not used", "tag": "unused"}
    return {"text": ", ".join(v["text"] for v in values), "tag": "; ".join(sorted({v["tag"] for v in values}))}


def _round_records(study):
    """{method: [records of its main rounds that finished]}, the shared PD chain apart."""
    by_method = {}
    for entry in study.of_kind("training"):
        if entry.stage in ("round", "pd_chain") and entry.is_main and entry in study.records:
            method = "pd chain" if entry.stage == "pd_chain" else entry.method
            by_method.setdefault(method, []).append(study.records[entry])
    return by_method


def _distinct(values):
    out = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def behaviours(study):
    """Rows per released-vs-described behaviour, a column per method's main rounds."""
    records = _round_records(study)
    columns = [m for m in ("pd chain", *methods.method_names(distilled=True)) if m in records or m in _expected(study)]
    rows = []
    for key, (what, released, described) in RELEASED_VS_DESCRIBED.items():
        cells = []
        for method in columns:
            values = []
            for record in records.get(method, []):
                weights = record.get("loss_weights") or record["settings"].get("weights") or {}
                if (needs := methods.terms_reading(key)) and not any(weights.get(t) for t in needs):
                    values.append("not used")
                    continue
                value = record["settings"].get(key)
                values.append({"text": _text(value), "tag": _tag(key, value)})
            values = _distinct(values)
            cells.append(_cell([v for v in values if v != "not used"] or values))
        rows.append({"what": what, "key": key, "released": _text(released), "described": _text(described),
                     "cells": cells})
    rows.append(_groups_row(records, columns))
    rows.append(_noise_row(records, columns))
    rows.append(_head_norm_row(records, columns))
    return {"methods": columns, "rows": rows}


def _expected(study):
    return {("pd chain" if e.stage == "pd_chain" else e.method) for e in study.of_kind("training")
            if e.stage in ("round", "pd_chain") and e.is_main}


def _groups_row(records, methods):
    cells = []
    for method in methods:
        values = []
        for record in records.get(method, []):
            settings = record["settings"]
            weights = record.get("loss_weights") or settings.get("weights") or {}
            if not weights.get("is_p2p"):
                values.append("not used")
                continue
            per_process = settings["train"]["batch_size"] // max(1, record.get("world_size") or 1)
            group = settings.get("is_p2p_group_size") or per_process
            values.append({"text": f"{group} ({per_process} images per process x {record.get('world_size') or 1})",
                           "tag": "released" if group == 32 else "other"})
        values = _distinct(values)
        cells.append(_cell([v for v in values if v != "not used"] or values))
    return {"what": "images related per IS-P2P group", "key": "is_p2p_group_size",
            "released": "32 (one GPU's batch of 4 x 32)", "described": "the whole batch", "cells": cells}


def _noise_row(records, methods):
    cells = []
    for method in methods:
        values = []
        for record in records.get(method, []):
            train = record["settings"]["train"]
            group = train.get("noise_group_size")  # records older than the setting drew per sample
            # A draw per sample is one group the size of the batch: released wherever that is 32.
            distinct = group or train["batch_size"]
            values.append({"text": f"{distinct} for {train['batch_size']} images",
                           "tag": "released" if distinct == 32 else "paper's description" if group is None
                           else "other"})
        cells.append(_cell(_distinct(values)))
    return {"what": "distinct draws of time and noise per step", "key": "train.noise_group_size",
            "released": "32 (4 or 8 GPUs x 32 drew alike)", "described": "one per image", "cells": cells}


def _head_norm_row(records, methods):
    cells = []
    for method in methods:
        values = _distinct([_head_norm(r.get("m_p2p_head_norm")) if (r.get("loss_weights") or {}).get("m_p2p")
                            else "not used" for r in records.get(method, [])])
        cells.append(_cell([v for v in values if v != "not used"] or values))
    return {"what": "M-P2P head BatchNorm under data parallelism", "key": "m_p2p_sync_bn",
            "released": "SyncBatchNorm", "described": "not described", "cells": cells}


def _head_norm(recorded):
    if recorded is None:  # one process: its BatchNorm sees the whole batch, as SyncBatchNorm would
        return {"text": "one process", "tag": "released"}
    return {"text": recorded, "tag": "released" if recorded.startswith("SyncBatchNorm") else "other"}


def classifiers(study):
    """The feature classifier(s) of the study: recipe, epochs, selected epoch and test accuracy."""
    out = []
    authors = ((study.manifest.get("config") or {}).get("authors_checkpoints") or {}).get("classifier")
    if authors:
        out.append({"label": "authors' released classifier", "path": str(authors), "state": "external"})
    for entry in study.of_kind("training"):
        if entry.stage != "classifier":
            continue
        label = "study classifier" if entry.is_main else f"ablation {entry.ablation}: {entry.variant}"
        record = study.records.get(entry)
        if record is None:
            out.append({"label": label, "path": str(entry.path), "state": "pending"})
            continue
        settings, train = record["settings"], record["settings"]["train"]
        out.append({
            "label": label, "path": str(entry.path), "state": "done", "net": settings["net"]["name"],
            "recipe": (f"SGD lr {train['lr']} (momentum {train['momentum']}, weight decay {train['weight_decay']}), "
                       # records older than the setting dropped the partial batch
                       f"batch {train['batch_size']} (each epoch's last partial batch "
                       f"{'dropped' if train.get('drop_last', True) else 'kept'}), {train['lr_schedule']} schedule"
                       + (f" (x{train['lr_gamma']} at {', '.join(map(str, train['lr_milestones']))} of the run)"
                          if train["lr_schedule"] == "multistep" else "")
                       + f"; augmentation {', '.join(train['augment']) or 'none'}; inputs {train['input_norm']}"
                       # records older than the setting lack it
                       + (f"; BatchNorm: {record['batch_norm'] or 'one process'}" if "batch_norm" in record else "")),
            "epochs": record.get("epochs_run"), "selected_epoch": record.get("selected_epoch"),
            "test_accuracy": record.get("test_accuracy"), "test_images": record.get("test_images"),
            "test_accuracy_ci": _accuracy_interval(record), "selection_note": record.get("selection_note")})
    return out


def _accuracy_interval(record):
    """The 95% interval of the kept test accuracy over the test images (None for records without
    their count)."""
    accuracy, n = record.get("test_accuracy"), record.get("test_images")
    return None if accuracy is None or not n else wilson_interval(accuracy, n)


def training_protocol(study):
    """The template's training-protocol block."""
    config = study.manifest.get("config") or {}
    return {"settings_source": config.get("settings_source"), "behaviours": behaviours(study),
            "classifiers": classifiers(study)}
