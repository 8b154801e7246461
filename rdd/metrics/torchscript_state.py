"""The parameters and buffers of a TorchScript archive, read without `torch.jit` (deprecated).

A TorchScript file is a zip: `<name>/data.pkl` pickles the module tree (each module an object of a
`__torch__.*` class whose attributes are its submodules, tensors and settings) and `<name>/data/<key>`
holds each tensor's raw storage. A restricted unpickler rebuilds that tree from those few globals
alone, as `torch.load(weights_only=True)` would, and nothing of the archive's code is compiled or run.
"""

import pickle
import zipfile
from collections import OrderedDict

import torch

# The storage classes a TorchScript pickle names, by the dtype of their elements.
_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}
# TorchScript's typed-list builders: a plain list holds the same values.
_LIST_BUILDERS = ("build_intlist", "build_doublelist", "build_boollist", "build_tensorlist", "build_genericlist")


class ScriptModuleState:
    """One module of the archive: its attributes, as the pickle's BUILD sets them."""


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, *metadata):
    return storage.as_strided(size, stride, storage_offset).clone()


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive, prefix):
        super().__init__(file)
        self.archive, self.prefix = archive, prefix

    def find_class(self, module, name):
        if module.startswith("__torch__"):
            return ScriptModuleState
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch.jit._pickle" and name in _LIST_BUILDERS:
            return list
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a TorchScript weights file")

    def persistent_load(self, pid):
        kind, dtype, key, _location, numel = pid
        if kind != "storage":
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        data = bytearray(self.archive.read(f"{self.prefix}data/{key}"))
        return torch.frombuffer(data, dtype=dtype, count=numel) if numel else torch.empty(0, dtype=dtype)


def _tensors(module, prefix=""):
    """`module`'s tensors by their dotted names, depth first (a state dict of parameters and buffers)."""
    out = {}
    for name, value in vars(module).items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
        elif isinstance(value, ScriptModuleState):
            out.update(_tensors(value, f"{prefix}{name}."))
    return out


def read_state_dict(path):
    """{name: tensor} of the TorchScript archive at `path`; raises pickle.UnpicklingError,
    zipfile.BadZipFile or KeyError on a file that is not one."""
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise KeyError(f"{path} holds no TorchScript module (no <name>/data.pkl)")
        prefix = pickles[0][:-len("data.pkl")]
        with archive.open(pickles[0]) as f:
            root = _Unpickler(f, archive, prefix).load()
    if not isinstance(root, ScriptModuleState):
        raise pickle.UnpicklingError(f"{path}: the archive's root is not a module")
    return _tensors(root)
