"""TET loss (Deng et al. ICLR 2022) against its definition."""

import pytest
import torch
import torch.nn.functional as F

from snn5.train.surrogate.losses import tet_loss


def test_tet_is_the_mean_of_per_step_cross_entropies_plus_mse():
    torch.manual_seed(0)
    out = torch.randn(4, 3, 5)
    y = torch.tensor([0, 4, 2])
    per_step = torch.stack([F.cross_entropy(out[t], y) for t in range(4)]).mean()
    assert tet_loss(out, y, lam=0.0) == pytest.approx(float(per_step), rel=1e-6)
    mse = ((out - 1.0) ** 2).mean()
    expected = 0.9 * per_step + 0.1 * mse
    assert tet_loss(out, y, lam=0.1) == pytest.approx(float(expected), rel=1e-6)
    # not the cross-entropy of the averaged output (the usual SNN loss)
    assert abs(float(tet_loss(out, y, lam=0.0)) - float(F.cross_entropy(out.mean(0), y))) > 1e-3


def test_tet_gradient_reaches_every_step():
    out = torch.zeros(3, 2, 4, requires_grad=True)
    tet_loss(out, torch.tensor([1, 2]), lam=0.0).backward()
    assert (out.grad.abs().sum(dim=(1, 2)) > 0).all()


def test_tet_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"\[T, B, C\]"):
        tet_loss(torch.zeros(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="lam must lie"):
        tet_loss(torch.zeros(2, 2, 4), torch.tensor([0, 1]), lam=2.0)
    with pytest.raises(ValueError, match="labels must be"):
        tet_loss(torch.zeros(2, 2, 4), torch.tensor([0, 1, 2]))
