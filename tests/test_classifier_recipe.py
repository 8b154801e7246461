"""The released classifier recipe: augmentation, input normalisation, multistep lr, best-test selection,
resume, and the authors' released classifier file. Real Fashion-MNIST; naive restatements in loops."""

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps
from torch.utils.data import DataLoader

from conftest import read_record, run_rdd
from fixtures_authors import authors_classifier_file
from rdd import checkpoints, settings as settings_mod
from rdd.data import (CHANNEL_STATS, Augmentation, ImageDataset, input_norm, normalize_input, normalize_spec,
                      to_uint8)
from rdd.data.augment import BLACK, CIFAR10_POLICY, autoaugment_op
from rdd.data.fashion_mnist import FashionMNISTSource
from rdd.checkpoints import AUTHORS_CLASSIFIER_INPUT_NORM, load_classifier
from rdd.nets import build_classifier
from rdd.train import checks, classifier as recipe, loop
from rdd.train.batches import EpochItems, StepBatchSampler, step_indices, train_steps


@pytest.fixture(scope="module")
def spec(data_root):
    return normalize_spec({"name": "fashion_mnist", "root": str(data_root), "image_size": 16, "resize": "resize"})


class FirstN:
    """The first n examples of a real source: an epoch of a few steps."""

    def __init__(self, source, n):
        self.source, self.n, self.labels = source, n, source.labels[:n]

    def __len__(self):
        return self.n

    def read(self, start, stop):
        return self.source.read(start, min(stop, self.n))


@pytest.fixture(scope="module")
def sources(spec):
    return {split: FashionMNISTSource(spec, split) for split in ("train", "test")}


def images(spec, sources, n=12):
    return ImageDataset(FirstN(sources["train"], n), spec).images(0, n)


# ---------------------------------------------------------------- crop and cutout against loops

def naive_crop(x, padding, top, left):
    c, h, w = x.shape
    out = torch.empty_like(x)
    for k in range(c):
        for i in range(h):
            for j in range(w):
                si, sj = i + top - padding, j + left - padding
                out[k, i, j] = x[k, si, sj] if 0 <= si < h and 0 <= sj < w else 128 / 127.5 - 1
    return out


@pytest.mark.parametrize("channels,padding", [(1, 2), (3, 4)])
def test_crop_pads_with_grey_at_offsets_from_seed_epoch_index(spec, sources, channels, padding):
    x = images(spec, sources).repeat(1, channels, 1, 1)
    crop = Augmentation(["crop"], crop_padding=padding)
    offsets = set()
    for index in range(len(x)):
        for epoch in range(4):
            top, left = (int(v) for v in np.random.default_rng([5, epoch, index, 1]).integers(0, 2 * padding + 1, 2))
            offsets.update((top, left))
            out = crop(x[index], 5, epoch, index)
            assert torch.equal(out, naive_crop(x[index], padding, top, left))
    assert offsets == set(range(2 * padding + 1))  # every offset 0..2p turns up
    # The padding is uint8 grey 128: the pixels a crop takes from outside the image.
    top, left = (int(v) for v in np.random.default_rng([5, 0, 0, 1]).integers(0, 2 * padding + 1, 2))
    outside = naive_crop(torch.full_like(x[0], float("nan")), padding, top, left).isnan().logical_not()
    assert outside.any()
    assert (to_uint8(crop(x[0], 5, 0, 0)[None])[0].transpose(2, 0, 1)[outside.numpy()] == 128).all()


def naive_cutout(x, length, cy, cx):
    c, h, w = x.shape
    out = x.clone()
    for i in range(h):
        for j in range(w):
            if cy - length // 2 <= i < cy + length // 2 and cx - length // 2 <= j < cx + length // 2:
                out[:, i, j] = -1.0  # 0 in [0, 1]
    return out


