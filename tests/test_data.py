"""Dataset layer on real images in the real file formats (Fashion-MNIST from Debian, foolbox's CIFAR-10 and ImageNet samples)."""

import gzip
import hashlib
import http.server
import json
import pickle
import re
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader

import rdd.data.fashion_mnist
from conftest import REPO, start_together, subprocess_env
from fixtures_data import CIFAR10_NAMES, read_rgb, samples, write_cifar10, write_imagenet64
from rdd.data import (
    DATASETS, DEFAULTS, DatasetMissingError, build_dataset, check_available, dataset_defaults, from_uint8,
    hflip_decision, image_identity, iter_uint8_batches, normalize_spec, num_classes, split_names, to_uint8,
)

DEBIAN = rdd.data.fashion_mnist.SYSTEM_DIR
needs_debian = pytest.mark.skipif(not (DEBIAN / "train-images-idx3-ubyte.gz").is_file(),
                                  reason=f"apt-get install dataset-fashion-mnist (no {DEBIAN})")


def all_images(spec, split, batch_size=7, limit=None):
    return np.concatenate(list(iter_uint8_batches(spec, split, batch_size, limit)))


def pil_bilinear(images, size):
    """Independent reference resize: PIL's antialiased bilinear, per image."""
    return np.stack([np.asarray(Image.fromarray(a.squeeze()).resize((size, size), Image.BILINEAR)).reshape(
        size, size, -1) for a in images])


# ---------------------------------------------------------------- real data written into real formats

@pytest.fixture(scope="session")
def cifar_png():
    pairs = samples("cifar10", ".png")
    assert len(pairs) == 20
    return np.stack([read_rgb(p) for p, _ in pairs]), np.array([lab for _, lab in pairs])


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory, cifar_png):
    images, labels = cifar_png
    root = tmp_path_factory.mktemp("cifar")
    write_cifar10(root, (images[:10], labels[:10]), (images[10:], labels[10:]))
    return root


@pytest.fixture(scope="session")
def imagenet_jpg():
    pairs = samples("imagenet", ".jpg")
    assert len(pairs) == 20
    return np.stack([read_rgb(p, 64) for p, _ in pairs]), np.array([lab for _, lab in pairs])


@pytest.fixture(scope="session")
def imagenet_root(tmp_path_factory, imagenet_jpg):
    root = tmp_path_factory.mktemp("imagenet64")
    return write_imagenet64(root, imagenet_jpg, imagenet_jpg)


@pytest.fixture(scope="session")
def fashion_root(tmp_path_factory):
    if not (DEBIAN / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"apt-get install dataset-fashion-mnist (no {DEBIAN})")
    return str(tmp_path_factory.mktemp("fashion"))


@pytest.fixture(scope="session")
def fashion_test(fashion_root):
    return build_dataset({"name": "fashion_mnist", "root": fashion_root}, "test")


# ---------------------------------------------------------------- specs

def test_defaults_are_complete_and_json_serialisable():
    assert set(DATASETS) == set(DEFAULTS) == {"fashion_mnist", "cifar10", "imagenet64", "folder"}
    for name in DATASETS:
        spec = normalize_spec({"name": name, "root": "somewhere"})
        assert set(spec) == set(DEFAULTS[name]) and spec["root"] == "somewhere"
        assert json.loads(json.dumps(spec)) == spec
    assert normalize_spec({"name": "fashion_mnist"}) == {
        "name": "fashion_mnist", "root": "data", "image_size": 32, "channels": 1, "resize": "pad",
        "hflip": False, "download": False}
    assert DEFAULTS["cifar10"]["hflip"] is True and DEFAULTS["fashion_mnist"]["hflip"] is False
    defaults = dataset_defaults("cifar10")
    defaults["image_size"] = 99
    assert DEFAULTS["cifar10"]["image_size"] == 32


