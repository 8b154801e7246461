"""A package's names loaded from their modules on first use (PEP 562).

rdd.data and rdd.nets export names from modules that import torch next to some that do not; with
lazy names, importing a torch-free module of theirs (the dataset registry, the network configs)
does not import torch through the package's __init__, and the workflow plans in seconds.
"""

import importlib


def exports(package, module_of):
    """(__getattr__, __dir__) of `package`, whose name N lives in module `package.module_of[N]`."""
    def __getattr__(name):
        if name not in module_of:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module_of[name]}"), name)

    def __dir__():
        return sorted(module_of)

    return __getattr__, __dir__
