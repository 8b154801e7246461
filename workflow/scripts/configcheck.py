"""Config checks that need no library: key normalisation, and schema errors as one readable line.

Kept apart from studyplan (which imports torch) so that a config error is reported quickly.
"""

import json
import re

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
        return (f"{path}: unknown key {unknown[0]!r}; allowed: {', '.join(allowed + patterns) or 'none'}"
                if unknown else f"{path}: {error.message}")
    if error.validator in ("oneOf", "anyOf"):
        options = "; or ".join(s.get("description", json.dumps(s)) for s in error.validator_value)
        return f"{path}: {error.instance!r} is not allowed; expected {options}"
    if error.validator == "enum":
        return f"{path}: {error.instance!r} is not allowed; allowed: {', '.join(map(repr, error.validator_value))}"
    hint = f" ({schema['description']})" if schema.get("description") else ""
    return f"{path}: {error.message}{hint}"


def check_run(config):
    """Every name in `run` must be a study."""
    for name in config.get("run", []):
        if name not in config["studies"]:
            raise ConfigError(f"run: {name!r} is not a study; studies: {', '.join(config['studies'])}")
