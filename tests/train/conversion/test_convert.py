"""ANN -> SNN conversion: ingestion, BN folding, the methods, calibration and HSEO."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snn5.core.conversion import MTParams, MTState, multithreshold_scan, qcfs
from snn5.models.ann import build_ann
from snn5.nn.conversion import QCFS, ConvertedNeuron
from snn5.train.conversion.calibrate import calibrate_biases, hseo, snn_accuracy
from snn5.train.conversion.convert import accuracy_by_timesteps, convert
from snn5.train.conversion.ingest import UnsupportedLayerError, ingest


def _trained(ann: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 150) -> nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(ann.parameters(), 1e-2)
    ann.train()
    for _ in range(steps):
        loss = nn.functional.cross_entropy(ann(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return ann.eval()


@pytest.fixture(scope="module")
def blobs() -> tuple[torch.Tensor, torch.Tensor]:
    """Three Gaussian blobs in 8 dimensions (a task a small MLP learns in a second)."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 8, generator=g) * 2
    y = torch.arange(300) % 3
    x = centres[y] + torch.randn(300, 8, generator=g)
    return x, y


def test_qcfs_values_and_gradients() -> None:
    lam = torch.tensor([2.0], requires_grad=True)
    x = torch.tensor([-1.0, 0.2, 0.3, 1.0, 1.9, 3.0], requires_grad=True)
    h = qcfs(x, lam, levels=4)
    # lambda/L = 0.5; floor(x * 2 + 0.5) clipped to [0, 4]
    assert h.tolist() == [0.0, 0.0, 0.5, 1.0, 2.0, 2.0]
    h.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    # dh/dlambda: q/L - x/lambda inside, 1 above, 0 below
    inside = [0.0 - 0.1, 0.25 - 0.15, 0.5 - 0.5, 1.0 - 0.95]
    assert lam.grad.item() == pytest.approx(sum(inside) + 1.0)


def test_multithreshold_neuron_soft_reset_and_levels() -> None:
    x = torch.full((4, 1), 0.7)
    n, s = multithreshold_scan(x, MTState(torch.zeros(1)), MTParams(v_th=1.0))
    assert n.flatten().tolist() == [0, 1, 1, 0]           # 0.7, 1.4->0.4, 1.1->0.1, 0.8
    assert s.v.item() == pytest.approx(0.8)
    n, _ = multithreshold_scan(torch.tensor([[2.7]]), MTState(torch.zeros(1)),
                               MTParams(v_th=1.0, levels=2))
    assert n.item() == 2                                    # capped at 2 levels


def test_bn_folding_is_exact() -> None:
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Flatten(), nn.Linear(4 * 5 * 5, 6, bias=False), nn.BatchNorm1d(6),
                        nn.ReLU(), nn.Dropout(0.3), nn.Linear(6, 3))
    for bn in (ann[1], ann[5]):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
    ann.eval()
    gm, acts = ingest(ann)
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout))
                   for m in gm.modules())
    assert [a.kind for a in acts] == ["relu", "relu"]
    x = torch.randn(7, 2, 5, 5)
    torch.testing.assert_close(gm(x), ann(x), rtol=1e-5, atol=1e-5)


def test_unsupported_layer_lists_offenders() -> None:
    ann = nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 2), nn.GELU())
    with pytest.raises(UnsupportedLayerError, match=r"1 \(Sigmoid\)[\s\S]*3 \(GELU\)[\s\S]*Supported"):
        ingest(ann)


def test_bn_without_weight_layer_is_rejected() -> None:
    ann = nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 2), nn.ReLU())
    with pytest.raises(UnsupportedLayerError, match="BatchNorm '0' does not directly follow"):
        ingest(ann)


def test_rates_converge_to_ann_outputs(blobs) -> None:
    x, y = blobs
    ann = _trained(build_ann({"name": "mlp", "activation": "relu", "hidden": [32, 32]},
                             (8,), 3), x, y)
    snn = convert(ann, "threshold_balancing", calibration=x, percentile=100)
    with torch.no_grad():
        ref = ann(x)
        errs = [float((snn(x, timesteps=T) - ref).abs().mean()) for T in (8, 64, 512)]
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 0.05 * float(ref.abs().mean())
    acc = accuracy_by_timesteps(snn, [(x, y)], [8, 512])
    ann_acc = float((ref.argmax(1) == y).float().mean())
    assert acc[512] >= ann_acc - 0.01