@pytest.mark.parametrize("channels,length", [(1, 8), (3, 16), (1, 5)])
def test_cutout_is_one_clipped_black_hole_before_normalisation(spec, sources, channels, length):
    x = images(spec, sources).repeat(1, channels, 1, 1)
    cut = Augmentation(["cutout"], cutout_length=length)
    clipped = 0
    for index in range(len(x)):
        for epoch in range(3):
            rng = np.random.default_rng([1, epoch, index, 3])
            cy, cx = int(rng.integers(16)), int(rng.integers(16))
            clipped += not (length // 2 <= cy <= 16 - length // 2 and length // 2 <= cx <= 16 - length // 2)
            out = cut(x[index], 1, epoch, index)
            assert torch.equal(out, naive_cutout(x[index], length, cy, cx))
    assert clipped > 0
    # Black in the [0, 1] image, so the classifier sees -mean/std there once normalised.
    out = cut(x[0], 1, 0, 0)
    hole = out == BLACK
    norm = input_norm("mean_std", {**spec, "channels": channels})
    seen = normalize_input(out[None], norm)[0]
    for k in range(channels):
        expected = (0.0 - norm["mean"][k]) / norm["std"][k]
        assert torch.allclose(seen[k][hole[k]], torch.tensor(expected), atol=1e-6)


# ---------------------------------------------------------------- AutoAugment as released

def test_the_cifar10_policy_is_the_one_torchvision_has():
    """The table of the paper's 25 sub-policies, checked against an independent copy."""
    import torchvision.transforms as T

    assert CIFAR10_POLICY == tuple(T.AutoAugment(T.AutoAugmentPolicy.CIFAR10).policies)


def naive_released_op(pixels, name, magnitude_bin, sign):
    """The released CIFAR10Policy's operation on a uint8 HWC (or HW) array, restated: pixel loops where
    the operation is a formula, PIL as the released code calls it elsewhere."""
    image = Image.fromarray(pixels)
    grey = 128 if pixels.ndim == 2 else (128, 128, 128)
    if name in ("TranslateX", "TranslateY"):
        # Output pixel i takes the source pixel floor(i + 0.5 + shift) along the axis, grey outside.
        axis = 1 if name == "TranslateX" else 0
        shift = sign * (150 / 331) * magnitude_bin / 9 * pixels.shape[axis]
        out = np.full_like(pixels, 128)
        for i in range(pixels.shape[axis]):
            source = int(np.floor(i + 0.5 + shift))
            if 0 <= source < pixels.shape[axis]:
                out[(slice(None), i) if axis else i] = pixels[(slice(None), source) if axis else source]
        return out
    if name == "Rotate":  # the released way: rotate as RGBA, lay over a grey image by the alpha
        turned = image.convert("RGBA").rotate(30 * magnitude_bin / 9)
        return np.asarray(Image.composite(turned, Image.new("RGBA", turned.size, (128,) * 4), turned)
                          .convert(image.mode))
    if name == "ShearY":  # source row y + m x, bicubic
        m = sign * 0.3 * magnitude_bin / 9
        return np.asarray(image.transform(image.size, Image.AFFINE, (1, 0, 0, m, 1, 0), Image.BICUBIC,
                                          fillcolor=grey))
    if name in ("Color", "Contrast", "Sharpness", "Brightness"):
        return np.asarray(getattr(ImageEnhance, name)(image).enhance(1 + sign * 0.9 * magnitude_bin / 9))
    if name == "Posterize":
        bits = int(round(8 - 4 * magnitude_bin / 9))
        return pixels & np.uint8(0xFF << (8 - bits) & 0xFF)
    if name == "Solarize":
        threshold = 256 * (9 - magnitude_bin) / 9
        return np.where(pixels < threshold, pixels, 255 - pixels).astype(np.uint8)
    if name == "Invert":
        return 255 - pixels
    return np.asarray({"AutoContrast": ImageOps.autocontrast, "Equalize": ImageOps.equalize}[name](image))


def released_cases():
    """Every operation with a magnitude at bins 0, 3 and 9 and both signs; the others once."""
    names = sorted({name for sub_policy in CIFAR10_POLICY for name, _, _ in sub_policy})
    with_magnitude = {name for sub_policy in CIFAR10_POLICY for name, _, m in sub_policy if m is not None}
    return [(name, magnitude_bin, sign) for name in names
            for magnitude_bin in ((0, 3, 9) if name in with_magnitude else (None,))
            for sign in ((1, -1) if name in with_magnitude else (1,))]


@pytest.mark.parametrize("channels", [1, 3])
def test_each_autoaugment_operation_is_the_released_one(spec, sources, channels):
    """Grey fill, bicubic shears, nearest shifts and turns, counter-clockwise turns only, shifts of
    a fraction of the side, solarize thresholds from 256: the released implementation's semantics."""
    pixels = list(to_uint8(images(spec, sources, n=4).repeat(1, channels, 1, 1)))
    pixels = [image[..., 0] for image in pixels] if channels == 1 else pixels
    pixels.append(np.random.default_rng(0).integers(0, 256, pixels[0].shape, dtype=np.uint8))  # colours too
    changed = set()
    for name, magnitude_bin, sign in released_cases():
        for image in pixels:
            ours = np.asarray(autoaugment_op(Image.fromarray(image), name, magnitude_bin, sign))
            expected = naive_released_op(image, name, magnitude_bin, sign)
            assert np.array_equal(ours, expected), (name, magnitude_bin, sign)
            changed.update([name] if not np.array_equal(ours, image) else [])
    assert changed >= {"TranslateX", "TranslateY", "Rotate", "ShearY", "Posterize", "Solarize", "Invert"}
    # A shift of 9 bins is 150/331 of 32 pixels, 14.5: 15 columns of grey on the side it leaves.
    flat = Image.fromarray(np.full((32, 32, 3), 7, np.uint8))
    for sign, grey in ((1, slice(17, 32)), (-1, slice(0, 15))):
        shifted = np.asarray(autoaugment_op(flat, "TranslateX", 9, sign))
        assert (shifted[:, grey] == 128).all() and (shifted == 7).all(axis=2).sum() == 32 * 17


def test_autoaugment_draws_one_sub_policy_and_applies_each_operation_with_its_probability(spec, sources):
    x = images(spec, sources, n=40).repeat(1, 3, 1, 1)
    augment = Augmentation(["autoaugment"])
    drawn, untouched = set(), 0
    for index in range(len(x)):
        for epoch in range(5):
            rng = np.random.default_rng([2, epoch, index, 2])
            sub_policy = CIFAR10_POLICY[rng.integers(25)]
            drawn.add(sub_policy)
            expected = to_uint8(x[index][None])[0]
            for name, probability, magnitude_bin in sub_policy:
                applied, sign = rng.random() < probability, 1 if rng.random() < 0.5 else -1
                expected = naive_released_op(expected, name, magnitude_bin, sign) if applied else expected
            out = to_uint8(augment(x[index], 2, epoch, index)[None])[0]
            assert np.array_equal(out, expected), (index, epoch, sub_policy)
            untouched += np.array_equal(out, to_uint8(x[index][None])[0])
    assert len(drawn) == 25 and 0 < untouched < 100


# ---------------------------------------------------------------- the whole augmentation is seeded

RELEASED = ["crop", "hflip", "autoaugment", "cutout"]


def test_augmentation_depends_only_on_seed_epoch_and_index(spec, sources):
    data = ImageDataset(FirstN(sources["train"], 64), spec, augment=Augmentation(RELEASED, 2, 8), seed=3)
    rng_before = torch.get_rng_state()
    first = torch.stack([data.item(i, 1)[0] for i in range(64)])
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is left alone
    torch.manual_seed(1234)  # another global state changes nothing
    backwards = torch.stack([data.item(i, 1)[0] for i in reversed(range(64))]).flip(0)
    assert torch.equal(first, backwards)
    plain = data.images(0, 64)
    assert sum(not torch.equal(first[i], plain[i]) for i in range(64)) > 56
    assert not torch.equal(first, torch.stack([data.item(i, 2)[0] for i in range(64)]))
    other_seed = ImageDataset(FirstN(sources["train"], 64), spec, augment=Augmentation(RELEASED, 2, 8), seed=4)
    assert not torch.equal(first, torch.stack([other_seed.item(i, 1)[0] for i in range(64)]))


def test_augmented_batches_do_not_depend_on_workers(spec, sources):
    data = ImageDataset(FirstN(sources["train"], 64), spec, augment=Augmentation(RELEASED, 2, 8), seed=0)
    loaded = {}
    for workers in (0, 2):
        sampler = StepBatchSampler(64, 16, 0, 0, 8)  # two epochs of 4 steps
        batches = DataLoader(EpochItems(data), batch_sampler=sampler, num_workers=workers)
        loaded[workers] = torch.cat([x for x, _ in batches])
    assert torch.equal(loaded[0], loaded[2])


# ---------------------------------------------------------------- input normalisation

def test_normalize_input_matches_a_loop_and_minus1_1_is_identity():
    x = torch.rand(2, 3, 4, 4) * 2 - 1
    norm = input_norm("mean_std", {"name": "cifar10", "channels": 3})
    assert norm == {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2023, 0.1994, 0.2010]}
    out = normalize_input(x, norm)
    for b in range(2):
        for c in range(3):
            for i in range(4):
                for j in range(4):
                    x01 = (float(x[b, c, i, j]) + 1) / 2
                    assert abs(float(out[b, c, i, j]) - (x01 - norm["mean"][c]) / norm["std"][c]) < 1e-5
    assert torch.equal(normalize_input(x, input_norm("minus1_1", {"name": "imagenet64", "channels": 3})), x)
    grey3 = input_norm("mean_std", {"name": "fashion_mnist", "channels": 3})
    assert grey3 == {"mean": [0.286] * 3, "std": [0.353] * 3}
    with pytest.raises(ValueError, match="train.input_norm.*imagenet64.*minus1_1"):
        input_norm("mean_std", {"name": "imagenet64", "channels": 3})


