"""DDPM UNet (Ho et al. 2020) predicting x0, fed continuous network time.

Module and parameter names follow the pytorch-ddpm layout used by the RCFD and
RDD authors, so their checkpoints load through `load_authors_state_dict`.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from rdd.nets.configs import unet_config

# The authors' frozen sinusoid table; our embedding computes it on the fly.
AUTHORS_TIME_TABLE_KEY = "time_embedding.timembedding.0.weight"
# Rounding t * w_i to float32 alone moves sin/cos by ~1e-4 at t ~ 1e3; a
# different embedding (layout, frequencies) differs by O(1).
_TIME_TABLE_ATOL = 1e-3


class Swish(nn.Module):
    """x * sigmoid(x)."""

    def forward(self, x):
        return F.silu(x)


class Dropout(nn.Dropout):
    """nn.Dropout that draws a channels-last input's mask in NCHW order, as for a contiguous one, so
    a channels-last run (rdd.train.speed_settings) trains on the same masks as the plain run."""

    def forward(self, x):
        if not self.training or self.p == 0 or x.is_contiguous():
            return super().forward(x)
        keep = 1.0 - self.p
        # What F.dropout does on the CPU (a Bernoulli mask scaled by 1 / keep), with a contiguous mask.
        return x * torch.empty(x.shape, dtype=x.dtype, device=x.device).bernoulli_(keep).div_(keep)


class SinusoidalEmbedding(nn.Module):
    """Sinusoid of network time t: emb[:, 2i] = sin(t w_i), emb[:, 2i+1] = cos(t w_i)."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, t):
        # float32 in the same order of operations as the authors' table, so
        # integer t reproduces it; computed per call, so t may be non-integer.
        i2 = torch.arange(0, self.dim, 2, device=t.device, dtype=torch.float32)
        freqs = torch.exp(-(i2 / self.dim * math.log(10000.0)))
        angle = t.to(torch.float32)[:, None] * freqs[None, :]
        return torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(1)


class TimeEmbedding(nn.Module):
    """Sinusoid followed by a two-layer MLP (ch -> tdim -> tdim)."""

    def __init__(self, ch, tdim):
        super().__init__()
        self.timembedding = nn.Sequential(
            SinusoidalEmbedding(ch), nn.Linear(ch, tdim), Swish(), nn.Linear(tdim, tdim))

    def forward(self, t):
        return self.timembedding(t)


class DownSample(nn.Module):
    """Stride-2 3x3 convolution."""

    def __init__(self, ch):
        super().__init__()
        self.main = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x, temb):
        return self.main(x)


