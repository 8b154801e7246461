"""Missing data: the error every dataset source raises (no torch: the workflow's plan checks data with
it), and fetching a dataset once when its spec says download: true."""

import os
from pathlib import Path

from rdd import io


class DatasetMissingError(FileNotFoundError):
    """Dataset files are absent; the message names the paths looked in and how to get the data."""


def missing_error(name, paths, how):
    """DatasetMissingError for dataset `name` listing `paths` and the instructions `how`."""
    listed = "\n".join(f"  {p}" for p in paths)
    # A config's data root is usually relative: say relative to what.
    where = "" if all(os.path.isabs(str(p)) for p in paths) else f"\n(relative paths are from {os.getcwd()})"
    return DatasetMissingError(f"dataset {name!r} not found; looked for:\n{listed}{where}\nto provide it: {how}")


def fetch_once(spec, present, fetch):
    """Call `fetch()` unless `present()`, both under a lock in the dataset's root: the jobs that start
    together (statistics, teacher, classifier) would each download the same files at once, and one
    could read a file that another is still writing; the first fetches while the others wait, then find
    the files complete."""
    lock = Path(spec["root"]) / f".{spec['name']}-download.lock"
    if present() and not os.access(lock.parent, os.W_OK):
        return  # a read-only copy: nobody can be writing it, and no lock can be made there
    with io.one_at_a_time(lock):
        if not present():
            fetch()
