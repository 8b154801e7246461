"""Generate samples in resumable shards: uint8 arrays, one seed per image, and a PNG grid.

Each shard of seeds is written to `<out>.parts/` as soon as it is done, so a
killed run loses at most one shard (a shard is reused only if it came from the
same model file, steps, network batch and precision, on the same kind of
device); the final `.npz` holds `images` (uint8 N x H x W x C), `seeds` and
`labels` (-1 when unconditional).
"""

import io as std_io
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rdd import io, layout, records
from rdd.data.quantize import to_uint8
from rdd.checkpoints import load_denoiser
from rdd.precision import effective, float32
from rdd.provenance import environment_record, kernels
from rdd.samples_file import read_samples
from rdd.ddim import check_steps, ddim_sample, fixed_batch, initial_noise


def image_shape(net_kwargs):
    """(C, H, W) of the images a denoiser with these UNet arguments generates."""
    return net_kwargs["in_channels"], net_kwargs["img_resolution"], net_kwargs["img_resolution"]


@torch.inference_mode()
def sample_batch(net, grid, seeds, steps, shape, num_classes, device, net_batch=16, precision="fp32"):
    """uint8 NHWC images and labels for `seeds`, with `steps` DDIM steps.

    The network always sees `net_batch` images at a time (see `fixed_batch`), its float32 matmuls and
    convolutions in `precision` (rdd.precision: "tf32" takes effect on CUDA only).
    """
    x_T, y = initial_noise(seeds, shape, num_classes, device)
    with float32(effective(precision, device)):
        x = ddim_sample(fixed_batch(net, net_batch), grid, x_T, steps, y)
    labels = y.cpu().numpy() if y is not None else np.full(len(seeds), -1)
    return to_uint8(x), labels


SHARD_MEMBERS = {"images", "labels", "seeds"}  # and "key", checked first


def _shard_path(parts, index):
    return parts / f"shard-{index:05d}.npz"


def shard_key(model, steps, net_batch, precision, authors_net, device):
    """What a shard's images depend on besides their seeds, as text: the model file's bytes, how it was
    sampled and on what kind of device. A shard left by a killed run is reused only under the same key,
    so a run resumed on another GPU model or CPU (a requeued job) gives the images that one machine
    makes, which the samples record names, not a mixture of two machines' roundings."""
    return json.dumps({"model_sha256": io.sha256_file(model), "steps": steps, "net_batch": net_batch,
                       "precision": precision, "authors_net": authors_net, "kernels": kernels(device)},
                      sort_keys=True)


def _finished_shard(path, seeds, key, log):
    """Whether the shard at `path` holds `seeds` sampled under `key`, every member intact (read, so
    CRC-checked); a damaged shard, or one of another model, sampling or seeds, is removed (and redone)."""
    try:
        shard = io.read_npz(path)
    except io.NpzError as exc:
        log(f"[sample] shard {path} {exc}; sampling it again")
    else:
        if str(shard.get("key")) != key:
            log(f"[sample] shard {path} was sampled from another model file, with other settings or on another kind "
                "of device; sampling it again")
        elif not (SHARD_MEMBERS <= shard.keys() and np.array_equal(shard["seeds"], seeds)):
            log(f"[sample] shard {path} holds other seeds or lacks images or labels; sampling it again")
        else:
            return True
    path.unlink()
    return False


def _save_npz(path, **arrays):
    buf = std_io.BytesIO()
    np.savez(buf, **arrays)
    io.write_bytes(buf.getvalue(), path)


def generate(model, steps, seeds, out, *, batch_size=256, net_batch=16, precision="fp32", shard_size=1000,
             device="cpu", authors_net=None, log=print):
    """Sample `seeds` from `model` with `steps` steps into `out` (.npz) and its record `<out>.json`.

    One process at a time writes `out` (and its shards): a second is refused with OutputBusyError.
    """
    out = Path(out)
    if not seeds:
        raise ValueError("no seeds to sample")
    with io.exclusive(out):
        return _generate(model, steps, seeds, out, batch_size, net_batch, precision, shard_size, device,
                         authors_net, log)