def test_fashion_mnist_constants_are_its_training_set_statistics(sources):
    pixels = np.concatenate([chunk.reshape(-1) for chunk in sources["train"].read(0, 60000)]) / 255.0
    (mean,), (std,) = CHANNEL_STATS["fashion_mnist"]
    assert abs(pixels.mean() - mean) < 5e-5 and abs(pixels.std() - std) < 5e-5


# ---------------------------------------------------------------- multistep schedule

def naive_released_lr(epoch):
    lr = 0.1
    for milestone in (150, 225):
        if epoch >= milestone:
            lr /= 10
    return lr


@pytest.mark.parametrize("drop_last,per_epoch", [(False, 391), (True, 390)])  # 50000 / 128, the last of 80 or dropped
def test_multistep_drops_at_epochs_150_and_225_of_300(drop_last, per_epoch):
    train = settings_mod.resolve("classifier", {"train": {"epochs": 300, "drop_last": drop_last}})["train"]
    assert train_steps(train, 50000) == 300 * per_epoch
    factor = recipe.lr_factor(train, 50000)
    for epoch in range(300):
        for step in (epoch * per_epoch, (epoch + 1) * per_epoch - 1):
            assert abs(0.1 * factor(step) - naive_released_lr(epoch)) < 1e-12, (epoch, step)


