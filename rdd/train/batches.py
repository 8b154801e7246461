"""Which examples each training step sees: a pure function of (seed, step).

No sampler state needs saving: a resumed run rebuilds the same batches from
its step counter.
"""

import torch
from torch.utils.data import Dataset, Sampler


def steps_per_epoch(num_examples, batch_size, drop_last=True):
    """Steps of one epoch. With `drop_last` the last partial batch is dropped (the stages trained
    for a number of steps); without, it is a step of its own, as the released classifier's loader
    has it (CIFAR-10 at batch 128: 391 steps, the last of 80 images)."""
    steps = num_examples // batch_size if drop_last else -(-num_examples // batch_size)
    if num_examples < batch_size:
        raise ValueError(f"batch size {batch_size} exceeds the dataset's {num_examples} examples")
    return steps


def drop_last(train):
    """Whether a run drops each epoch's last partial batch (`train.drop_last` where a command has it)."""
    return train.get("drop_last", True)


def train_steps(train, num_examples):
    """Length of a run in steps: `train.epochs` whole epochs when set, else `train.iters`."""
    epochs = train.get("epochs")
    if epochs is None:
        return train["iters"]
    return epochs * steps_per_epoch(num_examples, train["batch_size"], drop_last(train))


def step_indices(num_examples, batch_size, seed, step, drop_last=True):
    """`(epoch, indices)` of the global batch at `step`: a slice of a per-epoch permutation (the
    epoch's last slice shorter when the partial batch is kept)."""
    epoch, j = divmod(step, steps_per_epoch(num_examples, batch_size, drop_last))
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(num_examples, generator=gen)
    return epoch, perm[j * batch_size:(j + 1) * batch_size].tolist()


def process_slice(count, rank, world_size):
    """`(start, stop)`: the batch positions of process `rank` among `count` (contiguous, as even as can be)."""
    return count * rank // world_size, count * (rank + 1) // world_size


class StepBatchSampler(Sampler):
    """Batch sampler over steps `start_step..total_steps-1` yielding `(epoch, index)` pairs.

    Each rank takes its contiguous slice of the global batch (`process_slice`), so that the processes'
    batches, concatenated in rank order as an all-gather does, are the global batch in order; the
    epoch lets the dataset draw that epoch's augmentation for each index.
    """

    def __init__(self, num_examples, batch_size, seed, start_step, total_steps, rank=0, world_size=1,
                 drop_last=True):
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} is not divisible by {world_size} processes")
        partial = num_examples % batch_size
        if not drop_last and 0 < partial < world_size:
            raise ValueError(f"the last batch of each epoch has {partial} of {num_examples} examples, fewer than "
                             f"the {world_size} processes: set train.drop_last to true, or change the batch size")
        self.args = (num_examples, batch_size, seed)
        self.drop_last = drop_last
        self.start_step, self.total_steps = start_step, total_steps
        self.rank, self.world_size = rank, world_size

    def __len__(self):
        return max(0, self.total_steps - self.start_step)

    def __iter__(self):
        for step in range(self.start_step, self.total_steps):
            epoch, indices = step_indices(*self.args, step, self.drop_last)
            yield [(epoch, i) for i in indices[slice(*process_slice(len(indices), self.rank, self.world_size))]]


class EpochItems(Dataset):
    """Reads `(epoch, index)` keys from a dataset with `item(index, epoch)`."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        return self.dataset.item(index, epoch)
