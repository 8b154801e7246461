"""A study's plan: every training stage, evaluation and report entry, derived from the config.

Plain Python on top of the rdd library (no Snakemake in here): the rules look
paths and settings up in a StudyPlan, and the tests can build one directly.
Every path is relative to the working directory the workflow runs in.
"""

import copy
import functools
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from configcheck import ConfigError
from rdd import layout, methods, seeds, settings as rdd_settings
from rdd.settings import deep_merge  # noqa: F401 (studyplan.deep_merge)
from rdd.data import normalize_spec, split_names
from rdd.nets.configs import check_unet
from rdd.values import is_int

# Settings the workflow itself writes into every stage; a config block may not set them.
RESERVED = {"teacher": ("data", "seed", "T_base", "speed"), "classifier": ("data", "seed", "speed"),
            "distill": ("data", "seed", "method", "speed")}
# Where the workflow takes each of them from.
RESERVED_SOURCE = {"data": "the study's data", "seed": "the study's seed", "T_base": "the study's T_base",
                   "speed": "the study's speed", "method": "the rounds block's name, or the ablation's method",
                   "train.iters": "the study's iters schedule",
                   "weights": "each round's method, or per method rounds.<method>.settings.weights or an ablation"}
# Resources of a rule unless the study's `resources` says otherwise.
BASE_RESOURCES = {"threads": 1, "mem_mb": 2000, "runtime": 60, "gpu": 0}
RULES_WITH_RESOURCES = ("ref_stats", "train_teacher", "train_classifier", "distill", "sample", "real_samples",
                        "evaluate", "memory_benchmark", "speed_benchmark", "report")
# Variant shortcuts that are plain distillation settings.
VARIANT_SETTINGS = ("tau", "memory_size", "num_anchors", "enqueue_per_step")


def is_power_of_two(n):
    return is_int(n) and n >= 1 and n & (n - 1) == 0


def halvings(high, low):
    """Step counts high/2, high/4, ..., low (the students of the rounds from `high` down to `low`)."""
    out, t = [], high
    while t > low:
        t //= 2
        out.append(t)
    return out


def write_if_changed(path, text):
    """Write `text` to `path` unless it already holds exactly that (so its mtime only moves on change)."""
    path = Path(path)
    if path.is_file() and path.read_text() == text:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def settings_text(record):
    """The YAML a settings record is written as (stable key order, so equal records give equal files)."""
    return yaml.safe_dump(record, sort_keys=True, default_flow_style=False)


def stage_settings_text(record):
    """A training stage's settings file: all but its speed settings, which the study's speed settings
    file holds (they change results by rounding only, so a change of them retrains nothing)."""
    return settings_text({k: v for k, v in record.items() if k != rdd_settings.SPEED_KEY})


# ----------------------------------------------------------------------------- what a plan holds

class NotPlanned(LookupError):
    """A model or evaluation the study's plan does not have (a target typed by hand, say)."""


def _steps_and_seed(steps, seed):
    return f"{steps} step{'s' * (steps != 1)} with seed {seed}"


@dataclass
class Stage:
    """One training job: its command, full settings and the model files it reads."""

    rule: str  # train_teacher | train_classifier | distill
    model: str  # the exported .pt (the rule's main output)
    settings: dict
    labels: dict  # manifest labels: stage, method, ablation, variant, round
    teacher: str | None = None
    classifier: str | None = None
    teacher_is_external: bool = False

    @property
    def settings_file(self):
        return layout.settings_file(self.model)


@dataclass
class Evaluation:
    """Samples and metrics of one model at one step count for one seed."""

    run: str  # <method>/<variant dir>, the folder under samples/, grids/ and metrics/
    steps: int
    seed: int
    model: str | None  # None for real images
    model_is_external: bool
    labels: dict  # method, steps, seed (+ ablation, variant for ablation runs)
    samples: str  # the samples file (.npz) the metrics read


