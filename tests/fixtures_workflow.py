"""Helpers for the workflow tests: Snakemake as a child process in a scratch working directory."""

import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SNAKEFILE = REPO / "Snakefile"


def snakemake_args(workdir, *args):
    """Snakemake's arguments for this repository's Snakefile, run in `workdir`."""
    return ["-s", str(SNAKEFILE), "--directory", str(workdir), *map(str, args)]


def snakemake_command(workdir, *args):
    """The argument list of `python -m snakemake` on this repository's Snakefile, run in `workdir`."""
    return [sys.executable, "-m", "snakemake", *snakemake_args(workdir, *args)]


def snakemake_env(**extra):
    """The environment of a Snakemake child: this interpreter's folder first on PATH."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra)
    return env


def _snakemake_main(argv, cwd, env, log_path):
    """In a process forked from the fork server: `python -m snakemake ARGV` in `cwd` with `env`, its output
    (and its jobs') in `log_path`. `python -m` puts the working directory first on the module path: so here."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.path.insert(0, cwd)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    from snakemake.cli import main

    sys.argv = ["snakemake", *argv]
    main(argv)


_SNAKEMAKE_FORKS = multiprocessing.get_context("forkserver")
# Snakemake's own import is most of a dry run's time (2-3 s of 3); the fork server pays it once.
_SNAKEMAKE_FORKS.set_forkserver_preload(["snakemake.cli", __name__])


def run_snakemake(workdir, *args, timeout=600, **extra_env):
    """Run Snakemake to the end; returns the CompletedProcess with stdout and stderr merged.

    The same as `python -m snakemake` (`snakemake_command`) in a child of its own, forked from a
    server that imported Snakemake once."""
    argv = snakemake_args(workdir, *args)
    with tempfile.TemporaryDirectory() as scratch:
        log_path = os.path.join(scratch, "snakemake.log")
        child = _SNAKEMAKE_FORKS.Process(target=_snakemake_main,
                                         args=(argv, str(workdir), snakemake_env(**extra_env), log_path))
        child.start()
        child.join(timeout)
        if child.exitcode is None:
            child.kill()
            child.join()
            raise subprocess.TimeoutExpired(["snakemake", *argv], timeout)
        with open(log_path) as log:
            return subprocess.CompletedProcess(["snakemake", *argv], child.exitcode, log.read())


def write_yaml(path, data):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def job_counts(output):
    """{rule: count} from the 'Job stats' table Snakemake prints (dry run or real run)."""
    table = output.split("Job stats:", 1)[1]
    counts = {}
    for line in table.splitlines()[3:]:
        match = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if not match:
            break
        counts[match[1]] = int(match[2])
    return counts


def lint_findings(output):
    """[(where, title)] from Snakemake's text lint report ('Lints for ...:' headers, '* title' items)."""
    findings, where = [], None
    for line in output.splitlines():
        if line.startswith("Lints for "):
            where = line.removeprefix("Lints for ").rstrip(":")
        elif line.startswith("    * ") and where:
            findings.append((where, line.removeprefix("    * ").rstrip(":")))
    return findings
