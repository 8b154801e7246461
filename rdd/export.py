"""Image folders for other tools: a samples file or a dataset split written as one PNG per image.

FID tools read folders of images: `fidelity --fid --kid --input1 GEN --input2 REF` (torch-fidelity's
command line) on two such folders scores the very uint8 pixels our metrics scored, so anyone can
check a reported number with the tool itself (tests/test_metrics.py does). Files are named by
position, zero-padded, so a sorted listing (torch-fidelity sorts) keeps the order of our arrays,
which KID's random subsets depend on; a samples file's image seed is in the name too.
"""

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from rdd import io
from rdd.data.quantize import check_uint8_batch
from rdd.samples_file import read_samples

NAME_DIGITS = 7  # up to 10 million images (ImageNet's train split has 1.28 million)


def _png(image):
    return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def write_png_folder(batches, out_dir, seeds=None):
    """Write uint8 NHWC `batches` (an array or an iterable of arrays) to the new folder `out_dir`, one
    PNG per image; return the number written. The folder appears only when complete."""
    out_dir = Path(out_dir)
    with io.exclusive(out_dir):
        if out_dir.exists():
            raise FileExistsError(f"{out_dir} exists; remove it or choose another --out")
        for stale in out_dir.parent.glob(f".{out_dir.name}.*.tmp"):  # left by a killed export
            shutil.rmtree(stale)
        tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".tmp"))
        try:
            count = 0
            for batch in [batches] if isinstance(batches, np.ndarray) else batches:
                for image in check_uint8_batch(batch):
                    name = f"{count:0{NAME_DIGITS}d}" + (f"-seed{seeds[count]}" if seeds is not None else "")
                    _png(image).save(tmp / f"{name}.png")
                    count += 1
            os.replace(tmp, out_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return count


def export_samples(samples, out_dir):
    """The images of a samples file (.npz from `sample` or `real-samples`) as PNGs named by seed."""
    images, seeds = read_samples(samples)
    return write_png_folder(images, out_dir, seeds=seeds)


def export_split(data_spec, split, out_dir, limit=None):
    """The images of a dataset split that `ref-stats` scores (its first `limit`), at the spec's size."""
    from rdd.data import check_first_images, iter_uint8_batches, normalize_spec

    spec = normalize_spec(data_spec)
    check_first_images(spec, split, limit)
    return write_png_folder(iter_uint8_batches(spec, split, batch_size=256, limit=limit), out_dir)
