"""The three places that name the suite's packages agree: pyproject.toml (what pip installs),
environment.yml (the conda equivalent, not installable where the tests run) and .ci/install (the
tested torch pair, pinned)."""

import operator
import re

import pytest
import yaml

from conftest import REPO

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

# conda's names for the packages pip knows by another
CONDA_NAMES = {"pytorch": "torch"}


def _requirement(text):
    """'name>=1,<2' -> (name, '>=1,<2'), names in pip's normal form, conda's '=' read as '=='."""
    name, spec = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*(.*?)\s*", text).groups()
    name = CONDA_NAMES.get(name.lower(), name.lower().replace("_", "-"))
    spec = spec.replace(" ", "")
    return name, "==" + spec[1:] if re.fullmatch(r"=[^=].*", spec) else spec


def _version(text):
    return tuple(int(part) for part in text.split("."))


COMPARE = {"==": operator.eq, ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


def _satisfies(version, spec):
    """`version` within a comma-separated list of ==, >=, <=, >, < bounds (a naive check of release numbers)."""
    for bound in spec.split(","):
        op, value = re.fullmatch(r"(==|>=|<=|>|<)(.+)", bound).groups()
        a, b = _version(version), _version(value)
        width = max(len(a), len(b))
        if not COMPARE[op](a + (0,) * (width - len(a)), b + (0,) * (width - len(b))):  # 2.15 is 2.15.0
            return False
    return True


@pytest.fixture(scope="module")
def project():
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


@pytest.fixture(scope="module")
def conda():
    entries = yaml.safe_load((REPO / "environment.yml").read_text())["dependencies"]
    pip = next(entry["pip"] for entry in entries if isinstance(entry, dict))
    packages = [entry for entry in entries if isinstance(entry, str)]
    python = next(entry for entry in packages if entry.startswith("python="))
    named = dict(_requirement(entry) for entry in packages + pip
                 if entry not in (python, "pip") and not entry.startswith("-e "))
    return python.split("=", 1)[1], named, pip


def test_the_conda_environment_pins_what_pyproject_does(project, conda):
    _, named, pip = conda
    wanted = dict(_requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"])
    assert named == wanted
    assert "-e ." in pip  # the suite itself, as `pip install -e .` does


def test_the_conda_python_is_one_pyproject_allows(project, conda):
    python, _, _ = conda
    assert _satisfies(python, project["requires-python"])


def test_the_installed_torch_pair_is_within_the_declared_ranges(project):
    script = (REPO / ".ci" / "install").read_text()
    pins = dict(re.findall(r"\b(torch|torchvision)==([0-9.]+)", script))
    assert set(pins) == {"torch", "torchvision"}
    declared = dict(_requirement(r) for r in project["dependencies"])
    for name, version in pins.items():
        assert _satisfies(version, declared[name]), (name, version, declared[name])
    assert f"torch {pins['torch']} / torchvision {pins['torchvision']}" in (REPO / "README.md").read_text()


def test_the_naive_version_check():
    assert _satisfies("2.14.1", ">=2.4,<2.15") and not _satisfies("2.15", ">=2.4,<2.15")
    assert _satisfies("3.11", ">=3.10") and not _satisfies("3.9", ">=3.10")
    assert _satisfies("0.4.0", "==0.4") and not _satisfies("0.4.1", "==0.4.0")
    assert _requirement("python=3.11") == ("python", "==3.11")
    assert _requirement("torch_fidelity == 0.4.0") == ("torch-fidelity", "==0.4.0")
