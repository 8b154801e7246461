"""Bad config is rejected before any job starts, with a message naming the key and what is allowed.

Each case runs Snakemake on the tiny preset plus one bad change, in its own scratch folder; the
cases run two at a time up front (one fixture), and each test checks one message.
"""

import copy
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from fixtures_workflow import REPO, job_counts, run_snakemake, write_yaml
from rdd import io, methods

sys.path.insert(0, str(REPO / "workflow" / "scripts"))
import configcheck  # noqa: E402
import studyplan  # noqa: E402

TINY = REPO / "config" / "tiny.yaml"


def tiny(**study):
    """An overlay config changing the tiny study."""
    return {"studies": {"tiny": study}}


BAD_ABLATIONS = {
    "unknown_loss": {"variants": {"v": {"losses": ["cfd", "kl"]}}},
    "unknown_key": {"variants": {"v": {"temperature": 2.0}}},
    "unknown_weight": {"variants": {"v": {"weights": {"cfd": 1.0, "kl": 1.0}}}},
    "not_yaml": "variants: {v: {losses: [cfd\n",  # written as it is
    "unknown_setting": {"variants": {"v": {"settings": {"m_p2p_enqueu": "pixels"}}}},
    "classifier_seed": {"variants": {"v": {"classifier": {"seed": 3}}}},
    "small_memory": {"variants": {"v": {"memory_size": 16}}},  # the tiny study reads 32 anchors
}

