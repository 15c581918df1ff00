"""GradientAverager: bucketed gradient averaging during backward (2 processes, gloo)."""

from __future__ import annotations

import os
import socket

import torch
import torch.multiprocessing as mp
from torch import nn


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1))
    net.unused = nn.Parameter(torch.ones(3))  # never reached by backward: its bucket must still go
    return net


def _loss(net, rank: int, step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(100 * rank + step)
    x = torch.randn(8, 5, generator=g)
    return net(x).square().mean()


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "GMMGAN_DIST_TIMEOUT": "60"})
    from gmmgan import distributed

    torch.set_num_threads(1)
    distributed.init_from_env("cpu")
    try:
        net = _net()
        opt = torch.optim.SGD(net.parameters(), lr=0.0)
        # 300 bytes a bucket: the 16x16 layer alone fills one, so there are several buckets.
        avg = distributed.GradientAverager(net.parameters(), bucket_bytes=300)
        grads = []
        for step in range(2):
            avg.zero_grad(opt)
            _loss(net, rank, step).backward()
            avg.wait()
            grads.append({k: p.grad.clone() for k, p in net.named_parameters()})
        views = all(any(p.grad.untyped_storage().data_ptr() == b.untyped_storage().data_ptr() for b in avg.buffers)
                    for p in net.parameters())
        torch.save({"grads": grads, "n_buckets": len(avg.buffers), "views": views}, os.path.join(out, f"{rank}.pt"))
    finally:
        distributed.shutdown()


def test_gradients_are_the_mean_over_ranks_bucket_by_bucket(tmp_path):
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    got = [torch.load(tmp_path / f"{r}.pt", weights_only=True) for r in range(2)]
    assert got[0]["n_buckets"] >= 3 and got[0]["views"] and got[1]["views"]
    for step in range(2):
        expected = {}
        for rank in range(2):  # each rank's own gradient, in one process
            net = _net()
            _loss(net, rank, step).backward()
            for k, p in net.named_parameters():
                g = p.grad if p.grad is not None else torch.zeros_like(p)
                expected[k] = expected.get(k, 0) + g / 2
        for k, v in expected.items():
            for rank in range(2):
                torch.testing.assert_close(got[rank]["grads"][step][k], v, rtol=1e-6, atol=1e-7, msg=f"{k} step {step}")
        assert torch.equal(got[0]["grads"][step]["unused"], torch.zeros(3))


def test_in_one_process_it_only_zeroes_the_gradients():
    from gmmgan import distributed

    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    avg = distributed.GradientAverager(net.parameters())
    assert not avg.active
    _loss(net, 0, 0).backward()
    avg.wait()  # nothing to average
    grad = net[0].weight.grad.clone()
    assert grad.abs().sum() > 0
    avg.zero_grad(opt)
    assert net[0].weight.grad is None
