"""DiffAugment (gmmgan.gan.diffaugment): each transformation, the policy parser, seeding, gradients, and
training with it (a tiny CPU image run, a seed sweep, exact resume, the 2-D error, a CUDA-graph step)."""

from __future__ import annotations

import contextlib

import pytest
import torch
from _helpers import assert_clean_error, cli
from torch import nn

from gmmgan.gan.checkpoint import CHECKPOINT_NAME, load_checkpoint
from gmmgan.gan.config import load_config
from gmmgan.gan.diffaugment import (
    POLICIES,
    brightness,
    contrast,
    cutout,
    diff_augment,
    parse_policy,
    saturation,
    translation,
)

ALL = "color,translation,cutout"


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _images(n=6, c=3, h=16, w=16, seed=0):
    return torch.rand(n, c, h, w, generator=_gen(seed)) * 2 - 1  # in [-1, 1], as gmmgan's images


# ----------------------------------------------------------------------------- the transformations
@pytest.mark.parametrize("policy", ["color", "translation", "cutout", ALL, "cutout,color"])
@pytest.mark.parametrize("c", [1, 3])
def test_shapes_and_dtype_are_kept(policy, c):
    x = _images(c=c, h=12, w=20)
    y = diff_augment(x, policy, _gen())
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()


@pytest.mark.parametrize("op, bound", [(brightness, 1.5), (saturation, 3.0), (contrast, 2.0), (translation, 1.0),
                                       (cutout, 1.0)])
def test_values_stay_in_a_sensible_range(op, bound):
    # From [-1, 1]: +-0.5 brightness; a deviation of at most 2 from a mean in [-1, 1], scaled by at most 2 or 1.5.
    x = _images(n=64)
    y = op(x, _gen())
    assert y.abs().max() <= bound + 1e-6
    assert not torch.equal(y, x)


def test_brightness_adds_one_offset_per_sample_in_range():
    x = _images(n=200)
    d = brightness(x, _gen()) - x
    per_sample = d.flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample), atol=1e-6)
    assert per_sample.abs().max() <= 0.5 and per_sample[:, 0].std() > 0.2


def test_contrast_keeps_each_image_mean_and_saturation_each_pixel_channel_mean():
    x = _images(n=20)
    assert torch.allclose(contrast(x, _gen()).mean((1, 2, 3)), x.mean((1, 2, 3)), atol=1e-5)
    assert torch.allclose(saturation(x, _gen()).mean(1), x.mean(1), atol=1e-5)


def test_saturation_is_the_identity_on_grey_images_and_color_still_changes_them():
    x = _images(c=1)
    assert saturation(x, _gen()) is x  # one channel: no deviation from the channel mean to scale
    y = diff_augment(x, "color", _gen())
    assert y.shape == x.shape and not torch.equal(y, x)


def test_translation_moves_a_bright_pixel_by_the_drawn_integer_shift_and_pads_with_zeros():
    n, h, w = 32, 16, 16
    x = torch.zeros(n, 1, h, w)
    x[:, 0, 7, 8] = 1.0
    y = translation(x, _gen(3))
    g = _gen(3)  # the same draws, in the documented order: dy, then dx
    s = round(h * 0.125)
    dy = torch.randint(-s, s + 1, (n, 1), generator=g).flatten()
    dx = torch.randint(-s, s + 1, (n, 1), generator=g).flatten()
    assert dy.abs().max() <= 2 and dx.abs().max() <= 2 and len(set(dy.tolist())) > 1
    for k in range(n):
        assert y[k, 0, 7 + dy[k], 8 + dx[k]] == 1.0 and y[k].sum() == 1.0
    # The border uncovered by the shift is 0 (mid-grey in [-1, 1]), not -1 and not a copy of the edge.
    ones = translation(torch.ones(n, 1, h, w), _gen(3))
    for k in range(n):
        inside = ones[k, 0, max(dy[k], 0):h + min(dy[k], 0), max(dx[k], 0):w + min(dx[k], 0)]
        assert (inside == 1).all() and ones[k].sum() == (h - dy[k].abs()) * (w - dx[k].abs())
    assert set(ones.unique().tolist()) == {0.0, 1.0}


def test_translation_shift_limit_follows_each_side():
    x = torch.ones(400, 1, 8, 32)  # up to 1 row and 4 columns
    y = translation(x, _gen())
    rows_lost = (y[:, 0].sum(2) == 0).sum(1)
    cols_lost = (y[:, 0].sum(1) == 0).sum(1)
    assert rows_lost.max() == 1 and cols_lost.max() == 4


