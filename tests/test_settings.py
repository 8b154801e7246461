"""The settings definitions (rdd/settings.py): one entry per setting with its default, what it allows
and its help; `show-defaults` prints them as a settings file; `validate` checks what single values
cannot show without building a network."""

import argparse
import json
import subprocess
import sys

import pytest
import yaml

from conftest import REPO
from rdd import methods, settings as settings_mod
from rdd.cli import main as rdd_main

COMMANDS = sorted(settings_mod.SETTINGS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_setting_has_one_line_of_help_and_a_default_it_allows(command):
    entries = settings_mod.flat(command)
    assert len(entries) >= 10
    for key, entry in entries.items():
        assert entry.help.strip() and "\n" not in entry.help, key
        if entry.kind is None:  # a record its registry checks
            assert isinstance(entry.default, dict) and key in ("data", "net"), key
        elif entry.default is None:
            assert entry.optional, key
        else:
            assert settings_mod._value_error(key, entry, entry.default) is None, key


@pytest.mark.parametrize("command", COMMANDS)
def test_show_defaults_is_a_settings_file_with_the_help_of_every_key(command, capsys, tmp_path):
    assert rdd_main(["show-defaults", command]) == 0
    text = capsys.readouterr().out
    assert yaml.safe_load(text) == settings_mod.defaults(command)
    for key, entry in settings_mod.flat(command).items():
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(key.rsplit(".", 1)[-1] + ":")
                    and entry.help in ln)
        assert "#" in line, key
    # ... and runs as one: the file read back resolves to the defaults.
    (tmp_path / "s.yaml").write_text(text)
    assert settings_mod.resolve(command, settings_mod.load_file(tmp_path / "s.yaml")) == \
        settings_mod.defaults(command)
    assert rdd_main(["show-defaults", command, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == settings_mod.defaults(command)


def test_a_yaml_file_and_set_give_the_same_record(tmp_path):
    from rdd.cli import user_settings

    assignments = ["train.lr=1e-4", "tau=0.5", "weights.m_p2p=0.2", "is_p2p_group_size=32"]
    (tmp_path / "s.yaml").write_text("train: {lr: 1e-4}\ntau: 0.5\nweights: {m_p2p: 0.2}\nis_p2p_group_size: 32\n")
    from_set = user_settings(argparse.Namespace(settings=None, set=assignments), "distill")
    from_file = settings_mod.resolve("distill", user_settings(argparse.Namespace(settings=[tmp_path / "s.yaml"],
                                                                                 set=None), "distill"))
    assert from_file == settings_mod.resolve("distill", from_set)
    assert from_file["train"]["lr"] == 1e-4 and from_file["weights"]["m_p2p"] == 0.2


def test_validate_completes_the_record():
    distill = settings_mod.validate("distill", {"method": "rcfd", "weights": {"m_p2p": 0.5}})
    assert distill["weights"] == {**{t: 0.0 for t in methods.TERMS}, **methods.METHODS["rcfd"].weights, "m_p2p": 0.5}
    assert all(v is not None for v in distill["weights"].values())
    assert distill["data"]["image_size"] == 32 and distill["data"]["channels"] == 1
    with pytest.raises(settings_mod.SettingsError, match="every loss weight is zero"):
        settings_mod.validate("distill", {"method": "pd", "weights": {"pd": 0}})


def test_validate_checks_a_network_without_building_it():
    # This UNet has about 10^11 weights (380 GB in float32): were it built, this would run out of
    # memory, not return.
    big = {"ch": 2048, "ch_mult": [1, 2, 4, 8], "attn": [1, 2], "num_res_blocks": 4, "dropout": 0.0,
           "class_conditional": False}
    assert settings_mod.validate("teacher", {"net": big})["net"] == big
    with pytest.raises(settings_mod.SettingsError, match=r"setting 'net': attention levels \[5\] out of range"):
        settings_mod.validate("teacher", {"net": {**big, "attn": [5]}})
    with pytest.raises(settings_mod.SettingsError, match="setting 'net': bad classifier 'densenet201' config: "
                                                         r"unknown keys \['depth'\]"):
        settings_mod.validate("classifier", {"net": {"name": "densenet201", "depth": 3}})
    with pytest.raises(settings_mod.SettingsError, match=r"data: name: unknown dataset 'mnist3'"):
        settings_mod.validate("classifier", {"data": {"name": "mnist3"}})


def test_a_record_written_as_one_colon_line_gets_the_space_advice():
    """`data:` then the block line `name:fashion_mnist`: YAML reads the record as that text."""
    record = yaml.safe_load("data:\n  name:fashion_mnist\n")
    with pytest.raises(settings_mod.SettingsError) as error:
        settings_mod.validate("teacher", record)
    assert str(error.value) == ("setting 'data' must be a mapping, got 'name:fashion_mnist' (YAML reads "
                                "'name:fashion_mnist' as text: write a space after the colon, 'name: ...')")
    with pytest.raises(settings_mod.SettingsError) as error:  # no key of the record before the colon
        settings_mod.validate("teacher", {"net": "width:64"})
    assert str(error.value) == "setting 'net' must be a mapping, got 'width:64'"


def test_config_readme_describes_every_key_the_schemas_allow():
    """config/README.md names each key of a study, of its `evaluate` block and of an ablation variant,
    and each loss term."""
    from conftest import REPO

    readme = (REPO / "config" / "README.md").read_text()
    config = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    ablation = yaml.safe_load((REPO / "workflow" / "schemas" / "ablation.schema.yaml").read_text())
    study = config["$defs"]["study"]["properties"]
    keys = [*config["properties"], *study, *study["evaluate"]["properties"],
            *ablation["$defs"]["variant"]["properties"]]
    # ... and each loss term a variant's `weights` may name.
    missing = [key for key in [*keys, *methods.TERMS] if f"`{key}`" not in readme]
    assert missing == []


def test_config_schema_enums_are_the_librarys_lists():
    """The schema repeats lists the library owns: the sampling precisions, the Inception inputs and IS's
    split orders. (A study's paper_key is checked against the paper values file itself, which a config
    may replace.)"""
    from conftest import REPO
    from rdd.metrics.inception import DEFAULT_INCEPTION_INPUT, INPUT_PIPELINES

    study = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())["$defs"]["study"]
    evaluate = study["properties"]["evaluate"]["properties"]
    assert evaluate["sampling_precision"]["enum"] == list(settings_mod.PRECISIONS)
    assert evaluate["inception_input"]["enum"] == list(settings_mod.INCEPTION_INPUTS) == list(INPUT_PIPELINES)
    assert evaluate["inception_input"]["default"] == DEFAULT_INCEPTION_INPUT
    assert evaluate["isc_split_order"]["enum"] == list(settings_mod.ISC_SPLIT_ORDERS)
    assert evaluate["isc_split_order"]["default"] == settings_mod.DEFAULT_ISC_SPLIT_ORDER
    assert "enum" not in study["properties"]["paper_key"]


def test_the_settings_each_loss_term_reads_are_distillation_settings():
    distill = settings_mod.flat("distill")
    for term in methods.TERMS.values():
        assert set(term.settings) <= set(distill), term.name
    assert [term.name for term in methods.TERMS.values() if not term.settings] == ["pd"]
    assert methods.terms_reading("tau") == ("cfd",) and methods.terms_reading("dropout") == ()
    assert methods.terms_reading("feature_map") == ("is_p2p", "m_p2p")
    assert "classifier_input" not in methods.unread_settings({"cfd": 1.0})
    assert set(methods.unread_settings(methods.METHODS["rdd"].weights)) == set()
    assert set(methods.unread_settings({"pd": 1.0, "m_p2p": 0.0})) == {
        key for term in methods.TERMS.values() for key in term.settings}


def test_the_paper_values_name_the_reports_metrics():
    from rdd.report.paper import METRIC_NAMES
    from rdd.report.summary import METRICS

    assert METRIC_NAMES == tuple(METRICS)


def test_the_workflow_plans_every_preset_without_torch():
    """The study plan (every stage's settings validated: networks, recipes, datasets) imports no torch,
    so a dry run or a config error answers in seconds, and so does every SLURM job's own Snakemake."""
    code = """
import sys
sys.path.insert(0, "workflow/scripts")
import yaml, configcheck, studyplan
config = studyplan.deep_merge(yaml.safe_load(open("config/config.yaml")), yaml.safe_load(open("config/tiny.yaml")))
checked, ablations = configcheck.checked_config(config, ".")
plans = list(studyplan.build_plans(checked["studies"], ablations).values())
assert len(plans) == len(checked["studies"]) >= 4 and all(plan.stages for plan in plans)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "torch_fidelity"))
assert not heavy, heavy[:5]
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
