"""The paper figures we can cite (reports/paper_values.yaml), looked up per method, steps and metric."""

from dataclasses import dataclass
from pathlib import Path

from rdd import io, methods
from rdd.report.errors import ReportInputError
from rdd.values import brief, is_int, is_number

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "reports" / "paper_values.yaml"
UNKNOWN = "unknown"
# The metrics a figure may be of (the report's tables: rdd.report.summary.METRICS).
METRIC_NAMES = ("fid", "kid", "is")
# The claims the report checks, and whether it compares a measurement with the claim's `value`.
CLAIMS_USED = {"one_step_gain": True, "every_step_count": False, "memory_linear": False, "speedup_over_ddim": True}


@dataclass(frozen=True)
class PaperCell:
    """One paper figure, or why there is none."""

    value: float | None
    status: str  # "published" or "unknown"
    note: str  # the source's citation, or the reason there is no value
    source_short: str | None = None
    url: str | None = None
    caveat: str | None = None

    @property
    def text(self):
        return f"{self.value:.2f}" if self.value is not None else self.status


class PaperValues:
    """Lookup of cited figures; anything not listed is 'unknown'."""

    def __init__(self, data, path):
        _check(data, path)
        self.sources, self.datasets, self.claims = data["sources"], data["datasets"], data["claims"]
        self._values = {(key, v["method"], v["steps"], v["metric"]): v
                        for key, dataset in self.datasets.items() for v in dataset.get("values") or []}
        self.path = path

    def dataset(self, paper_key):
        if paper_key is None:
            return None
        if paper_key not in self.datasets:
            raise ReportInputError(f"paper_key {paper_key!r} is not a dataset of {self.path} "
                                   f"(known: {', '.join(self.datasets)})")
        return self.datasets[paper_key]

    def lookup(self, paper_key, method, steps, metric):
        """The paper's value for our (method, steps, metric) cell of a study with a paper key."""
        dataset = self.dataset(paper_key)
        if dataset is None:
            raise ValueError("a study without a paper_key has no paper cells (its tables have no paper column)")
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


def _mapping(value, keys, where):
    """`value` must be a mapping holding `keys`."""
    if not isinstance(value, dict):
        raise ReportInputError(f"{where}: must be a mapping, got {brief(value)}")
    missing = [key for key in keys if key not in value]
    if missing:
        raise ReportInputError(f"{where}: missing {', '.join(missing)}")


def _one_of(mapping, field, allowed, where):
    """`mapping[field]`, when present, must be one of `allowed`."""
    if field in mapping and mapping[field] not in allowed:
        raise ReportInputError(f"{where}.{field}: {mapping[field]!r} is not one of "
                               f"{', '.join(allowed) or 'none (caveats defines none)'}")


def _number(mapping, field, where):
    if not is_number(mapping[field]):
        raise ReportInputError(f"{where}.{field}: must be a number, got {brief(mapping[field])}")


def _check(data, path):
    """Every field the report reads, so that a wrong file stops a run at its start, not at its report."""
    _mapping(data, ("sources", "datasets", "claims"), path)
    sources = data["sources"]
    _mapping(sources, (), f"{path}: sources")
    for name, source in sources.items():
        _mapping(source, ("short", "citation"), f"{path}: sources.{name}")
    _mapping(data["datasets"], (), f"{path}: datasets")
    for key, dataset in data["datasets"].items():
        where = f"{path}: datasets.{key}"
        _mapping(dataset, ("name", "protocol", "unknown_note"), where)
        caveats = dataset.get("caveats") or {}
        seen = set()
        for i, value in enumerate(dataset.get("values") or []):
            at = f"{where}.values.{i}"
            _mapping(value, ("method", "steps", "metric", "value", "source"), at)
            for field, allowed in (("method", methods.method_names(models=True)), ("metric", METRIC_NAMES),
                                   ("source", list(sources)), ("caveat", list(caveats))):
                _one_of(value, field, allowed, at)
            if not is_int(value["steps"]) or value["steps"] < 1:
                raise ReportInputError(f"{at}.steps: must be a positive integer, got {brief(value['steps'])}")
            _number(value, "value", at)
            cell = (value["method"], value["steps"], value["metric"])
            if cell in seen:
                raise ReportInputError(f"{at}: a second figure for {cell}")
            seen.add(cell)
    _mapping(data["claims"], CLAIMS_USED, f"{path}: claims")
    for key, needs_value in CLAIMS_USED.items():
        claim, where = data["claims"][key], f"{path}: claims.{key}"
        _mapping(claim, ("text", "source", *(["value"] if needs_value else [])), where)
        if needs_value:
            _number(claim, "value", where)
        _one_of(claim, "source", list(sources), where)


def load_paper_values(path=DEFAULT_PATH):
    """Read the cited figures (YAML, parsed safely)."""
    path = Path(path)
    if problem := io.file_problem(path):
        raise ReportInputError(f"paper values file {problem}: {path} (the repository ships one as "
                               "reports/paper_values.yaml)")
    try:
        data = io.read_yaml(path)
    except io.YamlError as exc:
        raise ReportInputError(str(exc)) from exc
    return PaperValues(data, path)
