"""Run one training command end to end: settings, device, data, loop, outputs.

Outputs: `out` (the exported model, a .pt file) and beside it its training
record and curves (loss terms over training), named by rdd.layout. Resume
state lives in `resume_dir`.
"""

import contextlib
import csv
import hashlib
import io as std_io
import json
import time
from pathlib import Path

import torch

from rdd import checkpoints, dist, io, layout, records, settings as settings_mod
from rdd.data import Augmentation, build_dataset, check_available, image_identity
from rdd.provenance import environment_record
from rdd.train import loop, speed_settings
from rdd.train.batches import drop_last, train_steps
from rdd.train.resume_files import state_path


def _curves_csv(rows):
    keys = sorted({k for r in rows for k in r} - {"step", "steps_averaged"})
    buf = std_io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["step", "steps_averaged", *keys])
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


def train_augmentation(train):
    """`train.augment` where a command has it (the classifier; the spec's hflip then plays no part),
    else the dataset spec's seeded flip."""
    if "augment" not in train:
        return True
    return Augmentation(train["augment"], train["crop_padding"], train["cutout_length"])


def resume_digest(settings, inputs_sha256):
    """What resume state must match to be continued: the settings (rdd.settings.digest), the sha256 of
    each file the stage starts from (a round's teacher and classifier) and what names the training
    images beyond the settings (a folder's listing). So a round whose teacher was retrained under the
    same path starts afresh rather than resume, or at its last step re-export, the old teacher's student."""
    key = {"settings": settings_mod.digest(settings), "inputs_sha256": inputs_sha256,
           "images": image_identity(settings["data"])}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def run_training(command, user_settings, out, resume_dir, build_stage, inputs=None, log=loop.log_line):
    """Resolve settings, build the stage with `build_stage(settings, device, dataset)`, train, export.

    `inputs`: name -> path of the files the stage starts from (recorded with their sha256)."""
    settings = settings_mod.validate(command, user_settings)
    check_available(settings["data"])
    device = dist.resolve_device(settings["device"]["device"])
    speed_settings.configure(settings["speed"], device)
    dist.init(device)
    try:
        # One run per resume folder: a second command on it is refused before any work (OutputBusyError).
        with io.exclusive(state_path(resume_dir)) if dist.is_main() else contextlib.nullcontext():
            if dist.is_main():
                for name in io.remove_partial_writes(resume_dir):
                    log(f"[{command}] removed {Path(resume_dir) / name}, a write cut short by a kill")
            dist.barrier()
            _train_and_export(command, settings, device, out, resume_dir, build_stage, inputs or {}, log)
    finally:
        dist.shutdown()
    return out


def _train_and_export(command, settings, device, out, resume_dir, build_stage, inputs, log):
    """Build the stage, run the loop, and write the model, its record and its curves (rank 0)."""
    dataset = build_dataset(settings["data"], "train", augment=train_augmentation(settings["train"]),
                            seed=settings["seed"])
    torch.manual_seed(settings["seed"])  # the same initial weights on every rank and every run
    stage, extra_record = build_stage(settings, device, dataset)  # checks and loads the input files
    # Rank 0 reads the inputs and the images' listing; every rank takes its digest, so that all of them
    # resume or none does (a folder's resolved path and file times may differ between nodes' copies).
    inputs_sha256 = digest = None
    if dist.is_main():
        inputs_sha256 = {name: io.sha256_file(path) for name, path in inputs.items() if path is not None}
        digest = resume_digest(settings, inputs_sha256)
    digest = dist.from_main(digest)
    train = settings["train"]
    started = time.time()
    payload, rows, seconds = loop.run(
        stage, dataset, iters=train_steps(train, len(dataset)), batch_size=train["batch_size"],
        seed=settings["seed"], resume_dir=resume_dir, digest=digest,
        checkpoint_every=train["checkpoint_every"], log_every=train["log_every"], drop_last=drop_last(train),
        loader_options=speed_settings.loader_options(settings["speed"], device), log=log)
    if dist.is_main():
        record = records.training(command, settings, started_unix=started, train_seconds=seconds,
                                  world_size=dist.world_size(), final_terms=rows[-1] if rows else None,
                                  details={**extra_record(), "inputs_sha256": inputs_sha256},
                                  environment=environment_record(device))
        payload["settings"] = settings
        io.write_bytes(_curves_csv(rows), layout.curves(out))
        io.write_json(record, layout.training_record(out))
        checkpoints.save_torch(payload, out)
    dist.barrier()


def amp_context(settings, device):
    """bf16 autocast on CUDA when the settings ask for it (a no-op otherwise)."""
    enabled = bool(settings["device"]["amp_bf16"]) and device.type == "cuda"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)
