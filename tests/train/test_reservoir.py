"""Liquid state machine: connectivity (Dale's law, seeds, topography), readouts, STDP shaping."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from snn5.core import plasticity as P
from snn5.data.base import ArrayDataset, SplitData
from snn5.data.digits import load_digits
from snn5.models.reservoir import LiquidStateMachine, ReservoirConfig
from snn5.train.plasticity.reservoir import (
    FeatureScaler, ReservoirFitConfig, calibrate_input_gain, fit_readout, fit_reservoir,
    liquid_features, stdp_shape,
)
from snn5.train.plasticity.rules import STDP


def _lsm(**kw) -> LiquidStateMachine:
    shape = kw.pop("input_shape", (2, 16))
    return LiquidStateMachine(ReservoirConfig(**{"n_neurons": 200, **kw}), shape)


@pytest.fixture(scope="module")
def digit_rows() -> SplitData:
    """scikit-learn digits as sequences: 8 rows (time) of 8 pixels, per-step input (1, 8)."""
    d = load_digits()

    def rows(ds: ArrayDataset) -> ArrayDataset:
        return ArrayDataset(ds.x.reshape(-1, 8, 1, 8), ds.y)        # [N, T=8, 1, 8]

    return SplitData(name="digit_rows", train=rows(d.train), val=rows(d.val),
                     test=rows(d.test), input_shape=(8, 1, 8), num_classes=10,
                     checksum=d.checksum, description="digits as rows")


# ----------------------------------------------------------------------------- connectivity

def test_dale_law_and_connection_statistics():
    lsm = _lsm(seed=3)
    w, n_exc = lsm.w_rec.detach(), lsm.n_exc
    assert n_exc == 160 and lsm.signs.tolist() == [1.0] * 160 + [-1.0] * 40
    assert P.dale_violations(w, lsm.signs) == 0
    assert bool((w[:, :n_exc] >= 0).all()) and bool((w[:, n_exc:] <= 0).all())
    assert bool((w.diagonal() == 0).all())                          # no self-connections
    assert torch.equal(lsm.mask, w != 0)
    ee = w[:n_exc, :n_exc]
    density = float((ee != 0).sum()) / (n_exc * (n_exc - 1))
    assert density == pytest.approx(0.09, abs=0.01)                 # p_ee
    assert float(ee[ee != 0].mean()) == pytest.approx(1.0, abs=0.05)  # w_ee
    ie = w[:n_exc, n_exc:]                                          # I -> E
    assert float((ie != 0).float().mean()) == pytest.approx(0.12, abs=0.02)
    assert float(ie[ie != 0].mean()) == pytest.approx(-2.0, abs=0.2)
    assert bool((lsm.w_in >= 0).all())
    assert float((lsm.w_in != 0).float().mean()) == pytest.approx(0.1, abs=0.02)


def test_same_seed_same_liquid_and_features():
    x = (torch.rand(20, 3, 2, 16) < 0.2).float()                    # [T, B, 2, 16]
    a, b, c = _lsm(seed=7), _lsm(seed=7), _lsm(seed=8)
    assert torch.equal(a.w_rec, b.w_rec) and torch.equal(a.w_in, b.w_in)
    assert not torch.equal(a.w_rec, c.w_rec)
    fa, _ = a(x)
    fb, _ = b(x)
    assert fa.shape == (3, 10 * 200) and torch.equal(fa, fb)
    assert float(fa.sum()) > 0


def test_topographic_input_draws_from_a_neighbourhood():
    lsm = _lsm(input_shape=(2, 20, 20), input_sigma=1.5, input_p=0.9, seed=1)
    w = lsm.w_in.detach().reshape(200, 2, 20, 20).sum(1)            # [N, H, W]
    ys, xs = torch.meshgrid(torch.arange(20.0), torch.arange(20.0), indexing="ij")
    spreads = []
    for row in w:
        on = row > 0
        if int(on.sum()) >= 3:
            spreads.append(float(torch.stack([ys[on], xs[on]]).std(1).mean()))
    assert len(spreads) > 150
    assert np.median(spreads) < 2.5                                 # uniform inputs: ~5.8 px


def test_distance_dependent_connectivity_and_spectral_radius():
    cfg = dict(n_neurons=100, grid=(5, 4, 5), lambda_=1.5, p_ee=0.9, p_ei=0.9, p_ie=0.9,
               p_ii=0.9, seed=0)
    local = LiquidStateMachine(ReservoirConfig(**cfg), (4,))
    flat = LiquidStateMachine(ReservoirConfig(**{**cfg, "lambda_": None, "grid": None,
                                                 "p_ee": 0.1, "p_ei": 0.1, "p_ie": 0.1,
                                                 "p_ii": 0.1}), (4,))
    # neighbours connect: the local liquid has far fewer connections than 0.9 of all pairs
    assert float(local.mask.float().mean()) < 0.3
    scaled = LiquidStateMachine(ReservoirConfig(**{**cfg, "spectral_radius": 0.9}), (4,))
    radius = float(torch.linalg.eigvals(scaled.w_rec.detach().double()).abs().max())
    assert radius == pytest.approx(0.9, rel=1e-4)
    assert P.dale_violations(scaled.w_rec, scaled.signs) == 0
    assert flat.mask.any()


def test_config_and_input_errors_name_the_fix():
    with pytest.raises(ValidationError, match=r"tau_mem must exceed dt.*30e-3"):
        ReservoirConfig(tau_mem=1e-3, dt=2e-3)
    with pytest.raises(ValidationError, match="whole multiple of dt"):
        ReservoirConfig(dt=2e-3, input_dt=5e-3)
    with pytest.raises(ValidationError, match=r"lambda_ needs a grid"):
        ReservoirConfig(lambda_=2.0)
    with pytest.raises(ValidationError, match=r"grid \(2, 2, 2\) holds 8 neurons"):
        ReservoirConfig(n_neurons=10, grid=(2, 2, 2))
    with pytest.raises(ValidationError, match="n_neurons"):
        ReservoirConfig(n_neurons=0)
    lsm = _lsm(bins=4)
    with pytest.raises(ValueError, match=r"x\.transpose\(0, 1\)"):
        lsm(torch.zeros(3, 5, 16))
    with pytest.raises(ValueError, match="cannot fill bins=4"):
        lsm(torch.zeros(3, 5, 2, 16))
    with pytest.raises(ValueError, match=r"input_sigma needs a per-step input shape"):
        _lsm(input_shape=(16,), input_sigma=2.0)
    with pytest.raises(TypeError, match="ReservoirConfig"):
        LiquidStateMachine({"n_neurons": 10}, (2,))


# ----------------------------------------------------------------------------- readouts

def test_readout_beats_chance_on_digit_rows(digit_rows):
    lsm = LiquidStateMachine(ReservoirConfig(n_neurons=150, dt=1e-3, input_dt=5e-3, bins=4,
                                             input_p=0.3, input_weight=3.0, seed=0), (1, 8))
    fit = fit_reservoir(lsm, digit_rows, ReservoirFitConfig(ridge_alphas=(10.0, 100.0),
                                                            logistic_cs=(0.1,)))
    assert fit.num_features == 600 and fit.firing_rate_hz > 1
    for kind in ("ridge", "logistic"):
        assert fit.test_accuracy[kind] > 0.6, fit.test_accuracy      # chance: 0.1
        assert 0 <= fit.val_accuracy[kind] <= 1
    assert fit.chosen_reg["logistic"] == 0.1
    f_test, _ = liquid_features(lsm, digit_rows.test.x)
    assert fit.readouts["ridge"].accuracy(f_test, digit_rows.test.y) == fit.test_accuracy["ridge"]


def test_ridge_dual_equals_primal_normal_equations():
    torch.manual_seed(0)
    for n, f in ((40, 12), (12, 40)):                                # primal, then dual
        x = torch.randn(n, f, dtype=torch.float64)
        y = torch.arange(n) % 3
        readout = fit_readout(x, y, 3, kind="ridge", reg=0.7)
        a = readout.scaler(x)
        a_c = a - a.mean(0)
        t = torch.nn.functional.one_hot(y, 3).double()
        t_c = t - t.mean(0)
        w = torch.linalg.solve(a_c.T @ a_c + 0.7 * torch.eye(f, dtype=torch.float64), a_c.T @ t_c)
        assert torch.allclose(readout.weight, w.T, atol=1e-8)
        assert torch.allclose(readout.scores(x).mean(0), t.mean(0), atol=1e-8)


def test_feature_scaler_does_not_blow_up_rare_features():
    f = torch.zeros(100, 3)
    f[:, 0] = torch.arange(100.0) % 7                                # an ordinary feature
    f[0, 1] = 1e-6                                                   # a neuron that fired once
    scaled = FeatureScaler.fit(f)(f)
    assert float(scaled[:, 1].abs().max()) < 1e-3                    # stays negligible
    assert float(scaled[:, 0].std()) > 0.3
    assert torch.equal(scaled[:, 2], torch.zeros(100, dtype=torch.float64))


def test_readout_and_fit_errors_are_named(digit_rows):
    f, y = torch.randn(10, 4), torch.arange(10) % 2
    with pytest.raises(ValueError, match=r"features \[N, F\] and labels \[N\]"):
        fit_readout(f, y[:5], 2, kind="ridge", reg=1.0)
    with pytest.raises(ValueError, match=r"labels must be int64 in 0\.\.1"):
        fit_readout(f, y + 1, 2, kind="ridge", reg=1.0)
    with pytest.raises(ValueError, match="reg must be a positive number"):
        fit_readout(f, y, 2, kind="ridge", reg=0.0)
    with pytest.raises(ValueError, match="unknown readoutkind 'lasso'; valid: ridge, logistic"):
        fit_readout(f, y, 2, kind="lasso", reg=1.0)
    with pytest.raises(ValueError, match="NaN or Inf"):
        fit_readout(f.masked_fill(f > 1, float("nan")), y, 2, kind="ridge", reg=1.0)
    readout = fit_readout(f, y, 2, kind="ridge", reg=1.0)
    with pytest.raises(ValueError, match=r"expected features \[N, 4\]"):
        readout.predict(torch.randn(3, 5))
    lsm = _lsm()
    with pytest.raises(ValueError, match=r"input_shape=data\.input_shape\[1:\]"):
        fit_reservoir(lsm, digit_rows)
    with pytest.raises(TypeError, match="SplitData"):
        fit_reservoir(lsm, digit_rows.train)
    with pytest.raises(TypeError, match="LiquidStateMachine"):
        liquid_features(torch.nn.Linear(2, 2), torch.zeros(1, 1, 2))
    with pytest.raises(ValueError, match=r"samples \[N, T, \*\(2, 16\)\]"):
        liquid_features(lsm, torch.zeros(4, 2, 16))
    with pytest.raises(ValueError, match="ridge_alphas must be a non-empty list"):
        ReservoirFitConfig(ridge_alphas=())


# ----------------------------------------------------------------------------- shaping

def test_stdp_shaping_keeps_dale_law_and_the_synapses():
    torch.manual_seed(0)
    lsm = _lsm(n_neurons=60, dt=1e-3, input_weight=4.0, seed=2)
    x = (torch.rand(8, 30, 2, 16) < 0.3).float()                     # [N, T, 2, 16]
    w0, in0, mask0, in_mask0 = (lsm.w_rec.detach().clone(), lsm.w_in.detach().clone(),
                                lsm.mask.clone(), lsm.w_in.detach() != 0)
    rule = STDP(a_plus=0.02, a_minus=0.021, w_max=3.0)
    stats = stdp_shape(lsm, x, rule=rule, inputs=True, batch_size=4, epochs=2)
    w, n_exc = lsm.w_rec.detach(), lsm.n_exc
    assert stats.batches == 4 and stats.rate_hz > 0
    assert stats.rel_change_rec > 1e-3 and stats.rel_change_in > 1e-3
    assert not torch.equal(w[:, :n_exc], w0[:, :n_exc])              # E synapses learned
    assert torch.equal(w[:, n_exc:], w0[:, n_exc:])                  # I synapses fixed
    assert P.dale_violations(w, lsm.signs) == 0
    assert not bool(((w != 0) & ~mask0).any())                       # no new synapses
    assert float(w[:, :n_exc].max()) <= 3.0 and float(lsm.w_in.max()) <= 3.0
    assert not bool(((lsm.w_in != 0) & ~in_mask0).any())
    assert not torch.equal(lsm.w_in, in0)
    with pytest.raises(ValueError, match="nothing to shape"):
        stdp_shape(lsm, x, recurrent=False)


def test_calibrate_input_gain_reaches_the_target_rate():
    torch.manual_seed(0)
    lsm = _lsm(n_neurons=80, dt=1e-3, input_weight=1.0, seed=4)
    x = (torch.rand(16, 50, 2, 16) < 0.2).float()
    gain = calibrate_input_gain(lsm, x, target_rate=40.0)
    _, rate = liquid_features(lsm, x)
    assert rate == pytest.approx(40.0, rel=0.25) and gain > 0
    with pytest.raises(ValueError, match="target_rate must be a positive rate in Hz"):
        calibrate_input_gain(lsm, x, target_rate=-1.0)