# id: (overlay config (a mapping, or YAML text written as it is), ablation file to use or None, dry run?,
#      target, expected message parts)
CASES = {
    "unknown_top_level_key": ({"runs": ["tiny"]}, None, True, "all",
                              ["unknown key 'runs'", "allowed: ablations_dir, paper_values, run, studies"]),
    # Written as it is: Snakemake's own loader would keep the second seed without a word.
    "key_twice_in_a_config_file": ("studies:\n  tiny:\n    seed: 1\n    seed: 2\n", None, True, "all",
                                   ["overlay.yaml is not valid YAML", "found the key 'seed' a second time",
                                    "line 4, column 5"]),
    "unknown_study_key": (tiny(evaluation={}), None, True, "all",
                          ["studies.tiny: unknown key 'evaluation'", "evaluate"]),
    "unknown_evaluate_key": (tiny(evaluate={"num_sample": 10}), None, True, "all",
                             ["studies.tiny.evaluate: unknown key 'num_sample'", "num_samples"]),
    "wrong_type": (tiny(T_base="eight"), None, True, "all",
                   ["studies.tiny.T_base: 'eight' is not of type 'integer'"]),
    "none_for_null": (tiny(evaluate={"memory_benchmark": "None"}), None, True, "all",
                      ["studies.tiny.evaluate.memory_benchmark: 'None' is not of type 'object', 'null'",
                       "null is written null"]),
    # Written as it is: a block whose body was left out reads as null.
    "empty_block": ("studies:\n  tiny:\n    evaluate:\n", None, True, "all",
                    ["studies.tiny.evaluate: null (an empty value) is not of type 'object'"]),
    "empty_choice": ("studies:\n  tiny:\n    evaluate:\n      sampling_precision:\n", None, True, "all",
                     ["studies.tiny.evaluate.sampling_precision: null (an empty value) is not allowed; "
                      "allowed: 'fp32', 'tf32'"]),
    "unknown_inception_input": (tiny(evaluate={"inception_input": "clean-fid"}), None, True, "all",
                                ["studies.tiny.evaluate.inception_input: 'clean-fid' is not allowed; "
                                 "allowed: 'torch-fidelity', 'pytorch-fid'"]),
    "unknown_isc_split_order": (tiny(evaluate={"isc_split_order": "random"}), None, True, "all",
                                ["studies.tiny.evaluate.isc_split_order: 'random' is not allowed; "
                                 "allowed: 'shuffled', 'in-order'"]),
    "no_training_seed": (tiny(training_seeds=0), None, True, "all",
                         ["studies.tiny.training_seeds: 0 is less than the minimum of 1"]),
    "training_seed_too_large": (tiny(seed=2**32 - 1, training_seeds=2), None, True, "all",
                                [f"studies.tiny.seed: training seeds up to {2**32} (seed + training_seeds - 1); "
                                 f"each must be at most {2**32 - 1}"]),
    "T_base_not_power_of_two": (tiny(T_base=12), None, True, "all",
                                ["studies.tiny.T_base: 12 is not a power of two"]),
    "ddim_steps_not_power_of_two": (tiny(evaluate={"teacher_steps": [1, 3]}), None, True, "all",
                                    ["studies.tiny.evaluate.teacher_steps: 3 is not allowed", "powers of two"]),
    "student_steps_without_model": (tiny(evaluate={"student_steps": [16]}), None, True, "all",
                                    ["studies.tiny.evaluate.student_steps: no distilled model has 16 steps",
                                     "allowed: 4, 2, 1"]),
    "unknown_method": (tiny(rounds={"ddpm": {"iters": 4}}), None, True, "all",
                       ["studies.tiny.rounds: unknown key 'ddpm'", "allowed: pd, rcfd, rdd"]),
    "iters_for_missing_round": (tiny(rounds={"pd": {"iters": {"default": 4, 3: 5}}}), None, True, "all",
                                ["studies.tiny.rounds.pd.iters: no round here produces a 3-step student",
                                 "allowed keys: default, 2, 1"]),
    "speed_in_a_stage_block": (tiny(distill={"speed": {"compile": True}}), None, True, "all",
                               ["studies.tiny.distill.speed: set by the workflow (from the study's speed)"]),
    "bad_speed_setting": (tiny(speed={"compile": "yes"}), None, True, "all",
                          ["studies.tiny.speed: setting 'speed.compile' must be true or false, got 'yes'"]),
    "unknown_training_setting": (tiny(teacher={"train": {"iterations": 5}}), None, True, "all",
                                 ["studies.tiny.teacher: unknown setting 'train.iterations'", "iters"]),
    "training_setting_wrong_type": (tiny(distill={"train": {"lr": "fast"}}), None, True, "all",
                                    ["studies.tiny.distill: setting 'train.lr' must be a number"]),
    "weights_for_every_method": (tiny(distill={"weights": {"pd": 1.0}}), None, True, "all",
                                 ["studies.tiny.distill.weights: set by the workflow (from each round's method, "
                                  "or per method rounds.<method>.settings.weights or an ablation)"]),
    "setting_the_workflow_sets": (tiny(teacher={"T_base": 16}), None, True, "all",
                                  ["studies.tiny.teacher.T_base: set by the workflow"]),
    "unknown_net_key": (tiny(teacher={"net": {"channels": 64}}), None, True, "all",
                        ["studies.tiny.teacher: setting 'net'", "unknown keys ['channels']"]),
    "net_argument_null": (tiny(teacher={"net": {"dropout": None}}), None, True, "all",
                          ["studies.tiny.teacher: setting 'net': dropout must be a number, got None"]),
    "unknown_dataset": (tiny(data={"name": "mnist3"}), None, True, "all",
                        ["studies.tiny.data", "unknown dataset 'mnist3'", "fashion_mnist"]),
    "unknown_resource": (tiny(resources={"train_teacher": {"gpus": 1}}), None, True, "all",
                         ["studies.tiny.resources.train_teacher: unknown key 'gpus'",
                          "allowed: gpu, mem_mb, runtime, threads"]),
    "too_few_samples": (tiny(evaluate={"num_samples": 1}), None, True, "all",
                        ["studies.tiny.evaluate.num_samples: 1 is less than the minimum of 2"]),
    "image_seeds_too_large": (tiny(evaluate={"seeds": [2**62]}), None, True, "all",
                              [f"studies.tiny.evaluate: image seeds up to {(2**62 + 1) * 16 - 1} in blocks of 16",
                               f"each at most {2**63 - 1}"]),
    "paper_key_unknown": (tiny(paper_key="celeba"), None, True, "all",
                          ["studies.tiny.paper_key: paper_key 'celeba' is not a dataset of",
                           "known: cifar10, imagenet64"]),
    "paper_values_not_paper_values": ({"paper_values": str(TINY)}, None, True, "all",
                                      [f"paper_values: {TINY}: missing sources, datasets, claims"]),
    "run_names_unknown_study": ({"run": ["cifar100"]}, None, True, "all",
                                ["run: 'cifar100' is not a study", "tiny"]),
    "run_not_a_list": ({"run": "tiny"}, None, True, "all",
                       ["run: 'tiny' is not of type 'array'", "a list of one is written [tiny]"]),
    "run_names_no_study": ({"run": []}, None, True, "all",
                           ["run: names no study, so `snakemake all` has nothing to build", "studies: ",
                            "snakemake reports/<study>.html"]),
    "ablations_not_a_list": (tiny(ablations="some"), None, True, "all",
                             ["studies.tiny.ablations: 'some' is not allowed", '"all"', "a list of ablation names"]),
    "ablation_file_missing": (tiny(ablations=["nope"]), None, True, "all",
                              ["studies.tiny.ablations: 'nope' has no file nope.yaml",
                               f"folder {REPO / 'ablations'} (ablations_dir)", "losses"]),
    "ablation_file_not_yaml": (tiny(ablations=["not_yaml"]), "not_yaml", True, "all",
                               ["not_yaml.yaml is not valid YAML: while parsing a flow sequence"]),
    "ablation_unknown_loss": (tiny(ablations=["unknown_loss"]), "unknown_loss", True, "all",
                              ["unknown_loss.yaml: variants.v.losses.1: 'kl' is not allowed",
                               "allowed: " + ", ".join(repr(t) for t in methods.TERMS)]),
    "ablation_unknown_key": (tiny(ablations=["unknown_key"]), "unknown_key", True, "all",
                             ["unknown_key.yaml: variants.v: unknown key 'temperature'", "tau"]),
    "ablation_unknown_weight": (tiny(ablations=["unknown_weight"]), "unknown_weight", True, "all",
                                ["unknown_weight.yaml: variants.v.weights: unknown key 'kl'",
                                 "allowed: " + ", ".join(sorted(methods.TERMS))]),
    # An ablation file no study chooses is checked as fully as a chosen one.
    "ablation_not_chosen_unknown_setting": (tiny(ablations=[]), "unknown_setting", True, "all",
                                            ["ablation unknown_setting: variants.v.settings: unknown setting "
                                             "'m_p2p_enqueu'", "m_p2p_enqueue"]),
    "ablation_not_chosen_classifier_seed": (tiny(ablations=[]), "classifier_seed", True, "all",
                                            ["ablation classifier_seed: variants.v.classifier.seed: set by the "
                                             "workflow (from the study's seed)"]),
    # A bound between settings of two blocks names every block merged.
    "ablation_bound_across_blocks": (tiny(ablations=["small_memory"]), "small_memory", True, "all",
                                     ["settings merged from studies.tiny.distill, studies.tiny.rounds.rdd.settings, "
                                      "ablation small_memory: variants.v.settings, ablation small_memory: variants.v: "
                                      "setting 'num_anchors' (32) must be at most 'memory_size' (16)"]),
    # Found at the first job's start, the training jobs beside it would run on: found before any job.
    "reference_limit_beyond_the_split": (tiny(evaluate={"reference": {"split": "test", "limit": 10001}}), None, True,
                                         "all", ["studies.tiny.evaluate.reference.limit: 10,001 images asked of the "
                                                 "test split of fashion_mnist, which holds 10,000"]),
    "inception_weights_missing": (tiny(evaluate={"inception_weights": "nowhere/pt_inception.pth"}), None, True, "all",
                                  ["studies.tiny.evaluate.inception_weights: file not found: nowhere/pt_inception.pth"]),
    "authors_checkpoint_missing": (tiny(authors_checkpoints={"teacher": "nowhere/teacher.pt"}), None, True, "all",
                                   ["studies.tiny.authors_checkpoints.teacher: file not found: nowhere/teacher.pt"]),
    "authors_classifier_missing": (tiny(authors_checkpoints={"classifier": "nowhere/densenet.pt"}), None, True,
                                   "all", ["studies.tiny.authors_checkpoints.classifier: file not found: "
                                           "nowhere/densenet.pt"]),
    "authors_checkpoint_a_folder": (tiny(authors_checkpoints={"teacher": str(REPO / "config")}), None, True, "all",
                                    [f"studies.tiny.authors_checkpoints.teacher: file is a directory: {REPO / 'config'}"]),
    # A file that is there but no checkpoint: read as its jobs would read it, before any job.
    "authors_checkpoint_damaged": (tiny(authors_checkpoints={"teacher": str(REPO / "README.md")}), None, True, "all",
                                   ["studies.tiny.authors_checkpoints.teacher: cannot read checkpoint",
                                    "README.md", "corrupt, truncated, or not a weights-only torch file"]),
    "classifier_recipe_unknown_augmentation": (
        tiny(classifier={"train": {"augment": ["crop", "mixup"]}}), None, True, "all",
        ["studies.tiny.classifier: setting 'train.augment' must be a list naming each of crop, hflip, autoaugment, cutout"]),
    "missing_data": ({}, None, True, "reports/cifar10.html",
                     ["studies.cifar10.data", "dataset 'cifar10' not found", "data/cifar-10-batches-py/data_batch_1",
                      "relative paths are from", "download: true"]),
    "unknown_study_target": ({}, None, True, "reports/cifar100.html",
                             ["reports/cifar100.html: 'cifar100' is not a study of the config",
                              "studies: tiny, fmnist, cifar10, imagenet64"]),
    "unknown_study_file_target": ({}, None, True, "results/cifar100/models/teacher/teacher_1024.pt",
                                  ["results/cifar100/models/teacher/teacher_1024.pt: 'cifar100' is not a study",
                                   "studies: tiny, fmnist, cifar10, imagenet64"]),
    # Not dry runs: a real run must stop before its first job.
    "gpu_resource_without_gpu": (tiny(resources={"train_teacher": {"gpu": 1}}), None, False, "all",
                                 ["studies.tiny.resources.train_teacher.gpu: 1 asks for a GPU",
                                  "this machine has none"]),
    "cuda_device_without_gpu": (tiny(device="cuda"), None, False, "all",
                                ["studies.tiny.device: cuda asks for a GPU", "auto or cpu"]),
}


