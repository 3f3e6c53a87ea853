"""Magnitude pruning: target sparsity by the stated criterion, masks that hold through training,
an exact inverse, and named errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snn5.compress.prune import (
    ActivityPrune, HessianPrune, MagnitudePrune, is_pruned, layer_sparsities, prune_,
    remove_pruning_, sparsity,
)
from snn5.models import build_model


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5))


def test_unstructured_layer_sparsity_removes_the_smallest_weights() -> None:
    model = mlp()
    before = [m.weight.detach().clone() for m in model if isinstance(m, nn.Linear)]
    prune_(model, MagnitudePrune(sparsity=0.8))
    for w0, m in zip(before, [m for m in model if isinstance(m, nn.Linear)]):
        kept = m.weight != 0
        assert int((~kept).sum()) == round(0.8 * w0.numel())
        assert w0.abs()[kept].min() >= w0.abs()[~kept].max()     # smallest |w| went
    assert sparsity(model) == pytest.approx(0.8, abs=1e-3)


def test_structured_pruning_zeroes_whole_output_units_of_smallest_norm() -> None:
    model = mlp()
    w0 = model[0].weight.detach().clone()
    prune_(model, MagnitudePrune(sparsity=0.5, structured=True),
           filter_fn=lambda m, name: name == "0")
    rows_zero = (model[0].weight == 0).all(dim=1)
    assert int(rows_zero.sum()) == 15 and not is_pruned(model[2])
    norms = w0.norm(dim=1)
    assert norms[~rows_zero].min() >= norms[rows_zero].max()


def test_global_scope_ranks_all_layers_together() -> None:
    model = mlp()
    with torch.no_grad():
        w = model[2].weight                          # every second-layer weight above 1, every
        w.copy_(w.sign() * (1.0 + w.abs()))          # first-layer one below 1/sqrt(20)
    prune_(model, MagnitudePrune(sparsity=0.5, scope="global"))
    assert (model[2].weight != 0).all()              # nothing pruned there
    assert sparsity(model) == pytest.approx(0.5, abs=1e-3)


def test_masks_hold_through_training_and_remove_restores_or_bakes() -> None:
    model = mlp()
    original = model[0].weight.detach().clone()
    prune_(model, MagnitudePrune(sparsity=0.7))
    mask = model[0].weight_mask.clone()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    x, y = torch.randn(64, 20), torch.randint(0, 5, (64,))
    for _ in range(20):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert (model[0].weight[mask == 0] == 0).all()   # pruned entries never revived
    trained = model[0].weight.detach().clone()
    assert not torch.equal(trained[mask == 1], original[mask == 1])   # training moved them
    baked = mlp()
    prune_(baked, MagnitudePrune(sparsity=0.7))
    remove_pruning_(baked, restore=False)
    assert not is_pruned(baked[0]) and sparsity(baked) == pytest.approx(0.7, abs=1e-3)
    remove_pruning_(model)                           # the inverse: weights before prune_
    assert not is_pruned(model[0]) and isinstance(model[0].weight, nn.Parameter)
    assert torch.equal(model[0].weight, original)
    assert "weight_unpruned" not in dict(model.named_buffers())
    assert set(dict(model.named_parameters())) == set(dict(mlp().named_parameters()))


def test_inverse_of_an_untrained_prune_is_the_original_model() -> None:
    model, ref = mlp(), mlp()
    prune_(model, MagnitudePrune(sparsity=0.9, structured=True))
    remove_pruning_(model)
    x = torch.randn(4, 20)
    assert torch.equal(model(x), ref(x))


def test_snn_layers_are_pruned_and_still_run() -> None:
    torch.manual_seed(0)
    snn = build_model({"name": "conv_snn", "channels": [4], "fc_hidden": [16], "timesteps": 2},
                      (1, 8, 8), 3)
    prune_(snn, MagnitudePrune(sparsity=0.5))
    out = snn(torch.rand(2, 1, 8, 8))
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    assert sparsity(snn) == pytest.approx(0.5, abs=0.01)


def test_bad_uses_are_named() -> None:
    with pytest.raises(ValueError, match="sparsity=0.8"):
        MagnitudePrune(sparsity=80)
    with pytest.raises(ValueError, match="structured pruning ranks units within a layer"):
        MagnitudePrune(sparsity=0.5, structured=True, scope="global")
    model = mlp()
    with pytest.raises(ValueError, match="selected no Linear/Conv"):
        prune_(model, MagnitudePrune(sparsity=0.5), filter_fn=lambda m, n: False)
    with pytest.raises(ValueError, match="nothing to undo"):
        remove_pruning_(model)
    prune_(model, MagnitudePrune(sparsity=0.5))
    with pytest.raises(ValueError, match="already pruned"):
        prune_(model, MagnitudePrune(sparsity=0.6))
    with pytest.raises(TypeError, match="MagnitudePrune, HessianPrune or ActivityPrune"):
        prune_(mlp(), 0.5)
    with pytest.raises(ValueError, match="needs calibration"):
        prune_(mlp(), HessianPrune(sparsity=0.5))
    with pytest.raises(ValueError, match="ActivityPrune needs calibration"):
        prune_(mlp(), ActivityPrune(sparsity=0.5))
    grouped = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(ValueError, match="groups=1"):
        prune_(grouped, HessianPrune(sparsity=0.5), calibration=[torch.rand(2, 4, 6, 6)])
    with pytest.raises(ValueError, match="ActivityPrune handles Linear and Conv2d"):
        prune_(grouped, ActivityPrune(sparsity=0.5), calibration=[torch.rand(2, 4, 6, 6)])
    with pytest.raises(ValueError, match="uniform, erk"):
        HessianPrune(sparsity=0.5, allocation="owl")
    with pytest.raises(ValueError, match="scope='layer' with allocation='erk'"):
        MagnitudePrune(sparsity=0.5, scope="global", allocation="erk")


def erk_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.Conv2d(8, 32, 3), nn.Flatten(),
                         nn.Linear(32 * 4 * 4, 128), nn.Linear(128, 10))


def test_erk_allocation_reaches_the_target_and_spares_small_layers() -> None:
    layers = [m for m in erk_net() if isinstance(m, (nn.Linear, nn.Conv2d))]
    sizes = [m.weight.numel() for m in layers]                  # 72, 2304, 65536, 1280
    budgets = layer_sparsities(layers, 0.8, "erk")
    pruned = sum(s * n for s, n in zip(budgets, sizes))
    assert pruned == pytest.approx(0.8 * sum(sizes), rel=1e-9)  # the overall target exactly
    assert budgets[0] == 0.0                                    # the 72-weight first conv
    assert budgets[2] == max(budgets)                           # the largest layer hardest
    # density follows sum(shape) / prod(shape) among the layers that are not capped
    free = [i for i, b in enumerate(budgets) if b > 0]
    ratio = [sum(layers[i].weight.shape) / sizes[i] for i in free]
    dens = [1 - budgets[i] for i in free]
    assert dens[0] / dens[1] == pytest.approx(ratio[0] / ratio[1], rel=1e-9)
    assert layer_sparsities(layers, 0.8, "uniform") == [0.8] * 4
    model = erk_net()
    prune_(model, MagnitudePrune(sparsity=0.8, allocation="erk"))
    assert sparsity(model) == pytest.approx(0.8, abs=1e-3)
    assert (model[0].weight != 0).all()


def test_activity_prune_removes_synapses_of_silent_inputs_first() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(8, 4)
    with torch.no_grad():
        layer.weight.copy_(torch.arange(1.0, 9.0).repeat(4, 1))    # |w| grows with the input
    spikes = (torch.rand(256, 8) < torch.linspace(0.9, 0.05, 8)).float()   # rates fall
    spikes[:, 7] = 0.0                                          # input 7 never fires
    prune_(nn.Sequential(layer), ActivityPrune(sparsity=0.25), calibration=[spikes])
    kept = layer.weight != 0
    assert (kept.sum(dim=1) == 6).all()                          # 2 of 8 per output unit
    assert not kept[:, 7].any()                                  # the silent, largest weights
    norms = spikes.pow(2).sum(0).sqrt()
    score = layer.weight_orig.detach().abs() * norms
    assert score[kept].min() >= score[~kept].max()
    model = nn.Sequential(nn.Linear(8, 4))
    prune_(model, ActivityPrune(sparsity=0.25, structured=True), calibration=[spikes])
    dead = (model[0].weight == 0).all(dim=0)                    # whole presynaptic units
    assert int(dead.sum()) == 2 and dead[7]


def test_activity_prune_beats_magnitude_when_inputs_differ_in_scale() -> None:
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
    scale = torch.logspace(-1, 1, 32)                           # inputs 0.1x .. 10x
    calib, test = correlated_inputs(1024, seed=1) * scale, correlated_inputs(1024, seed=2) * scale
    with torch.no_grad():
        target = teacher(test)

    def error(config) -> float:
        model = twin_of(teacher)
        prune_(model, config, calibration=[calib])
        with torch.no_grad():
            return float((model(test) - target).pow(2).mean())

    assert error(ActivityPrune(sparsity=0.5)) < 0.7 * error(MagnitudePrune(sparsity=0.5))


def test_activity_prune_on_a_conv_snn_is_undone() -> None:
    torch.manual_seed(0)
    snn = build_model({"name": "conv_snn", "channels": [4], "fc_hidden": [16], "timesteps": 2},
                      (1, 8, 8), 3)
    before = {k: v.clone() for k, v in snn.state_dict().items()}
    prune_(snn, ActivityPrune(sparsity=0.5, structured=True),
           calibration=[torch.rand(16, 1, 8, 8)])
    conv = snn.stem[0].module
    assert (conv.weight == 0).all(dim=(0, 2, 3)).sum() == 0      # 1 input channel: round(0.5)
    fc = [m for m in snn.modules() if isinstance(m, nn.Linear)][0]
    assert int((fc.weight == 0).all(dim=0).sum()) == round(0.5 * fc.in_features)
    remove_pruning_(snn)
    after = snn.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)


MIX = torch.randn(32, 32, generator=torch.Generator().manual_seed(0)) / 32 ** 0.5


def correlated_inputs(n: int, seed: int) -> torch.Tensor:
    """Samples of one correlated input distribution (a fixed mixing of Gaussian sources)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 32, generator=g) @ MIX + 0.3 * torch.randn(n, 32, generator=g)


