"""Config checks made before any study is planned: key normalisation, schema errors as one readable
line, and names checked against the library's registry and the ablation files.

Kept apart from studyplan (which imports the library's torch-free part: the settings, the dataset
registry, the network configs) so that a schema error is reported before any of it is read.
"""

import copy
import json
import re
from collections.abc import Mapping
from pathlib import Path

import jsonschema
import yaml

from rdd import io
from rdd.values import colon_hint, is_number

# Names of studies, ablations and variants (they become parts of paths).
NAME = re.compile(r"[a-z0-9_]+")


class ConfigError(ValueError):
    """A config or ablation file that cannot run; the message names the key and what is allowed."""


def string_keys(value):
    """The same structure with every mapping key as a string (YAML reads `2: 20000` with an int key)."""
    if isinstance(value, dict):
        return {str(k): string_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [string_keys(v) for v in value]
    return value


def unknown_key(path, key, allowed):
    return f"{path}: unknown key {key!r}{colon_hint(key, allowed)}; allowed: {', '.join(allowed) or 'none'}"


def shown(value):
    """A config value as a message names it: YAML's null for None (a key left empty reads as null)."""
    return "null (an empty value)" if value is None else repr(value)


def not_allowed(path, value, allowed):
    return f"{path}: {shown(value)} is not allowed; allowed: {', '.join(map(repr, allowed))}"


def describe_schema_error(error, where=""):
    """One line naming the key of a jsonschema ValidationError (after `where`) and what is allowed there."""
    from jsonschema.exceptions import best_match

    # Descend into an alternative only where the value fits it and fails further in; a value
    # that fits none is reported with the list of alternatives.
    while error.validator in ("oneOf", "anyOf") and error.context:
        deeper = [e for e in error.context if e.relative_path]
        if not deeper:
            break
        error = best_match(deeper)
    path = where + (".".join(str(p) for p in error.absolute_path) or "(top level)")
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        patterns = [f"keys matching {p}" for p in schema.get("patternProperties", {})]
        unknown = [k for k in error.instance if k not in allowed]
        return unknown_key(path, unknown[0], allowed + patterns) if unknown else f"{path}: {error.message}"
    if error.validator in ("oneOf", "anyOf"):
        options = "; or ".join(s.get("description", json.dumps(s)) for s in error.validator_value)
        return f"{path}: {shown(error.instance)} is not allowed; expected {options}"
    if error.validator == "enum":
        return not_allowed(path, error.instance, error.validator_value)
    hint = f" ({schema['description']})" if schema.get("description") else ""
    scalar = isinstance(error.instance, str) or is_number(error.instance)
    if error.validator == "type" and "array" in error.validator_value and scalar:
        # `--config run=fmnist` is the usual slip: say how a list of one is written.
        hint += f"; a list of one is written [{error.instance}]"
    if error.validator == "type" and "object" in error.validator_value and isinstance(error.instance, str):
        # A block line `num_samples:50` under `evaluate:` is one string, not a key and its value.
        hint += colon_hint(error.instance, schema.get("properties", {}), "text")
    if error.validator == "type" and "null" in error.validator_value and error.instance in ("None", "none"):
        # `--config` and YAML read None as text: null is written null (or ~).
        hint += "; null is written null"
    message, value = error.message, repr(error.instance)
    if message.startswith(value):  # jsonschema's repr of the value: name it as the messages above do
        message = shown(error.instance) + message[len(value):]
    return f"{path}: {message}{hint}"


def check_run(config):
    """Every name in `run` must be a study."""
    for name in config.get("run", []):
        if name not in config["studies"]:
            raise ConfigError(f"run: {name!r} is not a study; studies: {', '.join(config['studies'])}")


# Method and loss-term names come from the library's registry (rdd.methods), not from the schemas.

def check_method_names(config):
    """Each study's `rounds` keys must be distillation methods."""
    from rdd import methods

    distilled = methods.method_names(distilled=True)
    for study, block in config["studies"].items():
        for name in block.get("rounds", {}):
            if name not in distilled:
                raise ConfigError(unknown_key(f"studies.{study}.rounds", name, distilled))


def check_ablation_names(ablation, where):
    """An ablation's method, and the loss terms its variants switch or weigh."""
    from rdd import methods

    distilled, terms = methods.method_names(distilled=True), list(methods.TERMS)
    if ablation["method"] not in distilled:
        raise ConfigError(not_allowed(f"{where}method", ablation["method"], distilled))
    for name, variant in ablation["variants"].items():
        for i, term in enumerate(variant.get("losses", [])):
            if term not in terms:
                raise ConfigError(not_allowed(f"{where}variants.{name}.losses.{i}", term, terms))
        for term in variant.get("weights", {}):
            if term not in terms:
                raise ConfigError(unknown_key(f"{where}variants.{name}.weights", term, sorted(terms)))


# ----------------------------------------------------------------------------- a whole config

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def _filling_defaults(validator_class):
    """`validator_class` that also gives each absent property its default (a copy), in mappings only.

    (Snakemake's `validate` fills them in whatever the instance is, so a null given for a key that may
    be an object or null, as `evaluate.memory_benchmark: null` is, failed with an AttributeError.)"""
    check_properties = validator_class.VALIDATORS["properties"]

    def properties(validator, properties, instance, schema):
        if validator.is_type(instance, "object"):
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from check_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": properties})


def validated(data, schema, where=""):
    """`data` checked against workflow/schemas/`schema` (defaults filled in), or a one-line ConfigError."""
    document = io.read_yaml(SCHEMAS / schema)
    validator = _filling_defaults(jsonschema.validators.validator_for(document))(document)
    try:
        validator.validate(data)
    except jsonschema.ValidationError as error:
        raise ConfigError(describe_schema_error(error, where)) from None
    return data


def load_ablations(folder):
    """Every <folder>/<name>.yaml, each checked against the ablation schema."""
    files = {}
    for path in sorted(Path(folder).glob("*.yaml")):
        where = f"{path}: "
        try:
            data = io.read_yaml(path)
        except io.YamlError as exc:
            raise ConfigError(str(exc)) from None
        if not NAME.fullmatch(path.stem):
            raise ConfigError(f"{where} an ablation name is lower-case letters, digits and underscores")
        files[path.stem] = validated(string_keys(data or {}), "ablation.schema.yaml", where)
        check_ablation_names(files[path.stem], where)
    return files


def check_chosen_ablations(config, files, folder):
    """Each study's `ablations` (unless "all") must name files of the ablations folder."""
    for study, block in config["studies"].items():
        for name in [] if block["ablations"] == "all" else block["ablations"]:
            if name not in files:
                raise ConfigError(f"studies.{study}.ablations: {name!r} has no file {name}.yaml in the ablations "
                                  f"folder {folder} (ablations_dir); available: {', '.join(files) or 'none'}")


def check_paper_values(config, repo):
    """The paper values file reads as the report will read it, and each study's paper_key is one of its datasets."""
    from rdd.report.errors import ReportInputError
    from rdd.report.paper import load_paper_values

    try:
        paper = load_paper_values(Path(repo) / config["paper_values"])  # an absolute path stays as it is
    except ReportInputError as exc:
        raise ConfigError(f"paper_values: {exc}") from None
    for study, block in config["studies"].items():
        try:
            paper.dataset(block["paper_key"])
        except ReportInputError as exc:
            raise ConfigError(f"studies.{study}.paper_key: {exc}") from None


def check_config_files(paths):
    """Each config file is YAML whose mappings name each key once: Snakemake's loader keeps a repeated
    key's last value without a word (a study's block written twice would lose its first half)."""
    for path in paths:
        try:
            io.read_yaml(path)
        except io.YamlError as exc:
            raise ConfigError(f"config file {exc}") from None


def command_line_typed(value):
    """`--config` values with every scalar typed as in a config file: Snakemake reads a mapping or a list
    given there with YAML's BaseLoader, which leaves each scalar inside it a string ('200', 'true',
    'null'), and a top-level 'null' stays a string too. (The command line's quotes are lost by then: a
    quoted "200" becomes 200 as well.)"""
    if isinstance(value, Mapping):
        return {key: command_line_typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [command_line_typed(item) for item in value]
    if isinstance(value, str) and value:
        try:
            typed = io.parse_yaml(value)
        except yaml.YAMLError:  # e.g. an unbalanced quote inside a path: a string as given
            return value
        if typed is None or isinstance(typed, (bool, int, float)):
            return typed
    return value


def checked_config(config, repo):
    """The config validated (defaults filled in) and its ablation files (`ablations_dir`, relative to
    `repo` unless absolute): what the workflow and the benchmarks plan studies from."""
    checked = validated(string_keys(config), "config.schema.yaml")
    check_run(checked)
    check_method_names(checked)
    check_paper_values(checked, repo)
    folder = Path(repo) / checked["ablations_dir"]  # an absolute folder stays as it is
    files = load_ablations(folder)
    check_chosen_ablations(checked, files, folder)
    return checked, files
