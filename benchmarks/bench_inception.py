"""Inception feature extraction: torch-fidelity's default path vs rdd.metrics' fast path.

Same real images (Fashion-MNIST test set, grey repeated to RGB), same weights,
same process; rounds interleaved and the best of each kept. Prints img/s, the
ratio and the largest feature difference. Goal: ratio >= 1.6 on CPU with
features equal to 1e-4.

    python benchmarks/bench_inception.py [--n 96] [--rounds 2] [--device cpu]
"""

import argparse
import gzip
import tempfile
import time
import warnings

import numpy as np
import torch
from torch.utils.data import Dataset
from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

from rdd.cli import positive_int
from rdd.metrics.features import extract_features
from rdd.metrics.inception import EXTRACTOR_NAME, POOL3, resolve_inception

FASHION_MNIST_TEST = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"


class _UInt8CHW(Dataset):
    """What torch-fidelity expects from a Dataset input: one uint8 3xHxW tensor per item."""

    def __init__(self, images_nhwc):
        self.images = torch.from_numpy(images_nhwc).permute(0, 3, 1, 2).contiguous()

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


def load_images(n):
    with gzip.open(FASHION_MNIST_TEST) as f:
        grey = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:n]
    return np.repeat(grey[..., None], 3, axis=3)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=positive_int, default=96)
    parser.add_argument("--rounds", type=positive_int, default=2)
    parser.add_argument("--batch-size", type=positive_int, default=64, help="torch-fidelity's default batch size")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    images = load_images(args.n)
    with tempfile.TemporaryDirectory() as cache_dir:
        handle = resolve_inception(cache_dir=cache_dir)
        # torch-fidelity's default: NCHW model, DataLoader with workers, torch.no_grad, batch 64.
        default_model = create_feature_extractor(
            EXTRACTOR_NAME, [POOL3], cuda=args.device.startswith("cuda"),
            feature_extractor_weights_path=handle.path, verbose=False,
        )
        dataset = _UInt8CHW(images)

        def run_default():
            out = get_featuresdict_from_dataset(
                dataset, default_model, args.batch_size, args.device.startswith("cuda"), False, False
            )
            return out[POOL3].numpy()

        def run_ours():
            return extract_features(images, handle, batch_size=args.batch_size, device=args.device)[0]

        for fn in (run_default, run_ours):  # warm-up: allocator, oneDNN kernel selection
            fn()
        best = {"torch-fidelity default": float("inf"), "rdd fast path": float("inf")}
        for _ in range(args.rounds):
            for name, fn in (("torch-fidelity default", run_default), ("rdd fast path", run_ours)):
                start = time.perf_counter()
                features = fn()
                best[name] = min(best[name], time.perf_counter() - start)
                if name == "torch-fidelity default":
                    reference = features
                else:
                    ours = features

    print(f"weights: {handle.source} {handle.path} sha256 {handle.sha256}")
    print(f"device {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{args.n} Fashion-MNIST images (28x28 -> 299x299), batch {args.batch_size}, best of {args.rounds}")
    for name, seconds in best.items():
        print(f"{name:24s} {args.n / seconds:7.2f} img/s  ({seconds:.2f} s)")
    print(f"ratio (rdd / default)    {best['torch-fidelity default'] / best['rdd fast path']:.2f}x")
    print(f"max |feature difference| {np.abs(ours - reference).max():.3e} "
          f"(max |feature| {np.abs(reference).max():.2f})")


if __name__ == "__main__":
    main()
