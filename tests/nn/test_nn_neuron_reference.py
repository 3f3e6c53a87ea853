"""Every registered neuron against an independent float64 re-implementation of its equations.

The reference below is written from the documented equations (snn5.core.neurons docstrings), in
plain torch with a straight-through spike ``H(u) + P(u) - stop_grad(P(u))``: its forward is the
Heaviside step and its backward is the derivative of the surrogate primitive ``P`` (in ``u`` and
in a learnable width). Autograd through it gives the BPTT gradients the library must produce,
for the input and for every parameter, with every reset mode and ``detach_reset``.
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from snn5.core import Reset, Triangle
from snn5.nn import NEURONS

NAMES = NEURONS.names()
T, B, F = 15, 3, 4


def st_spike(u: torch.Tensor, m) -> torch.Tensor:
    """Heaviside forward, d primitive / d(u, width) backward."""
    w = m.surrogate_width()
    p = m.surrogate.primitive(u, None if w is None else w.double())
    return (u >= 0).double() + (p - p.detach())


def threshold(m) -> float | torch.Tensor:
    return m.v_th.double() if isinstance(m.v_th, torch.Tensor) else m.v_th


def after_reset(v, z, th, m):
    z = z.detach() if m.detach_reset else z
    if m.reset is Reset.SUBTRACT:
        return v - z * th                  # soft reset: keep the residue above threshold
    if m.reset is Reset.ZERO:
        return v - z * v                   # hard reset to 0
    return v


def ref_if(m, x):
    v, out = torch.zeros_like(x[0]), []
    for xt in x:
        v = v + xt
        z = st_spike(v - threshold(m), m)
        v = after_reset(v, z, threshold(m), m)
        out.append(z)
    return torch.stack(out), (v,)


def ref_leaky(m, x, beta, spiking=True):
    v, out = torch.zeros_like(x[0]), []
    for xt in x:
        v = beta * v + (1 - beta) * xt
        if spiking:
            z = st_spike(v - threshold(m), m)
            v = after_reset(v, z, threshold(m), m)
            out.append(z)
        else:
            out.append(v)
    return torch.stack(out), (v,)


def ref_lif(m, x):
    return ref_leaky(m, x, math.exp(-m.dt / m.tau_mem))


def ref_plif(m, x):
    tau = m.dt * (1 + torch.exp(-m.tau_raw.double()))     # dt / sigmoid(raw)
    return ref_leaky(m, x, torch.exp(-m.dt / tau))


def ref_li(m, x):
    return ref_leaky(m, x, math.exp(-m.dt / m.tau_mem), spiking=False)


def ref_alif(m, x):
    beta, rho = math.exp(-m.dt / m.tau_mem), math.exp(-m.dt / m.tau_adapt)
    v, a, out = torch.zeros_like(x[0]), torch.zeros_like(x[0]), []
    for xt in x:
        v = beta * v + (1 - beta) * xt
        A = threshold(m) + m.beta_adapt * a                # adaptive threshold
        z = st_spike(v - A, m)
        v = after_reset(v, z, A, m)
        a = rho * a + (1 - rho) * z
        out.append(z)
    return torch.stack(out), (v, a)


def ref_glif(m, x):
    # Yao et al. 2022 (SpikingJelly GatedLIFNode): the reset of S[t-1] is applied at step t
    sig = lambda p: 1 / (1 + torch.exp(-p.double()))                     # noqa: E731
    lam, alpha, beta, gamma = (sig(m.tau_raw), sig(m.leak_gate), sig(m.integ_gate),
                               sig(m.reset_gate))
    e_l, v_r, g = sig(m.linear_leak), sig(m.reset_potential), sig(m.conductance)
    u, s, out = torch.zeros_like(x[0]), torch.zeros_like(x[0]), []
    for xt in x:
        sr = s.detach() if m.detach_reset else s
        k = 1 - alpha * (1 - lam)
        if m.reset is Reset.SUBTRACT:                      # gated: hard (gamma) | soft by V_R
            reset = k * u * gamma * sr + (1 - gamma) * v_r * sr
        elif m.reset is Reset.ZERO:
            reset = k * u * sr
        else:
            reset = 0.0
        u = k * u - (1 - alpha) * e_l + xt * (1 - beta * (1 - g)) - reset
        s = st_spike(u - threshold(m), m)
        out.append(s)
    return torch.stack(out), (u, s)


def ref_tc_lif(m, x):
    # Zhang et al. 2024 (ZhangShimin1/TC-LIF, TCLIFNode)
    beta1 = -1 / (1 + torch.exp(-m.coupling_sd_raw.double()))
    beta2 = 1 / (1 + torch.exp(-m.coupling_ds_raw.double()))
    vd, vs, out = torch.zeros_like(x[0]), torch.zeros_like(x[0]), []
    for xt in x:
        vd = vd + beta1 * vs + xt                          # dendrite
        vs = vs + beta2 * vd                               # soma
        z = st_spike(vs - threshold(m), m)
        vs = after_reset(vs, z, threshold(m), m)
        if m.reset is Reset.SUBTRACT:                      # the hard reset leaves the dendrite
            vd = vd - m.dendrite_reset * (z.detach() if m.detach_reset else z)
        out.append(z)
    return torch.stack(out), (vd, vs)


def ref_el_lif(m, x):
    # Xu et al. 2024 (MengtingXu1203/FEEL_SNN, LIFSpikeTau): one learned leak per time step
    v, out = torch.zeros_like(x[0]), []
    n = m.leak.shape[0]
    for t, xt in enumerate(x):
        v = m.leak[min(t, n - 1)].double() * v + xt
        z = st_spike(v - threshold(m), m)
        v = after_reset(v, z, threshold(m), m)
        out.append(z)
    return torch.stack(out), (v, torch.full_like(v, float(min(len(x), n - 1))))


def ref_int_lif(m, x):
    beta = math.exp(-m.dt / m.tau_mem)
    v, out = torch.zeros_like(x[0]), []
    for xt in x:
        v = beta * v + (1 - beta) * xt
        levels = [st_spike(v - (k - 0.5) * threshold(m), m) for k in range(1, m.max_spike + 1)]
        z = sum(levels)                                    # integer spike in 0..D
        if m.reset is Reset.ZERO:                          # emptied by any spike
            v = after_reset(v, levels[0], threshold(m), m)
        else:
            v = after_reset(v, z, threshold(m), m)
        out.append(z)
    return torch.stack(out), (v,)


def ref_refractory_lif(m, x):
    beta, rho = math.exp(-m.dt / m.tau_mem), math.exp(-m.dt / m.tau_adapt)
    v, a, ref = (torch.zeros_like(x[0]) for _ in range(3))
    out = []
    for xt in x:
        v = beta * v + (1 - beta) * xt
        z = st_spike(v - threshold(m), m) * (ref <= 0).double()        # silent while refractory
        v = after_reset(v, z, threshold(m), m)
        a = rho * a + (1 - rho) * z.detach()
        steps = torch.ceil(m.t_ref / m.dt * (1 + m.ref_gain * a.float()) * (1 - 1e-6)).double()
        ref = torch.where(z.detach() > 0, steps, (ref - 1).clamp_min(0))
        out.append(z)
    return torch.stack(out), (v, a, ref)


REFERENCE = {"if": ref_if, "lif": ref_lif, "plif": ref_plif, "alif": ref_alif, "li": ref_li,
             "glif": ref_glif, "tc_lif": ref_tc_lif, "el_lif": ref_el_lif,
             "int_lif": ref_int_lif, "refractory_lif": ref_refractory_lif}


def test_every_registered_neuron_has_a_reference() -> None:
    missing = set(NAMES) - set(REFERENCE)
    assert not missing, f"write the float64 reference of {missing} in this file"


CASES = [(n, r, d, learn) for n in NAMES if NEURONS.get(n).spiking
         for r in Reset for d in (False, True) for learn in (False, True)]
CASES += [(n, None, False, False) for n in NAMES if not NEURONS.get(n).spiking]


def build(name: str, reset: Reset | None, detach: bool, learn: bool):
    cls = NEURONS.get(name)
    kw = {"tau_mem": 6e-3} if "tau_mem" in inspect.signature(cls.__init__).parameters else {}
    if cls.spiking:
        kw.update(reset=reset, detach_reset=detach, learn_v_th=learn, v_th=0.9,
                  surrogate=Triangle(width=0.8, learnable=learn))
    m = cls(**kw)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return m


@pytest.mark.parametrize("name, reset, detach, learn", CASES)
def test_forward_and_bptt_gradients_match_reference(name, reset, detach, learn) -> None:
    m = build(name, reset, detach, learn)
    x = (torch.rand(T, B, F, dtype=torch.float64) * 4 - 0.5).requires_grad_(True)
    w_out = torch.randn(T, B, F, dtype=torch.float64)
    w_state = torch.randn(B, F, dtype=torch.float64)

    out, state = m(x)
    out_ref, state_ref = REFERENCE[name](m, x)
    assert out.dtype == torch.float64
    if m.spiking:
        assert torch.equal(out, out_ref) and 0 < (out > 0).sum() < out.numel()
    # PLIF derives its decay from the float32 parameter in float32 (about 1e-7 relative)
    tight = {"rtol": 1e-6, "atol": 1e-6} if name == "plif" else {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(out, out_ref, **tight)
    for s, s_ref in zip(state, state_ref, strict=True):
        torch.testing.assert_close(s, s_ref, **tight)

    def grads(o, s):
        loss = (o * w_out).sum() + sum((t * w_state).sum() for t in s)
        params = [x, *m.parameters()]
        return torch.autograd.grad(loss, params, allow_unused=True)

    got, ref = grads(out, state), grads(out_ref, state_ref)
    names = ["input", *(n for n, _ in m.named_parameters())]
    # GLIF's reset gate and V_R act only in its gated (SUBTRACT) reset
    unused = ({"reset_gate", "reset_potential"}
              if name == "glif" and m.reset is not Reset.SUBTRACT else set())
    for n, g, r in zip(names, got, ref, strict=True):
        if n in unused:
            assert g is None and r is None, n
            continue
        assert g is not None and r is not None, n
        scale = r.abs().max().item()
        torch.testing.assert_close(g.double(), r.double(), rtol=1e-4, atol=1e-5 * max(scale, 1.0),
                                   msg=lambda s, n=n: f"gradient of {n}: {s}")
    # detach_reset must change the gradient when the reset depends on the spike
    if m.spiking and not detach and m.reset is not Reset.NONE:
        m2 = build(name, reset, True, learn)
        m2.load_state_dict(m.state_dict())
        out2, state2 = m2(x)
        g2 = grads(out2, state2)[0]
        assert not torch.allclose(g2, got[0])
