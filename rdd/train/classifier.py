"""The frozen feature classifier of RCFD/RDD, trained with SGD and a cosine schedule."""

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from rdd import dist
from rdd.data import build_dataset, num_classes
from rdd.models import classifier_payload
from rdd.nets import build_classifier
from rdd.train.loop import Stage, cosine_decay


@torch.no_grad()
def accuracy(net, dataset, device, batch_size=256):
    """Top-1 accuracy of `net` on `dataset`."""
    net.eval()
    correct = total = 0
    for x, y in DataLoader(dataset, batch_size=batch_size):
        correct += int((net(x.to(device)).argmax(1).cpu() == y).sum())
        total += len(y)
    net.train()
    return correct / total


def build_stage(settings, device, dataset):
    data = settings["data"]
    kwargs = {**settings["net"], "num_classes": num_classes(data), "in_channels": data["channels"]}
    net = build_classifier(**kwargs).to(device)
    train = settings["train"]
    opt = torch.optim.SGD(net.parameters(), lr=train["lr"], momentum=train["momentum"],
                          weight_decay=train["weight_decay"])
    model = DistributedDataParallel(net) if dist.is_distributed() else net

    def train_step(batch, step):
        x, y = (v.to(device) for v in batch)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if train["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(net.parameters(), train["grad_clip"])
        opt.step()
        return {"loss": float(loss.detach())}

    def extra_record():
        return {"test_accuracy": accuracy(net, build_dataset(data, "test"), device)}

    stage = Stage("classifier", {"net": net}, {"net": opt}, cosine_decay(train["iters"]), train_step,
                  lambda: classifier_payload(net, kwargs))
    return stage, extra_record
