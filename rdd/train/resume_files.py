"""The files of a stage's resume folder, and freeing the space of those that no run reads.

A folder holds `resume.pt`, the state of the settings and inputs it last trained with. Training
(rdd.train.loop) sets aside a state written for other settings or inputs as
`resume.pt.stale-<digest>`, brought back when they return, and a state it cannot read as
`resume.pt.corrupt-<unix time>`, kept for a look. No run deletes either: at paper scale each is a
network with its optimiser's moments (429 MB for the CIFAR-10 UNet, by its parameter count), one per
stage and per settings tried. `python -m rdd prune-resume` lists them and, asked to, deletes them.
"""

import time
from pathlib import Path

from rdd import io

STATE = "resume.pt"
OTHER_SETTINGS, DAMAGED = "stale", "corrupt"
CUT_SHORT = "a write cut short by a kill (the stage's next run would remove it)"


def state_path(resume_dir):
    """The resume state of the stage whose resume folder is `resume_dir`."""
    return Path(resume_dir) / STATE


def set_aside_path(path, kind, tag):
    """Where the state at `path` goes when it is set aside as `kind` (OTHER_SETTINGS: `tag` is the digest
    of its settings and inputs; DAMAGED: `tag` is the time it was found unreadable)."""
    return path.with_name(f"{path.name}.{kind}-{tag}")


def _describe(path):
    """What a state set aside is, or None for any other file."""
    kind, sep, tag = path.name.removeprefix(STATE + ".").partition("-")
    if not path.name.startswith(STATE + ".") or not sep or not tag:
        return None
    if kind == OTHER_SETTINGS:
        return f"set aside, written for other settings or inputs (digest {tag[:12]}); taken up again if they return"
    if kind == DAMAGED and tag.isdigit():
        found = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(int(tag)))
        return f"set aside, could not be read (found {found}); kept for a look"
    return None


def _size(count):
    return f"{count / 2**20:.1f} MiB"


def prune(root, delete, log=print):
    """List the files that no run reads in every resume folder under `root` (states set aside, writes cut
    short) and, with `delete`, delete them; each folder under its lock, so that one a training job is
    using is left alone (and said so). Returns (files, bytes) listed or deleted."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no resume folder {root}: training jobs keep their states under resume/ of "
                                "the folder the workflow runs in (--root names another)")
    files = total = states = kept = 0
    # A resume folder holds a state, one set aside, or the lock of a job writing its first.
    for folder in sorted({p.parent for p in root.rglob(STATE + "*") if p.is_file()}):
        try:
            with io.exclusive(state_path(folder)):
                if (state := state_path(folder)).is_file():
                    states, kept = states + 1, kept + state.stat().st_size
                unread = [(p, why) for p in sorted(folder.glob(STATE + ".*")) if p.is_file() and (why := _describe(p))]
                for path, why in unread + [(p, CUT_SHORT) for p in io.partial_writes(folder)]:
                    size = path.stat().st_size
                    if delete:
                        path.unlink()
                    log(f"{'deleted' if delete else 'found'}  {_size(size):>11}  {path}: {why}")
                    files, total = files + 1, total + size
        except io.OutputBusyError:
            log(f"left alone: {folder} (a training job is using it)")
    done = "deleted" if delete else "nothing deleted (--delete deletes them)"
    log(f"{files} files that no run reads, {_size(total)}: {done}; the {states} current resume states "
        f"({_size(kept)}) are kept")
    return files, total