def test_qcfs_conversion_matches_ann_at_t_equal_levels(blobs) -> None:
    x, y = blobs
    ann = _trained(build_ann({"name": "mlp", "activation": "qcfs", "levels": 4,
                              "hidden": [32, 32]}, (8,), 3), x, y)
    snn = convert(ann, "qcfs", timesteps=4)
    with torch.no_grad():
        ann_acc = float((ann(x).argmax(1) == y).float().mean())
    assert accuracy_by_timesteps(snn, [(x, y)], [4])[4] >= ann_acc - 0.02


def test_scale_and_fire_reproduces_a_qcfs_ann_at_one_step() -> None:
    torch.manual_seed(0)
    ann = build_ann({"name": "vgg", "activation": "qcfs", "levels": 4, "init_lambda": 2.0,
                     "stages": [[4], [8]], "fc_hidden": [16]}, (1, 8, 8), 3).eval()
    snn = convert(ann, "scale_and_fire")
    assert snn.timesteps == 1
    x = torch.rand(5, 1, 8, 8) * 3
    with torch.no_grad():
        torch.testing.assert_close(snn(x), ann(x), rtol=1e-4, atol=1e-4)


def test_folded_snn_passes_binary_spikes(blobs) -> None:
    x, y = blobs
    ann = build_ann({"name": "mlp", "activation": "qcfs", "hidden": [16, 16]}, (8,), 3).eval()
    snn = convert(ann, "qcfs", timesteps=4)
    seen = []
    for layer in (m for m in snn.modules() if isinstance(m, nn.Linear)):
        layer.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    with torch.no_grad():
        snn(x)
    assert len(seen) == 3
    for inp in seen[1:]:                                   # after the first (analog) layer
        assert bool(((inp == 0) | (inp == 1)).all())
    assert seen[0].shape[0] == x.shape[0]                  # the analog layer ran once, not T times
    with torch.no_grad():
        unfolded = convert(ann, "qcfs", timesteps=4, fold_values=False)
        torch.testing.assert_close(unfolded(x), snn(x), rtol=1e-5, atol=1e-5)


def test_qcfs_method_needs_qcfs_activations(blobs) -> None:
    ann = build_ann({"name": "mlp", "activation": "relu", "hidden": [8]}, (8,), 3).eval()
    with pytest.raises(ValueError, match="needs an ANN trained with QCFS"):
        convert(ann, "qcfs")
    with pytest.raises(ValueError, match="calibration"):
        convert(ann, "threshold_balancing")


def test_residual_network_converts() -> None:
    torch.manual_seed(0)
    ann = build_ann({"name": "resnet18", "activation": "qcfs", "width": 4, "levels": 4},
                    (3, 8, 8), 5).eval()
    snn = convert(ann, "qcfs", timesteps=4)
    neurons = snn.neurons()
    assert len(neurons) == 17                              # stem + 2 per block x 8 blocks
    assert all(isinstance(m, ConvertedNeuron) for m in neurons.values())
    with torch.no_grad():
        assert snn(torch.rand(2, 3, 8, 8)).shape == (2, 5)


def test_torchvision_layout_keys() -> None:
    ann = build_ann({"name": "resnet18", "activation": "relu", "stem": "imagenet"}, (3, 32, 32), 10)
    keys = set(ann.state_dict())
    for k in ("conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight",
              "layer2.0.downsample.0.weight", "layer2.0.downsample.1.weight",
              "layer4.1.bn2.bias", "fc.weight", "fc.bias"):
        assert k in keys
    assert not any(k.startswith("noise") for k in keys)


def test_calibration_never_lowers_accuracy(blobs) -> None:
    x, y = blobs
    ann = _trained(build_ann({"name": "mlp", "activation": "relu", "hidden": [32, 32]},
                             (8,), 3), x, y)
    snn = convert(ann, "threshold_balancing", calibration=x, timesteps=2)
    before = snn_accuracy(snn, x, y, 2)
    report = calibrate_biases(snn, ann, x, y, timesteps=2)
    assert report.accuracy_before == before
    assert snn_accuracy(snn, x, y, 2) >= before
    assert report.accuracy_after >= report.accuracy_before


def test_hseo_is_reproducible_and_never_worse(blobs) -> None:
    x, y = blobs
    ann = _trained(build_ann({"name": "mlp", "activation": "relu", "hidden": [16]}, (8,), 3),
                   x, y)
    results = []
    for _ in range(2):
        snn = convert(ann, "threshold_balancing", calibration=x, timesteps=2)
        r = hseo(snn, x, y, timesteps=2, population_size=4, generations=2, seed=3)
        results.append((r.accuracy_after, r.best, [float(m.v_th) for m in snn.neurons().values()]))
        assert r.accuracy_after >= r.accuracy_before
        assert len(r.generations) == 2
    assert results[0] == results[1]
