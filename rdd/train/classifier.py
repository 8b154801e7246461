"""The frozen feature classifier of RCFD/RDD and its training recipe.

The default is the released CIFAR-10 recipe (METHOD.md, "Released behaviour"):
SGD, lr divided by 10 at 1/2 and 3/4 of the run, each epoch's last partial
batch kept, crop + flip + AutoAugment + Cutout, inputs normalised with the
dataset's channel mean and std, and the weights of the evaluation with the best
*test* accuracy exported. The test set
thus chooses the checkpoint, a mismatch the published numbers include. The
alternatives (cosine decay, the partial batch dropped, flips only, inputs in
[-1, 1], the final weights) are the suite's earlier recipe.
"""

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from rdd import dist
from rdd.data import build_dataset, input_norm, normalize_input
from rdd.checkpoints import classifier_payload
from rdd.nets import build_classifier
from rdd.nets.sync_batchnorm import synchronised
from rdd.train.batches import drop_last, steps_per_epoch, train_steps
from rdd.train import speed_settings
from rdd.train.checks import classifier_kwargs
from rdd.train.loop import Stage, cosine_decay, log_line

SELECTION_NOTES = {
    "best_test": "the weights of the evaluation with the best test accuracy, as released: the test set "
                 "chose them, so their test accuracy is optimistic",
    "final": "the weights after the last step",
}


def lr_factor(train, num_examples):
    """The lr multiplier at a step: cosine decay to 0, or multistep (x lr_gamma from each milestone on).

    Milestones are fractions of the run. With train.epochs they fall on the
    nearest epoch boundary, halves rounded up (the released scheduler steps once
    per epoch: 300 epochs drop at epochs 150 and 225); otherwise on the nearest step.
    """
    iters = train_steps(train, num_examples)
    if train["lr_schedule"] == "cosine":
        return cosine_decay(iters)
    if train["epochs"] is None:
        milestones = [math.floor(f * iters + 0.5) for f in train["lr_milestones"]]
    else:
        per_epoch = steps_per_epoch(num_examples, train["batch_size"], drop_last(train))
        milestones = [math.floor(f * train["epochs"] + 0.5) * per_epoch for f in train["lr_milestones"]]
    gamma = train["lr_gamma"]
    return lambda step: gamma ** sum(step >= m for m in milestones)


def evaluation_steps(iters, per_epoch, every_epochs):
    """The steps after which test accuracy is measured: every `every_epochs` epochs, and the last."""
    return sorted({*range(every_epochs * per_epoch, iters + 1, every_epochs * per_epoch), iters})


@torch.no_grad()
def accuracy(net, dataset, norm, device, batch_size=256):
    """Top-1 accuracy of `net` on the plain images of `dataset`, normalised as in training."""
    was_training = net.training
    net.eval()
    correct = 0
    for start in range(0, len(dataset), batch_size):
        x = dataset.images(start, min(len(dataset), start + batch_size))
        predicted = net(normalize_input(x.to(device), norm)).argmax(1).cpu()
        correct += int((predicted == torch.from_numpy(dataset.labels[start:start + len(x)])).sum())
    net.train(was_training)
    return correct / len(dataset)


class CheckpointSelection(nn.Module):
    """Test accuracy at each evaluation step and, with keep_best, the weights of the best so far.

    A module so that both are part of the resume state: a resumed run exports
    what an uninterrupted one would.
    """

    def __init__(self, net, steps, keep_best):
        super().__init__()
        self.steps = list(steps)
        # -1 until measured
        self.register_buffer("accuracy", torch.full((len(self.steps),), -1.0, dtype=torch.float64))
        self.best = copy.deepcopy(net).requires_grad_(False) if keep_best else None

    def record(self, step, acc, net):
        # Strictly better replaces, so ties keep the earlier weights (as released).
        if self.best is not None and acc > float(self.accuracy.max()):
            self.best.load_state_dict(net.state_dict())
        self.accuracy[self.steps.index(step)] = acc

    def chosen(self):
        """Index of the evaluation whose weights are exported: the first best, or the last."""
        accuracies = self.accuracy.tolist()
        return accuracies.index(max(accuracies)) if self.best is not None else len(accuracies) - 1


def build_stage(settings, device, dataset, test_set=None):
    """The classifier's Stage and record; `test_set` (default: the test split) measures accuracy."""
    data, train = settings["data"], settings["train"]
    kwargs = classifier_kwargs(settings)
    speed = settings["speed"]
    # Synchronised, the statistics are those of the whole batch whatever the number of GPUs.
    net, norm_layers = synchronised(build_classifier(**kwargs).to(device), train["sync_bn"], "train.sync_bn")
    net = speed_settings.prepare(net, speed)
    opt = speed_settings.optimizer("sgd", net.parameters(), speed, lr=train["lr"], momentum=train["momentum"],
                                   weight_decay=train["weight_decay"])
    model = speed_settings.compiled(dist.data_parallel(net), speed)
    norm = input_norm(train["input_norm"], data)
    test_set = build_dataset(data, "test") if test_set is None else test_set
    iters = train_steps(train, len(dataset))
    per_epoch = steps_per_epoch(len(dataset), train["batch_size"], drop_last(train))
    selection = CheckpointSelection(net, evaluation_steps(iters, per_epoch, train["eval_every_epochs"]),
                                    keep_best=train["select"] == "best_test")
    to_evaluate = set(selection.steps)

    def loss(batch, step):
        x, y = speed_settings.to_device(batch, device, speed)
        return F.cross_entropy(model(normalize_input(x, norm)), y), {}

    def after_step(step):
        if step + 1 in to_evaluate:
            acc = accuracy(net, test_set, norm, device)
            selection.record(step + 1, acc, net)
            if dist.is_main():
                log_line(f"[classifier] epoch {(step + 1) / per_epoch:.4g}: test accuracy {acc:.4f}")

    def export():
        return classifier_payload(net if selection.best is None else selection.best, kwargs, norm)

    def extra_record():
        evaluations = [{"epoch": round(s / per_epoch, 4), "step": s, "test_accuracy": a}
                       for s, a in zip(selection.steps, selection.accuracy.tolist())]
        chosen = evaluations[selection.chosen()]
        return {"test_accuracy": chosen["test_accuracy"], "test_images": len(test_set),
                "selected_epoch": chosen["epoch"], "selected_step": chosen["step"], "selection": train["select"],
                "selection_note": SELECTION_NOTES[train["select"]], "epochs_run": round(iters / per_epoch, 4),
                "steps_per_epoch": per_epoch, "iters": iters, "test_accuracy_by_epoch": evaluations,
                "input_norm": norm, "batch_norm": norm_layers}

    stage = Stage("classifier", {"net": net, "selection": selection}, {"net": opt},
                  lr_factor(train, len(dataset)), loss, export, clip_parameters=list(net.parameters()),
                  grad_clip=train["grad_clip"], after_step=after_step)
    return stage, extra_record
