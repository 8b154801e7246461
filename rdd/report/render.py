"""Write a study's tidy CSVs, its self-contained HTML report and summary sidecar; and the index page.

Only reads records: rebuilding after a template or plot change touches nothing upstream.
"""

import math
import os
from pathlib import Path

import jinja2

from rdd import layout
from rdd.io import read_json, write_bytes, write_json
from rdd.report.context import build_context
from rdd.report.errors import ReportInputError
from rdd.report.paper import DEFAULT_PATH, load_paper_values
from rdd.report.study import load_study
from rdd.report.tables import curves_table, metrics_table, speed_table, stages_table

TEMPLATES = Path(__file__).resolve().parent / "templates"


def duration(seconds):
    """Human-readable wall time."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "—"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def _missing(value):
    return value is None or (isinstance(value, float) and math.isnan(value))


def number(value, digits=2):
    """A number with fixed decimals, or an em dash for missing values."""
    return "—" if _missing(value) else f"{value:.{digits}f}"


def count(value):
    """A count that may be fractional (epochs of a run stopped mid-epoch) without trailing zeros: 10, 9.5."""
    return "—" if _missing(value) else f"{value:.6g}"


def _environment():
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["duration"] = duration
    env.filters["number"] = number
    env.filters["count"] = count
    return env


def study_tables(study):
    """The four tidy tables of a study (pending entries included as rows where they apply)."""
    return {"metrics": metrics_table(study.entries, study.records),
            "speed": speed_table(study.entries, study.records),
            "curves": curves_table(study.entries, study.csv_frames),
            "stages": stages_table(study.entries, study.records)}


def summary_record(context, report_path):
    """The small JSON the index page reads: study, scale, progress, headline FIDs, claim verdicts."""
    fid = context["main"]["tables"][0]
    headline = [{"method": row["label"], "steps": s, "fid": c["text"], "spread": c.get("spread", ""),
                 "ci": c.get("ci", "")}
                for row in fid["rows"] if row["key"] == "rdd" for s, c in zip(fid["steps"], row["cells"])
                if c["state"] != "absent"]  # RDD has no model at the shared chain's step count
    return {"study": context["study"], "title": context.get("title"), "dataset": context["dataset"],
            "report": Path(report_path).name,
            "scale_note": context["scale"]["note"] if context["scale"] else None,
            "progress": context["progress"], "headline": headline,
            "claims": [{"text": c["text"], "verdict": c["verdict"]} for c in context["claims"]]}


def build(manifest, tables_dir, out, paper_values=DEFAULT_PATH):
    """Tidy CSVs into `tables_dir`, the HTML report at `out` and `<out stem>.summary.json` beside it."""
    paper = load_paper_values(paper_values)
    study = load_study(manifest)
    tables = study_tables(study)
    for name, frame in tables.items():
        write_bytes(frame.to_csv(index=False).encode(), layout.table_file(tables_dir, name))
    context = build_context(study, tables, paper)
    html = _environment().get_template("report.html.j2").render(**context)
    out = Path(out)
    write_bytes(html.encode(), out)
    summary = summary_record(context, out)
    write_json(summary, layout.summary(out))
    return summary


# What the index page reads of a summary, and of which type (`title` and the headline's `ci` came later).
SUMMARY_FIELDS = {"study": str, "dataset": str, "scale_note": (str, type(None)), "progress": dict, "headline": list,
                  "claims": list}
# ... and of each entry of its collections (progress per kind, headline per step count, claims).
SUMMARY_ENTRIES = {"progress": {"done": int, "expected": int}, "headline": {"steps": int, "fid": str, "spread": str},
                   "claims": {"text": str, "verdict": str}}


def _wrong_entries(summary):
    """Each entry of the summary's collections that is not a mapping with SUMMARY_ENTRIES' fields, as
    'headline[0]' or "progress['metric']"."""
    for name, fields in SUMMARY_ENTRIES.items():
        entries = summary[name].items() if isinstance(summary[name], dict) else enumerate(summary[name])
        for key, entry in entries:
            if not isinstance(entry, dict) or not all(isinstance(entry.get(f), kind) for f, kind in fields.items()):
                yield f"{name}[{key!r}]"


def read_summary(report):
    """The summary `build` wrote beside `report`; ReportInputError naming it when it is absent, not JSON, or
    not a summary."""
    sidecar = Path(layout.summary(report))
    manifest, tables = (layout.path(p, study="<study>") for p in (layout.MANIFEST, layout.TABLES_DIR))
    build_it = f"python -m rdd.report build --manifest {manifest} --tables-dir {tables} --out {report}"
    if not sidecar.is_file():
        raise ReportInputError(f"{sidecar} not found: build the report first ({build_it})")
    try:
        summary = read_json(sidecar)
    except ValueError as exc:
        raise ReportInputError(f"{exc}; build the report again ({build_it})") from None
    if not isinstance(summary, dict):
        raise ReportInputError(f"{sidecar} holds a {type(summary).__name__}, not a report's summary; build the "
                               f"report again ({build_it})")
    if wrong := [name for name, kind in SUMMARY_FIELDS.items() if not isinstance(summary.get(name), kind)]:
        why = f"missing or of another type: {', '.join(wrong)}"
    elif wrong := list(_wrong_entries(summary)):
        why = f"entries not of its form: {', '.join(wrong[:3])}" + (f" and {len(wrong) - 3} more" if len(wrong) > 3
                                                                    else "")
    else:
        return summary
    raise ReportInputError(f"{sidecar} is not a summary written by `python -m rdd.report build` ({why}); build the "
                           f"report again ({build_it})")


def build_index(reports, out):
    """An index page linking every report, from the summary sidecars `build` wrote."""
    out, reports, seen = Path(out), [Path(r) for r in reports], {}
    for report in reports:
        if (same := seen.setdefault(report.resolve(), report)) is not report:
            raise ReportInputError(f"--reports names one report twice: {same} and {report}")
    studies = [{**read_summary(report), "href": os.path.relpath(report, out.parent)} for report in reports]
    html = _environment().get_template("index.html.j2").render(studies=studies)
    write_bytes(html.encode(), out)
    return studies
