"""Tests of rdd.nets: the DDPM UNet and the DenseNet feature classifier."""

import math

import pytest
import torch
import torch.nn.functional as F

from rdd.nets import CLASSIFIERS, build_classifier, build_unet, load_authors_state_dict
from rdd.nets.unet import AUTHORS_TIME_TABLE_KEY, AttnBlock, UNet

TINY = dict(ch=32, ch_mult=(1, 2), attn=(1,), num_res_blocks=1, dropout=0.1)


def tiny_unet(seed=0, **overrides):
    torch.manual_seed(seed)
    return UNet(**{"img_resolution": 32, "in_channels": 3, **TINY, **overrides}).eval()


def naive_sinusoid(t_values, dim):
    """Interleaved sin/cos embedding, one element at a time in float64."""
    rows = []
    for t in t_values:
        row = []
        for i in range(dim // 2):
            w = math.exp(-(2 * i / dim) * math.log(10000))
            row += [math.sin(t * w), math.cos(t * w)]
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64)


# ---------------------------------------------------------------- UNet

@pytest.mark.parametrize("in_channels, res, ch_mult", [
    (1, 32, (1, 2, 2)),      # Fashion-MNIST padded 28 -> 32
    (3, 32, (1, 2, 2, 2)),   # CIFAR-10 layout
    (3, 64, (1, 2, 2, 2)),   # ImageNet 64 layout
])
def test_unet_output_shape(in_channels, res, ch_mult):
    net = UNet(res, in_channels, ch=32, ch_mult=ch_mult, attn=(1,), num_res_blocks=1).eval()
    x = torch.randn(2, in_channels, res, res)
    t_net = torch.tensor([3.0, 511.5])  # network times need not be integers
    out = net(x, t_net)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_unet_rejects_bad_config():
    with pytest.raises(ValueError, match="divisible by 2"):
        UNet(28, 1, ch=32, ch_mult=(1, 2, 2, 2))  # 28 must be padded to 32 first
    with pytest.raises(ValueError, match="multiple of 32"):
        UNet(32, 3, ch=48)
    with pytest.raises(ValueError, match="attention levels"):
        UNet(32, 3, ch=32, ch_mult=(1, 2), attn=(2,))