# ---------------------------------------------------------------- epochs and their last partial batch

def test_the_released_loader_keeps_each_epochs_partial_batch():
    """As a shuffled DataLoader with drop_last=False: every example once per epoch, the last batch short."""
    assert settings_mod.resolve("classifier", {})["train"]["drop_last"] is False  # the released default
    epochs = {}
    for step in range(3 * 5):  # 70 examples at 16: 5 steps per epoch, the last of 6
        epoch, indices = step_indices(70, 16, 0, step, drop_last=False)
        epochs.setdefault(epoch, []).append(indices)
    assert sorted(epochs) == [0, 1, 2]
    for batches in epochs.values():
        assert [len(b) for b in batches] == [16, 16, 16, 16, 6]
        assert sorted(i for b in batches for i in b) == list(range(70))
    assert epochs[0] != epochs[1]
    dropped = [step_indices(70, 16, 0, step)[1] for step in range(4)]
    assert dropped == epochs[0][:4]  # dropping the partial batch leaves the others as they were


def test_a_partial_batch_smaller_than_the_processes_is_refused():
    with pytest.raises(ValueError, match="last batch of each epoch has 1 of 65 examples.*train.drop_last"):
        StepBatchSampler(65, 16, 0, 0, 10, rank=0, world_size=2, drop_last=False)
    shares = [list(StepBatchSampler(66, 16, 0, 4, 5, rank=r, world_size=2, drop_last=False)) for r in (0, 1)]
    assert [len(s[0]) for s in shares] == [1, 1]  # the last batch of 2, one example per process


