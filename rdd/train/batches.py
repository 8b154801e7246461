"""Which examples each training step sees: a pure function of (seed, step).

No sampler state needs saving: a resumed run rebuilds the same batches from
its step counter.
"""

import torch
from torch.utils.data import Dataset, Sampler


def steps_per_epoch(num_examples, batch_size):
    """Steps of one epoch: the last partial batch is dropped.

    (The released CIFAR-10 classifier's loader keeps it: 391 steps of 128 images
    per epoch where we take 390.)
    """
    steps = num_examples // batch_size
    if steps < 1:
        raise ValueError(f"batch size {batch_size} exceeds the dataset's {num_examples} examples")
    return steps


def train_steps(train, num_examples):
    """Length of a run in steps: `train.epochs` whole epochs when set, else `train.iters`."""
    epochs = train.get("epochs")
    return train["iters"] if epochs is None else epochs * steps_per_epoch(num_examples, train["batch_size"])


def step_indices(num_examples, batch_size, seed, step):
    """`(epoch, indices)` of the global batch at `step`: a slice of a per-epoch permutation."""
    epoch, j = divmod(step, steps_per_epoch(num_examples, batch_size))
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(num_examples, generator=gen)
    return epoch, perm[j * batch_size:(j + 1) * batch_size].tolist()


class StepBatchSampler(Sampler):
    """Batch sampler over steps `start_step..total_steps-1` yielding `(epoch, index)` pairs.

    Each rank takes its share of the global batch; the epoch lets the dataset
    draw that epoch's augmentation for each index.
    """

    def __init__(self, num_examples, batch_size, seed, start_step, total_steps, rank=0, world_size=1):
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} is not divisible by {world_size} processes")
        self.args = (num_examples, batch_size, seed)
        self.start_step, self.total_steps = start_step, total_steps
        self.rank, self.world_size = rank, world_size

    def __len__(self):
        return max(0, self.total_steps - self.start_step)

    def __iter__(self):
        for step in range(self.start_step, self.total_steps):
            epoch, indices = step_indices(*self.args, step)
            yield [(epoch, i) for i in indices[self.rank::self.world_size]]


class EpochItems(Dataset):
    """Reads `(epoch, index)` keys from a dataset with `item(index, epoch)`."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        return self.dataset.item(index, epoch)
