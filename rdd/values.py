"""Tests of plain values read from YAML or JSON (settings, network and dataset configs, records, paper
values), in one place; no imports, so every module may use them. Booleans are neither integers nor numbers."""

import math


def is_int(value):
    return type(value) is int


def is_number(value):
    """An int or a finite float (`.inf` and `nan` are YAML floats; no setting means them)."""
    return (type(value) is int or isinstance(value, float)) and math.isfinite(value)
