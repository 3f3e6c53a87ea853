"""The STDP convolutional network's pure functions against hand-computed cases: the DoG retina and
rank-order latency code (snn5.core.encoders), one-spike IF conv layers, pooling, pointwise
inhibition, k-WTA and the soft-bounded STDP of Kheradpisheh et al. (snn5.core.conv_stdp)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from snn5.core import conv_stdp as C
from snn5.core.encoders import dog_bank, dog_filter, dog_kernel, rank_order_times, spike_wave

INF = math.inf


# ----------------------------------------------------------------------------- retina

@pytest.mark.parametrize("size,s1,s2",
                         [(3, 3 / 9, 6 / 9), (7, 14 / 9, 7 / 9), (13, 13 / 9, 26 / 9)])
def test_dog_kernel_sums_to_zero_and_peaks_at_one(size, s1, s2):
    k = dog_kernel(size, s1, s2)
    assert k.shape == (size, size)
    assert abs(k.sum().item()) < 1e-5 and k.max().item() == pytest.approx(1.0)
    centre = k[size // 2, size // 2].item()
    assert centre > 0 if s1 < s2 else centre < 0            # ON centre / OFF centre
    torch.testing.assert_close(k, k.T)                      # isotropic


def test_dog_kernel_rejects_bad_arguments():
    with pytest.raises(ValueError, match="odd"):
        dog_kernel(4, 1.0, 2.0)
    with pytest.raises(ValueError, match="different"):
        dog_kernel(5, 1.0, 1.0)


def test_dog_bank_and_filter_ignore_uniform_images():
    bank = dog_bank(((3, 1 / 3, 2 / 3), (7, 7 / 9, 14 / 9)))
    assert bank.shape == (4, 1, 7, 7)
    flat = torch.full((1, 1, 20, 20), 0.7)
    y = dog_filter(flat, bank, threshold=1e-4)
    assert y[..., 4:-4, 4:-4].abs().max() == 0              # zero-sum kernels, away from the edge
    dot = torch.zeros(1, 1, 9, 9)
    dot[0, 0, 4, 4] = 1.0
    y = dog_filter(dot, bank)
    assert y[0, 0, 4, 4] > 0 and y[0, 1, 4, 4] == 0         # ON fires at a bright dot, OFF does not
    assert (y >= 0).all()


def test_rank_order_times_equal_count_bins():
    x = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    assert rank_order_times(x, 3).tolist() == [[0, 1, 2, INF, INF, INF]]   # bins of 5 // 3 = 1
    # bins of 5 // 2 = 2 values; the leftover weakest value and the zero stay silent
    assert rank_order_times(x, 2).tolist() == [[0, 0, 1, 1, INF, INF]]
    two = rank_order_times(torch.stack([x[0], x[0].flip(0)]).view(2, 1, 2, 3), 3)
    assert two.shape == (2, 1, 2, 3) and two[1].flatten().tolist() == [INF, INF, INF, 2, 1, 0]


def test_spike_wave_is_cumulative():
    z = spike_wave(torch.tensor([[0.0, 2.0, INF]]), 3)
    assert z[:, 0].tolist() == [[1, 0, 0], [1, 0, 0], [1, 1, 0]]


# ----------------------------------------------------------------------------- IF conv layer

def test_conv_potentials_match_a_loop_over_time():
    g = torch.Generator().manual_seed(0)
    times = torch.randint(0, 6, (2, 3, 5, 5), generator=g).float()
    times[times >= 4] = INF                                 # some inputs stay silent
    w = torch.rand(4, 3, 3, 3, generator=g)
    v = C.conv_potentials(times, w, 4, padding=1)
    assert v.shape == (4, 2, 4, 5, 5)
    for t in range(4):
        expected = F.conv2d((times <= t).float(), w, padding=1)
        torch.testing.assert_close(v[t], expected)


def test_fire_first_needs_the_threshold_exceeded():
    v = torch.tensor([[0.5, 1.0, 0.0], [1.5, 1.0, 0.2], [2.5, 3.0, 0.4]]).view(3, 1, 3)
    times, at = C.fire_first(v, 1.0)
    assert times.tolist() == [[1, 2, INF]]                  # 1.0 is not above the threshold
    assert at.tolist() == [[1.5, 3.0, 0.0]]


def test_pool_times_propagates_the_earliest_spike():
    t = torch.tensor([[3.0, 1.0, INF, INF], [2.0, 5.0, INF, INF]]).view(1, 1, 2, 4)
    assert C.pool_times(t, 2).tolist() == [[[[1.0, INF]]]]


# ----------------------------------------------------------------------------- competition

def test_pointwise_inhibition_keeps_the_earliest_then_the_strongest_feature():
    times = torch.tensor([2.0, 1.0, 1.0, INF]).view(1, 4, 1, 1).repeat(1, 1, 1, 2)
    v = torch.tensor([9.0, 3.0, 4.0, 0.0]).view(1, 4, 1, 1).repeat(1, 1, 1, 2)
    times[0, :, 0, 1] = torch.tensor([INF, INF, INF, INF])
    out = C.pointwise_inhibition(times, v)
    assert out[0, :, 0, 0].tolist() == [INF, INF, 1.0, INF]     # feature 2: as early, more potent
    assert out[0, :, 0, 1].tolist() == [INF] * 4


def _grid(c=3, h=5, w=5):
    return torch.full((1, c, h, w), INF), torch.zeros(1, c, h, w)


def test_kwta_order_feature_and_neighbourhood_exclusion():
    times, v = _grid()
    times[0, 0, 2, 2], v[0, 0, 2, 2] = 0, 5.0              # earliest: winner 1
    times[0, 1, 2, 3], v[0, 1, 2, 3] = 0, 4.0              # as early but within radius 1: excluded
    times[0, 0, 4, 4], v[0, 0, 4, 4] = 0, 3.0              # feature 0 already won: excluded
    times[0, 2, 0, 0], v[0, 2, 0, 0] = 1, 1.0              # later, far away, new feature: winner 3
    times[0, 1, 4, 0], v[0, 1, 4, 0] = 1, 2.0              # same step, more potent: winner 2
    w = C.conv_kwta(times, v, k=4, radius=1)
    assert w.tolist() == [[[0, 2, 2], [1, 4, 0], [2, 0, 0], [-1, -1, -1]]]
    w0 = C.conv_kwta(times, v, k=4, radius=0)              # no spatial inhibition
    # step-0 spikes by potential (5, 4; feature 0's 3 is out), then feature 2 at step 1
    assert w0.tolist() == [[[0, 2, 2], [1, 2, 3], [2, 0, 0], [-1, -1, -1]]]


def test_kwta_radius_reaches_every_feature_and_batches_independently():
    times, v = _grid()
    times[0, 0, 1, 1], v[0, 0, 1, 1] = 0, 1.0
    times[0, 1, 3, 3], v[0, 1, 3, 3] = 0, 1.0              # Chebyshev distance 2 from (1, 1)
    times[0, 2, 2, 2], v[0, 2, 2, 2] = 0, 2.0              # strongest; covers both at radius 1
    w1 = C.conv_kwta(times, v, k=3, radius=1)
    assert w1[0].tolist() == [[2, 2, 2], [-1, -1, -1], [-1, -1, -1]]
    w0 = C.conv_kwta(times, v, k=3, radius=0)
    assert sorted(w0[0].tolist()) == [[0, 1, 1], [1, 3, 3], [2, 2, 2]]
    both = C.conv_kwta(torch.cat([times, times.flip(-1)]), torch.cat([v, v.flip(-1)]), 3, 0)
    assert torch.equal(both[0], w0[0])
    assert torch.equal(both[1], C.conv_kwta(times.flip(-1), v.flip(-1), 3, 0)[0])
    with pytest.raises(ValueError, match="k >= 1"):
        C.conv_kwta(times, v, k=0, radius=1)


# ----------------------------------------------------------------------------- STDP

def test_conv_stdp_signs_and_soft_bound():
    p = C.ConvSTDPParams(a_plus=0.004, a_minus=0.003)
    in_times = torch.tensor([[1.0, 3.0, INF], [4.0, 0.0, 2.0], [INF, INF, 5.0]]).view(1, 1, 3, 3)
    weight = torch.tensor([[0.5, 0.2], [0.0, 1.0]]).view(1, 1, 2, 2).repeat(2, 1, 1, 1)
    winners = torch.tensor([[[1, 0, 1], [-1, -1, -1]]])      # feature 1 at (0, 1), nothing else
    dw = C.conv_stdp(in_times, winners, torch.tensor([[3.0, 0.0]]), weight, p)
    # receptive field rows 0-1, cols 1-2: pre times [[3, inf], [0, 2]], post at 3
    # pre 3 <= 3: +a w(1-w) with w 0.5; inf: -a w(1-w) with w 0.2; w 0 and 1 cannot move
    expected = torch.tensor([[0.004 * 0.25, -0.003 * 0.16], [0.0, 0.0]])
    torch.testing.assert_close(dw[1, 0], expected)
    assert dw[0].abs().max() == 0                           # the loser does not learn
    # the same winner one step earlier: pre at 3 now comes after post -> depression
    dw = C.conv_stdp(in_times, winners, torch.tensor([[2.0, 0.0]]), weight, p)
    assert dw[1, 0, 0, 0].item() == pytest.approx(-0.003 * 0.25)


def test_conv_stdp_padding_and_bounds():
    p = C.ConvSTDPParams(a_plus=0.1, a_minus=0.1, w_min=0.2, w_max=0.8)
    in_times = torch.zeros(1, 1, 2, 2)                      # every input at step 0
    weight = torch.full((1, 1, 3, 3), 0.5)
    winners = torch.tensor([[[0, 0, 0]]])                   # top-left output, padding 1
    dw = C.conv_stdp(in_times, winners, torch.tensor([[0.0]]), weight, p, padding=1)
    soft = (0.5 - 0.2) * (0.8 - 0.5)
    expected = torch.full((3, 3), -0.1 * soft)              # padded (silent) inputs depress
    expected[1:, 1:] = 0.1 * soft
    torch.testing.assert_close(dw[0, 0], expected)
    with pytest.raises(ValueError, match="winners"):
        C.conv_stdp(in_times, winners[0], torch.tensor([[0.0]]), weight, p)