def _snakemake_with(workdir, overlay, ablation, content, *args):
    """Snakemake on the tiny preset with `overlay`, and `ablation` (a file of `content`) beside the shipped ones."""
    overlay_file = workdir / "overlay.yaml"
    if isinstance(overlay, str):
        workdir.mkdir(parents=True, exist_ok=True)
        overlay_file.write_text(overlay)
    else:
        write_yaml(overlay_file, overlay)
    args = [*args, "--configfile", TINY, overlay_file]
    if ablation:
        path = workdir / "ablations" / f"{ablation}.yaml"
        shutil.copytree(REPO / "ablations", path.parent)
        if isinstance(content, str):
            path.write_text(content)
        else:
            write_yaml(path, content)
        args += ["--config", f"ablations_dir={workdir / 'ablations'}"]
    return run_snakemake(workdir, *args, timeout=300)


def _run_case(name, root):
    overlay, ablation, dry, target, _ = CASES[name]
    args = [target, "--cores", "1", *(["-n"] if dry else [])]
    return _snakemake_with(root / name, overlay, ablation, BAD_ABLATIONS.get(ablation), *args)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_config")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(_run_case, name, root) for name in CASES}
        return {name: (future.result(), root / name) for name, future in futures.items()}


def test_there_are_at_least_15_cases():
    assert len(CASES) >= 15


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_config_is_rejected_before_any_job(outcomes, name):
    result, workdir = outcomes[name]
    assert result.returncode != 0, result.stdout[-3000:]
    text = " ".join(result.stdout.split())  # Snakemake wraps long messages
    for part in CASES[name][-1]:
        assert part in text, f"{part!r} not in the output:\n{result.stdout[-3000:]}"
    # No job ran: no job wrote a log, no model or result exists.
    assert not (workdir / "logs").exists()
    assert not list(workdir.glob("results/*/models/**/*.pt"))


