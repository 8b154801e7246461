"""FID as the released evaluation feeds its Inception network, beside torch-fidelity's, on the same real images.

The released RCFD/RDD evaluation differs from torch-fidelity (the TensorFlow FID code) in two ways,
measured here one at a time:

1. the input pipeline: pytorch-fid's (x / 255, PyTorch's bilinear resize, 2x - 1), where torch-fidelity
   resizes the 8-bit image with TF1's bilinear rule and scales it by (x - 128) / 128. Both are fed the
   same 8-bit images through our extractor (`evaluate.inception_input`).
2. the samples: floats, unrounded, where ours are rounded to 8 bits as saved images are. Both are fed to
   pytorch-fid's own network (the released evaluation's code) with pytorch-fid's input.

The first images of the train split are the reference; the first images of the test split are scored
as they are, blurred (3x3 box) and with Gaussian noise, for a range of FIDs. Blurred and noisy images
are floats until rounded; the held-out images are 8-bit already, so they have no second gap. Each gap
comes with a paired 95% bootstrap interval over the scored images (rdd.metrics.bootstrap). The second
part needs pytorch-fid (the `test` extra), which reads our weights file: offline, nothing is downloaded.

    python benchmarks/fid_inception_input.py [--reference 2000] [--scored 1000] [--data-settings FILE]
"""

import argparse
import contextlib
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

from rdd import settings
from rdd.cli import positive_int
from rdd.data import iter_uint8_batches, normalize_spec
from rdd.io import write_json
from rdd.metrics import bootstrap
from rdd.metrics.features import extract_features
from rdd.metrics.inception import resolve_inception
from rdd.metrics.reference import features_to_statistics

NOISE_STD = 25  # of 255


def _images(spec, split, n):
    return np.concatenate(list(iter_uint8_batches(spec, split, batch_size=256, limit=n)))


def _to_uint8(x):
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def scored_sets(images, seed=0):
    """The held-out images as they are, blurred by a 3x3 box (edges replicated) and with Gaussian noise
    (clipped to [0, 255], as the released evaluation clamps its samples), all unrounded float64."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).double()
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1).permute(0, 2, 3, 1)
    noise = np.random.default_rng(seed).normal(0, NOISE_STD, images.shape)
    return {"held-out": images.astype(np.float64), "blurred": blurred.numpy(),
            f"noise std {NOISE_STD}/255": np.clip(images + noise, 0, 255)}


@contextlib.contextmanager
def pytorch_fid_weights(weights_path):
    """While the block runs, pytorch-fid finds `weights_path` (the file it would download: the same network
    as ours) where torch.hub looks before downloading: a temporary hub dir, the previous one restored."""
    from pytorch_fid.inception import FID_WEIGHTS_URL

    hub_before = torch.hub.get_dir()
    with tempfile.TemporaryDirectory() as hub:
        (Path(hub) / "checkpoints").mkdir()
        os.symlink(os.path.abspath(weights_path), Path(hub) / "checkpoints" / FID_WEIGHTS_URL.rsplit("/", 1)[1])
        torch.hub.set_dir(hub)
        try:
            yield
        finally:
            torch.hub.set_dir(hub_before)


def pytorch_fid_network(weights_path, device):
    """pytorch-fid's own InceptionV3 (pool3 features) with `weights_path`."""
    from pytorch_fid.inception import InceptionV3

    with pytorch_fid_weights(weights_path):
        model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    return model.eval().to(device)


def pytorch_fid_features(model, images, batch_size, device):
    """Pool3 features of [N, H, W, C] images in [0, 255] (uint8, or float as the released evaluation's
    samples are), given to pytorch-fid's network as float32 in [0, 1]."""
    features = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(images[start:start + batch_size]).to(device, torch.float32).permute(0, 3, 1, 2)
            features.append(model(x.expand(-1, 3, -1, -1) / 255)[0].flatten(1).cpu())
    return torch.cat(features).numpy()


def fid_with_replicates(features, ref):
    """FID of `features` against the statistics `ref`, and its bootstrap replicates (the same resamples
    for any features of as many images: paired)."""
    fid = fid_statistics_to_metric(features_to_statistics(features), ref, verbose=False)[KEY_METRIC_FID]
    return float(fid), bootstrap.fid_replicates(features, ref["mu"], ref["sigma"])


