"""The base teacher: x0-predicting UNet with EMA, warm-up and gradient clipping."""

import copy

import torch

from rdd import dist
from rdd.diffusion import TimeGrid
from rdd.losses.truncated_snr import TeacherLoss
from rdd.checkpoints import denoiser_payload
from rdd.nets import build_unet
from rdd.train import speed_settings
from rdd.train.checks import unet_kwargs
from rdd.train.loop import Stage, linear_warmup
from rdd.train.runner import amp_context


@torch.no_grad()
def ema_update(ema, net, decay):
    for p_ema, p in zip(ema.parameters(), net.parameters()):
        p_ema.lerp_(p, 1 - decay)
    for b_ema, b in zip(ema.buffers(), net.buffers()):
        b_ema.copy_(b)


def build_stage(settings, device, dataset):
    kwargs = unet_kwargs(settings)
    speed = settings["speed"]
    net = speed_settings.prepare(build_unet(**kwargs).to(device), speed)
    ema = copy.deepcopy(net).requires_grad_(False)
    grid = TimeGrid(settings["T_base"], settings["T_base"])
    loss_fn = TeacherLoss(grid)
    train = settings["train"]
    opt = speed_settings.optimizer("adam", net.parameters(), speed, lr=train["lr"])
    model = speed_settings.compiled(dist.data_parallel(net), speed)
    conditional = kwargs["num_classes"] > 0

    def loss(batch, step):
        x, y = speed_settings.to_device(batch, device, speed)
        with amp_context(settings, device):
            return loss_fn(model, x, y if conditional else None).mean(), {}

    stage = Stage("teacher", {"net": net, "ema": ema}, {"net": opt}, linear_warmup(train["warmup_iters"]),
                  loss, lambda: denoiser_payload(ema, kwargs, grid),
                  clip_parameters=list(net.parameters()), grad_clip=train["grad_clip"],
                  after_step=lambda step: ema_update(ema, net, train["ema_decay"]))
    return stage, lambda: {"T": grid.T, "T_base": grid.T_base}
