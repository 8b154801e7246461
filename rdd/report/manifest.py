"""Read and check a study's manifest (written by the workflow) and the records it lists.

Relative paths in a manifest are relative to the working directory the
workflow runs in (the repository root); the report command must run there too.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from rdd import layout, methods, records
from rdd.io import file_problem, read_json
from rdd.report.errors import ReportInputError
from rdd.values import brief, is_int

METHODS = tuple(methods.method_names())
KINDS = (*records.KINDS, "grid", "curves")
# Kinds whose entries must name a method and a step count.
_LABELLED = ("metric", "samples", "grid")
MANIFEST_HELP = f"the Snakemake workflow writes it ({layout.path(layout.MANIFEST, study='<study>')})"
# Records are written atomically, so a damaged one was changed from outside; its job can write it again.
REWRITE = "remove it and run the workflow again: the job that writes it runs again"


@dataclass(frozen=True)
class Entry:
    """One artefact the study is expected to produce, with its labels."""

    kind: str
    path: Path
    method: str | None = None
    ablation: str | None = None
    variant: str | None = None
    steps: int | None = None
    seed: int | None = None
    round: str | None = None
    stage: str | None = None
    replicate: int = 0  # training replicate of a method's rounds (trained with seed + replicate)

    @property
    def exists(self):
        return self.path.is_file()

    @property
    def is_main(self):
        """True for the paper's main rows (no ablation)."""
        return self.ablation is None and self.variant is None

    def labels(self):
        """The entry's labels as a flat dict (missing ablation/variant as "")."""
        return {"method": self.method or "", "ablation": self.ablation or "", "variant": self.variant or "",
                "steps": self.steps, "seed": self.seed, "round": self.round or "", "stage": self.stage or "",
                "replicate": self.replicate}

    def read_json(self):
        """The record this entry points at; a parse failure or a record of another kind names the file."""
        try:
            record = read_json(self.path)
        except ValueError as exc:
            raise ReportInputError(f"{self.kind} record {self.path}: {exc}; {REWRITE}") from exc
        if not isinstance(record, dict) or record.get("kind") != self.kind:
            found = record.get("kind") if isinstance(record, dict) else type(record).__name__
            raise ReportInputError(f"{self.path} holds a record of kind {found!r}, its manifest entry expects "
                                   f"{self.kind!r} (written by rdd.records); {REWRITE}")
        return record

    def read_csv(self):
        try:
            return pd.read_csv(self.path)
        except Exception as exc:  # empty file, ragged rows, binary junk
            raise ReportInputError(f"cannot read {self.kind} CSV {self.path}: {exc}") from exc


def _int_or_none(value, where):
    if value is None:
        return None
    if not is_int(value):
        raise ReportInputError(f"{where} must be an integer, got {brief(value)}")
    return value


def _entry(raw, index, manifest_path, ablations):
    where = f"{manifest_path}: entries[{index}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("path"), str):
        raise ReportInputError(f"{where} must be an object with a string 'path'")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ReportInputError(f"{where} has kind {kind!r}; known kinds: {', '.join(KINDS)}")
    entry = Entry(kind=kind, path=Path(raw["path"]), method=raw.get("method"),
                  ablation=raw.get("ablation"), variant=raw.get("variant"),
                  steps=_int_or_none(raw.get("steps"), f"{where}.steps"),
                  seed=_int_or_none(raw.get("seed"), f"{where}.seed"),
                  round=None if raw.get("round") is None else str(raw["round"]), stage=raw.get("stage"),
                  replicate=_int_or_none(raw.get("replicate"), f"{where}.replicate") or 0)
    if kind in _LABELLED:
        if entry.method not in METHODS:
            raise ReportInputError(f"{where} ({kind}) has method {entry.method!r}; expected one of {METHODS}")
        lowest = 0 if entry.method in methods.floor_names() else 1  # real images take 0 network evaluations
        if entry.steps is None or entry.steps < lowest:
            raise ReportInputError(f"{where} ({kind}) needs 'steps' of at least {lowest}")
        if kind != "grid" and entry.seed is None:
            raise ReportInputError(f"{where} ({kind}) needs a 'seed'")
    if entry.method is not None and entry.method not in METHODS:
        raise ReportInputError(f"{where} has method {entry.method!r}; expected one of {METHODS}")
    if entry.ablation is not None:
        variants = ablations.get(entry.ablation, {}).get("variants")
        if variants is None:
            raise ReportInputError(f"{where} names ablation {entry.ablation!r}, which manifest['ablations'] lacks")
        if entry.variant not in variants:
            raise ReportInputError(f"{where} names variant {entry.variant!r}, not a variant of {entry.ablation!r}")
        labelled_as = variants[entry.variant]["labelled_as"]
        if kind in _LABELLED and entry.method != labelled_as:
            raise ReportInputError(f"{where} ({kind}) has method {entry.method!r}, but the entries of "
                                   f"{entry.ablation!r}: {entry.variant!r} are labelled {labelled_as!r}")
    elif entry.variant is not None:
        raise ReportInputError(f"{where} names a variant without an ablation")
    return entry


def load_manifest(path):
    """The manifest dict and its entries; missing or malformed input raises ReportInputError."""
    path = Path(path)
    if problem := file_problem(path):
        raise ReportInputError(f"manifest {problem}: {path}; {MANIFEST_HELP}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ReportInputError(f"cannot parse manifest {path}: {exc}") from exc
    if not isinstance(manifest, dict):
        raise ReportInputError(f"manifest {path} must hold a JSON object")
    for key in ("study", "dataset", "entries"):
        if key not in manifest:
            raise ReportInputError(f"manifest {path} lacks '{key}'")
    if not isinstance(manifest["entries"], list):
        raise ReportInputError(f"manifest {path}: 'entries' must be a list")
    manifest.setdefault("scale_note", None)
    manifest.setdefault("paper_key", None)
    manifest.setdefault("config", {})
    ablations = manifest.setdefault("ablations", {}) or {}
    if not isinstance(ablations, dict) or not all(
            isinstance(a, dict) and isinstance(a.get("method"), str) and isinstance(a.get("variants"), dict)
            and all(isinstance(v, dict) and v.get("labelled_as") in METHODS for v in a["variants"].values())
            for a in ablations.values()):
        raise ReportInputError(f"manifest {path}: 'ablations' must map names to {{'description', 'method', "
                               f"'variants'}}, each variant naming the method its entries are labelled with "
                               f"('labelled_as': one of {METHODS})")
    entries = [_entry(raw, i, path, ablations) for i, raw in enumerate(manifest["entries"])]
    seen = {}
    for i, entry in enumerate(entries):
        key = (entry.kind, tuple(entry.labels().items()))
        if key in seen and entry.kind != "reference":
            raise ReportInputError(f"manifest {path}: entries[{seen[key]}] and entries[{i}] carry the same labels")
        seen[key] = i
    return manifest, entries
