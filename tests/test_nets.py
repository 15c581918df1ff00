"""Architectures: shapes, packing, spectral norm, init, width multiplier, config factory."""

import pytest
import torch
from _helpers import assert_channels_last_matches_nchw
from hypothesis import given, settings
from hypothesis import strategies as st

from gmmgan.nets import (
    DCGANDiscriminator,
    DCGANGenerator,
    DiscriminatorConfig,
    GeneratorConfig,
    MLPDiscriminator,
    MLPGenerator,
    build_discriminator,
    build_generator,
    count_parameters,
    pack_samples,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("channels,res", [(1, 28), (3, 28), (3, 32)])
@torch.no_grad()
def test_dcgan_shapes_and_range(channels, res):
    G = DCGANGenerator(z_dim=16, channels=channels, resolution=res, width=8)
    D = DCGANDiscriminator(channels=channels, resolution=res, width=8)
    x = G(torch.randn(6, 16) * 10)
    assert x.shape == (6, channels, res, res)
    assert float(x.abs().max()) <= 1.0  # tanh output
    out = D(x)
    assert out.shape == (6,) and torch.isfinite(out).all()


def test_mlp_shapes():
    G = MLPGenerator(z_dim=3, out_dim=2, width=16, n_layers=2, batch_norm=True)
    D = MLPDiscriminator(in_dim=2, width=8, n_layers=2)
    assert G(torch.randn(5, 3)).shape == (5, 2)
    assert D(torch.randn(5, 2)).shape == (5,)
    hidden = [m for m in G.modules() if isinstance(m, torch.nn.Linear)]
    assert len(hidden) == 3 and hidden[0].out_features == 16
    assert any(isinstance(m, torch.nn.ReLU) for m in G.modules())
    assert any(isinstance(m, torch.nn.LeakyReLU) for m in D.modules())


def test_reference_widths_from_config():
    G = build_generator(GeneratorConfig(arch="mlp", z_dim=2))
    D = build_discriminator(DiscriminatorConfig(arch="mlp"))
    assert [m.out_features for m in G.modules() if isinstance(m, torch.nn.Linear)] == [400, 400, 400, 400, 2]
    assert [m.out_features for m in D.modules() if isinstance(m, torch.nn.Linear)] == [200, 200, 200, 1]


@settings(max_examples=20, deadline=None)
@given(pack=st.integers(1, 5), groups=st.integers(1, 4), c=st.integers(1, 3))
def test_pack_samples_property(pack, groups, c):
    n = pack * groups
    x = torch.arange(n * c * 4, dtype=torch.float32).reshape(n, c, 2, 2)
    p = pack_samples(x, pack)
    assert p.shape == (groups, pack * c, 2, 2)
    for i in range(groups):
        for j in range(pack):
            assert torch.equal(p[i, j * c : (j + 1) * c], x[i * pack + j])
    v = torch.randn(n, 3)
    assert torch.equal(pack_samples(v, pack).reshape(n, 3), v)


def test_packed_discriminators():
    D = DCGANDiscriminator(channels=3, width=8, pack=4)
    assert D.conv[0].in_channels == 12
    assert D(torch.randn(8, 3, 28, 28)).shape == (2,)
    Dm = MLPDiscriminator(pack=2, width=8)
    assert Dm.net[0].in_features == 4 and Dm(torch.randn(6, 2)).shape == (3,)
    # A pack's logit depends only on its own samples (no BatchNorm in the MLP D).
    x = torch.randn(6, 2)
    y = x.clone()
    y[0] += 1.0
    a, b = Dm(x), Dm(y)
    assert not torch.allclose(a[0], b[0]) and torch.equal(a[1:], b[1:])
    with pytest.raises(ValueError, match="multiple of pack"):
        D(torch.randn(6, 3, 28, 28))


def _converge_power_iteration(layers, steps=50):
    # In train mode every read of .weight runs one power-iteration step, as a forward pass would.
    for m in layers:
        m.train()
        for _ in range(steps):
            _ = m.weight
        m.eval()


def _top_singular(w: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(w.flatten(1), ord=2))


@torch.no_grad()
def test_spectral_norm_bounds_weights():
    D = DCGANDiscriminator(channels=1, width=8, batch_norm=False, spectral_norm=True)
    D.train()
    assert D(torch.randn(4, 1, 28, 28)).shape == (4,)
    layers = [m for m in D.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    _converge_power_iteration(layers)
    assert layers and all(hasattr(m, "parametrizations") for m in layers)
    for m in layers:
        assert _top_singular(m.weight) == pytest.approx(1.0, abs=0.05)
    # The raw (unnormalised) weight has another norm: the parametrization is doing the work.
    raw = D.fc.parametrizations.weight.original
    assert _top_singular(raw) > 0.0 and _top_singular(raw) != pytest.approx(1.0, abs=0.05)
    G = MLPGenerator(width=8, spectral_norm=True)
    assert all(hasattr(m, "parametrizations") for m in G.modules() if isinstance(m, torch.nn.Linear))


@torch.no_grad()
def test_spectral_norm_conv_transpose():
    G = DCGANGenerator(z_dim=4, width=4, spectral_norm=True)
    ct = [m for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    _converge_power_iteration(ct)
    # dim=1: the (in, out, kh, kw) weight is normalised along its output dimension.
    for m in ct:
        assert _top_singular(m.weight.transpose(0, 1)) == pytest.approx(1.0, abs=0.05)


@torch.no_grad()
def test_dcgan_init():
    torch.manual_seed(1)
    G = DCGANGenerator(width=64)
    w = G.fc[0].weight
    assert abs(float(w.std()) - 0.02) < 0.001 and abs(float(w.mean())) < 0.001
    bn = G.fc[1].weight
    assert abs(float(bn.mean()) - 1.0) < 0.005
    assert float(G.conv[3].bias.abs().max()) == 0.0


def test_width_mult_quarter_size_and_batch_norm_flag():
    full = count_parameters(DCGANDiscriminator(channels=3))
    quarter = count_parameters(DCGANDiscriminator(channels=3, width_mult=0.5))
    assert 0.2 < quarter / full < 0.3
    no_bn = DCGANDiscriminator(batch_norm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in no_bn.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in DCGANDiscriminator().modules()) == 2


def test_factory_from_dict_and_roundtrip():
    cfg = GeneratorConfig(arch="dcgan", z_dim=10, channels=3, width=8)
    assert GeneratorConfig.from_dict(cfg.to_dict()) == cfg
    G = build_generator(cfg.to_dict())
    assert isinstance(G, DCGANGenerator) and G(torch.randn(2, 10)).shape == (2, 3, 28, 28)
    D = build_discriminator(
        {"arch": "dcgan", "channels": 3, "width": 8, "pack": 2, "spectral_norm": True, "batch_norm": False}
    )
    assert isinstance(D, DCGANDiscriminator) and D(torch.randn(4, 3, 28, 28)).shape == (2,)


def test_gradients_reach_all_parameters():
    G = DCGANGenerator(z_dim=8, width=4)
    D = DCGANDiscriminator(width=4, pack=2)
    D(G(torch.randn(4, 8))).sum().backward()
    for net in (G, D):
        for name, p in net.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_errors():
    with pytest.raises(ValueError, match="unknown GeneratorConfig keys \\['zdim'\\]"):
        GeneratorConfig.from_dict({"zdim": 3})
    with pytest.raises(ValueError, match="arch must be one of"):
        DiscriminatorConfig(arch="resnet")
    with pytest.raises(ValueError, match="resolution must be a multiple of 4"):
        DCGANGenerator(resolution=30)
    with pytest.raises(ValueError, match="pack must be a positive int"):
        MLPDiscriminator(pack=0)
    with pytest.raises(ValueError, match="rounds to < 1 channel"):
        DCGANDiscriminator(width=1, width_mult=0.1)
    with pytest.raises(ValueError, match=r"expected z of shape \(N, 100\)"):
        DCGANGenerator()(torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 1, 28, 28\)"):
        DCGANDiscriminator()(torch.randn(2, 3, 28, 28))
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 2\)"):
        MLPDiscriminator()(torch.randn(2, 3))
    with pytest.raises(ValueError, match="pack must be >= 1"):
        pack_samples(torch.randn(2, 2), 0)


@pytest.mark.parametrize(("channels", "pack", "sn"), [(1, 1, False), (3, 2, False), (3, 1, True)])
def test_channels_last_nets_compute_what_nchw_nets_do(channels, pack, sn):
    # Training on CUDA keeps the nets in NHWC (TrainConfig.channels_last): the layout must change
    # no number, including D's flatten into its linear layer and the packing of samples.
    torch.manual_seed(0)
    G = DCGANGenerator(z_dim=8, channels=channels, width=8, spectral_norm=sn)
    D = DCGANDiscriminator(channels=channels, width=8, pack=pack, spectral_norm=sn, batch_norm=not sn)
    assert_channels_last_matches_nchw(G, D, torch.randn(8, 8), rtol=1e-5, atol=1e-6, grad_rtol=1e-4)