def test_a_bound_between_two_blocks_is_judged_on_their_merge(tmp_path):
    """A variant's queue of 64 is below the default 4096 anchors but above the study's 32: it plans."""
    result = _snakemake_with(tmp_path, tiny(ablations=["queue"]), "queue", {"variants": {"v": {"memory_size": 64}}},
                             "all", "--cores", "1", "-n")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "rdd/queue-v/" in result.stdout  # the variant's own rounds are planned


def _planned_commands(output):
    return sorted(line for line in output.splitlines() if line.startswith("Shell command: "))


def test_a_study_without_a_shared_chain_starts_every_method_from_the_teacher(tmp_path):
    """shared_steps = T_base (allowed: final_steps < shared_steps <= T_base): no shared PD round, and
    each method's first round distils the teacher itself."""
    result = _snakemake_with(tmp_path, tiny(shared_steps=8, training_seeds=1, ablations=[]), None, None,
                             "all", "--cores", "1", "-n", "-p")
    assert result.returncode == 0, result.stdout[-3000:]
    rounds = [line for line in _planned_commands(result.stdout) if "python -m rdd distill" in line]
    assert len(rounds) == 9 and job_counts(result.stdout)["distill"] == 9  # 3 methods x 8 -> 4 -> 2 -> 1
    first = [line for line in rounds if "/student_4.pt" in line.split("--out ")[1].split()[0]]
    assert len(first) == 3 and all("--teacher results/tiny/models/teacher/teacher_8.pt " in line for line in first)
    assert "pd/chain" not in result.stdout


