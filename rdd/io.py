"""Atomic file output, JSON, YAML and npz reading, and locks on outputs (torch-free; checkpoints are in
rdd.checkpoints).

Every artefact the suite writes goes through here, so a killed job never
leaves a half-written file under its final name.
"""

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import yaml


class YamlError(ValueError):
    """A file that is not UTF-8 YAML; the message names it, on one line."""


class OutputBusyError(RuntimeError):
    """Another process is writing the same output; the message names it."""


LOCK_ATTEMPTS = 10  # each retry needs another writer to have finished in between


@contextlib.contextmanager
def exclusive(output):
    """Hold `<output>.lock` for the duration: a second writer of `output` is refused at once,
    so two commands can never interleave their partial files. The holder removes the lock file as it
    leaves."""
    output = Path(output)
    lock = output.with_name(output.name + ".lock")
    created = _missing_folders(lock.parent)
    for _ in range(LOCK_ATTEMPTS):
        handle = _open_lock(lock)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise OutputBusyError(f"another process is writing {output} (it holds {lock}); wait for it to "
                                  "finish, or write to another path") from None
        if names_open_file(lock, handle):
            break
        # Its holder finished and removed it between our open and our lock: a lock on that file would
        # guard nothing (a newcomer makes and takes a new one), so take the file the path names now.
        handle.close()
    else:
        raise OutputBusyError(f"{lock} was replaced each of {LOCK_ATTEMPTS} times it was locked: other processes "
                              f"keep writing {output}, or its file system does not keep a file's identity")
    with handle:
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)
            # Folders made for the lock alone go too: a command refused at once leaves nothing behind.
            for folder in created:
                try:
                    folder.rmdir()
                except OSError:  # it holds what the work wrote
                    break


def _open_lock(lock):
    """`lock` opened for appending (made if missing), its folder made again if need be."""
    for attempt in range(3):
        lock.parent.mkdir(parents=True, exist_ok=True)
        try:
            return open(lock, "a")
        except FileNotFoundError:  # a writer that failed removed the folder it had made: make it again
            if attempt == 2:
                raise


def names_open_file(path, handle):
    """Whether `path` names the very file that `handle` has open (not a removed one, nor one made since)."""
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def one_at_a_time(lock):
    """Hold the file lock `lock`, waiting for any process that holds it: for work that the first process
    to need it does once (a download, a decompression) while the others wait, then find it done. The
    lock file stays (removing it could let a newcomer lock a new file beside a waiter on the old)."""
    lock = Path(lock)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