def gap_row(fids, first, second):
    """{first: FID, second: FID, difference: {estimate, low, high, replicates}} of one scored set."""
    gap = bootstrap.difference({"set": fids[first]}, {"set": fids[second]})
    return {first: fids[first][0], second: fids[second][0],
            "difference": {**{key: gap[key] for key in ("estimate", "low", "high")}, "replicates": len(fids[first][1])}}


def print_table(rows, first, second, extra=None):
    replicates = ", ".join(str(n) for n in sorted({row["difference"]["replicates"] for row in rows.values()}))
    print(f"(paired 95% bootstrap intervals over the scored images: {replicates} replicates, the reference fixed)")
    print(f"{'scored set':20s} {'FID ' + first:>20s} {'FID ' + second:>17s} {'difference':>11s} {'relative':>9s}"
          f"  interval")
    for name, row in rows.items():
        gap = row["difference"]
        print(f"{name:20s} {row[first]:20.3f} {row[second]:17.3f} {gap['estimate']:+11.3f} "
              f"{gap['estimate'] / row[first]:+9.2%}  [{gap['low']:+.3f}, {gap['high']:+.3f}]"
              + (extra(name) if extra else ""))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=positive_int, default=2000, help="train images of the reference")
    parser.add_argument("--scored", type=positive_int, default=1000, help="test images scored")
    parser.add_argument("--data-settings", help="YAML/JSON file with a 'data' mapping (default: Fashion-MNIST as "
                                                "the embedded default reads it, 32x32 grey)")
    parser.add_argument("--inception-weights", help="FID Inception weights file (default: found as `ref-stats` does)")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", help="also write the figures to this JSON file")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    spec = {"name": "fashion_mnist"}
    if args.data_settings:
        spec = settings.load_file(args.data_settings, "data settings file").get("data")
        if not isinstance(spec, dict):
            parser.error(f"{args.data_settings} has no 'data' mapping")
    spec = normalize_spec(spec)
    reference, held_out = _images(spec, "train", args.reference), _images(spec, "test", args.scored)
    scored = scored_sets(held_out)
    eight_bit = {name: _to_uint8(images) for name, images in scored.items()}
    fids = {name: {} for name in scored}
    for inception_input in settings.INCEPTION_INPUTS:
        handle = resolve_inception(args.inception_weights, inception_input=inception_input)

        def features(images):
            return extract_features(images, handle, batch_size=args.batch_size, device=args.device)[0]

        ref = features_to_statistics(features(reference))
        for name, images in eight_bit.items():
            fids[name][inception_input] = fid_with_replicates(features(images), ref)
    first, second = settings.INCEPTION_INPUTS
    inputs = {name: gap_row(fid, first, second) for name, fid in fids.items()}

    network = pytorch_fid_network(handle.path, args.device)

    def released_features(images):
        return pytorch_fid_features(network, images, args.batch_size, args.device)

    ref = features_to_statistics(released_features(reference))
    rounding = {}
    for name, images in scored.items():
        if np.array_equal(images, eight_bit[name]):
            continue  # 8-bit to begin with: nothing rounded
        rounding[name] = gap_row({"8-bit": fid_with_replicates(released_features(eight_bit[name]), ref),
                                  "float": fid_with_replicates(released_features(images), ref)}, "8-bit", "float")

    print(f"weights: {handle.source} {handle.path} sha256 {handle.sha256}")
    print(f"{spec}: reference the first {len(reference)} train images, scored the first {len(held_out)} test "
          f"images; device {args.device}, torch {torch.__version__}")
    print(f"\n1. Inception input: FID {second} - FID {first}, the same 8-bit images through our extractor")
    print_table(inputs, first, second)
    print("\n2. Rounding: FID of the samples as floats (unrounded, as the released evaluation feeds them) - FID of "
          "them rounded to 8 bits, both through pytorch-fid's own network and input")
    print_table(rounding, "8-bit", "float", lambda name: f"  (8-bit, our extractor: {inputs[name][second]:.3f})")
    if args.out:
        write_json({"data": spec, "reference_images": len(reference), "scored_images": len(held_out),
                    "weights_sha256": handle.sha256, "device": args.device, "fid": inputs, "rounding": rounding},
                   args.out)


if __name__ == "__main__":
    main()
