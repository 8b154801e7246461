"""Tests of plain values read from YAML or JSON, shared by the settings, the method registry and the
network configs (no imports: every module may use them). Booleans are neither integers nor numbers."""

import math


def is_int(value):
    return type(value) is int


def is_number(value):
    """An int or a finite float (`.inf` and `nan` are YAML floats; no setting means them)."""
    return (type(value) is int or isinstance(value, float)) and math.isfinite(value)
