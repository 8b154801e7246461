"""Any folder of images (png, jpg, jpeg, webp; searched recursively), one split: "train".

labels: "none" gives every image label -1. labels: "subfolders" makes each
first-level sub-folder of root a class (classes numbered in sorted name order;
images deeper down belong to their first-level folder; images lying directly in
root are an error).
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


def scan(spec):
    """(paths, labels, class names) of the folder, in sorted relative-path order."""
    root = Path(spec["root"])
    paths = _sorted_images(root)
    if spec["labels"] == "none":
        return paths, np.full(len(paths), -1, dtype=np.int64), []
    loose = [p for p in paths if p.parent == root]
    if loose:
        raise ValueError(f"labels: subfolders needs every image in a class sub-folder of {root}; "
                         f"{len(loose)} lie directly in it, e.g. {loose[0]}")
    first = [p.relative_to(root).parts[0] for p in paths]
    classes = sorted(set(first))
    index = {c: i for i, c in enumerate(classes)}
    return paths, np.array([index[c] for c in first], dtype=np.int64), classes


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
    return {"root": str(root), "files": count, "listing_sha256": listing.hexdigest()}


def check(spec, splits):
    """Raise DatasetMissingError unless root holds at least one image."""
    root = Path(spec["root"])
    if not root.is_dir() or next(_images(root), None) is None:
        how = (f"put image files ({', '.join(EXTENSIONS)}) under {root}"
               + (", one sub-folder per class" if spec["labels"] == "subfolders" else ""))
        raise missing_error("folder", [f"{root} (recursively: {', '.join('*' + e for e in EXTENSIONS)})"], how)


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
        self.paths, self.labels, self.classes = scan(spec)
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