@pytest.mark.parametrize("batch_size, world_size", [(12, 2), (12, 3), (12, 4)])
def test_the_processes_batches_in_rank_order_are_the_global_batch(batch_size, world_size):
    """Each process takes a contiguous slice, as even as can be (an all-gather in rank order is the
    global batch in order); the epoch's last partial batch of 10 too."""
    steps = list(range(7))  # 70 examples: 5 full batches of 12, then 10
    shares = [list(StepBatchSampler(70, batch_size, 3, 0, len(steps), rank=r, world_size=world_size,
                                    drop_last=False)) for r in range(world_size)]
    for step in steps:
        epoch, indices = step_indices(70, batch_size, 3, step, drop_last=False)
        assert [i for share in shares for e, i in share[step]] == indices
        sizes = [len(share[step]) for share in shares]
        assert sum(sizes) == len(indices) and max(sizes) - min(sizes) <= 1


def test_multistep_keeps_its_shape_in_short_runs():
    train = settings_mod.resolve("classifier", {"train": {"epochs": 8, "batch_size": 64}})["train"]
    factor = recipe.lr_factor(train, 640)  # 10 steps per epoch; drops at epochs 4 and 6
    assert [factor(s) for s in (0, 39, 40, 59, 60, 79)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    six = settings_mod.resolve("classifier", {"train": {"epochs": 6, "batch_size": 64}})["train"]
    factor = recipe.lr_factor(six, 640)  # 3 and 4.5 epochs: the nearest epochs, halves up, are 3 and 5
    assert [factor(s) for s in (29, 30, 49, 50, 59)] == pytest.approx([1, 0.1, 0.1, 0.01, 0.01])
    by_iters = settings_mod.resolve("classifier", {"train": {"iters": 300}})["train"]
    factor = recipe.lr_factor(by_iters, 60000)
    assert [factor(s) for s in (149, 150, 224, 225)] == pytest.approx([1, 0.1, 0.1, 0.01])
    cosine = settings_mod.resolve("classifier", {"train": {"iters": 300, "lr_schedule": "cosine"}})["train"]
    assert recipe.lr_factor(cosine, 60000)(150) == pytest.approx(0.5)


# ---------------------------------------------------------------- best-test selection

def small_run(spec, sources, tmp_path, train, kill_before=None, checkpoint_every=5):
    """A classifier run on 256 training and 200 test images (8 steps per epoch at batch 32)."""
    settings = settings_mod.resolve("classifier", {"data": spec, "train": {
        "batch_size": 32, "crop_padding": 2, "cutout_length": 8, "checkpoint_every": checkpoint_every, "log_every": 8,
        **train}})
    settings["data"] = spec
    data = ImageDataset(FirstN(sources["train"], 256), spec, seed=0,
                        augment=Augmentation(RELEASED, 2, 8))
    test_set = ImageDataset(FirstN(sources["test"], 200), spec)
    torch.manual_seed(0)
    stage, record = recipe.build_stage(settings, torch.device("cpu"), data, test_set=test_set)
    if kill_before is not None:
        loss_fn = stage.loss

        def loss(batch, step):
            if step == kill_before:
                raise KeyboardInterrupt  # as a kill: whatever came after the last checkpoint is lost
            return loss_fn(batch, step)
        stage.loss = loss
    train = settings["train"]
    payload, _, _ = loop.run(stage, data, iters=train_steps(train, len(data)), batch_size=train["batch_size"], seed=0,
                             resume_dir=tmp_path, digest=settings_mod.digest(settings),
                             checkpoint_every=train["checkpoint_every"], log_every=train["log_every"],
                             log=lambda message: None)
    return payload, record(), test_set


def naive_accuracy(state_dict, net_kwargs, test_set, norm):
    """Accuracy with the normalisation written out channel by channel (net calls of 256, as in training)."""
    net = build_classifier(**net_kwargs)
    net.load_state_dict(state_dict)
    net.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(test_set), 256):
            x01 = (test_set.images(start, min(len(test_set), start + 256)) + 1) / 2
            scaled = torch.stack([(x01[:, c] - norm["mean"][c]) / norm["std"][c] for c in range(x01.shape[1])], 1)
            predicted = net(scaled).argmax(1).tolist()
            correct += sum(p == y for p, y in zip(predicted, test_set.labels[start:start + len(x01)]))
    return correct / len(test_set)


