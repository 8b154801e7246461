"""Where every result lives: one pattern per kind of file, and the files beside a model or a job.

Paths are relative to the directory the workflow runs in (the repository root).
The patterns carry Snakemake's wildcards ({study}, {method}, {variant}, {T},
{steps}, {seed}, {split}, {table}, {file}): the rules take their outputs from them, the
study plan fills them in with `path`, the commands find a model's or a samples
file's companions with the functions below, and the report names its tables
with `TABLES`. Nothing else spells a result path.
"""

from pathlib import PurePosixPath

TEACHER = "results/{study}/models/teacher/teacher_{T}.pt"
CLASSIFIER = "results/{study}/models/classifier/{variant}/classifier.pt"
# {method}/{variant}: pd/chain (the shared PD chain), <method>/default (each method's rounds),
# <method>/replicate<r> (the same rounds trained with training seed seed + r, r >= 1, see `run_dir`),
# <method>/<ablation>-<variant> (an ablation's rounds); ddim/teacher names the teacher's evaluations.
STUDENT = "results/{study}/models/{method}/{variant}/student_{T}.pt"
SAMPLES = "results/{study}/samples/{method}/{variant}/steps{steps}/seed{seed}.npz"
# Real images of the held-out split, as many as each model's samples (the report's real-data row);
# their metrics are METRIC with method "real", variant <split> and 0 steps.
REAL_SAMPLES = "results/{study}/samples/real/{split}/seed{seed}.npz"
GRID = "results/{study}/grids/{method}/{variant}/steps{steps}/seed{seed}.png"
METRIC = "results/{study}/metrics/{method}/{variant}/steps{steps}/seed{seed}.json"
REFERENCE = "results/{study}/reference/{split}.json"
REFERENCE_DATA = "results/{study}/reference/data.yaml"
MEMORY_BENCHMARK = "results/{study}/memory_benchmark.json"
SPEED_BENCHMARK = "results/{study}/speed_benchmark.json"
SPEED_CASES = "results/{study}/speed_cases.yaml"  # what the speed benchmark times (written by the workflow)
# The study's speed settings (rdd.train.speed_settings), read by every training job but not one of its
# inputs: a change of them retrains nothing (written by the workflow).
SPEED_SETTINGS = "results/{study}/speed_settings.yaml"
# The sample jobs' batch size, as `python -m rdd sample` arguments read from the file (@FILE): samples
# do not depend on it, so it is not a param of the job and a change of it resamples nothing.
SAMPLING_SPEED = "results/{study}/sampling_speed.args"
MANIFEST = "results/{study}/manifest.json"
TABLES_DIR = "results/{study}/tables"
TABLE = TABLES_DIR + "/{table}.csv"
# Any file under a study's results (only to name a study the config lacks, see workflow/rules/report.smk).
STUDY_FILE = "results/{study}/{file}"
REPORT = "reports/{study}.html"
INDEX = "reports/index.html"

# The tidy tables `python -m rdd.report build` writes into TABLES_DIR, with what each holds.
TABLES = {"metrics": "metrics", "speed": "sampling speed", "curves": "training curves", "stages": "stages"}
# Evaluation runs of the base teacher and of the shared PD chain (the {method}/{variant} of their files).
TEACHER_RUN = "ddim/teacher"
CHAIN_RUN = "pd/chain"


def path(pattern, **wildcards):
    """`pattern` with its wildcards filled in."""
    return pattern.format(**wildcards)


def run_dir(method, variant, replicate=0):
    """The {method}/{variant} folder of a line of rounds: 'default' for a method's own rounds and
    '<ablation>-<variant>' for an ablation's (names of [a-z0-9_], so exactly one hyphen); training
    replicate r >= 1 of either: 'replicate<r>' (no hyphen) and '<ablation>-<variant>-replicate<r>'
    (two), so no line's folder is another's."""
    if replicate:
        variant = f"replicate{replicate}" if variant == "default" else f"{variant}-replicate{replicate}"
    return f"{method}/{variant}"


def _stem(file):
    return str(file).removesuffix(PurePosixPath(str(file)).suffix)


def _beside(model, suffix):
    if not str(model).endswith(".pt"):
        raise ValueError(f"{model} is not a model file (.pt)")
    return _stem(model) + suffix


def training_record(model):
    """The settings-and-provenance record a training command writes beside its model."""
    return _beside(model, ".json")


def curves(model):
    """The loss terms over training, beside the model."""
    return _beside(model, ".curves.csv")


def settings_file(model):
    """The settings the workflow writes for the job that trains `model`."""
    return _beside(model, ".settings.yaml")


def resume_dir(model):
    """Resume state of the job that trains `model`: outside results/, so Snakemake never deletes it."""
    return "resume/" + _beside(model, "")


def samples_record(samples):
    """The sampling record beside a samples file (.npz)."""
    return _stem(samples) + ".json"


def log(output):
    """The log of the job whose main output is `output`."""
    return "logs/" + _stem(output) + ".log"


def table_file(tables_dir, name):
    """Table `name` (a key of TABLES) in a tables folder."""
    return str(PurePosixPath(str(tables_dir)) / f"{name}.csv")


def summary(report):
    """The summary `python -m rdd.report build` writes beside a report (the index reads it)."""
    return str(report).removesuffix(".html") + ".summary.json"