class UpSample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 convolution."""

    def __init__(self, ch):
        super().__init__()
        self.main = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x, temb):
        return self.main(F.interpolate(x, scale_factor=2, mode="nearest"))


class AttnBlock(nn.Module):
    """Single-head self-attention over pixels, scaled by C^-0.5, with a residual."""

    def __init__(self, ch):
        super().__init__()
        self.group_norm = nn.GroupNorm(32, ch)
        self.proj_q = nn.Conv2d(ch, ch, 1)
        self.proj_k = nn.Conv2d(ch, ch, 1)
        self.proj_v = nn.Conv2d(ch, ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)

    def forward(self, x):
        B, C, H, W = x.shape
        h = self.group_norm(x)
        q, k, v = (p(h).flatten(2).transpose(1, 2) for p in (self.proj_q, self.proj_k, self.proj_v))
        h = F.scaled_dot_product_attention(q, k, v)  # default scale is C^-0.5
        h = h.transpose(1, 2).reshape(B, C, H, W)
        return x + self.proj(h)


class ResBlock(nn.Module):
    """GroupNorm-Swish-Conv twice, time embedding added in between, optional attention."""

    def __init__(self, in_ch, out_ch, tdim, dropout, attn):
        super().__init__()
        self.block1 = nn.Sequential(nn.GroupNorm(32, in_ch), Swish(), nn.Conv2d(in_ch, out_ch, 3, padding=1))
        self.temb_proj = nn.Sequential(Swish(), nn.Linear(tdim, out_ch))
        self.block2 = nn.Sequential(
            nn.GroupNorm(32, out_ch), Swish(), Dropout(dropout), nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.attn = AttnBlock(out_ch) if attn else nn.Identity()

    def forward(self, x, temb):
        h = self.block1(x) + self.temb_proj(temb)[:, :, None, None]
        h = self.block2(h) + self.shortcut(x)
        return self.attn(h)


class UNet(nn.Module):
    """DDPM UNet; forward(x, t_net, y) returns the x0 prediction. Its arguments, their defaults and
    checks: rdd.nets.configs.unet_config."""

    def __init__(self, *args, **kwargs):
        super().__init__()
        config = unet_config(*args, **kwargs)
        img_resolution, in_channels, ch, ch_mult, attn, num_res_blocks, dropout, num_classes = (
            config[k] for k in ("img_resolution", "in_channels", "ch", "ch_mult", "attn", "num_res_blocks",
                                "dropout", "num_classes"))
        self.img_resolution, self.in_channels, self.num_classes = img_resolution, in_channels, num_classes
        tdim = 4 * ch
        self.time_embedding = TimeEmbedding(ch, tdim)
        self.head = nn.Conv2d(in_channels, ch, 3, padding=1)

        self.downblocks = nn.ModuleList()
        skip_chs, now_ch = [ch], ch
        for level, mult in enumerate(ch_mult):
            for _ in range(num_res_blocks):
                self.downblocks.append(ResBlock(now_ch, ch * mult, tdim, dropout, level in attn))
                now_ch = ch * mult
                skip_chs.append(now_ch)
            if level != len(ch_mult) - 1:
                self.downblocks.append(DownSample(now_ch))
                skip_chs.append(now_ch)

        self.middleblocks = nn.ModuleList([
            ResBlock(now_ch, now_ch, tdim, dropout, attn=True),
            ResBlock(now_ch, now_ch, tdim, dropout, attn=False),
        ])

        self.upblocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(ch_mult))):
            for _ in range(num_res_blocks + 1):
                self.upblocks.append(ResBlock(skip_chs.pop() + now_ch, ch * mult, tdim, dropout, level in attn))
                now_ch = ch * mult
            if level != 0:
                self.upblocks.append(UpSample(now_ch))

        self.tail = nn.Sequential(nn.GroupNorm(32, now_ch), Swish(), nn.Conv2d(now_ch, in_channels, 3, padding=1))
        if num_classes:
            self.y_embedding = nn.Linear(num_classes, tdim)
        self._init_weights()

    def _init_weights(self):
        # As the authors' code ends up: xavier-uniform weights and zero biases
        # everywhere, gain 1e-5 on the last conv of each block2 and on the tail.
        # Their AttnBlock sets gain 1e-5 on `proj`, but the enclosing ResBlock
        # re-initialises all its convs afterwards, so `proj` trains from gain 1;
        # we reproduce that. y_embedding keeps PyTorch's default init, as theirs.
        for name, module in self.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)) and not name.startswith("y_embedding"):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        small = [block.block2[-1] for block in self.modules() if isinstance(block, ResBlock)]
        for conv in small + [self.tail[-1]]:
            nn.init.xavier_uniform_(conv.weight, gain=1e-5)

    def forward(self, x, t_net, y=None):
        """x [B, C, R, R] in [-1, 1], t_net [B] network times, y [B] labels -> x0 [B, C, R, R]."""
        self._check_inputs(x, t_net, y)
        temb = self.time_embedding(t_net)
        if self.num_classes:
            temb = temb + self.y_embedding(F.one_hot(y.long(), self.num_classes).to(temb.dtype))
        h = self.head(x)
        skips = [h]
        for layer in self.downblocks:
            h = layer(h, temb)
            skips.append(h)
        for layer in self.middleblocks:
            h = layer(h, temb)
        for layer in self.upblocks:
            if isinstance(layer, ResBlock):
                h = torch.cat([h, skips.pop()], dim=1)
            h = layer(h, temb)
        return self.tail(h)

    def _check_inputs(self, x, t_net, y):
        R, C = self.img_resolution, self.in_channels
        if x.ndim != 4 or x.shape[1] != C or x.shape[2] != R or x.shape[3] != R:
            raise ValueError(f"UNet expects x of shape [B, {C}, {R}, {R}], got {list(x.shape)}")
        if t_net.shape != (x.shape[0],):
            raise ValueError(f"t_net must have shape [{x.shape[0]}] (one time per image), got {list(t_net.shape)}")
        if self.num_classes and (y is None or y.shape != (x.shape[0],)):
            got = None if y is None else list(y.shape)
            raise ValueError(f"class-conditional UNet ({self.num_classes} classes) needs labels y of shape "
                             f"[{x.shape[0]}], got {got}")
        if not self.num_classes and y is not None:
            raise ValueError("unconditional UNet (num_classes=0) got labels y")


def load_authors_state_dict(net, state_dict):
    """Load an RCFD/RDD authors' UNet state dict (pytorch-ddpm layout) into `net`, strictly."""
    if "net_model" in state_dict or "ema_model" in state_dict:
        raise ValueError("got a whole authors' checkpoint; pass ckpt['ema_model'] (base teacher) "
                         "or ckpt['net_model'] (distilled student)")
    state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
    table = state_dict.pop(AUTHORS_TIME_TABLE_KEY, None)
    if table is not None:
        _check_time_table(net, table)
    try:
        net.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        raise ValueError(f"authors' state dict does not fit this UNet's config: {e}") from e


def _check_time_table(net, table):
    sinusoid = net.time_embedding.timembedding[0]
    if table.ndim != 2 or table.shape[1] != sinusoid.dim:
        raise ValueError(f"{AUTHORS_TIME_TABLE_KEY} has shape {list(table.shape)}; "
                         f"expected [T_base + 1, {sinusoid.dim}]")
    t = torch.arange(table.shape[0], device=table.device)
    err = (sinusoid(t) - table.float()).abs().max().item()
    if err > _TIME_TABLE_ATOL:
        raise ValueError(f"{AUTHORS_TIME_TABLE_KEY} is not the interleaved sin/cos sinusoid this UNet "
                         f"computes (max abs difference {err:.3g}); the checkpoint uses another time embedding")
