"""The paper figures we can cite (reports/paper_values.yaml), looked up per method, steps and metric."""

from dataclasses import dataclass
from pathlib import Path

from rdd import io
from rdd.report.manifest import ReportInputError

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "reports" / "paper_values.yaml"
NOT_PUBLISHED = "not published"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class PaperCell:
    """One paper figure, or why there is none."""

    value: float | None
    status: str  # "published", "unknown" or "not published"
    note: str  # the source's citation, or the reason there is no value
    source_short: str | None = None
    url: str | None = None
    caveat: str | None = None

    @property
    def text(self):
        return f"{self.value:.2f}" if self.value is not None else self.status


class PaperValues:
    """Lookup of cited figures; anything not listed is 'unknown' (or 'not published' without a paper key)."""

    def __init__(self, data, path):
        try:
            self.sources = data["sources"]
            self.datasets = data["datasets"]
            self.claims = data["claims"]
            self._values = {}
            for key, dataset in self.datasets.items():
                for v in dataset.get("values", []):
                    if v["source"] not in self.sources:
                        raise ReportInputError(f"{path}: value {v} cites unknown source {v['source']!r}")
                    self._values[(key, v["method"], int(v["steps"]), v["metric"])] = v
        except (KeyError, TypeError) as exc:
            raise ReportInputError(f"{path}: malformed paper values ({type(exc).__name__}: {exc})") from exc
        self.path = path

    def dataset(self, paper_key):
        if paper_key is None:
            return None
        if paper_key not in self.datasets:
            raise ReportInputError(f"paper_key {paper_key!r} is not a dataset of {self.path} "
                                   f"(known: {', '.join(self.datasets)})")
        return self.datasets[paper_key]

    def lookup(self, paper_key, method, steps, metric):
        """The paper's value for our (method, steps, metric) cell."""
        dataset = self.dataset(paper_key)
        if dataset is None:
            return PaperCell(None, NOT_PUBLISHED, "no paper figures apply to this study's dataset")
        value = self._values.get((paper_key, method, int(steps), metric))
        if value is None:
            return PaperCell(None, UNKNOWN, dataset["unknown_note"])
        source = self.sources[value["source"]]
        caveat = dataset.get("caveats", {}).get(value.get("caveat")) if value.get("caveat") else None
        return PaperCell(float(value["value"]), "published", source["citation"], source["short"],
                         source.get("url"), caveat)

    def claim(self, key):
        """A claim's text, value and source citation."""
        claim = dict(self.claims[key])
        source = self.sources[claim["source"]]
        where = f", {claim['where']}" if claim.get("where") else ""
        claim["citation"] = source["citation"] + where
        claim["label"] = source["short"] + where
        claim["url"] = source.get("url")
        return claim


def load_paper_values(path=DEFAULT_PATH):
    """Read the cited figures (YAML, parsed safely)."""
    path = Path(path)
    if problem := io.file_problem(path):
        raise ReportInputError(f"paper values file {problem}: {path} (it ships with the repository "
                               "as reports/paper_values.yaml; pass --paper-values)")
    try:
        data = io.read_yaml(path)
    except io.YamlError as exc:
        raise ReportInputError(str(exc)) from exc
    return PaperValues(data, path)