@dataclass
class StudyPlan:
    name: str
    config: dict
    stages: dict = field(default_factory=dict)  # model path -> Stage
    evaluations: dict = field(default_factory=dict)  # (run, steps, seed) -> Evaluation
    ablations: dict = field(default_factory=dict)  # manifest "ablations" block
    entries: list = field(default_factory=list)  # manifest entries
    external: dict = field(default_factory=dict)  # config key -> authors' checkpoint path

    def path(self, pattern, **wildcards):
        """A file of this study (rdd.layout `pattern` filled in)."""
        return layout.path(pattern, study=self.name, **wildcards)

    def stage(self, model):
        """The stage that trains `model`; NotPlanned, naming the models of its folder (or the folders)."""
        if model in self.stages:
            return self.stages[model]
        folder = str(Path(model).parent)
        beside = sorted(Path(path).name for path in self.stages if str(Path(path).parent) == folder)
        there = (f"its models in {folder}/: {', '.join(beside)}" if beside else
                 f"its model folders: {', '.join(sorted({str(Path(path).parent) for path in self.stages}))}")
        raise NotPlanned(f"{model} is not a model of study {self.name!r}; {there} (see its config)")

    def evaluation(self, run, steps, seed):
        """The evaluation of `run` (<method>/<variant dir>) at `steps` with seed `seed`; NotPlanned,
        naming those the study has of that run (or its runs)."""
        if (run, steps, seed) in self.evaluations:
            return self.evaluations[run, steps, seed]
        own = sorted((s, e) for r, s, e in self.evaluations if r == run)
        there = (f"it evaluates {run} at " + ", ".join(_steps_and_seed(*key) for key in own) if own else
                 f"it evaluates no run {run}; its runs: {', '.join(sorted({r for r, _, _ in self.evaluations}))}")
        raise NotPlanned(f"study {self.name!r} does not evaluate {run} at {_steps_and_seed(steps, seed)}; {there} "
                         "(see its evaluate block)")

    def ref_stats(self):
        """The reference statistics record (it names the cached statistics file)."""
        return self.path(layout.REFERENCE, split=self.config["evaluate"]["reference"]["split"])

    def memory_benchmark(self):
        """The IS-P2P vs M-P2P memory sweep behind the report's memory claim (None when not run)."""
        return self.path(layout.MEMORY_BENCHMARK) if self.config["evaluate"]["memory_benchmark"] else None

    def speed_benchmark(self):
        """Images/s of every main model at its step count, timed alone (None when not run)."""
        return self.path(layout.SPEED_BENCHMARK) if self.config["evaluate"]["speed_benchmark"] else None

    def speed_cases(self):
        """What the speed benchmark times: each main-row model at each step count it is evaluated at."""
        cases = {}
        for evaluation in self.evaluations.values():
            labels = evaluation.labels
            # Training replicates are the same network as replicate 0: timed once.
            if evaluation.model is None or labels.get("ablation") or labels.get("replicate"):
                continue
            cases[evaluation.model, evaluation.steps] = {
                "model": evaluation.model, "steps": evaluation.steps, "method": labels["method"],
                **({"authors_net": self.config["authors_checkpoints"]["net"]}
                   if evaluation.model_is_external and self.config["authors_checkpoints"].get("net") else {})}
        return [cases[key] for key in sorted(cases, key=lambda k: (k[1], k[0]))]

    def speed(self):
        """The study's speed settings: its `speed` block over the library's defaults (SettingsError
        for a bad value)."""
        key = rdd_settings.SPEED_KEY
        return rdd_settings.resolve("teacher", {key: self.config[key]})[key]

    def speed_settings_text(self):
        """The study's speed settings file (rdd.layout.SPEED_SETTINGS)."""
        return settings_text({rdd_settings.SPEED_KEY: self.speed()})

    def sampling_speed_text(self):
        """The sample jobs' arguments that change no sample (rdd.layout.SAMPLING_SPEED), one per line."""
        return f"--batch-size={self.config['evaluate']['batch_size']}\n"

    def ref_data_file(self):
        return self.path(layout.REFERENCE_DATA)

    def ref_data_text(self):
        return settings_text({"data": normalize_spec(self.config["data"])})

    def student(self, run, T):
        """The `T`-step student of line `run` (<method>/<variant>, rdd.layout.run_dir)."""
        return self.path(layout.STUDENT, **self.run_wildcards(run), T=T)

    @staticmethod
    def run_wildcards(run):
        method, variant = run.split("/")
        return {"method": method, "variant": variant}

    def evaluation_files(self, run, steps, seed):
        """Manifest kind -> file of the evaluation of `run` (<method>/<variant>) at `steps` for `seed`."""
        wildcards = {**self.run_wildcards(run), "steps": steps, "seed": seed}
        return {"samples": layout.samples_record(self.path(layout.SAMPLES, **wildcards)),
                "grid": self.path(layout.GRID, **wildcards), "metric": self.path(layout.METRIC, **wildcards)}

    def image_seeds(self, seed):
        """The per-image noise seeds of evaluation seed `seed`: disjoint blocks of num_samples."""
        return seeds.block(seed, self.config["evaluate"]["num_samples"])

    def resources(self, rule):
        block = self.config.get("resources", {})
        return {**BASE_RESOURCES, **block.get("default", {}), **block.get(rule, {})}

    def manifest(self):
        """The report's manifest of this study (see rdd.report.manifest)."""
        return {"study": self.name, "dataset": self.config["data"]["name"],
                "title": self.config.get("title"), "scale_note": self.config.get("scale_note"),
                "paper_key": self.config.get("paper_key"), "config": self.config,
                "ablations": self.ablations, "entries": self.entries}

    def report_inputs(self):
        """Every file the manifest lists (what the report rules depend on)."""
        return sorted({e["path"] for e in self.entries})


