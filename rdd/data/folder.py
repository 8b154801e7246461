"""Any folder of images (png, jpg, jpeg, webp; searched recursively): split "train", and with
test_fraction > 0 a held-out split "test" too.

labels: "none" gives every image label -1. labels: "subfolders" makes each
first-level sub-folder of root a class (classes numbered in sorted name order;
images deeper down belong to their first-level folder; images lying directly in
root are an error).

test_fraction: each image is held out or not by a hash of its relative path (the
fraction of the hash range below test_fraction), so an image keeps its split when
others are added or removed, and no listing order or seed enters.
"""

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from rdd.data.missing import missing_error

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")


def _images(root):
    return (p for p in Path(root).rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())


def _sorted_images(root):
    """Every image under `root`, in sorted relative-path order (the dataset's order)."""
    return sorted(_images(root), key=lambda p: p.relative_to(root).as_posix())


def splits(spec):
    """The folder's split names: "test" only when test_fraction holds images out."""
    return ("train", "test") if spec["test_fraction"] > 0 else ("train",)


def _held_out(relative, test_fraction):
    """Whether the image at relative path `relative` (posix) is in the test split."""
    digest = hashlib.sha256(relative.encode()).digest()
    return int.from_bytes(digest[:8], "big") < test_fraction * 2**64


def _in_split(root, split, test_fraction):
    """The predicate on paths under `root` of the images of `split`."""
    return lambda path: _held_out(path.relative_to(root).as_posix(), test_fraction) == (split == "test")


def scan(spec, split="train"):
    """(paths, labels, class names) of the split's images, in sorted relative-path order; the class
    names are those of the whole folder, so both splits number them alike."""
    root = Path(spec["root"])
    everything = _sorted_images(root)
    paths = list(filter(_in_split(root, split, spec["test_fraction"]), everything))
    if spec["labels"] == "none":
        return paths, np.full(len(paths), -1, dtype=np.int64), []
    loose = [p for p in everything if p.parent == root]
    if loose:
        raise ValueError(f"labels: subfolders needs every image in a class sub-folder of {root}; "
                         f"{len(loose)} lie directly in it, e.g. {loose[0]}")
    classes = sorted({p.relative_to(root).parts[0] for p in everything})
    index = {c: i for i, c in enumerate(classes)}
    return paths, np.array([index[p.relative_to(root).parts[0]] for p in paths], dtype=np.int64), classes


def content_key(spec):
    """What names the folder's images beyond the spec: its resolved path and a digest of its listing
    (every image's relative path, size and modification time), so that statistics computed from one
    folder are never reused for another, or for this one after an image was added, removed or edited."""
    root = Path(spec["root"]).resolve()
    listing = hashlib.sha256()
    count = 0
    for path in _sorted_images(root):
        stat = path.stat()
        listing.update(f"{path.relative_to(root).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        count += 1
    key = {"root": str(root), "files": count, "listing_sha256": listing.hexdigest()}
    if spec["test_fraction"] > 0:  # keys without a held-out split stay as they were (cached statistics)
        key["test_fraction"] = spec["test_fraction"]
    return key


def check(spec, splits):
    """Raise DatasetMissingError unless root holds an image, and ValueError unless each of `splits` does."""
    root = Path(spec["root"])
    if not root.is_dir() or next(_images(root), None) is None:
        how = (f"put image files ({', '.join(EXTENSIONS)}) under {root}"
               + (", one sub-folder per class" if spec["labels"] == "subfolders" else ""))
        raise missing_error("folder", [f"{root} (recursively: {', '.join('*' + e for e in EXTENSIONS)})"], how)
    for split in splits:
        if next(filter(_in_split(root, split, spec["test_fraction"]), _images(root)), None) is None:
            raise ValueError(f"test_fraction: {spec['test_fraction']} leaves the {split} split of {root} empty "
                             f"(it holds {sum(1 for _ in _images(root))} images); choose another fraction")


def num_classes(spec):
    """0 when unlabelled, else the number of class sub-folders."""
    if spec["labels"] == "none":
        return 0
    check(spec, ["train"])
    return len(scan(spec)[2])


class FolderSource:
    """Image paths and labels; each image decoded with PIL on read."""

    def __init__(self, spec, split):
        check(spec, [split])
        self.paths, self.labels, self.classes = scan(spec, split)
        self.mode = "L" if spec["channels"] == 1 else "RGB"
        self.pad_to = spec["image_size"] if spec["resize"] == "pad" else None

    def __len__(self):
        return len(self.labels)

    def read(self, start, stop):
        """One uint8 [1, H, W, C] chunk per image (sizes differ between files)."""
        for path in self.paths[start:stop]:
            try:
                with Image.open(path) as im:
                    a = np.asarray(im.convert(self.mode))
            except OSError as exc:  # PIL's errors for a truncated or non-image file need not name it
                raise ValueError(f"cannot read image {path} ({exc}); replace or remove it") from exc
            if self.pad_to is not None and max(a.shape[:2]) > self.pad_to:
                raise ValueError(f"{path} is {a.shape[0]}x{a.shape[1]}, larger than image_size {self.pad_to}; "
                                 "resize: pad cannot shrink it, use resize: resize")
            yield a.reshape(1, a.shape[0], a.shape[1], -1)