def test_best_test_selection_exports_the_best_epoch(spec, sources, tmp_path):
    # From epoch 4 on the lr is 30 times the first epochs' (6.0): the net falls to chance there, so
    # on any machine the best evaluation is one of the first three and best_test is not final.
    train = {"epochs": 5, "lr": 0.2, "lr_milestones": [0.5], "lr_gamma": 30.0}
    payload, record, test_set = small_run(spec, sources, tmp_path / "best", train)
    per_epoch = record["test_accuracy_by_epoch"]
    assert [e["epoch"] for e in per_epoch] == [1, 2, 3, 4, 5] and [e["step"] for e in per_epoch] == [8, 16, 24, 32, 40]
    accuracies = [e["test_accuracy"] for e in per_epoch]
    best = accuracies.index(max(accuracies))
    assert best + 1 < 5, f"the best epoch is the last ({accuracies}): this run would not tell best_test from final"
    assert record["selected_epoch"] == best + 1 and record["test_accuracy"] == max(accuracies)
    assert record["epochs_run"] == 5 and record["selection"] == "best_test" and "optimistic" in record["selection_note"]
    assert payload["input_norm"] == {"mean": [0.286], "std": [0.353]}
    assert naive_accuracy(payload["state_dict"], payload["net"], test_set, payload["input_norm"]) == max(accuracies)
    # The exported weights are the net's at the end of the selected epoch: the same run, killed just
    # after it with a checkpoint at every epoch's end, holds them in its resume state.
    with pytest.raises(KeyboardInterrupt):
        small_run(spec, sources, tmp_path / "killed", train, kill_before=8 * (best + 1) + 1, checkpoint_every=8)
    state = checkpoints.load_torch(tmp_path / "killed" / "resume.pt")
    assert state["step"] == 8 * (best + 1)
    assert all(torch.equal(state["modules"]["net"][k], v) for k, v in payload["state_dict"].items())
    assert state["modules"]["selection"]["accuracy"].tolist()[:best + 1] == accuracies[:best + 1]


def test_selection_keeps_the_first_best_weights():
    nets = [torch.nn.Linear(2, 2) for _ in range(4)]
    selection = recipe.CheckpointSelection(nets[0], [10, 20, 30, 40], keep_best=True)
    for step, acc, net in zip([10, 20, 30, 40], [0.5, 0.7, 0.7, 0.6], nets):
        selection.record(step, acc, net)
    assert selection.chosen() == 1
    assert all(torch.equal(a, b) for a, b in zip(selection.best.parameters(), nets[1].parameters()))
    final = recipe.CheckpointSelection(nets[0], [10, 20], keep_best=False)
    final.record(10, 0.9, nets[0])
    final.record(20, 0.1, nets[1])
    assert final.chosen() == 1 and final.best is None


def test_evaluation_steps_every_few_epochs_and_at_the_end():
    assert recipe.evaluation_steps(40, 8, 1) == [8, 16, 24, 32, 40]
    assert recipe.evaluation_steps(45, 8, 2) == [16, 32, 45]
    assert recipe.evaluation_steps(300, 468, 1) == [300]


def test_killed_classifier_resumes_to_the_same_weights_and_selection(spec, sources, tmp_path):
    train = {"epochs": 3}
    straight, straight_record, _ = small_run(spec, sources, tmp_path / "straight", train)
    # Killed before step 19: the last checkpoint is at step 15, before the evaluation at step 16,
    # which the resumed run repeats from the saved best weights and accuracies.
    with pytest.raises(KeyboardInterrupt):
        small_run(spec, sources, tmp_path / "killed", train, kill_before=19)
    assert checkpoints.load_torch(tmp_path / "killed" / "resume.pt")["step"] == 15
    resumed, resumed_record, _ = small_run(spec, sources, tmp_path / "killed", train)
    assert all(torch.equal(resumed["state_dict"][k], v) for k, v in straight["state_dict"].items())
    assert resumed_record == straight_record


# ---------------------------------------------------------------- the command and its exported file