# ----------------------------------------------------------------------------- settings of each stage

def _resolved(command, record, where):
    """The library's full, checked settings record for `command`, or a ConfigError naming the config block."""
    try:
        return rdd_settings.validate(command, record)
    except rdd_settings.SettingsError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def with_unread_defaults(record):
    """A round's settings with those that none of its loss terms reads at their defaults (tau in a PD
    round): a change of them retrains no round that does not read them, and a variant that changes
    only them trains like the run it varies (its models stand in)."""
    defaults = rdd_settings.defaults("distill")
    return {**record, **{key: defaults[key] for key in methods.unread_settings(methods.loss_weights(record))}}


def _no_reserved(command, block, where, extra=()):
    for key in (*RESERVED[command], *extra):
        head, _, tail = key.partition(".")
        if head in block and (not tail or tail in (block[head] or {})):
            raise ConfigError(f"{where}.{key}: set by the workflow (from {RESERVED_SOURCE[key]}); remove it here")


def _check_layer(command, layer, where, extra=()):
    """One block of settings on its own, so that an error names the block that has it."""
    _no_reserved(command, layer, where, extra)
    try:
        rdd_settings.check_block(command, layer)
    except rdd_settings.SettingsError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _iters_for(schedule, student_steps, where):
    if isinstance(schedule, int):
        return schedule
    unknown = sorted(set(schedule) - {"default"} - {str(t) for t in student_steps}, key=int)
    if unknown:
        raise ConfigError(f"{where}: no round here produces a {unknown[0]}-step student; "
                          f"allowed keys: default, {', '.join(map(str, student_steps))}")
    return schedule


def _same_training(line, other):
    """Two lines of rounds train identically: the same settings (the method name only picks preset
    weights, which are explicit in every record) and the same classifier, round by round."""
    def key(stage):
        return {k: v for k, v in stage.settings.items() if k != "method"}, stage.classifier
    return line.keys() == other.keys() and all(key(line[T]) == key(other[T]) for T in line)


def _unread_changes(variant, own_layers, line):
    """What an ablation variant changes (its `variant_layers`, its classifier) that none of its rounds'
    loss terms reads, so that the report can say why it trains like the run it varies."""
    weights = methods.loss_weights(next(iter(line.values())).settings)
    changed = {key for layer, _ in own_layers for key in layer} | ({"classifier"} & set(variant))
    unread = set(methods.unread_settings(weights)) | (set() if methods.needs_classifier(weights) else {"classifier"})
    return sorted(changed & unread)


def _replicate_label(replicate):
    """The label of training replicate r (none for the first, as before replicates existed)."""
    return {"replicate": replicate} if replicate else {}


def _round_iters(schedule, student):
    return schedule if isinstance(schedule, int) else schedule.get(str(student), schedule["default"])


# ----------------------------------------------------------------------------- ablation files

def variant_layers(ablation, spec, vname, variant):
    """Distillation settings layers of variant `vname` of ablation file `spec` (named `ablation`):
    its free settings, then its loss switches, weights and shortcuts; [(layer, where)]."""
    where = f"ablation {ablation}: variants.{vname}"
    layer = {}
    if "losses" in variant:
        preset = methods.METHODS[spec["method"]].weights
        # A listed term keeps the method's own weight (1.0 if the method does not use it); others are off.
        layer["weights"] = {t: (preset.get(t) or 1.0) if t in variant["losses"] else 0.0 for t in methods.TERMS}
    if "weights" in variant:
        layer = deep_merge(layer, {"weights": variant["weights"]})
    layer.update({k: variant[k] for k in VARIANT_SETTINGS if k in variant})
    return [(variant.get("settings", {}), f"{where}.settings"), (layer, where)]