def test_a_change_on_the_command_line_plans_what_the_same_change_in_a_file_plans(tmp_path):
    """Snakemake hands the workflow every scalar inside a --config mapping as a string ('8', 'null'); they
    are typed as a config file's are, so the same change plans the same jobs either way. A null given
    for a block that may be null (here: skip the memory benchmark) is taken from both."""
    change = {"num_samples": 8, "seeds": [0, 1], "memory_benchmark": None}
    default, in_file, on_command_line = (
        _snakemake_with(tmp_path / name, overlay, None, None, "all", "--cores", "1", "-n", "-p", *config)
        for name, overlay, config in (
            ("default", {}, []),
            ("in_file", tiny(evaluate=change), []),
            ("on_command_line", {}, ["--config", "studies={tiny: {evaluate: {num_samples: 8, seeds: [0, 1], "
                                                 "memory_benchmark: null}}}"])))
    for result in (default, in_file, on_command_line):
        assert result.returncode == 0, result.stdout[-3000:]
    assert _planned_commands(on_command_line.stdout) == _planned_commands(in_file.stdout)
    counts, changed = job_counts(default.stdout), job_counts(on_command_line.stdout)
    assert "memory_benchmark" not in changed and counts["memory_benchmark"] == 1
    assert (changed["evaluate"], changed["real_samples"]) == (2 * counts["evaluate"], 2)
    assert "--seeds 0-7 " in on_command_line.stdout and "--seeds 8-15 " in on_command_line.stdout


def test_command_line_scalars_are_typed_as_a_config_file_types_them():
    """configcheck.command_line_typed on what Snakemake's reading of a --config value gives (YAML's
    BaseLoader) against yaml.safe_load of the same text, the reading of a config file."""
    text = ("{evaluate: {num_samples: 200, seeds: [0, 1], memory_benchmark: null, reference: {limit: ~}},"
            " tf32: true, compile: False, lr: 2.0e-4, tau: .5, big: 1_000, path: data/x.yaml, name: cifar10,"
            " dates: 2024-01-01, empty: [], nested: [[1, a], {b: null}]}")
    as_given = yaml.load(text, Loader=yaml.BaseLoader)
    assert as_given["evaluate"]["num_samples"] == "200"  # what the workflow is handed
    typed = configcheck.command_line_typed(as_given)
    expected = yaml.safe_load(text)
    expected["dates"] = "2024-01-01"  # neither a number, a truth value nor null: the string as given
    assert typed == expected
    assert [type(v) for v in typed["evaluate"].values()] == [int, list, type(None), dict]
    # A top-level value is a string Snakemake could not read as a number; a quoted number is typed too.
    assert configcheck.command_line_typed({"paper_values": "null", "run": "tiny", "title": ""}) == \
        {"paper_values": None, "run": "tiny", "title": ""}
    assert configcheck.command_line_typed(yaml.load('{title: "2024", p: "a\'b"}', Loader=yaml.BaseLoader)) == \
        {"title": 2024, "p": "a'b"}


