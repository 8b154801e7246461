"""The library files a module loads, read from its import statements (nothing is imported), so that a
rule can list its code as inputs: the report rebuilds when the code that shapes it changes, wherever that
code lives in `rdd/` (its intervals come from rdd/metrics, for instance)."""

import ast
from pathlib import Path


def _module_file(root, name):
    """The file of module `name` (`rdd.metrics.combined`) below `root`, or None for a name that is not
    a module (`from rdd.io import read_json`)."""
    path = Path(root, *name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(tree, package):
    """Every name a module imports when it loads: its statements outside functions (an import inside a
    function runs when the function is called, and is not followed). `from a import b` yields a.b too,
    as b may be a module."""
    def visit(node):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            yield from visit(child)
    yield from visit(tree)


def loaded_files(root, modules, package="rdd"):
    """The files of `package` (below `root`) that importing `modules` loads: the modules, the packages
    that contain them, and what they import at load time, followed to the end. Sorted paths."""
    seen, todo = {}, list(modules)
    while todo:
        name = todo.pop()
        if name.split(".")[0] != package or name in seen:
            continue
        path = _module_file(root, name)
        if path is None:
            continue
        seen[name] = path
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # a module loads its packages
        containing = name if path.name == "__init__.py" else ".".join(parts[:-1])
        todo.extend(_imported_names(ast.parse(path.read_text(), str(path)), containing))
    return sorted(str(p) for p in seen.values())


def package_code(root, package):
    """Every file of `package` (a folder below `root`: its modules and data, templates for instance) and
    every file of the library that its modules load. Sorted paths."""
    folder = Path(root, *package.split("."))
    files = [p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    modules = [".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
               for p in files if p.suffix == ".py"]
    return sorted(set(map(str, files)) | set(loaded_files(root, modules, package.split(".")[0])))