def twin_of(model: nn.Module) -> nn.Module:
    twin = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
    twin.load_state_dict(model.state_dict())
    return twin


@pytest.mark.parametrize("sparsity_", [0.5, 0.8])
def test_one_shot_pruner_beats_magnitude_pruning_at_equal_sparsity(sparsity_: float) -> None:
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
    calib, test = correlated_inputs(1024, seed=1), correlated_inputs(1024, seed=2)
    with torch.no_grad():
        target = teacher(test)

    def error(config) -> float:
        model = twin_of(teacher)
        prune_(model, config, calibration=[calib[i:i + 256] for i in range(0, 1024, 256)])
        assert sparsity(model) == pytest.approx(sparsity_, abs=0.01)
        with torch.no_grad():
            return float((model(test) - target).pow(2).mean())

    one_shot = error(HessianPrune(sparsity=sparsity_, block_size=16))
    magnitude = error(MagnitudePrune(sparsity=sparsity_))
    assert one_shot < 0.9 * magnitude, (one_shot, magnitude)


def test_compensation_lowers_the_error_of_its_own_mask() -> None:
    # the kept weights are updated (OBS): the layer's output on the calibration inputs is
    # closer to the dense output than the same mask applied to the unchanged weights
    torch.manual_seed(0)
    layer = nn.Linear(32, 16, bias=False)
    x = correlated_inputs(2048, seed=3)
    dense = layer.weight.detach().clone()
    prune_(nn.Sequential(layer), HessianPrune(sparsity=0.6, block_size=8), calibration=[x])
    mask = layer.weight_mask
    kept = mask.bool()
    assert not torch.equal(layer.weight[kept], dense[kept])            # compensated
    with torch.no_grad():
        compensated = (x @ layer.weight.T - x @ dense.T).pow(2).mean()
        masked_only = (x @ (dense * mask).T - x @ dense.T).pow(2).mean()
    assert compensated < 0.8 * masked_only


def test_one_shot_prunes_conv_and_snn_layers_and_is_undone() -> None:
    torch.manual_seed(0)
    snn = build_model({"name": "conv_snn", "channels": [4], "fc_hidden": [16], "timesteps": 2},
                      (1, 8, 8), 3)
    before = {k: v.clone() for k, v in snn.state_dict().items()}
    calib = [torch.rand(16, 1, 8, 8) for _ in range(2)]
    prune_(snn, HessianPrune(sparsity=0.6), calibration=calib)
    assert sparsity(snn) == pytest.approx(0.6, abs=0.02)
    snn.eval()                                       # (train mode would move BN statistics)
    assert torch.isfinite(snn(torch.rand(2, 1, 8, 8))).all()
    with torch.inference_mode():                     # masks applied to inference tensors
        assert torch.isfinite(snn((torch.rand(8, 1, 8, 8) > 0.5).float())).all()
    remove_pruning_(snn)
    after = snn.state_dict()
    assert set(after) == set(before) and all(torch.equal(after[k], before[k]) for k in before)