def test_show_defaults_lists_the_recipe(capsys):
    run_rdd("show-defaults", "classifier", "--json")
    train = json.loads(capsys.readouterr().out)["train"]
    assert {k: train[k] for k in ("epochs", "lr_schedule", "lr_milestones", "lr_gamma", "augment", "crop_padding",
                                  "cutout_length", "input_norm", "select", "eval_every_epochs", "grad_clip")} == {
        "epochs": None, "lr_schedule": "multistep", "lr_milestones": [0.5, 0.75], "lr_gamma": 0.1,
        "augment": ["crop", "hflip", "autoaugment", "cutout"], "crop_padding": 4, "cutout_length": 16,
        "input_norm": "mean_std", "select": "best_test", "eval_every_epochs": 1, "grad_clip": 0.0}


@pytest.mark.parametrize("bad,message", [
    ({"lr_schedule": "step"}, "train.lr_schedule.*multistep, cosine"),
    ({"select": "best"}, "train.select"),
    ({"augment": ["crop", "mixup"]}, "train.augment"),
    ({"cutout_length": 0}, "train.cutout_length"),
    ({"lr_milestones": [0.75, 0.5]}, "train.lr_milestones"),
    ({"epochs": 0}, "train.epochs"),
    ({"input_norm": "imagenet"}, "train.input_norm"),
])
def test_bad_recipe_settings_are_named(bad, message):
    with pytest.raises(ValueError, match=message):  # when the settings are resolved, or checked together
        settings = settings_mod.resolve("classifier", {"train": bad})
        settings["data"] = normalize_spec(settings["data"])
        checks.check_recipe(settings)


def test_trained_classifier_records_its_normalisation(classifier, tiny):
    """The CLI-trained default recipe: its file and record name the normalisation it trained and tested with."""
    net, kwargs = load_classifier(classifier)
    assert net.input_norm == {"mean": [0.286], "std": [0.353]}  # Fashion-MNIST's, the default mean_std
    record = read_record(classifier)
    assert record["input_norm"] == net.input_norm and record["selection"] == "best_test"
    assert record["test_accuracy_by_epoch"] == [{"epoch": record["epochs_run"], "step": 36,
                                                 "test_accuracy": record["test_accuracy"]}]
    test_set = ImageDataset(FashionMNISTSource(normalize_spec(record["settings"]["data"]), "test"),
                            record["settings"]["data"])
    state = {k: v for k, v in net.state_dict().items()}
    assert naive_accuracy(state, kwargs, test_set, net.input_norm) == record["test_accuracy"]
    assert record["test_images"] == len(test_set) == 10000  # what the report's interval is over


# ---------------------------------------------------------------- the authors' released classifier file

@pytest.mark.parametrize("name,num_classes,prefix", [("densenet201", 10, "module."), ("densenet121", 7, "")])
def test_authors_classifier_file_loads_as_the_same_network(name, num_classes, prefix, tmp_path):
    torch.manual_seed(0)
    ours = build_classifier(name, num_classes=num_classes, in_channels=3)
    ours.train()(torch.randn(8, 3, 32, 32))  # move BatchNorm statistics off their initial values
    ours.eval()
    authors_classifier_file(ours, tmp_path / "densenet.pt", prefix)
    net, kwargs = load_classifier(tmp_path / "densenet.pt")
    assert kwargs == {"name": name, "num_classes": num_classes, "in_channels": 3}
    assert net.input_norm == AUTHORS_CLASSIFIER_INPUT_NORM == {"mean": [0.4914, 0.4822, 0.4465],
                                                               "std": [0.2023, 0.1994, 0.2010]}
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(net(x), ours(x))
    minus1_1 = {"mean": [0.5] * 3, "std": [0.5] * 3}
    assert load_classifier(tmp_path / "densenet.pt", authors_input_norm=minus1_1)[0].input_norm == minus1_1


def test_wrong_classifier_files_are_named(tmp_path):
    torch.manual_seed(0)
    small = build_classifier("densenet_small", num_classes=10, in_channels=3).state_dict()
    truncated = dict(list(small.items())[:-2])  # no fc
    cases = {"no_model.pt": {"weights": small}, "truncated.pt": {"model": truncated},
             "odd_blocks.pt": {"model": {k: v for k, v in small.items() if "block3" not in k}}}
    for name, payload in cases.items():
        torch.save(payload, tmp_path / name)
        with pytest.raises(checkpoints.CheckpointError, match=str(tmp_path / name)):
            load_classifier(tmp_path / name)
