"""Tests of plain values read from YAML or JSON (settings, network and dataset configs, records, paper
values), how a message quotes one, and the advice for a key YAML read with its value, in one place; no
imports, so every module may use them. Booleans are neither integers nor numbers."""

import math


def is_int(value):
    return type(value) is int


def is_number(value):
    """An int or a finite float (`.inf` and `nan` are YAML floats; no setting means them)."""
    return (type(value) is int or isinstance(value, float)) and math.isfinite(value)


def brief(value, limit=80):
    """repr(value) for a message, cut after `limit` characters (a whole file read as one string where a
    mapping belongs would fill the terminal)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def colon_hint(text, allowed, read_as="one key"):
    """For an unknown key like 'num_samples:-5' (or, with `read_as="text"`, a string where a mapping
    belongs: the block line `num_samples:50` under `evaluate:`) whose part before the colon is allowed:
    YAML read `key:value` without a space as one scalar, and the message says so; else ''."""
    name, colon, _ = str(text).partition(":")
    if not colon or name.strip() not in allowed:
        return ""
    return f" (YAML reads {str(text)!r} as {read_as}: write a space after the colon, '{name.strip()}: ...')"