def test_a_key_written_without_a_space_after_its_colon_is_named_with_the_fix():
    """`--config 'studies={tiny: {evaluate: {num_samples:50}}}'`: YAML reads one key 'num_samples:50'."""
    config = io.read_yaml(TINY)
    config["studies"]["tiny"]["evaluate"].update(yaml.safe_load("{num_samples:50}"))
    with pytest.raises(configcheck.ConfigError) as error:
        configcheck.checked_config(config, REPO)
    assert str(error.value).startswith(
        "studies.tiny.evaluate: unknown key 'num_samples:50' (YAML reads 'num_samples:50' as one key: write a space "
        "after the colon, 'num_samples: ...'); allowed: batch_size,")
    # A colon in a key that is not an allowed key before it gets no such advice.
    config["studies"]["tiny"]["evaluate"] = {"samples:50": None}
    with pytest.raises(configcheck.ConfigError, match=r"unknown key 'samples:50'; allowed: batch_size,"):
        configcheck.checked_config(config, REPO)
    # In block style (`evaluate:` then the line `num_samples:50`) the block is that text, not a mapping.
    config["studies"]["tiny"]["evaluate"] = yaml.safe_load("evaluate:\n  num_samples:50\n")["evaluate"]
    with pytest.raises(configcheck.ConfigError) as error:
        configcheck.checked_config(config, REPO)
    assert str(error.value).startswith("studies.tiny.evaluate: 'num_samples:50' is not of type 'object'")
    assert str(error.value).endswith(
        "(YAML reads 'num_samples:50' as text: write a space after the colon, 'num_samples: ...')")
    config["studies"]["tiny"]["evaluate"] = "samples:50"
    with pytest.raises(configcheck.ConfigError) as error:
        configcheck.checked_config(config, REPO)
    assert "write a space" not in str(error.value)


def test_a_null_block_keeps_its_null_and_defaults_are_copies():
    config = io.read_yaml(TINY)
    config["studies"]["tiny"]["evaluate"].update(memory_benchmark=None, speed_benchmark=None)
    checked, _ = configcheck.checked_config(config, REPO)
    evaluate = checked["studies"]["tiny"]["evaluate"]
    assert (evaluate["memory_benchmark"], evaluate["speed_benchmark"]) == (None, None)
    assert evaluate["inception_weights"] is None and evaluate["num_samples"] == 16  # defaults, and the file's
    study = {key: config["studies"]["tiny"][key] for key in ("data", "T_base", "teacher", "pd_chain", "rounds")}
    config["studies"].update(one=study, two=copy.deepcopy(study))
    checked, _ = configcheck.checked_config(config, REPO)
    one, two = checked["studies"]["one"]["evaluate"], checked["studies"]["two"]["evaluate"]
    # Each study's default block is its own, filled in as the schema says: a change to one is not to the other.
    assert one == two and one["num_samples"] == 100 and one["memory_benchmark"] == {"limit_gb": 1.0}
    assert one is not two and one["memory_benchmark"] is not two["memory_benchmark"]


def _tiny_plan(top=None, **study):
    """The tiny preset's plan, with `top` (top-level keys) and `study` (merged into its study) changed."""
    config = {**io.read_yaml(TINY), **(top or {})}
    config["studies"]["tiny"] = studyplan.deep_merge(config["studies"]["tiny"], study)
    checked, files = configcheck.checked_config(config, REPO)
    return studyplan.build_plans(checked["studies"], files)["tiny"]


def _round_settings(plan):
    return {path: stage.settings for path, stage in plan.stages.items() if stage.rule == "distill"}