def test_cutout_zeroes_a_square_of_half_the_image_size():
    n, h, w = 200, 16, 16
    y = cutout(torch.ones(n, 2, h, w), _gen(5))
    assert torch.equal(y[:, 0], y[:, 1])  # the same hole in every channel
    full = 0
    for k in range(n):
        hole = (y[k, 0] == 0).nonzero()
        (r0, c0), (r1, c1) = hole.min(0).values.tolist(), hole.max(0).values.tolist()
        assert len(hole) == (r1 - r0 + 1) * (c1 - c0 + 1)  # a rectangle...
        assert r1 - r0 + 1 <= 8 and c1 - c0 + 1 <= 8  # ...of at most half the size
        if 0 < r0 and r1 < h - 1 and 0 < c0 and c1 < w - 1:  # not clipped by the border: exactly 8 x 8
            assert (r1 - r0 + 1, c1 - c0 + 1) == (8, 8)
            full += 1
    assert full > n // 10  # centres 5..11 of 0..16 on each axis: about 17% of the squares


def test_gradients_flow_through_translation_and_color_but_not_out_of_the_cutout_hole():
    for policy in ("translation", "color", ALL):
        x = _images().requires_grad_(True)
        diff_augment(x, policy, _gen()).sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0, policy
    x = _images().requires_grad_(True)
    y = cutout(x, _gen())
    y.sum().backward()
    hole = y.detach() == 0
    assert hole.any() and (x.grad[hole] == 0).all() and (x.grad[~hole] == 1).all()


def test_the_same_generator_state_gives_the_same_output_and_another_state_another():
    x = _images()
    assert torch.equal(diff_augment(x, ALL, _gen(1)), diff_augment(x, ALL, _gen(1)))
    assert not torch.equal(diff_augment(x, ALL, _gen(1)), diff_augment(x, ALL, _gen(2)))
    torch.manual_seed(4)  # generator=None: torch's global RNG
    a = diff_augment(x, ALL)
    torch.manual_seed(4)
    assert torch.equal(a, diff_augment(x, ALL))


def test_each_sample_gets_its_own_draws():
    x = _images(n=1).expand(8, -1, -1, -1)
    y = diff_augment(x, ALL, _gen())
    assert len({tuple(v.flatten().tolist()) for v in y}) == 8


# ----------------------------------------------------------------------------- the policy
def test_policy_parsing():
    assert parse_policy("") == () and parse_policy(" ") == ()
    assert parse_policy("color,translation,cutout") == ("color", "translation", "cutout")
    assert parse_policy("cutout, color") == ("cutout", "color")  # order kept
    assert POLICIES == ("color", "translation", "cutout")
    with pytest.raises(ValueError, match="unknown transformation 'flip'.*color, translation, cutout"):
        parse_policy("color,flip")
    with pytest.raises(ValueError, match="twice"):
        parse_policy("color,color")
    with pytest.raises(ValueError, match="color, translation, cutout"):
        parse_policy("color,")


def test_an_empty_policy_returns_x_itself():
    x = _images()
    assert diff_augment(x, "") is x and diff_augment(x, ()) is x


def test_config_validates_the_policy_and_refuses_2d_data():
    assert load_config(None, []).loss.diffaugment == ""
    assert load_config(None, ["data.name=mnist", f"loss.diffaugment={ALL}"]).loss.diffaugment == ALL
    with pytest.raises(ValueError, match="unknown transformation 'colour'"):
        load_config(None, ["data.name=mnist", "loss.diffaugment=colour"])
    with pytest.raises(ValueError, match="DiffAugment is for images"):
        load_config(None, ["data.name=grid", "loss.diffaugment=color"])


def test_ring_with_diffaugment_is_a_clean_error(tmp_path, capsys):
    rc, _, err = cli(capsys, "train", "--out", tmp_path, "data.name=ring", "loss.diffaugment=translation", "-q")
    assert_clean_error(rc, err, "DiffAugment is for images", "data.name=ring")
    assert not any(tmp_path.iterdir())


# ----------------------------------------------------------------------------- training with it
def _tiny_images(root, out, *extra):
    return load_config(None, [
        "data.name=mnist-limited", "data.per_class=4", f"data.root={root}", "prior.kind=gaussian", "prior.z_dim=8",
        "nets.g_width=4", "nets.d_width=4", "schedule.batch_size=8", "schedule.total_kimg=0.032",
        "schedule.snapshot_kimg=0.016", "schedule.sample_kimg=0", "schedule.log_kimg=0.008", "device=cpu",
        "cpu_threads=1", f"out={out}", f"loss.diffaugment={ALL}", *extra])


def _states_equal(a, b) -> bool:
    return all(torch.equal(a[k].state_dict()[n], t) for k in ("G", "D") for n, t in b[k].state_dict().items())