def _generate(model, steps, seeds, out, batch_size, net_batch, precision, shard_size, device, authors_net, log):
    device = torch.device(device)
    precision = effective(precision, device)
    net, kwargs, grid = load_denoiser(model, device, authors_net)
    check_steps(grid.T, steps)  # before any folder or shard is written
    shape = image_shape(kwargs)
    parts = out.with_name(out.name + ".parts")
    parts.mkdir(parents=True, exist_ok=True)
    for name in io.remove_partial_writes(parts):
        log(f"[sample] removed {parts / name}, a write cut short by a kill")
    key = shard_key(model, steps, net_batch, precision, authors_net, device)
    latencies, started = [], time.perf_counter()
    shards = [seeds[i:i + shard_size] for i in range(0, len(seeds), shard_size)]
    for index, shard in enumerate(shards):
        path = _shard_path(parts, index)
        if path.exists() and _finished_shard(path, shard, key, log):
            log(f"[sample] {out.name}: shard {index + 1}/{len(shards)} reused from {path}")
            continue
        images, labels = [], []
        for i in range(0, len(shard), batch_size):
            t0 = time.perf_counter()
            img, lab = sample_batch(net, grid, shard[i:i + batch_size], steps, shape, kwargs["num_classes"],
                                    device, net_batch, precision)
            if device.type == "cuda":
                torch.cuda.synchronize()
            latencies.append((len(lab), time.perf_counter() - t0))
            images.append(img)
            labels.append(lab)
        _save_npz(path, images=np.concatenate(images), labels=np.concatenate(labels), seeds=np.asarray(shard),
                  key=np.asarray(key))
        log(f"[sample] {out.name}: shard {index + 1}/{len(shards)} done")
    loaded = [io.read_npz(_shard_path(parts, i)) for i in range(len(shards))]
    _save_npz(out, images=np.concatenate([s["images"] for s in loaded]),
              labels=np.concatenate([s["labels"] for s in loaded]),
              seeds=np.concatenate([s["seeds"] for s in loaded]))
    record = records.samples(model=model, steps=steps, T=grid.T, seeds=seeds, batch_size=batch_size,
                             net_batch=net_batch, precision=precision, latencies=latencies,
                             wall_seconds=time.perf_counter() - started, environment=environment_record(device))
    io.write_json(record, layout.samples_record(out))
    shutil.rmtree(parts)
    return out


def tile(images, nrow, padding=1, fill=255):
    """uint8 NHWC images laid out `nrow` to a row, `padding` pixels of `fill` around each: the layout
    of torchvision's make_grid, on the uint8 images themselves (no torchvision import in every
    sampling job, no round trip through floats)."""
    n, h, w, c = images.shape
    columns = min(nrow, n)
    rows = -(-n // columns)
    grid = np.full((rows * (h + padding) + padding, columns * (w + padding) + padding, c), fill, np.uint8)
    for i, image in enumerate(images):
        top, left = padding + (i // columns) * (h + padding), padding + (i % columns) * (w + padding)
        grid[top:top + h, left:left + w] = image
    return grid


def save_grid(npz_path, png_path, count=64, nrow=8):
    """A PNG grid of the first `count` images of a samples file (same seeds in every grid)."""
    array = tile(read_samples(npz_path)[0][:count], nrow)
    buf = std_io.BytesIO()
    Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(buf, format="PNG")
    io.write_bytes(buf.getvalue(), png_path)


REAL_IMAGES_ORDER_SEED = 0  # the fixed shuffle of a split that image seeds index into


def real_samples(data_spec, split, seeds, out, log=print):
    """Real images of `split` as a samples file (.npz and its record), for the report's real-data row.

    Image seed i is the split's image `order[i mod size]`, `order` a fixed shuffle of the split: one
    evaluation's consecutive block of seeds is a random subset without repeats, disjoint from the
    other evaluations' blocks while the split has room. A split smaller than the block gives all its
    images (the first `size` seeds), and the record says so. The record names the dataset and split
    in place of a model, with 0 steps (no network evaluation).
    """
    from rdd.data import check_available, iter_uint8_batches, normalize_spec

    spec = normalize_spec(data_spec)
    check_available(spec, [split])
    started = time.perf_counter()
    images = np.concatenate(list(iter_uint8_batches(spec, split, batch_size=1024)))
    order = np.random.default_rng(REAL_IMAGES_ORDER_SEED).permutation(len(images))
    # The row's floor is meant for held-out images; the training split is allowed but named for what it is.
    held_out = "held out" if split != "train" else "the split models train on, not held out"
    source = f"real images: {spec['name']} {split} split ({held_out})"
    if len(seeds) > len(images):
        source += f"; {len(images)} of the {len(seeds)} asked for: all the split holds"
        seeds = seeds[:len(images)]
    out = Path(out)
    _save_npz(out, images=images[order[np.asarray(seeds) % len(images)]], labels=np.full(len(seeds), -1),
              seeds=np.asarray(seeds))
    record = records.samples(model=source, steps=0, T=None, seeds=seeds, batch_size=len(seeds), net_batch=None,
                             precision=None, latencies=[], wall_seconds=time.perf_counter() - started,
                             environment=environment_record(None))
    io.write_json(record, layout.samples_record(out))
    log(f"[real-samples] {out}: {source}, {len(seeds)} images")
    return out