def test_unet_rejects_bad_inputs():
    net = tiny_unet()
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(ValueError, match="shape"):
        net(torch.randn(2, 1, 32, 32), torch.zeros(2))
    with pytest.raises(ValueError, match="t_net"):
        net(x, torch.zeros(3))
    with pytest.raises(ValueError, match="unconditional"):
        net(x, torch.zeros(2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="needs labels"):
        tiny_unet(num_classes=10)(x, torch.zeros(2))


def test_unet_class_conditioning_changes_output():
    net = tiny_unet(num_classes=10)
    x, t_net = torch.randn(2, 3, 32, 32), torch.tensor([10.0, 700.0])
    with torch.no_grad():
        out_a = net(x, t_net, torch.tensor([0, 1]))
        out_a2 = net(x, t_net, torch.tensor([0, 1]))
        out_b = net(x, t_net, torch.tensor([5, 9]))
    assert torch.equal(out_a, out_a2)
    assert (out_a - out_b).abs().amax(dim=(1, 2, 3)).min() > 0  # every sample moved


def test_unet_cifar10_paper_config_size():
    torch.manual_seed(0)
    net = UNet(32, 3, ch=128, ch_mult=(1, 2, 2, 2), attn=(1,), num_res_blocks=2, dropout=0.1).eval()
    n = sum(p.numel() for p in net.parameters())
    assert n == 35_746_307  # pytorch-ddpm's CIFAR-10 net less its frozen time table
    assert round(n / 1e6, 1) == 35.7
    with torch.no_grad():
        assert net(torch.randn(1, 3, 32, 32), torch.tensor([1024.0])).shape == (1, 3, 32, 32)


def test_unet_parameter_names_follow_authors_layout():
    # Expected by hand for ch 32, ch_mult (1, 2), attn (1,), 1 res block, 1 channel,
    # 10 classes; skip channels pushed: head 32, res 32, down 32, res 64.
    net = tiny_unet(in_channels=1, num_classes=10)
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    expected = {
        "time_embedding.timembedding.1.weight": (128, 32),
        "time_embedding.timembedding.3.weight": (128, 128),
        "head.weight": (32, 1, 3, 3),
        "downblocks.0.block1.2.weight": (32, 32, 3, 3),
        "downblocks.0.temb_proj.1.weight": (32, 128),
        "downblocks.0.block2.3.weight": (32, 32, 3, 3),
        "downblocks.1.main.weight": (32, 32, 3, 3),
        "downblocks.2.shortcut.weight": (64, 32, 1, 1),
        "downblocks.2.attn.group_norm.weight": (64,),
        "downblocks.2.attn.proj_q.weight": (64, 64, 1, 1),
        "middleblocks.0.attn.proj.weight": (64, 64, 1, 1),
        "upblocks.0.block1.0.weight": (128,),   # 64 + skip 64
        "upblocks.1.block1.0.weight": (96,),    # 64 + skip 32
        "upblocks.1.attn.proj_v.weight": (64, 64, 1, 1),
        "upblocks.2.main.weight": (64, 64, 3, 3),
        "upblocks.3.shortcut.weight": (32, 96, 1, 1),
        "upblocks.4.shortcut.weight": (32, 64, 1, 1),
        "tail.0.weight": (32,),
        "tail.2.weight": (1, 32, 3, 3),
        "y_embedding.weight": (128, 10),
    }
    for key, shape in expected.items():
        assert shapes.get(key) == shape, key
    assert "downblocks.0.shortcut.weight" not in shapes  # Identity when in == out
    assert not any(k.startswith(("downblocks.0.attn", "middleblocks.1.attn", "upblocks.4.attn")) for k in shapes)
    assert not any(k.startswith("upblocks.5") for k in shapes)


def test_time_embedding_matches_naive_loop():
    net = tiny_unet()
    t_values = [0, 1, 2, 7.5, 100, 333.25, 1023, 1024]
    got = net.time_embedding.timembedding[0](torch.tensor(t_values)).double()
    want = naive_sinusoid(t_values, 32)
    assert got.shape == (len(t_values), 32)
    # float32 rounding of t * w_i costs up to ~1e-4 at t ~ 1e3
    torch.testing.assert_close(got, want, atol=3e-4, rtol=0)


def test_attention_matches_naive_softmax():
    torch.manual_seed(0)
    block = AttnBlock(32)
    torch.nn.init.normal_(block.proj.weight)
    x = torch.randn(2, 32, 4, 4)
    h = block.group_norm(x)
    q, k, v = (p(h).flatten(2) for p in (block.proj_q, block.proj_k, block.proj_v))  # [B, C, N]
    want = torch.empty_like(q)
    for b in range(2):
        for i in range(16):
            weights = torch.softmax(q[b, :, i] @ k[b] / math.sqrt(32), dim=0)  # over pixels j
            want[b, :, i] = v[b] @ weights
    want = x + block.proj(want.view(2, 32, 4, 4))
    torch.testing.assert_close(block(x), want, atol=1e-5, rtol=1e-5)


def test_unet_init_deterministic_and_scaled():
    a, b, c = tiny_unet(seed=0), tiny_unet(seed=0), tiny_unet(seed=1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["head.weight"], sc["head.weight"])

    def xavier_bound(w):
        fan_in, fan_out = w.shape[1] * w[0, 0].numel(), w.shape[0] * w[0, 0].numel()
        return math.sqrt(6 / (fan_in + fan_out))

    tiny = [k for k in sa if k.endswith("block2.3.weight")] + ["tail.2.weight"]
    assert len(tiny) == 9  # 8 ResBlocks and the tail
    for key in tiny:
        assert 0 < sa[key].abs().max() <= 1e-5 * xavier_bound(sa[key])
    for key in ["head.weight", "downblocks.2.attn.proj.weight", "middleblocks.0.block1.2.weight"]:
        assert sa[key].abs().max() > 0.5 * xavier_bound(sa[key])  # full gain
    biases = [v for k, v in sa.items() if k.endswith("bias")]
    assert biases and all(torch.all(v == 0) for v in biases)


def authors_format(net, table):
    """An authors'-layout state dict: DataParallel prefixes plus the frozen time table."""
    sd = {"module." + k: v.clone() for k, v in net.state_dict().items()}
    sd["module." + AUTHORS_TIME_TABLE_KEY] = table
    return sd


def test_load_authors_state_dict_reproduces_outputs():
    source = tiny_unet(seed=0, num_classes=10)
    target = tiny_unet(seed=1, num_classes=10)
    table = naive_sinusoid(range(1025), 32).float()  # T_base + 1 rows
    load_authors_state_dict(target, authors_format(source, table))
    x, t_net, y = torch.randn(2, 3, 32, 32), torch.tensor([8, 1024]), torch.tensor([3, 7])  # integer times
    with torch.no_grad():
        assert torch.equal(target(x, t_net, y), source(x, t_net, y))


def test_load_authors_state_dict_rejects_wrong_table_and_keys():
    net = tiny_unet()
    ok = naive_sinusoid(range(1025), 32).float()
    not_interleaved = torch.cat([ok[:, 0::2], ok[:, 1::2]], dim=1)  # all sin, then all cos
    with pytest.raises(ValueError, match="not the interleaved"):
        load_authors_state_dict(net, authors_format(net, not_interleaved))
    with pytest.raises(ValueError, match="shape"):
        load_authors_state_dict(net, authors_format(net, ok[:, :16]))
    missing = authors_format(net, ok)
    del missing["module.head.weight"]
    with pytest.raises(ValueError, match="head.weight"):
        load_authors_state_dict(net, missing)
    with pytest.raises(ValueError, match="ema_model"):
        load_authors_state_dict(net, {"ema_model": net.state_dict(), "T": 1024})


def test_build_unet_checks_keys():
    assert isinstance(build_unet(img_resolution=32, in_channels=1, **TINY), UNet)
    with pytest.raises(ValueError, match="unknown keys \\['chmult'\\]"):
        build_unet(img_resolution=32, in_channels=1, chmult=(1, 2))
    with pytest.raises(ValueError, match="missing keys \\['in_channels'\\]"):
        build_unet(img_resolution=32)



@pytest.mark.parametrize("key, value, message", [
    ("dropout", None, "dropout must be a number, got None"), ("ch", "64", "ch must be an integer, got '64'"),
    ("num_res_blocks", True, "num_res_blocks must be an integer, got True"),
    ("ch_mult", [1, "2"], "ch_mult must be a list of integers, got [1, '2']"),
    ("attn", 1, "attn must be a list of integers, got 1")])
def test_unet_arguments_of_the_wrong_type_are_named(key, value, message):
    """A config's null or string reaches the checks as it is: the error names the argument (it was a
    TypeError from a comparison, which names none)."""
    with pytest.raises(ValueError) as error:
        build_unet(img_resolution=32, in_channels=1, **{**TINY, key: value})
    assert str(error.value) == message


# ---------------------------------------------------------------- DenseNet

@pytest.mark.parametrize("res, spatial", [(32, 8), (28, 7)])
def test_small_densenet_shapes(res, spatial):
    torch.manual_seed(0)
    net = build_classifier("densenet_small", num_classes=10, in_channels=1).eval()
    x = torch.rand(4, 1, res, res) * 2 - 1
    feat_map, f = net.features(x)
    assert feat_map.shape == (4, 32, spatial, spatial)
    assert f.shape == (4, 32)
    assert net(x).shape == (4, 10)


def test_features_forward_consistency():
    torch.manual_seed(0)
    net = build_classifier("densenet_small", num_classes=10, in_channels=3)
    x = torch.rand(8, 3, 32, 32) * 2 - 1
    net.train()
    net(x)  # move BatchNorm running statistics away from their initial values
    net.eval()
    with torch.no_grad():
        feat_map, f = net.features(x)
        logits = net(x)
    assert feat_map.min() < 0  # before the ReLU
    pooled = torch.stack([F.relu(feat_map[b]).flatten(1).mean(dim=1) for b in range(8)])
    torch.testing.assert_close(f, pooled)
    torch.testing.assert_close(logits, f @ net.fc.weight.T + net.fc.bias)


def test_densenet_presets_build():
    torch.manual_seed(0)
    net201 = build_classifier("densenet201", num_classes=10, in_channels=3).eval()
    assert net201.num_features == 1920
    with torch.no_grad():
        feat_map, f = net201.features(torch.zeros(1, 3, 32, 32))
    assert feat_map.shape == (1, 1920, 4, 4) and f.shape == (1, 1920)
    assert build_classifier("densenet121", num_classes=10, in_channels=1).num_features == 1024
    assert set(CLASSIFIERS) == {"densenet201", "densenet121", "densenet_small"}


def test_densenet_deterministic_init():
    torch.manual_seed(3)
    a = build_classifier("densenet_small", 10, 1).state_dict()
    torch.manual_seed(3)
    b = build_classifier("densenet_small", 10, 1).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_build_classifier_errors():
    with pytest.raises(ValueError, match="allowed: \\['densenet121', 'densenet201', 'densenet_small'\\]"):
        build_classifier("resnet18", 10, 3)
    with pytest.raises(ValueError, match="unknown keys \\['depth'\\]"):
        build_classifier("densenet_small", 10, 3, depth=3)
    with pytest.raises(ValueError, match="block_config"):
        build_classifier("densenet_small", 10, 3, block_config=())
    with pytest.raises(ValueError, match="^growth_rate must be an integer, got 8.0$"):
        build_classifier("densenet_small", 10, 3, growth_rate=8.0)
    with pytest.raises(ValueError, match="^compression must be a number, got '1/2'$"):
        build_classifier("densenet_small", 10, 3, compression="1/2")