def _missing_folders(folder):
    """`folder` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    return missing


def partial_writes(folder):
    """The temporary files of `write_with` in `folder`, sorted: writes cut short by a kill, unless a live
    writer holds the lock of what is written there (see `exclusive`)."""
    folder = Path(folder)
    return sorted(p for p in folder.glob(".*.tmp") if p.is_file()) if folder.is_dir() else []


def remove_partial_writes(folder):
    """Delete the temporary files that writers killed mid-write left in `folder`; return their names.

    Call it only while holding the lock of everything written there (see `exclusive`): a live
    writer's temporary file looks the same."""
    leftovers = partial_writes(folder)
    for path in leftovers:
        path.unlink(missing_ok=True)
    return [p.name for p in leftovers]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def write_with(path, write_fn, mode="wb"):
    """Write `path` atomically: `write_fn(f)` fills a temporary file in the same folder, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600; outputs get the usual umask-based mode
    try:
        with os.fdopen(fd, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(obj, path):
    """Write `obj` as indented JSON atomically."""
    write_with(path, lambda f: f.write(json.dumps(obj, indent=2, sort_keys=True) + "\n"), "w")


def write_bytes(data, path):
    write_with(path, lambda f: f.write(data), "wb")


def file_problem(path):
    """Why `path` cannot be read as a file, worded to follow its description ("checkpoint not found"):
    'not found', 'is a directory', 'is not a regular file'; None when it is a regular file."""
    path = Path(path)
    if path.is_file():
        return None
    if path.is_dir():
        return "is a directory"
    return "is not a regular file" if path.exists() else "not found"


def output_problem(path, kind="file"):
    """Why `path` cannot be written as an output `kind` ("file" or "folder"), or None; checked before
    any work, so that a run does not fail at its end. Missing parent folders are created later."""
    path = Path(path)
    if kind == "file" and path.is_dir():
        return "is a directory; give a file path"
    if kind == "folder" and path.exists() and not path.is_dir():
        return "is a file; give a folder path"
    ancestor = path.parent if kind == "file" else path
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"cannot be created: {ancestor} is not a folder"
    # A file made and removed at once, as the command's own writes will make theirs: permission bits
    # alone (os.access) pass folders that refuse new files all the same (e.g. /proc, even for root).
    try:
        fd, probe = tempfile.mkstemp(dir=ancestor, prefix=".rdd-write-check.", suffix=".tmp")
    except OSError as error:
        if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return f"cannot be written: the folder {ancestor} is not writable"
        return f"cannot be written: the folder {ancestor} refuses new files ({error.strerror})"
    os.close(fd)
    os.unlink(probe)
    return None


def overwrite_problem(keeps, writes):
    """Why a command that writes the files `writes` would overwrite one of `keeps` (what it reads, and
    the records beside its input models), or None. Each is a list of (what it is, path); paths are
    compared resolved, so that `a/../s.json` and a link count. (The outputs' required suffixes keep
    them apart from one another.)"""
    written = {os.path.realpath(path): what for what, path in writes}
    for what, path in keeps:
        if (key := os.path.realpath(path)) in written:
            return f"{written[key]} would overwrite {what}, {path}; write elsewhere"
    return None


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping naming a key twice, where PyYAML keeps the last one
    without a word (a settings block written twice would lose its first half)."""


def _unique_key_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key: construct_mapping names it
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError("while constructing a mapping", node.start_mark,
                                                    f"found the key {key!r} a second time", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_key_mapping)


def parse_yaml(text):
    """YAML (text, or an open file: its errors then name it) parsed safely (no Python objects), each
    mapping's keys once; yaml.YAMLError otherwise."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def read_yaml(path):
    """The contents of a YAML file, parsed as `parse_yaml` does; YamlError when it is not such YAML."""
    try:
        with open(path, encoding="utf-8") as f:
            return parse_yaml(f)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise YamlError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None


def read_json(path):
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise ValueError(f"cannot parse JSON file {path}: {exc}") from exc


class NpzError(ValueError):
    """An .npz file that cannot be read; the message says why, to follow the file's name."""


def read_npz(path, names=None, required=()):
    """The arrays of an .npz file (those of `names` it holds, default all), each read and so
    CRC-checked, pickles refused. NpzError when it is not an archive, is damaged, or lacks one of
    `required` (the message then names what it holds)."""
    if not zipfile.is_zipfile(path):  # np.load would take any other file for a pickle
        raise NpzError("is not an .npz archive (truncated, or another kind of file)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            members = npz.files
            missing = [name for name in required if name not in members]
            arrays = {} if missing else {name: npz[name] for name in members if names is None or name in names}
    except Exception as exc:  # a damaged member (bad CRC, cut short), pickled objects
        raise NpzError(f"cannot be read ({type(exc).__name__}: {exc})") from exc
    if missing:
        raise NpzError(f"lacks {' and '.join(map(repr, missing))} (it holds "
                       f"{', '.join(map(repr, members)) or 'no arrays'})")
    return arrays


def file_hexdigest(path, algorithm):
    """Hex digest of a file's bytes (`algorithm`: a hashlib name), read in blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_file(path):
    """Hex sha256 of a file's bytes."""
    return file_hexdigest(path, "sha256")
