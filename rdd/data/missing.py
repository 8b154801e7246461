"""The missing-data error every dataset source raises (no torch: the workflow's plan checks data with it)."""

import os


class DatasetMissingError(FileNotFoundError):
    """Dataset files are absent; the message names the paths looked in and how to get the data."""


def missing_error(name, paths, how):
    """DatasetMissingError for dataset `name` listing `paths` and the instructions `how`."""
    listed = "\n".join(f"  {p}" for p in paths)
    # A config's data root is usually relative: say relative to what.
    where = "" if all(os.path.isabs(str(p)) for p in paths) else f"\n(relative paths are from {os.getcwd()})"
    return DatasetMissingError(f"dataset {name!r} not found; looked for:\n{listed}{where}\nto provide it: {how}")
