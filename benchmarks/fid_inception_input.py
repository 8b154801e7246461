"""FID under torch-fidelity's and pytorch-fid's Inception input, on the same real images.

The released RCFD/RDD evaluation feeds the FID network as pytorch-fid does (x / 255, PyTorch's
bilinear resize, 2x - 1); torch-fidelity, like the TensorFlow FID code, resizes the 8-bit image
with TF1's bilinear rule and scales it by (x - 128) / 128. This prints how far the two FIDs lie
apart: the first images of the train split are the reference, and the first images of the test
split are scored as they are, blurred (3x3 box) and with Gaussian noise, for a range of FIDs.
Each gap comes with a paired 95% bootstrap interval over the scored images (rdd.metrics.bootstrap).
Both inputs see the same uint8 images, so the rounding of float samples, the other difference of
the released evaluation, is not part of it.

    python benchmarks/fid_inception_input.py [--reference 2000] [--scored 1000] [--data-settings FILE]
"""

import argparse
import warnings

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
    """The held-out images as they are, blurred by a 3x3 box (edges replicated) and with Gaussian noise."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1).permute(0, 2, 3, 1)
    noise = np.random.default_rng(seed).normal(0, NOISE_STD, images.shape)
    return {"held-out": images, "blurred": _to_uint8(blurred.numpy()),
            f"noise std {NOISE_STD}/255": _to_uint8(images + noise)}


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
    fids = {name: {} for name in scored}
    for inception_input in settings.INCEPTION_INPUTS:
        handle = resolve_inception(args.inception_weights, inception_input=inception_input)

        def features(images):
            return extract_features(images, handle, batch_size=args.batch_size, device=args.device)[0]

        ref = features_to_statistics(features(reference))
        for name, images in scored.items():
            x = features(images)
            fid = fid_statistics_to_metric(features_to_statistics(x), ref, verbose=False)[KEY_METRIC_FID]
            # The same seed resamples the same images under both inputs: a paired bootstrap of the gap.
            replicates = bootstrap.fid_replicates(x, ref["mu"], ref["sigma"])
            fids[name][inception_input] = (float(fid), replicates)

    first, second = settings.INCEPTION_INPUTS
    rows = {}
    for name, fid in fids.items():
        gap = bootstrap.difference({name: fid[first]}, {name: fid[second]})
        rows[name] = {first: fid[first][0], second: fid[second][0],
                      "difference": {key: gap[key] for key in ("estimate", "low", "high")}}
    print(f"weights: {handle.source} {handle.path} sha256 {handle.sha256}")
    print(f"{spec}: reference the first {len(reference)} train images, scored the first {len(held_out)} test "
          f"images; device {args.device}, torch {torch.__version__}")
    print(f"difference: FID {second} - FID {first}, with its paired 95% bootstrap interval over the scored "
          f"images ({len(replicates)} replicates; the reference held fixed)")
    print(f"{'scored set':20s} {'FID ' + first:>20s} {'FID ' + second:>17s} {'difference':>11s} {'relative':>9s}"
          f"  interval")
    for name, row in rows.items():
        gap = row["difference"]
        print(f"{name:20s} {row[first]:20.3f} {row[second]:17.3f} {gap['estimate']:+11.3f} "
              f"{gap['estimate'] / row[first]:+9.2%}  [{gap['low']:+.3f}, {gap['high']:+.3f}]")
    if args.out:
        write_json({"data": spec, "reference_images": len(reference), "scored_images": len(held_out),
                    "weights_sha256": handle.sha256, "device": args.device, "fid": rows}, args.out)


if __name__ == "__main__":
    main()
