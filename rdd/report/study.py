"""A study's manifest with every existing record read once (JSON, CSV or PNG bytes)."""

from dataclasses import dataclass, field

from rdd.report.errors import ReportInputError
from rdd.report.manifest import load_manifest

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class Study:
    """Manifest, entries, and the parsed content of the entries whose files exist."""

    manifest: dict
    entries: list
    records: dict = field(default_factory=dict)  # entry -> parsed JSON
    csv_frames: dict = field(default_factory=dict)  # entry -> DataFrame
    images: dict = field(default_factory=dict)  # entry -> PNG bytes

    def of_kind(self, kind):
        return [e for e in self.entries if e.kind == kind]

    def progress(self):
        """Per kind: how many of the expected files exist."""
        out = {}
        for entry in self.entries:
            counts = out.setdefault(entry.kind, {"done": 0, "expected": 0})
            counts["expected"] += 1
            counts["done"] += entry.exists
        return out


def _read_png(entry):
    data = entry.path.read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        raise ReportInputError(f"grid {entry.path} is not a PNG file")
    return data


def load_study(manifest_path):
    """Read the manifest and every record that exists; missing files stay pending."""
    manifest, entries = load_manifest(manifest_path)
    study = Study(manifest, entries)
    for entry in entries:
        if not entry.exists:
            continue
        if entry.kind == "curves":
            study.csv_frames[entry] = entry.read_csv()
        elif entry.kind == "grid":
            study.images[entry] = _read_png(entry)
        else:
            study.records[entry] = entry.read_json()
    return study