@pytest.mark.parametrize("spec, key, allowed", [
    ({"name": "mnist"}, "name", "cifar10, fashion_mnist, folder, imagenet64"),
    ({"name": "cifar10", "colour": True}, "colour", "allowed keys: name, root, image_size"),
    ({"name": "imagenet64", "download": True}, "download", "allowed keys"),
    ({"name": "cifar10", "resize": "crop"}, "resize", "allowed: pad, resize"),
    ({"name": "cifar10", "channels": 1}, "channels", "(3,)"),
    ({"name": "fashion_mnist", "channels": 2}, "channels", "(1, 3)"),
    ({"name": "fashion_mnist", "image_size": 0}, "image_size", "positive integer"),
    ({"name": "fashion_mnist", "image_size": 32.0}, "image_size", "positive integer"),
    ({"name": "fashion_mnist", "image_size": 16}, "image_size", "native 28"),
    ({"name": "fashion_mnist", "hflip": "yes"}, "hflip", "true or false"),
    ({"name": "folder"}, "root", "non-empty path"),
    ({"name": "folder", "root": "x", "labels": "dirs"}, "labels", "none, subfolders"),
    ({"name": "folder", "root": "x", "test_fraction": 1}, "test_fraction", "up to, not including, 1"),
    ({"name": "folder", "root": "x", "test_fraction": -0.1}, "test_fraction", "from 0"),
    ({"name": "folder", "root": "x", "test_fraction": "0.1"}, "test_fraction", "a number"),
    ({"name": "folder", "root": "x", "test_fraction": True}, "test_fraction", "a number"),
    ({"name": "cifar10", "test_fraction": 0.1}, "test_fraction", "allowed keys"),
])
def test_bad_specs_name_the_key_and_what_is_allowed(spec, key, allowed):
    with pytest.raises(ValueError) as err:
        normalize_spec(spec)
    assert str(err.value).startswith(f"{key}:") and allowed in str(err.value)


def test_unknown_split_is_refused(tmp_path):
    with pytest.raises(ValueError, match="split: 'test' is not a split of folder; allowed: train"):
        build_dataset({"name": "folder", "root": str(tmp_path)}, "test")
    with pytest.raises(ValueError, match="allowed: train, test"):
        check_available({"name": "cifar10", "root": str(tmp_path)}, ["valid"])


def test_num_classes():
    assert num_classes({"name": "fashion_mnist"}) == 10
    assert num_classes({"name": "cifar10"}) == 10
    assert num_classes({"name": "imagenet64"}) == 1000


# ---------------------------------------------------------------- quantisation

def test_uint8_round_trip_is_exact_for_every_level():
    u = np.arange(256, dtype=np.uint8).reshape(2, 8, 16, 1).repeat(3, axis=3)
    x = from_uint8(u)
    assert x.dtype == torch.float32 and x.shape == (2, 3, 8, 16)
    assert x.min() == -1.0 and x.max() == 1.0
    assert x[1, 2, 3, 4] == pytest.approx(u[1, 3, 4, 2] / 127.5 - 1.0, abs=1e-7)
    assert np.array_equal(to_uint8(x), u)


def test_to_uint8_matches_the_formula_elementwise():
    x = torch.empty(2, 3, 4, 5).uniform_(-1.3, 1.3, generator=torch.Generator().manual_seed(0))
    got = to_uint8(x)
    for n, c, h, w in np.ndindex(*x.shape):
        level = round(127.5 * (float(x[n, c, h, w]) + 1.0))
        assert got[n, h, w, c] == min(255, max(0, level))


def test_quantisation_rejects_wrong_layouts():
    with pytest.raises(ValueError, match="NCHW"):
        to_uint8(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="uint8 NHWC"):
        from_uint8(np.zeros((1, 8, 8, 3), dtype=np.float32))


# ---------------------------------------------------------------- Fashion-MNIST (Debian package)