def test_tiny_image_run_with_diffaugment_is_reproducible_and_resumes_exactly(mnist_root, tmp_path):
    from gmmgan.gan.training_loop import train

    full = train(_tiny_images(mnist_root, tmp_path), run_dir=tmp_path / "full", quiet=True)
    assert full["kimg"] == 0.032
    again = train(_tiny_images(mnist_root, tmp_path), run_dir=tmp_path / "again", quiet=True)
    assert _states_equal(full, again)  # the global RNG is seeded by the run: the same draws on the CPU
    off = train(_tiny_images(mnist_root, tmp_path, "loss.diffaugment="), run_dir=tmp_path / "off", quiet=True)
    assert not _states_equal(full, off)
    # Saving does not rewind the augmentation stream, and a resumed run draws on where it stopped.
    train(_tiny_images(mnist_root, tmp_path, "schedule.total_kimg=0.016"), run_dir=tmp_path / "part", quiet=True)
    # (the checkpoint holds the live global RNG: after 2 steps of draws, not rewound to where training began)
    rng_part = load_checkpoint(tmp_path / "part" / CHECKPOINT_NAME)["torch_rng"]
    assert not torch.equal(rng_part, load_checkpoint(tmp_path / "full" / CHECKPOINT_NAME)["torch_rng"])
    resumed = train(_tiny_images(mnist_root, tmp_path), run_dir=tmp_path / "part", resume=True, quiet=True)
    assert resumed["kimg"] == 0.032 and _states_equal(full, resumed)


def test_tiny_image_sweep_with_diffaugment_trains_every_seed(mnist_root, tmp_path, capsys):
    rc, _, err = cli(capsys, "train", "--out", tmp_path, "--seeds", "0,1", "data.name=mnist-limited",
                     "data.per_class=4", f"data.root={mnist_root}", "prior.kind=gaussian", "prior.z_dim=8",
                     "nets.g_width=4", "nets.d_width=4", "schedule.batch_size=8", "schedule.total_kimg=0.016",
                     "schedule.snapshot_kimg=0.008", "schedule.sample_kimg=0", "device=cpu",
                     f"loss.diffaugment={ALL}", "-q")
    assert rc == 0, err
    (sweep,) = tmp_path.iterdir()
    for s in (0, 1):
        assert (sweep / f"seed-{s:04d}" / "generator.safetensors").is_file()
        assert load_config(sweep / f"seed-{s:04d}" / "config.yaml").loss.diffaugment == ALL


def _image_step(device, policy, graph):
    from gmmgan.gan.losses import get_gan_loss
    from gmmgan.gan.priors import GaussianPrior
    from gmmgan.gan.train_step import TrainStep, adam

    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Unflatten(1, (1, 8, 8))).to(device)
    D = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(256, 1),
                      nn.Flatten(0)).to(device)
    G_ema = nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Unflatten(1, (1, 8, 8))).to(device).requires_grad_(False)
    G_ema.load_state_dict(G.state_dict())
    # lr 0: the nets stay as they are, so a loss that changes from step to step shows new augmentations.
    opt_g, opt_d = adam(G.parameters(), device, graph, lr=0.0), adam(D.parameters(), device, graph, lr=0.0)
    return TrainStep(G, D, G_ema, GaussianPrior(4), opt_g, opt_d, get_gan_loss("ns"), r1_gamma=0.1, gp_weight=0.0,
                     ema_beta=0.5, autocast=contextlib.nullcontext, device=device, graph=graph, diffaugment=policy)


def _losses_per_step(step, real, z, n):
    out = []
    for _ in range(n):
        step(real, z)
        out.append(step.pop_means()[0][0])
    return out


def test_cpu_step_with_diffaugment_draws_new_augmentations_each_step():
    real, z = _images(n=16, c=1, h=8, w=8), torch.randn(16, 4, generator=_gen())
    on = _losses_per_step(_image_step(torch.device("cpu"), ALL, False), real, z, 4)
    off = _losses_per_step(_image_step(torch.device("cpu"), "", False), real, z, 4)
    assert len(set(on)) == 4 and len(set(off)) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_step_with_diffaugment_draws_new_augmentations_each_replay():
    cuda = torch.device("cuda")
    real = _images(n=16, c=1, h=8, w=8).to(cuda)
    z = torch.randn(16, 4, generator=_gen()).to(cuda)
    step = _image_step(cuda, ALL, True)
    losses = _losses_per_step(step, real, z, 8)  # 3 eager warm-up steps, the capture, then replays
    assert step.graphed
    replays = losses[4:]
    assert all(map(torch.isfinite, torch.tensor(replays))) and len(set(replays)) == len(replays)
    control = _image_step(cuda, "", True)  # without DiffAugment the replays repeat the same loss
    same = _losses_per_step(control, real, z, 8)[4:]
    assert max(same) - min(same) < 1e-5 * max(1.0, abs(same[0]))  # (up to the rounding of atomics)