def test_a_setting_no_term_of_a_round_reads_leaves_that_round_as_it_was():
    """distill.tau is read by CFD only: a change of it changes the RCFD and RDD rounds' settings (so
    they retrain) and not those of the PD chain or the PD rounds, which are written with its default."""
    before, after = _round_settings(_tiny_plan()), _round_settings(_tiny_plan(distill={"tau": 0.5}))
    assert before.keys() == after.keys()
    changed = sorted(path for path in before if before[path] != after[path])
    assert {path.split("/")[3] for path in changed} == {"rcfd", "rdd"}  # results/tiny/models/<method>/...
    assert all(after[path]["tau"] == 0.9 for path in after if "/pd/" in path)
    assert all(after[path]["tau"] == 0.5 for path in changed)


def test_a_variant_changing_only_what_its_rounds_do_not_read_stands_for_the_main_run(tmp_path):
    """An ablation of PD's rounds that changes CFD's tau or the classifier trains nothing of its own: the
    PD main run stands in, and the manifest says what its rounds do not read (the report shows it)."""
    ablation = {"method": "pd", "variants": {"tau": {"tau": 0.5}, "queue": {"settings": {"memory_size": 64}},
                                             "net": {"classifier": {"net": {"name": "densenet121"}}}}}
    shutil.copytree(REPO / "ablations", tmp_path / "ablations")
    write_yaml(tmp_path / "ablations" / "inert.yaml", ablation)
    plan = _tiny_plan({"ablations_dir": str(tmp_path / "ablations")}, ablations=["inert"])
    variants = plan.ablations["inert"]["variants"]
    assert {name: (v["same_as"], v["unread"]) for name, v in variants.items()} == {
        "tau": ("pd", ["tau"]), "queue": ("pd", ["memory_size"]), "net": ("pd", ["classifier"])}
    assert not [path for path in plan.stages if "inert-" in path]  # no round or classifier of their own


def _undescribed(node, path):
    """Paths of the properties under a schema node that say nothing of what they are for."""
    for key in ("properties", "patternProperties"):
        for name, sub in node.get(key, {}).items():
            if "description" not in sub and "$ref" not in sub:
                yield f"{path}.{name}"
            yield from _undescribed(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from _undescribed(node[key], f"{path}[]")
    for name, sub in node.get("$defs", {}).items():
        yield from _undescribed(sub, f"$defs.{name}")
    for sub in node.get("oneOf", []):
        yield from _undescribed(sub, path)


@pytest.mark.parametrize("schema", ["config", "ablation"])
def test_every_key_of_the_schemas_says_what_it_is_for(schema):
    """A schema error quotes the key's description, and the schema is the config's reference."""
    assert not list(_undescribed(io.read_yaml(REPO / "workflow" / "schemas" / f"{schema}.schema.yaml"), schema))


def test_a_target_the_plan_lacks_is_named_with_what_the_study_has():
    """A model or evaluation typed by hand that the study does not plan: the error names those it has
    beside it (the rules raise it as the job's WorkflowError, before anything runs)."""
    plan = _tiny_plan()
    assert plan.stage("results/tiny/models/pd/default/student_2.pt").rule == "distill"
    with pytest.raises(studyplan.NotPlanned, match=r"^results/tiny/models/pd/default/student_3\.pt is not a model of "
                       r"study 'tiny'; its models in results/tiny/models/pd/default/: student_1\.pt, student_2\.pt "
                       r"\(see its config\)$"):
        plan.stage("results/tiny/models/pd/default/student_3.pt")
    with pytest.raises(studyplan.NotPlanned, match=r"its model folders: results/tiny/models/classifier/default, "
                                                   r"results/tiny/models/pd/chain, .*results/tiny/models/teacher \("):
        plan.stage("results/tiny/models/pd/defualt/student_1.pt")
    assert plan.evaluation("pd/default", 1, 0).labels["method"] == "pd"
    with pytest.raises(studyplan.NotPlanned, match=r"^study 'tiny' does not evaluate pd/default at 2 steps with "
                       r"seed 0; it evaluates pd/default at 1 step with seed 0 \(see its evaluate block\)$"):
        plan.evaluation("pd/default", 2, 0)
    with pytest.raises(studyplan.NotPlanned, match=r"it evaluates no run pd/defualt; its runs: ddim/teacher, "
                                                   r"pd/chain, pd/default, .*real/test \("):
        plan.evaluation("pd/defualt", 1, 0)