@needs_debian
def test_fashion_mnist_counts_labels_and_decompressed_copy(fashion_root, fashion_test):
    train = build_dataset({"name": "fashion_mnist", "root": fashion_root}, "train")
    assert len(train) == 60000 and len(fashion_test) == 10000
    # Fashion-MNIST is balanced: 6000 train and 1000 test images per class
    assert np.array_equal(np.bincount(train.labels, minlength=10), np.full(10, 6000))
    assert np.array_equal(np.bincount(fashion_test.labels, minlength=10), np.full(10, 1000))
    raw = rdd.data.fashion_mnist.raw_dir({"root": fashion_root})
    for name in rdd.data.fashion_mnist.FILES:
        assert (raw / name).read_bytes() == gzip.decompress((DEBIAN / f"{name}.gz").read_bytes())
    stamp = (raw / "train-images-idx3-ubyte").stat().st_mtime_ns
    build_dataset({"name": "fashion_mnist", "root": fashion_root}, "test")
    assert (raw / "train-images-idx3-ubyte").stat().st_mtime_ns == stamp  # decompressed once



@needs_debian
@pytest.mark.parametrize("split", ["train", "test"])
def test_fashion_mnist_idx_reader_equals_torchvisions(fashion_root, split):
    import torchvision

    build_dataset({"name": "fashion_mnist", "root": fashion_root}, split)  # the decompressed copy
    ours = rdd.data.fashion_mnist.FashionMNISTSource(normalize_spec({"name": "fashion_mnist", "root": fashion_root}),
                                                     split)
    theirs = torchvision.datasets.FashionMNIST(fashion_root, train=split == "train")
    assert np.array_equal(ours.data, theirs.data.numpy()) and ours.data.flags.writeable
    assert ours.labels.dtype == np.int64 and np.array_equal(ours.labels, theirs.targets.numpy())


