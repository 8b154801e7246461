"""Helpers for the workflow tests: Snakemake as a child process in a scratch working directory."""

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SNAKEFILE = REPO / "Snakefile"


def snakemake_command(workdir, *args):
    """The argument list of `python -m snakemake` on this repository's Snakefile, run in `workdir`."""
    return [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir), *map(str, args)]


def snakemake_env(**extra):
    """The environment of a Snakemake child: this interpreter's folder first on PATH."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra)
    return env


def run_snakemake(workdir, *args, timeout=600, **extra_env):
    """Run Snakemake to the end; returns the CompletedProcess with stdout and stderr merged."""
    return subprocess.run(snakemake_command(workdir, *args), cwd=workdir, env=snakemake_env(**extra_env),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)


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
