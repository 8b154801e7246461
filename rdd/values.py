"""Tests of plain values read from YAML or JSON (settings, network and dataset configs, records, paper
values), and the advice for a key YAML read with its value, in one place; no imports, so every module may
use them. Booleans are neither integers nor numbers."""

import math


def is_int(value):
    return type(value) is int


def is_number(value):
    """An int or a finite float (`.inf` and `nan` are YAML floats; no setting means them)."""
    return (type(value) is int or isinstance(value, float)) and math.isfinite(value)


def colon_hint(key, allowed):
    """For an unknown key like 'num_samples:-5', whose part before the colon is allowed: YAML read
    `key:value` without a space as one key, and the message says so; else ''."""
    name, colon, _ = str(key).partition(":")
    if not colon or name not in allowed:
        return ""
    return f" (YAML reads {str(key)!r} as one key: write a space after the colon, '{name}: ...')"