def test_idx_reader_names_a_damaged_file(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes((0x0801).to_bytes(4, "big") + (5).to_bytes(4, "big") + bytes(4))
    with pytest.raises(ValueError, match=f"{path}: the header says \\(5,\\) \\(5 bytes\\), the file holds 4"):
        rdd.data.fashion_mnist.read_idx(path, ndim=1)
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(ValueError, match="is not an idx file of 3-d unsigned bytes"):
        rdd.data.fashion_mnist.read_idx(path, ndim=3)

@needs_debian
def test_fashion_mnist_matches_foolbox_copies_of_the_first_test_images(fashion_root):
    pairs = samples("fashionMNIST", ".png")
    spec = {"name": "fashion_mnist", "root": fashion_root, "image_size": 28}
    images = all_images(spec, "test", limit=20)
    ds = build_dataset(spec, "test")
    for i, (path, label) in enumerate(pairs):
        assert np.array_equal(images[i, :, :, 0], np.asarray(Image.open(path)))
        assert ds[i][1] == label


@needs_debian
def test_fashion_mnist_pad_range_and_channel_repeat(fashion_root, fashion_test):
    native = all_images({"name": "fashion_mnist", "root": fashion_root, "image_size": 28}, "test", 1000)
    padded = all_images({"name": "fashion_mnist", "root": fashion_root}, "test", 1000)
    assert padded.shape == (10000, 32, 32, 1) and padded.dtype == np.uint8
    border = np.ones((32, 32), dtype=bool)
    border[2:30, 2:30] = False
    assert (padded[:, border] == 0).all()  # level 0 is -1
    assert np.array_equal(padded[:, 2:30, 2:30], native)
    x, label = fashion_test[5]
    assert x.dtype == torch.float32 and x.shape == (1, 32, 32) and isinstance(label, int)
    assert x.min() == -1.0 and x.max() == 1.0
    assert np.array_equal(to_uint8(x[None])[0], padded[5])
    rgb = build_dataset({"name": "fashion_mnist", "root": fashion_root, "channels": 3}, "test")
    x3 = rgb[5][0]
    assert x3.shape == (3, 32, 32) and all(torch.equal(x3[c], x[0]) for c in range(3))


@needs_debian
def test_fashion_mnist_resize_agrees_with_pil_bilinear(fashion_root):
    native = all_images({"name": "fashion_mnist", "root": fashion_root, "image_size": 28}, "test", limit=50)
    resized = all_images({"name": "fashion_mnist", "root": fashion_root, "resize": "resize"}, "test", limit=50)
    assert resized.shape == (50, 32, 32, 1)
    assert np.abs(resized.astype(int) - pil_bilinear(native, 32)).max() <= 1


# ---------------------------------------------------------------- CIFAR-10 (foolbox PNGs in pickle batches)

def test_cifar10_batches_read_back_pixel_exact(cifar_root, cifar_png):
    images, labels = cifar_png
    spec = {"name": "cifar10", "root": str(cifar_root)}
    check_available(spec)
    for split, part in (("train", slice(0, 10)), ("test", slice(10, 20))):
        ds = build_dataset(spec, split)
        assert len(ds) == 10
        assert np.array_equal(all_images(spec, split, batch_size=3), images[part])
        assert np.array_equal(ds.labels, labels[part])
        x, label = ds[-1]
        assert x.shape == (3, 32, 32) and label == labels[part][-1]
        assert np.array_equal(to_uint8(x[None])[0], images[part][-1])
    assert build_dataset(spec, "train").source.classes == CIFAR10_NAMES


# How a download test points torchvision at the local server (BASE: its URL, MD5: file name -> md5).
POINT_TO_SERVER = {
    "cifar10": "C = torchvision.datasets.CIFAR10; C.url, C.tgz_md5 = BASE + C.filename, MD5[C.filename]",
    "fashion_mnist": "F = torchvision.datasets.FashionMNIST; F.mirrors, F.resources = [BASE], sorted(MD5.items()); "
                     "rdd.data.fashion_mnist.SYSTEM_DIR = pathlib.Path('/absent')",  # not the Debian copy
}


@pytest.mark.parametrize("name", sorted(POINT_TO_SERVER))
def test_a_download_is_made_once_by_jobs_starting_together(tmp_path, cifar_root, name):
    """`download: true` in three processes at once (the statistics, teacher and classifier jobs): the files
    are fetched once, over HTTP from a local server (as many requests as one process alone makes), and
    every process reads the whole training split."""
    served = tmp_path / "served"
    served.mkdir()
    if name == "cifar10":
        with tarfile.open(served / "cifar-10-python.tar.gz", "w:gz") as tar:
            tar.add(cifar_root / "cifar-10-batches-py", arcname="cifar-10-batches-py")
        expected = build_dataset({"name": "cifar10", "root": str(cifar_root)}, "train").source
    else:
        for gz in rdd.data.fashion_mnist.SYSTEM_DIR.glob("*-ubyte.gz"):
            (served / gz.name).write_bytes(gz.read_bytes())
        expected = build_dataset({"name": "fashion_mnist", "root": str(tmp_path / "debian")}, "train").source
    md5 = {f.name: hashlib.md5(f.read_bytes()).hexdigest() for f in served.iterdir()}
    fetched = []

    class Served(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=served, **kwargs)

        def do_GET(self):
            fetched.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Served)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    code = ("import json, pathlib, sys, torchvision, rdd.data.fashion_mnist; from rdd.data import build_dataset; "
            f"BASE, MD5 = sys.argv[2], json.loads(sys.argv[3]); {POINT_TO_SERVER[name]}; "
            "print('ready', flush=True); sys.stdin.readline(); "
            f"ds = build_dataset({{'name': '{name}', 'root': sys.argv[1], 'download': True}}, 'train'); "
            "print(len(ds), int(ds.source.data.sum()))")

    def start(root, count):
        return [subprocess.Popen([sys.executable, "-c", code, root, base, json.dumps(md5)], cwd=REPO,
                                 env=subprocess_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(count)]
    try:
        alone = start_together(start(tmp_path / "alone", 1))
        one_download, fetched[:] = list(fetched), []
        outcomes = start_together(start(tmp_path / "data", 3))
    finally:
        server.shutdown()
    assert one_download and fetched == one_download, (alone, outcomes)
    assert [out for out, _ in alone + outcomes] == [f"{len(expected)} {int(expected.data.sum())}\n"] * 4, outcomes


def test_torchvision_cifar10_rejects_these_batches(cifar_root):
    # the reason the registry has its own reader: torchvision demands the released files' md5 sums
    with pytest.raises(RuntimeError, match="not found or corrupted"):
        torchvision.datasets.CIFAR10(str(cifar_root), train=True, download=False)


def test_cifar10_reader_refuses_foreign_pickles_and_bad_shapes(tmp_path, cifar_png):
    images, labels = cifar_png
    folder = write_cifar10(tmp_path, (images[:10], labels[:10]), (images[10:], labels[10:]))
    spec = {"name": "cifar10", "root": str(tmp_path)}
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": pickle.loads, b"labels": []}, protocol=2))
    with pytest.raises(ValueError, match=r"data_batch_3.*not allowed"):
        build_dataset(spec, "train")
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(ValueError, match=r"data_batch_3 is not a CIFAR-10 batch"):
        build_dataset(spec, "train")


# ---------------------------------------------------------------- ImageNet 64x64 (foolbox JPEGs in npz batches)

def test_imagenet64_npz_read_back_with_zero_based_labels(imagenet_root, imagenet_jpg):
    images, labels = imagenet_jpg
    spec = {"name": "imagenet64", "root": str(imagenet_root)}
    check_available(spec)
    assert (np.load(imagenet_root / "val_data.npz")["labels"] == labels + 1).all()  # stored 1-based
    for split in ("train", "test"):
        ds = build_dataset(spec, split)
        assert len(ds) == 20 and np.array_equal(ds.labels, labels)
        assert np.array_equal(all_images(spec, split, batch_size=3), images)  # crosses file boundaries
        assert np.array_equal(all_images(spec, split, batch_size=4, limit=7), images[:7])
        x, label = ds[13]
        assert x.shape == (3, 64, 64) and label == labels[13]


def test_imagenet64_memory_maps_stored_files_and_extracts_compressed_ones(imagenet_root):
    train = build_dataset({"name": "imagenet64", "root": str(imagenet_root)}, "train")
    assert train.source._arrays == {}  # nothing read before the first image
    train[5]
    mapped = train.source._arrays[2]
    assert isinstance(mapped, np.memmap) and Path(mapped.filename) == imagenet_root / "train_data_batch_3.npz"
    assert len(pickle.dumps(train)) < 10_000  # workers get paths, not image data
    test = build_dataset({"name": "imagenet64", "root": str(imagenet_root)}, "test")
    test[0]
    assert Path(test.source._arrays[0].filename) == imagenet_root / "_extracted" / "val_data.data.npy"


def test_imagenet64_compressed_batch_is_decompressed_once_by_processes_reading_it_at_once(tmp_path, imagenet_jpg):
    """Three processes need a compressed batch at the same moment (loader workers, ranks): one decompresses
    it, the others wait for that copy and map it; all read the same images."""
    images, labels = imagenet_jpg
    root = write_imagenet64(tmp_path, (images, labels), (images, labels))
    target = root / "_extracted" / "val_data.data.npy"
    # Each prints the images' sum and the inode of the copy it maps (from /proc/self/maps).
    code = ("import sys; from rdd.data.imagenet64 import open_data; print('ready', flush=True); sys.stdin.readline(); "
            "a = open_data(sys.argv[1], sys.argv[2]); "
            "print(int(a.sum()), *{l.split()[4] for l in open('/proc/self/maps') if l.rstrip().endswith('.npy')})")
    procs = [subprocess.Popen([sys.executable, "-c", code, root / "val_data.npz", target.parent], cwd=REPO,
                              env=subprocess_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outcomes = start_together(procs)
    assert [p.returncode for p in procs] == [0] * 3, outcomes
    assert sum(err.count("[imagenet64] decompressing data.npy") for _, err in outcomes) == 1, outcomes
    inode = target.stat().st_ino  # every process maps this one copy
    assert [out for out, _ in outcomes] == [f"{int(images.sum())} {inode}\n"] * 3, outcomes


def test_imagenet64_says_before_any_work_when_a_compressed_batch_cannot_be_decompressed(tmp_path, imagenet_jpg):
    root = write_imagenet64(tmp_path, imagenet_jpg, imagenet_jpg)  # val_data.npz stored compressed
    (root / "_extracted").write_text("a file where the copies would go")
    spec = {"name": "imagenet64", "root": str(root)}
    assert len(build_dataset(spec, "train")) == 20  # stored uncompressed: nothing to write
    with pytest.raises(ValueError, match=re.escape(f"{root / 'val_data.npz'} stores its images compressed, to be "
                                                   f"decompressed once (about 1.6 GB per training file) to "
                                                   f"{root / '_extracted' / 'val_data.data.npy'}, which cannot be "
                                                   f"created: {root / '_extracted'} is not a folder")):
        build_dataset(spec, "test")


def test_imagenet64_downsampling_agrees_with_pil_bilinear(imagenet_root, imagenet_jpg):
    small = all_images({"name": "imagenet64", "root": str(imagenet_root), "image_size": 32}, "test")
    assert small.shape == (20, 32, 32, 3)
    assert np.abs(small.astype(int) - pil_bilinear(imagenet_jpg[0], 32)).max() <= 1


def test_imagenet64_rejects_zero_based_labels(tmp_path, imagenet_jpg):
    images, labels = imagenet_jpg
    write_imagenet64(tmp_path, (images, labels), (images, np.full(20, -1)))  # the file then holds 0s
    with pytest.raises(ValueError, match=r"val_data.npz: labels must be .* 1..1000"):
        build_dataset({"name": "imagenet64", "root": str(tmp_path)}, "test")


def test_imagenet64_names_a_damaged_batch_file(tmp_path, imagenet_jpg):
    write_imagenet64(tmp_path, imagenet_jpg, imagenet_jpg)
    val = tmp_path / "val_data.npz"
    spec = {"name": "imagenet64", "root": str(tmp_path)}
    np.savez(val, labels=np.ones(20, dtype=np.int64))  # no images
    with pytest.raises(ValueError,
                       match=rf"batch {re.escape(str(val))} lacks 'data' \(it holds 'labels'\)"):
        build_dataset(spec, "test")
    val.write_bytes(pickle.dumps({"data": 0}))  # a pickle, which np.load alone would try to read
    with pytest.raises(ValueError, match=rf"batch {re.escape(str(val))} is not an .npz archive"):
        build_dataset(spec, "test")


# ---------------------------------------------------------------- image folders

@pytest.fixture
def class_folder(tmp_path):
    for path, label in samples("cifar10", ".png"):
        target = tmp_path / "images" / CIFAR10_NAMES[label] / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    return tmp_path / "images"


def test_folder_unlabelled_and_by_subfolder(class_folder, cifar_png):
    paths = sorted(class_folder.rglob("*.png"), key=lambda p: p.relative_to(class_folder).as_posix())
    expected = np.stack([read_rgb(p) for p in paths])
    spec = {"name": "folder", "root": str(class_folder)}
    ds = build_dataset(spec, "train")
    assert len(ds) == 20 and (ds.labels == -1).all() and ds[0][1] == -1
    assert np.array_equal(all_images(spec, "train"), expected)
    assert num_classes(spec) == 0
    labelled = {**spec, "labels": "subfolders"}
    classes = sorted({p.parent.name for p in paths})
    assert num_classes(labelled) == len(classes) == len(set(cifar_png[1]))
    ds = build_dataset(labelled, "train")
    for i, p in enumerate(paths):
        assert ds.labels[i] == classes.index(p.parent.name)
        assert CIFAR10_NAMES[int(p.stem.split("_")[-1])] == p.parent.name
    grey = all_images({**spec, "channels": 1}, "train", limit=3)
    assert np.array_equal(grey[..., 0], np.stack([np.asarray(Image.open(p).convert("L")) for p in paths[:3]]))


def test_a_folder_holds_out_a_test_split_by_each_images_path(class_folder, tmp_path):
    """test_fraction splits the folder by a hash of each image's relative path: the two splits partition
    it, each image's side is the naive hash rule's, and an image added elsewhere moves no other."""
    spec = {"name": "folder", "root": str(class_folder), "labels": "subfolders", "test_fraction": 0.3}
    relative = sorted(p.relative_to(class_folder).as_posix() for p in class_folder.rglob("*.png"))
    naive_test = [r for r in relative if int(hashlib.sha256(r.encode()).hexdigest()[:16], 16) / 16**16 < 0.3]
    assert 0 < len(naive_test) < len(relative)
    assert split_names(spec) == ("train", "test") and split_names({**spec, "test_fraction": 0}) == ("train",)
    sides = {split: build_dataset(spec, split) for split in ("train", "test")}
    listed = {split: [p.relative_to(class_folder).as_posix() for p in ds.source.paths] for split, ds in sides.items()}
    assert listed["test"] == naive_test and listed["train"] == [r for r in relative if r not in naive_test]
    classes = sorted({r.split("/")[0] for r in relative})  # numbered alike in both splits
    for split, ds in sides.items():
        assert [classes[i] for i in ds.labels] == [r.split("/")[0] for r in listed[split]]
    check_available(spec)  # both splits hold images
    # Held-out images carry their split in the images' identity (statistics, resume); none: as before.
    assert image_identity(spec)["test_fraction"] == 0.3 and "test_fraction" not in image_identity(
        {**spec, "test_fraction": 0})
    (class_folder / "zz_new").mkdir()
    (class_folder / "zz_new" / "x.png").write_bytes((class_folder / relative[0]).read_bytes())
    moved = [p.relative_to(class_folder).as_posix() for p in build_dataset(spec, "test").source.paths]
    assert [r for r in moved if not r.startswith("zz_new/")] == naive_test
    with pytest.raises(ValueError, match=rf"test_fraction: 1e-09 leaves the test split of {class_folder} empty "
                                         r"\(it holds 21 images\)"):
        check_available({**spec, "test_fraction": 1e-9})


def test_folder_mixed_formats_and_sizes(tmp_path):
    png, _ = samples("cifar10", ".png")[0]
    jpg, _ = samples("imagenet", ".jpg")[0]
    (tmp_path / "a.PNG").write_bytes(png.read_bytes())
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.jpeg").write_bytes(jpg.read_bytes())
    Image.open(png).save(tmp_path / "sub" / "c.webp", lossless=True)
    (tmp_path / "notes.txt").write_text("not an image")
    spec = {"name": "folder", "root": str(tmp_path)}
    images = all_images(spec, "train")
    assert images.shape == (3, 32, 32, 3)
    assert np.array_equal(images[0], read_rgb(png)) and np.array_equal(images[2], read_rgb(png))
    assert np.abs(images[1].astype(int) - pil_bilinear(read_rgb(jpg)[None], 32)[0]).max() <= 1
    with pytest.raises(ValueError, match=r"b.jpeg is 512x512, larger than image_size 32"):
        all_images({**spec, "resize": "pad"}, "train")
    with pytest.raises(ValueError, match=r"labels: subfolders .* directly in it"):
        build_dataset({**spec, "labels": "subfolders"}, "train")
    # A damaged file (cut short, or not an image under an image's name) is named.
    for name, data in (("cut.png", png.read_bytes()[:200]), ("fake.png", b"not an image")):
        damaged = tmp_path / "damaged"
        damaged.mkdir(exist_ok=True)
        (damaged / name).write_bytes(data)
        with pytest.raises(ValueError, match=rf"cannot read image {damaged / name} \("):
            all_images({"name": "folder", "root": str(damaged)}, "train")
        (damaged / name).unlink()


# ---------------------------------------------------------------- missing data

def test_missing_datasets_name_paths_and_the_fix(tmp_path, monkeypatch):
    root = tmp_path / "empty"
    cases = {
        "cifar10": [root / "cifar-10-batches-py" / "data_batch_1", root / "cifar-10-batches-py" / "test_batch",
                    "cifar-10-python.tar.gz", "download: true"],
        "imagenet64": [root / "train_data_batch_10.npz", root / "val_data.npz",
                       "https://image-net.org/download-images", "Downsampled ImageNet 64x64"],
        "folder": [root, "*.webp"],
        "fashion_mnist": [root / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte",
                          tmp_path / "no-debian" / "t10k-images-idx3-ubyte.gz",
                          "apt-get install dataset-fashion-mnist"],
    }
    monkeypatch.setattr(rdd.data.fashion_mnist, "SYSTEM_DIR", tmp_path / "no-debian")
    for name, needles in cases.items():
        spec = {"name": name, "root": str(root)}
        with pytest.raises(DatasetMissingError) as err:
            check_available(spec)  # all splits
        assert isinstance(err.value, FileNotFoundError)
        for needle in needles:
            assert str(needle) in str(err.value), (name, needle)
        with pytest.raises(DatasetMissingError) as err:
            build_dataset(spec, "train")  # the train split's files, before anything is read
        assert str(needles[0]) in str(err.value) and str(needles[-1]) in str(err.value)
    with pytest.raises(DatasetMissingError, match="one sub-folder per class"):
        num_classes({"name": "folder", "root": str(root), "labels": "subfolders"})
    check_available({"name": "fashion_mnist", "root": str(root), "download": True})  # fetched at build time


def test_damaged_system_copy_of_fashion_mnist_is_named(tmp_path, monkeypatch):
    system = tmp_path / "debian"
    system.mkdir()
    for name in rdd.data.fashion_mnist.FILES:
        (system / f"{name}.gz").write_bytes(gzip.compress(b"idx"))
    whole = (system / "train-images-idx3-ubyte.gz").read_bytes()
    (system / "train-images-idx3-ubyte.gz").write_bytes(whole[:-6])  # cut short
    (system / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
    monkeypatch.setattr(rdd.data.fashion_mnist, "SYSTEM_DIR", system)
    spec = {"name": "fashion_mnist", "root": str(tmp_path / "root")}
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        with pytest.raises(ValueError, match=rf"cannot decompress {system / name}.gz .*--reinstall"):
            build_dataset(spec, "train")
        (system / f"{name}.gz").write_bytes(whole)  # mended: the next file's damage is found
    assert not (tmp_path / "root" / "FashionMNIST" / "raw" / "train-labels-idx1-ubyte").exists()


@needs_debian
def test_fashion_mnist_is_available_from_the_debian_package(tmp_path):
    check_available({"name": "fashion_mnist", "root": str(tmp_path)})


# ---------------------------------------------------------------- flip augmentation

def test_flips_follow_seed_epoch_and_index(imagenet_root):
    spec = {"name": "imagenet64", "root": str(imagenet_root)}
    plain = build_dataset(spec, "train")
    flipped = build_dataset(spec, "train", augment=True, seed=3)
    decisions = [hflip_decision(3, 0, i) for i in range(20)]
    assert any(decisions) and not all(decisions)
    for i, flip in enumerate(decisions):
        x, base = flipped[i][0], plain[i][0]
        assert not torch.equal(base, base.flip(-1))  # real photographs are not mirror-symmetric
        if flip:
            assert all(torch.equal(x[:, :, j], base[:, :, 63 - j]) for j in range(64))
        else:
            assert torch.equal(x, base)
    again = build_dataset(spec, "train", augment=True, seed=3)
    assert all(torch.equal(again[i][0], flipped[i][0]) for i in range(20))
    again.set_epoch(1)
    assert [hflip_decision(3, 1, i) for i in range(20)] != decisions
    assert all(torch.equal(again[i][0], plain[i][0].flip(-1) if hflip_decision(3, 1, i) else plain[i][0])
               for i in range(20))
    no_hflip = build_dataset({**spec, "hflip": False}, "train", augment=True, seed=3)
    assert all(torch.equal(no_hflip[i][0], plain[i][0]) for i in range(20))
    rate = np.mean([hflip_decision(0, 0, i) for i in range(4000)])
    assert 0.45 < rate < 0.55


def test_flips_do_not_depend_on_dataloader_workers(imagenet_root):
    ds = build_dataset({"name": "imagenet64", "root": str(imagenet_root)}, "train", augment=True, seed=7)
    ds.set_epoch(2)
    serial = torch.stack([ds[i][0] for i in range(len(ds))])
    batches = DataLoader(ds, batch_size=6, num_workers=2)
    assert torch.equal(torch.cat([x for x, _ in batches]), serial)
