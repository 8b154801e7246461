"""Which examples each training step sees: a pure function of (seed, step).

No sampler state needs saving: a resumed run rebuilds the same batches from
its step counter.
"""

import torch
from torch.utils.data import Dataset, Sampler


def step_indices(num_examples, batch_size, seed, step):
    """`(epoch, indices)` of the global batch at `step`: a slice of a per-epoch permutation.

    The last partial batch of each epoch is dropped.
    """
    steps_per_epoch = num_examples // batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch size {batch_size} exceeds the dataset's {num_examples} examples")
    epoch, j = divmod(step, steps_per_epoch)
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
