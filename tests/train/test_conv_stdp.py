"""The STDP convolutional feature extractor and its use by the R-STDP decision layer: learning
through ``.grad``, determinism with a seed, the exact presence-only fast path, the readout on
spike times and its in-place update against the optimizer path."""

from __future__ import annotations

import math

import pytest
import torch

from snn5.core import conv_stdp as C
from snn5.train.plasticity.conv_stdp import (
    ConvLayerConfig, ConvSTDPConfig, ConvSTDPNetwork, snap_to_bounds_, train_conv_layer,
)
from snn5.train.plasticity.rstdp import RSTDPConfig, RSTDPReadout, rstdp_accuracy, train_rstdp

SMALL = ConvSTDPConfig(
    layers=(ConvLayerConfig(6, 3, 2.0, k=2, radius=1, padding=1, pool=2),
            ConvLayerConfig(8, 3, 3.0, k=2, radius=0, padding=1, pool=2)),
    timesteps=5, dog_scales=((3, 1 / 3, 2 / 3),), dog_threshold=0.05, norm_radius=2,
    double_every=4)


def blobs(n: int, seed: int = 0) -> torch.Tensor:
    """Small grey images [n, 1, 12, 12] with random bright bars."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 12, 12)
    r = torch.randint(1, 10, (n, 2), generator=g)
    for i in range(n):                                     # test data only
        if i % 2:
            x[i, 0, r[i, 0], 1:11] = 1.0
        else:
            x[i, 0, 1:11, r[i, 1]] = 1.0
    return x


def make(seed: int = 0) -> ConvSTDPNetwork:
    return ConvSTDPNetwork(SMALL, generator=torch.Generator().manual_seed(seed))


def test_shapes_and_presence_fast_path_is_exact():
    net, x = make(), blobs(6)
    assert net.encode(x).shape == (6, 2, 12, 12)
    timed = net(x)
    assert timed.shape == (6, 8, 3, 3)
    fast = net(x, timing=False)
    assert torch.equal(torch.isfinite(timed), torch.isfinite(fast))
    assert torch.isfinite(timed).any() and not torch.isfinite(timed).all()
    assert net.features(x, batch_size=4).shape == (6, 72)


def test_stdp_learning_is_deterministic_given_the_seeds():
    def run(init_seed, seed):
        net = make(init_seed)
        for layer in range(2):
            train_conv_layer(net, blobs(10), layer, samples=12, seed=seed, chunk=6)
        return [w.detach().clone() for w in net.weights]

    a, b = run(0, 1), run(0, 1)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    c = run(0, 2)                                          # another presentation order
    assert not torch.equal(a[0], c[0])
    assert not torch.equal(a[0], make(0).weights[0].detach())   # it did learn
    assert all(((w >= 0) & (w <= 1)).all() for w in a)


class Recorder(torch.optim.SGD):
    """SGD that keeps a copy of every gradient it is given."""

    def __init__(self, params, lr):
        super().__init__(params, lr=lr)
        self.grads = []

    def step(self, closure=None):
        self.grads.append(self.param_groups[0]["params"][0].grad.clone())
        return super().step(closure)


def test_learner_writes_minus_dw_into_grad():
    net, x = make(), blobs(1)
    w0 = net.weights[0].detach().clone()
    opt = Recorder([net.weights[0]], lr=1.0)
    stats = train_conv_layer(net, x, 0, samples=1, optimizer=opt)
    assert len(opt.grads) == 1 and stats["winners_per_image"] == 2
    with torch.no_grad():                                  # the rule, from the core functions
        t_in = net.encode(x)
        times, v = C.fire_first(C.conv_potentials(t_in, w0, SMALL.timesteps, padding=1), 2.0)
        times = C.pointwise_inhibition(times, v)
        win = C.conv_kwta(times, v, 2, 1)
        t_win = times[0, win[0, :, 0], win[0, :, 1], win[0, :, 2]].view(1, -1)
        dw = C.conv_stdp(t_in, win, t_win, w0, SMALL.stdp, padding=1)
    torch.testing.assert_close(opt.grads[0], -dw)
    changed = (net.weights[0].detach() != w0).flatten(1).any(1)
    assert changed.tolist() == [f in win[0, :, 0].tolist() for f in range(6)]


def test_snap_to_bounds_clears_near_bound_weights():
    w = torch.tensor([-0.1, 1e-7, 1e-3, 0.5, 1 - 1e-7, 1.2])
    snap_to_bounds_(w, 0.0, 1.0)
    assert w.tolist() == pytest.approx([0.0, 0.0, 1e-3, 0.5, 1.0, 1.0])
    assert w[1].item() == 0.0


def test_config_errors():
    with pytest.raises(ValueError, match="threshold must be positive"):
        ConvLayerConfig(4, 3, 0.0, k=1, radius=0, padding=0, pool=1)
    with pytest.raises(ValueError, match="invalid conv layer"):
        ConvLayerConfig(0, 3, 1.0, k=1, radius=0, padding=0, pool=1)
    with pytest.raises(ValueError, match="at least one"):
        ConvSTDPConfig(layers=())


# ----------------------------------------------------------------------------- the readout

def test_readout_reads_spike_times_like_latency_values():
    layer = RSTDPReadout(3, 2, RSTDPConfig(n_per_class=1, timesteps=4))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.8, 0.2, 0.2], [0.2, 0.8, 0.8]]))
    t = torch.tensor([[0.0, math.inf, math.inf], [math.inf, 1.0, 3.0]])
    assert layer(t, spike_times=True).tolist() == [0, 1]
    assert rstdp_accuracy(layer, t, torch.tensor([0, 0]), spike_times=True) == 0.5
    with pytest.raises(ValueError, match="spike times"):
        layer(t.view(1, 2, 3), spike_times=True)


def test_in_place_readout_update_equals_the_grad_path():
    g = torch.Generator().manual_seed(0)
    t = torch.where(torch.rand(64, 30, generator=g) < 0.3, 14.0, math.inf)
    y = torch.randint(0, 3, (64,), generator=g)
    cfg = RSTDPConfig(n_per_class=2, batch_size=4, adapt_every=16)

    def run(with_optimizer):
        torch.manual_seed(0)
        layer = RSTDPReadout(30, 3, cfg)
        opt = torch.optim.SGD([layer.weight], lr=1.0) if with_optimizer else None
        seen = []
        train_rstdp(layer, t, y, epochs=2, seed=1, optimizer=opt, spike_times=True,
                    callback=seen.append)
        return layer.weight.detach(), seen

    (w_fast, h_fast), (w_grad, h_grad) = run(False), run(True)
    torch.testing.assert_close(w_fast, w_grad)
    assert h_fast == h_grad and len(h_fast) == 2


def test_dropped_neurons_cannot_win():
    layer = RSTDPReadout(2, 2, RSTDPConfig(n_per_class=1))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.8, 0.8], [0.2, 0.2]]))
    t = torch.tensor([[0.0, 1.0]])
    assert layer.decide(t)[0].tolist() == [0]
    assert layer.decide(t, torch.tensor([False, True]))[0].tolist() == [1]
    thr = RSTDPReadout(2, 2, RSTDPConfig(n_per_class=1, threshold=0.3, timesteps=4))
    with torch.no_grad():
        thr.weight.copy_(layer.weight)
    assert thr.decide(t, torch.tensor([False, True]))[0].tolist() == [1]
    with pytest.raises(ValueError, match="dropout"):
        RSTDPConfig(dropout=1.0)


@pytest.mark.slow
def test_short_mnist_pipeline_learns(mnist_root):
    """STDP features + reward-only readout on a slice of MNIST (a few minutes on one core)."""
    from snn5.data.mnist import load_mnist

    data = load_mnist(mnist_root)
    x, y = data.train.x[:5000], data.train.y[:5000]
    net = ConvSTDPNetwork(generator=torch.Generator().manual_seed(0))
    for layer in range(2):
        stats = train_conv_layer(net, x, layer, samples=4096, seed=layer)
        assert stats["convergence"] < 0.03                  # from 0.15: weights near 0 or 1
    f_train = net.features(x, timing=False)
    f_val = net.features(data.val.x[:1000], timing=False)
    readout = RSTDPReadout(f_train.shape[1], 10)
    train_rstdp(readout, f_train, y, epochs=8, spike_times=True)
    assert rstdp_accuracy(readout, f_val, data.val.y[:1000], spike_times=True) > 0.8
