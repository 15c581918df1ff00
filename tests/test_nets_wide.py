"""The wide DCGAN net (gmmgan.nets.wide): N seeds' nets as one net compute what the N nets compute."""

import copy

import pytest
import torch

from gmmgan.gan.stacked import StackedModule
from gmmgan.nets import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator
from gmmgan.nets.wide import stack_like, supports_wide, wide_forward

N, B = 3, 8


def _nets(make, n=N, channels_last=False):
    torch.manual_seed(0)
    nets = [make().double() for _ in range(n)]
    if channels_last:
        nets = [m.to(memory_format=torch.channels_last) for m in nets]
    return nets


_CASES = {
    "G": (lambda: DCGANGenerator(12, 3, 28, 8), lambda: torch.randn(N, B, 12, dtype=torch.float64)),
    "G-32px-1ch": (lambda: DCGANGenerator(12, 1, 32, 8), lambda: torch.randn(N, B, 12, dtype=torch.float64)),
    "D-pack2": (lambda: DCGANDiscriminator(3, 28, 8, pack=2), lambda: torch.randn(N, B, 3, 28, 28, dtype=torch.float64)),
    "D-no-bn": (lambda: DCGANDiscriminator(1, 28, 8, batch_norm=False),
                lambda: torch.randn(N, B, 1, 28, 28, dtype=torch.float64)),
    "D-embedding": (lambda: DCGANDiscriminator(1, 28, 8, out_dim=5),
                    lambda: torch.randn(N, B, 1, 28, 28, dtype=torch.float64)),
}


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("case", sorted(_CASES))
def test_stacked_wide_net_is_the_seeds_nets(case, channels_last):
    make, draw = _CASES[case]
    nets = _nets(make, channels_last=channels_last)
    singles = copy.deepcopy(nets)
    stacked = StackedModule(nets)
    assert stacked.wide  # DCGAN nets take the wide path under 'auto'
    x = draw()
    out = stacked(x)
    want = torch.stack([m(x[s]) for s, m in enumerate(singles)])
    torch.testing.assert_close(out, want, rtol=1e-10, atol=1e-12)
    # Gradients (with a per-seed weighting, so a mix-up of seeds would show) and BatchNorm's running stats.
    w = torch.arange(1.0, N + 1, dtype=torch.float64).view(N, *[1] * (out.ndim - 1))
    (w * out.square()).sum().backward()
    (w * want.square()).sum().backward()
    for i, name in enumerate(stacked.param_names):
        for s, m in enumerate(singles):
            torch.testing.assert_close(stacked.stacked_params[i].grad[s], dict(m.named_parameters())[name].grad,
                                       rtol=1e-9, atol=1e-12)
    targets = [copy.deepcopy(m) for m in singles]
    stacked.unstack_into(targets)
    for got, m in zip(targets, singles):
        for (name, a), (_, b) in zip(got.named_buffers(), m.named_buffers()):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=0, msg=name)


def test_wide_layout_keeps_channels_last_weights_channels_last():
    nets = _nets(lambda: DCGANDiscriminator(3, 28, 8), channels_last=True)
    w = stack_like([m.conv[0].weight.detach() for m in nets])
    assert w.shape == (N, 8, 3, 4, 4)
    merged = w.view(-1, 3, 4, 4)  # what the grouped convolution reads: no copy
    assert merged.is_contiguous(memory_format=torch.channels_last) and merged.data_ptr() == w.data_ptr()
    assert all(torch.equal(w[s], m.conv[0].weight) for s, m in enumerate(nets))
    flat = stack_like([torch.ones(4, 5) for _ in range(N)])
    assert flat.is_contiguous() and flat.shape == (N, 4, 5)


def test_eval_mode_uses_the_running_statistics():
    nets = _nets(lambda: DCGANGenerator(12, 1, 28, 8))
    for m in nets:
        m(torch.randn(B, 12, dtype=torch.float64))  # move the running stats off their start
    singles = copy.deepcopy(nets)
    stacked = StackedModule(nets).eval()
    x = torch.randn(N, 2, 12, dtype=torch.float64)  # 2 samples: eval mode needs no batch statistics
    want = torch.stack([m.eval()(x[s]) for s, m in enumerate(singles)])
    torch.testing.assert_close(stacked(x), want, rtol=1e-10, atol=1e-12)


def test_what_the_wide_net_does_not_run_goes_to_vmap():
    sn = DCGANDiscriminator(1, 28, 8, spectral_norm=True)
    mlp = MLPDiscriminator(2, 16, 2)
    assert not supports_wide(sn) and not supports_wide(mlp)
    assert supports_wide(DCGANGenerator(12, 1, 28, 8))
    assert not StackedModule([mlp, copy.deepcopy(mlp)]).wide
    with pytest.raises(ValueError, match="DCGAN nets without spectral norm"):
        StackedModule([sn, copy.deepcopy(sn)], wide=True)
    with pytest.raises(ValueError, match="wide must be"):
        StackedModule([mlp], wide="yes")


def test_vmap_and_wide_paths_agree():
    nets = _nets(lambda: DCGANDiscriminator(1, 28, 8, pack=2))
    x = torch.randn(N, B, 1, 28, 28, dtype=torch.float64)
    a = StackedModule(copy.deepcopy(nets), wide=False)(x)
    b = StackedModule(copy.deepcopy(nets), wide=True)(x)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_bad_input_shapes_say_what_was_expected():
    g, d = DCGANGenerator(12, 1, 28, 8), DCGANDiscriminator(1, 28, 8, pack=2)
    tg = {k: stack_like([v, v]) for k, v in g.state_dict().items()}
    td = {k: stack_like([v, v]) for k, v in d.state_dict().items()}
    with pytest.raises(ValueError, match=r"expected z of shape \(N, B, 12\)"):
        wide_forward(g, tg, torch.randn(2, 4, 11))
    with pytest.raises(ValueError, match="expected images of shape"):
        wide_forward(d, td, torch.randn(2, 4, 1, 32, 32))
    with pytest.raises(ValueError, match="packs of 2"):
        wide_forward(d, td, torch.randn(2, 3, 1, 28, 28))
    with pytest.raises(TypeError, match="DCGAN nets only"):
        wide_forward(MLPDiscriminator(2, 16, 2), {}, torch.randn(2, 4, 2))