def check_ablations(ablation_files):
    """Every variant's settings, each block on its own, in every ablation file, chosen by a study or not."""
    for name, spec in ablation_files.items():
        for vname, variant in spec["variants"].items():
            for layer, where in variant_layers(name, spec, vname, variant):
                _check_layer("distill", layer, where, ("train.iters",))
            if "classifier" in variant:
                _check_layer("classifier", variant["classifier"], f"ablation {name}: variants.{vname}.classifier")


# ----------------------------------------------------------------------------- building a plan

class _Builder:
    def __init__(self, name, study, ablation_files):
        self.plan = StudyPlan(name, study)
        self.study = study
        self.where = f"studies.{name}"
        self.ablation_files = ablation_files
        self.common = {"data": study["data"], "seed": study["seed"], "device": {"device": study["device"]},
                       rdd_settings.SPEED_KEY: study["speed"]}

    # -- checks of the study block that a schema cannot express
    def check_steps(self):
        s, w = self.study, self.where
        for key in ("T_base", "shared_steps", "final_steps"):
            if not is_power_of_two(s[key]):
                raise ConfigError(f"{w}.{key}: {s[key]} is not a power of two (1, 2, 4, 8, ...)")
        if not s["final_steps"] < s["shared_steps"] <= s["T_base"]:
            raise ConfigError(f"{w}: need final_steps < shared_steps <= T_base, got "
                              f"{s['final_steps']}, {s['shared_steps']}, {s['T_base']}")
        if (last := s["seed"] + s["training_seeds"] - 1) > seeds.MAX_TRAINING_SEED:
            raise ConfigError(f"{w}.seed: training seeds up to {last} (seed + training_seeds - 1); each must be at "
                              f"most {seeds.MAX_TRAINING_SEED} (rdd/seeds.py)")
        ev = s["evaluate"]
        for n in ev["teacher_steps"]:
            if not is_power_of_two(n) or n > s["T_base"]:
                raise ConfigError(f"{w}.evaluate.teacher_steps: {n} is not allowed; DDIM steps must be powers "
                                  f"of two up to T_base = {s['T_base']}")
        produced = set(halvings(s["T_base"], s["final_steps"]))
        for n in ev["student_steps"]:
            if n not in produced:
                raise ConfigError(f"{w}.evaluate.student_steps: no distilled model has {n} steps; allowed: "
                                  f"{', '.join(map(str, sorted(produced, reverse=True)))}")
        last_seed = (max(ev["seeds"]) + 1) * ev["num_samples"] - 1
        if ev["num_samples"] > seeds.MAX_SEEDS or last_seed > seeds.MAX_SEED:
            raise ConfigError(f"{w}.evaluate: image seeds up to {last_seed} in blocks of {ev['num_samples']} "
                              f"(num_samples); a block holds at most {seeds.MAX_SEEDS:,} seeds, each at most "
                              f"{seeds.MAX_SEED} (rdd/seeds.py)")
        if ev["reference"]["split"] not in ("train", "test"):
            raise ConfigError(f"{w}.evaluate.reference.split: {ev['reference']['split']!r}; allowed: train, test")

    def check_blocks(self):
        """The study's settings blocks, each once and on its own, so that an error names the block that has it
        (an ablation variant's: check_ablations; a bound between blocks: `_resolved` on the merged record)."""
        s, w = self.study, self.where
        _no_reserved("teacher", s["teacher"], f"{w}.teacher")
        _no_reserved("classifier", s["classifier"], f"{w}.classifier")
        # Loss weights shared by every round would change what each method is and keep its name.
        _check_layer("distill", s["distill"], f"{w}.distill", ("train.iters", "weights"))
        _check_layer("distill", s["pd_chain"]["settings"], f"{w}.pd_chain.settings", ("train.iters",))
        for method, block in s["rounds"].items():
            _check_layer("distill", block["settings"], f"{w}.rounds.{method}.settings", ("train.iters",))

    def check_authors(self):
        authors, w = self.study["authors_checkpoints"], f"{self.where}.authors_checkpoints"
        if authors.get("pd_8") and self.study["shared_steps"] != 8:
            raise ConfigError(f"{w}.pd_8: an 8-step model, but the shared chain ends at shared_steps = "
                              f"{self.study['shared_steps']}; set shared_steps: 8")
        if authors.get("net"):
            try:
                check_unet(**authors["net"])
            except ValueError as exc:
                raise ConfigError(f"{w}.net: {exc}") from None
        for key in ("teacher", "pd_8", "classifier"):
            if authors.get(key):
                self.plan.external[key] = str(authors[key])

    # -- stages
    def add_stage(self, stage):
        self.check_parallel(stage)
        self.plan.stages[stage.model] = stage
        self.add_entries(stage, stage.labels)
        return stage.model

    def check_parallel(self, stage):
        """A job of several GPUs splits its batch evenly; IS-P2P groups fit in each GPU's share."""
        gpus = max(1, self.plan.resources(stage.rule)["gpu"])
        batch = stage.settings["train"]["batch_size"]
        where = f"{self.where}.resources.{stage.rule}.gpu"
        if batch % gpus:
            raise ConfigError(f"{where}: {gpus} GPUs cannot split the batch of {batch} of {stage.model} evenly")
        group = stage.settings.get("is_p2p_group_size")
        if group and stage.settings["weights"]["is_p2p"] and (batch // gpus) % group:
            raise ConfigError(f"{where}: is_p2p_group_size {group} must divide the batch per GPU "
                              f"({batch} / {gpus} = {batch // gpus}) of {stage.model}")

    def add_entries(self, stage, labels):
        for kind, path in (("training", layout.training_record(stage.model)), ("curves", layout.curves(stage.model))):
            self.plan.entries.append({"kind": kind, "path": path, **labels})

    def teacher(self):
        if "teacher" in self.plan.external:
            return self.plan.external["teacher"]
        block, where = self.study["teacher"], f"{self.where}.teacher"
        settings = _resolved("teacher", deep_merge(self.common, block, {"T_base": self.study["T_base"]}), where)
        model = self.plan.path(layout.TEACHER, T=self.study["T_base"])
        return self.add_stage(Stage("train_teacher", model, settings, {"stage": "teacher"}))

    def classifier(self, overrides=None, labels=None, variant_dir="default"):
        """The classifier for `overrides` of the study's classifier settings (shared when they change nothing).

        The authors' classifier, when given, is the study's own; an ablation variant that asks for
        another classifier still trains it.
        """
        if overrides is None and "classifier" in self.plan.external:
            return self.plan.external["classifier"]
        where = f"{self.where}.classifier"
        if overrides is not None:
            where = (f"settings merged from {where}, ablation {labels['ablation']}: "
                     f"variants.{labels['variant']}.classifier")
        settings = _resolved("classifier", deep_merge(self.common, self.study["classifier"], overrides), where)
        for stage in self.plan.stages.values():
            if stage.rule == "train_classifier" and stage.settings == settings:
                return stage.model
        model = self.plan.path(layout.CLASSIFIER, variant=variant_dir)
        return self.add_stage(Stage("train_classifier", model, settings, {"stage": "classifier", **(labels or {})}))

    def round_settings(self, method, layers, iters, replicate=0):
        """A round's settings: the study's distill block, then `layers` [(block, where)], in that order (each
        block checked on its own before: check_blocks, check_ablations)."""
        blocks = [(self.study["distill"], f"{self.where}.distill"), *layers]
        record = deep_merge(self.common, *(layer for layer, _ in blocks),
                            {"method": method, "seed": self.study["seed"] + replicate, "train": {"iters": iters}})
        # What only the merged record can show (a bound between two blocks' settings) names them all.
        record = _resolved("distill", record, "settings merged from " + ", ".join(where for _, where in blocks))
        return with_unread_defaults(record)

    def chain(self, teacher):
        """The shared PD rounds T_base -> shared_steps; {student steps: model path}."""
        s, where = self.study, f"{self.where}.pd_chain"
        if "pd_8" in self.plan.external:
            return {8: self.plan.external["pd_8"]}
        students = halvings(s["T_base"], s["shared_steps"])
        schedule = _iters_for(s["pd_chain"]["iters"], students, f"{where}.iters")
        models, previous = {}, teacher
        for T in students:
            settings = self.round_settings("pd", [(s["pd_chain"]["settings"], f"{where}.settings")],
                                           _round_iters(schedule, T))
            model = self.plan.student(layout.CHAIN_RUN, T)
            labels = {"stage": "pd_chain", "method": "pd", "round": f"{2 * T}->{T}"}
            self.add_stage(Stage("distill", model, settings, labels, teacher=previous,
                                 teacher_is_external=previous in self.plan.external.values()))
            models[T], previous = model, model
        return models

    def line(self, method, start, layers, classifier, run_dir, labels, schedule, replicate=0):
        """Stages of one line of rounds shared_steps -> final_steps, not yet in the plan; {steps: Stage}.

        `classifier` is called for the classifier path only when a round uses a feature loss;
        `replicate` r trains the line with training seed seed + r.
        """
        s, where = self.study, f"{self.where}.rounds.{method}"
        students = halvings(s["shared_steps"], s["final_steps"])
        schedule = _iters_for(schedule, students, f"{where}.iters")
        stages, previous = {}, start
        for T in students:
            settings = self.round_settings(method, layers, _round_iters(schedule, T), replicate)
            uses_features = methods.needs_classifier(settings["weights"])
            model = self.plan.student(run_dir, T)
            stages[T] = Stage("distill", model, settings,
                              {"stage": "round", "method": method, "round": f"{2 * T}->{T}", **labels},
                              teacher=previous, classifier=classifier() if uses_features else None,
                              teacher_is_external=previous in self.plan.external.values())
            previous = model
        return stages

    def add_line(self, stages):
        return {T: self.add_stage(stage) for T, stage in stages.items()}

    def default_classifier(self):
        return self.classifier()

    # -- ablations
    def ablation(self, name, main_lines, start):
        """An ablation's variants; `main_lines`: {method: [its line of each training replicate]}."""
        spec = self.ablation_files[name]
        method = spec["method"]  # the schema's default filled in
        if method not in self.study["rounds"]:
            raise ConfigError(f"{self.where}.ablations: ablation {name!r} varies the {method} rounds, "
                              f"but rounds.{method} is not configured")
        block = self.study["rounds"][method]
        variants = {}
        for vname, variant in spec["variants"].items():
            labels = {"ablation": name, "variant": vname}
            own_layers = variant_layers(name, spec, vname, variant)
            layers = [(block["settings"], f"{self.where}.rounds.{method}.settings"), *own_layers]
            classifier = self.default_classifier
            if "classifier" in variant:
                classifier = functools.partial(self.classifier, variant["classifier"], labels, f"{name}-{vname}")
            # Each training replicate of the main runs has its twin here, so that a variant's cell holds
            # the same noises as the run it is compared with.
            run_dirs = [layout.run_dir(method, f"{name}-{vname}", r) for r in range(self.study["training_seeds"])]
            lines = [self.line(method, start, layers, classifier, folder, {**labels, **_replicate_label(r)},
                               block["iters"], r) for r, folder in enumerate(run_dirs)]
            run_dir = run_dirs[0]
            same_as = next((m for m, main in main_lines.items() if _same_training(lines[0], main[0])), None)
            # The method the variant's entries are labelled with (the manifest tells the report).
            labelled_as = same_as or method
            if same_as:
                # Trains exactly like a main run: that run's models and metrics (of every training
                # replicate) stand for this variant.
                for replicate, main in enumerate(main_lines[same_as]):
                    for stage in main.values():
                        self.add_entries(stage, {**stage.labels, **labels})
                    self.evaluate_line(labelled_as, layout.run_dir(same_as, "default", replicate),
                                       {T: stage.model for T, stage in main.items()},
                                       {**labels, **_replicate_label(replicate)}, own_files=False)
                run_dir = layout.run_dir(same_as, "default")
            else:
                for replicate, (folder, stages) in enumerate(zip(run_dirs, lines)):
                    self.evaluate_line(labelled_as, folder, self.add_line(stages),
                                       {**labels, **_replicate_label(replicate)})
            variants[vname] = {"description": variant.get("description", ""), "run": run_dir, "same_as": same_as,
                               "labelled_as": labelled_as, "unread": _unread_changes(variant, own_layers, lines[0]),
                               "changes": {k: v for k, v in variant.items() if k != "description"}}
        self.plan.ablations[name] = {"description": spec.get("description", ""), "method": method,
                                     "variants": variants}

    # -- evaluations
    def evaluate_model(self, run, method, steps, model, labels, own_files=True):
        """Sample and score `model` at `steps` for every seed; `own_files` False: another run's files stand in."""
        for seed in self.study["evaluate"]["seeds"]:
            full_labels = {"method": method, "steps": steps, "seed": seed, **labels}
            if own_files:
                self.plan.evaluations[(run, steps, seed)] = Evaluation(
                    run, steps, seed, model, model in self.plan.external.values(), full_labels,
                    self.plan.path(layout.SAMPLES, **self.plan.run_wildcards(run), steps=steps, seed=seed))
            for kind, path in self.plan.evaluation_files(run, steps, seed).items():
                self.plan.entries.append({"kind": kind, "path": path, **full_labels})

    def evaluate_real_images(self):
        """The real-data row: held-out real images scored like every model (none when the dataset has
        no split beside the reference's)."""
        split = methods.HELD_OUT_SPLIT[self.study["evaluate"]["reference"]["split"]]
        if split not in split_names(self.study["data"]):
            return
        (floor,) = methods.floor_names()
        run = layout.run_dir(floor, split)
        for seed in self.study["evaluate"]["seeds"]:
            labels = {"method": floor, "steps": 0, "seed": seed}
            samples = self.plan.path(layout.REAL_SAMPLES, split=split, seed=seed)
            self.plan.evaluations[(run, 0, seed)] = Evaluation(run, 0, seed, None, False, labels, samples)
            metric = self.plan.evaluation_files(run, 0, seed)["metric"]
            self.plan.entries.append({"kind": "metric", "path": metric, **labels})

    def evaluate_line(self, method, run, models, labels, own_files=True):
        for T in sorted(models, reverse=True):
            if T in self.study["evaluate"]["student_steps"]:
                self.evaluate_model(run, method, T, models[T], labels, own_files)

    def build(self):
        try:
            normalize_spec(self.study["data"])
        except ValueError as exc:
            raise ConfigError(f"{self.where}.data: {exc}") from None
        self.check_steps()
        self.check_blocks()
        self.check_authors()
        try:
            self.plan.speed()
        except rdd_settings.SettingsError as exc:
            raise ConfigError(f"{self.where}.speed: {exc}") from None
        plan, study = self.plan, self.study
        plan.entries.append({"kind": "reference", "path": plan.ref_stats(), "stage": "reference"})
        if plan.memory_benchmark():
            plan.entries.append({"kind": "memory_benchmark", "path": plan.memory_benchmark()})
        if plan.speed_benchmark():
            plan.entries.append({"kind": "speed_benchmark", "path": plan.speed_benchmark()})
        self.evaluate_real_images()
        teacher = self.teacher()
        for n in study["evaluate"]["teacher_steps"]:
            self.evaluate_model(layout.TEACHER_RUN, "ddim", n, teacher, {})
        chain = self.chain(teacher)
        self.evaluate_line("pd", layout.CHAIN_RUN, chain, {})
        # shared_steps = T_base: no shared chain, every method's rounds start from the teacher.
        start = chain[study["shared_steps"]] if chain else teacher
        main_lines = {}
        for method, block in study["rounds"].items():
            main_lines[method] = []
            for replicate in range(study["training_seeds"]):
                run = layout.run_dir(method, "default", replicate)
                labels = _replicate_label(replicate)
                stages = self.line(method, start, [(block["settings"], f"{self.where}.rounds.{method}.settings")],
                                   self.default_classifier, run, labels, block["iters"], replicate)
                main_lines[method].append(stages)
                self.evaluate_line(method, run, self.add_line(stages), labels)
        for name in self.ablation_names():
            self.ablation(name, main_lines, start)
        return plan

    def ablation_names(self):
        chosen = self.study["ablations"]  # names of files configcheck found
        return sorted(self.ablation_files) if chosen == "all" else list(chosen)


def build_plans(studies, ablation_files, names=None):
    """{name: StudyPlan} of `names` (default: all) of `studies` (config blocks already schema-validated
    with defaults), once every ablation file has been checked."""
    check_ablations(ablation_files)
    return {name: _Builder(name, copy.deepcopy(studies[name]), ablation_files).build() for name in names or studies}

