"""The report rule's code inputs: the library files the report loads, read from its imports, agree
with what Python itself loads, so that an edit to any of them (an interval estimator in rdd/metrics,
say) rebuilds the reports."""

import subprocess
import sys
import textwrap

from fixtures_workflow import REPO

sys.path.insert(0, str(REPO / "workflow" / "scripts"))
import codefiles  # noqa: E402


def _write(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_loaded_files_follow_load_time_imports_only(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": """
            import os
            from pkg import b
            from pkg.c import VALUE
            from .sub import d
            try:
                import pkg.e as e
            except ImportError:
                e = None

            def later():
                from pkg import never
            """,
        "pkg/b.py": "",
        "pkg/c.py": "from . import f\nVALUE = 1\n",
        "pkg/e.py": "",
        "pkg/f.py": "",
        "pkg/never.py": "",
        "pkg/unused.py": "",
        "pkg/sub/__init__.py": "from ..b import *\n",
        "pkg/sub/d.py": "",
        "other/x.py": "",
    })
    loaded = codefiles.loaded_files(tmp_path, ["pkg.a"], package="pkg")
    expected = ["pkg/__init__.py", "pkg/a.py", "pkg/b.py", "pkg/c.py", "pkg/e.py", "pkg/f.py",
                "pkg/sub/__init__.py", "pkg/sub/d.py"]
    assert loaded == sorted(str(tmp_path / name) for name in expected)
    # The files of a package, data among them, and what its modules load.
    _write(tmp_path, {"pkg/sub/page.html": "<p>"})
    assert codefiles.package_code(tmp_path, "pkg.sub") == sorted(
        str(tmp_path / name) for name in ["pkg/__init__.py", "pkg/b.py", "pkg/sub/__init__.py", "pkg/sub/d.py",
                                          "pkg/sub/page.html"])


def test_the_reports_code_is_what_python_loads_to_build_it():
    """Every module of rdd.report imported in a fresh interpreter: the rdd files it loaded are exactly
    the report rule's code inputs (besides the templates)."""
    report_folder = REPO / "rdd" / "report"
    modules = [".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
               for p in report_folder.rglob("*.py")]
    program = ("import importlib, sys\n"
               f"for name in {modules!r}:\n    importlib.import_module(name)\n"
               "print('\\n'.join(m.__file__ for n, m in sys.modules.items() if n.split('.')[0] == 'rdd'))")
    out = subprocess.run([sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, check=True)
    loaded = sorted(out.stdout.split())
    code = codefiles.package_code(REPO, "rdd.report")
    assert [f for f in code if f.endswith(".py")] == loaded
    assert str(REPO / "rdd" / "metrics" / "combined.py") in code  # the report's intervals
    assert {f for f in code if not f.endswith(".py")} == {str(p) for p in report_folder.rglob("*.j2")}
