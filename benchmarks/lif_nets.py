"""The benchmark network, built once per implementation with the same weights and semantics.

Network (time-major, x: [T, B, N] Bernoulli(0.2) spikes):

    x -> Linear(N, N) -> LIF -> Linear(N, N) -> LIF -> spikes [T, B, N]

Matched LIF semantics (every implementation below realises exactly this forward):

    h[t] = v[t-1] + (I[t] - v[t-1]) / tau      tau = 2 steps (decay 0.5)
    s[t] = H(h[t] - 1)                         threshold 1
    v[t] = h[t] * (1 - s[t])                   hard reset to 0, gradient through the reset
    dH/dx ~ alpha * sigmoid(alpha x) * (1 - sigmoid(alpha x)),  alpha = 4

Weights ~ N(0, (4 / sqrt(N))^2), bias 0, drawn from one seeded generator for every
implementation. An implementation is an ``nn.Module`` whose ``forward(x)`` returns the output
spikes; ``body`` is the part that ``torch.compile`` wraps (hidden-state resets stay outside).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

TAU_STEPS = 2.0           # membrane time constant in steps (decay 0.5)
V_TH = 1.0
ALPHA = 4.0               # sigmoid surrogate steepness
INPUT_RATE = 0.2
WEIGHT_GAIN = 4.0         # weights ~ N(0, (WEIGHT_GAIN / sqrt(N))^2)
SNN5_DT = 1e-3            # snn5 parameters are physical: tau_mem = dt / ln 2 gives decay 0.5
SNN5_TAU = SNN5_DT / math.log(2)

SEMANTICS = ("x[T,B,N] -> Linear(N,N) -> LIF -> Linear(N,N) -> LIF; "
             "h = v + (I - v)/tau, tau = 2 steps; s = H(h - 1); hard reset v = h(1 - s) "
             "(gradient through the reset); sigmoid surrogate alpha = 4; "
             "weights N(0, (4/sqrt N)^2), bias 0; input Bernoulli(0.2)")


def make_weights(n: int, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    std = WEIGHT_GAIN / math.sqrt(n)
    return torch.randn(n, n, generator=g) * std, torch.randn(n, n, generator=g) * std


def make_input(t: int, b: int, n: int, seed: int, device: torch.device) -> Tensor:
    g = torch.Generator().manual_seed(seed + 1)
    return (torch.rand(t, b, n, generator=g) < INPUT_RATE).float().to(device)   # [T, B, N]


def _linear(w: Tensor, device: torch.device, scale: float = 1.0) -> nn.Linear:
    lin = nn.Linear(w.shape[1], w.shape[0], device=device)
    with torch.no_grad():
        lin.weight.copy_(w * scale)
        lin.bias.zero_()
    return lin


class Unavailable(Exception):
    """This implementation cannot run here (library missing, backend for another device)."""


@dataclass
class Built:
    net: nn.Module                # forward(x [T, B, N]) -> output [T, B, N]
    linears: tuple[nn.Linear, nn.Linear]
    weight_scale: float = 1.0     # weights stored as scale * W (d loss / d W = scale * grad)
    note: str = ""


class Wrapped(nn.Module):
    """``forward(x) = body(x)``, optionally taking the first item of a tuple result and running
    a state reset before the call (for libraries that keep hidden state in their modules)."""

    def __init__(self, body: nn.Module, *, tuple_out: bool = False,
                 before: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.body = body
        self.tuple_out = tuple_out
        self.before = before

    def forward(self, x: Tensor) -> Tensor:
        if self.before is not None:
            self.before()
        out = self.body(x)
        return out[0] if self.tuple_out else out


# ----------------------------------------------------------------------------- references

def build_floor(w1, w2, device) -> Built:
    """The hardware floor: the same two Linear layers, identity instead of the neurons."""
    l1, l2 = _linear(w1, device), _linear(w2, device)
    return Built(Wrapped(nn.Sequential(l1, l2)), (l1, l2), note="Linear -> Linear, no neuron")


class SigmoidSpike(torch.autograd.Function):
    """Heaviside forward (x >= 0), sigmoid-surrogate backward."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(ALPHA * x)
        return grad * ALPHA * s * (1.0 - s)


class NaiveLIF(nn.Module):
    """The plain PyTorch loop: iterate the steps with ``unbind`` (not ``x[t]``)."""

    def __init__(self, detach_reset: bool = False) -> None:
        super().__init__()
        self.detach_reset = detach_reset

    def forward(self, cur: Tensor) -> Tensor:         # cur: [T, B, N]
        v = cur.new_zeros(cur.shape[1:])              # [B, N]
        out = []
        for i in cur.unbind(0):
            h = v + (i - v) / TAU_STEPS
            s = SigmoidSpike.apply(h - V_TH)
            v = h * (1.0 - (s.detach() if self.detach_reset else s))
            out.append(s)
        return torch.stack(out)                       # [T, B, N]


def build_naive(w1, w2, device, detach_reset: bool = False) -> Built:
    l1, l2 = _linear(w1, device), _linear(w2, device)
    body = nn.Sequential(l1, NaiveLIF(detach_reset), l2, NaiveLIF(detach_reset))
    return Built(Wrapped(body), (l1, l2), note="plain PyTorch loop, custom autograd.Function"
                 + (", reset detached" if detach_reset else ""))


# ----------------------------------------------------------------------------- snn5

def _snn5_builder(backend: str) -> Callable:
    def build(w1, w2, device) -> Built:
        needs = {"cpu": "cpu", "triton": "cuda"}.get(backend)
        if needs is not None and device.type != needs:
            raise Unavailable(f"snn5 backend={backend!r} runs on {needs}, not {device.type}")
        import snn5
        from snn5.core import decay
        from snn5.kernels import kernel_error, load_cpu_kernels, triton_available

        if backend == "cpu" and load_cpu_kernels() is None:
            raise Unavailable(f"snn5 CPU kernels not built: {kernel_error('cpu')}")
        if backend == "triton" and not triton_available():
            raise Unavailable("snn5 backend='triton' needs CUDA and the triton package")

        if decay(SNN5_TAU, SNN5_DT) != 0.5:
            raise RuntimeError(f"snn5 decay is {decay(SNN5_TAU, SNN5_DT)!r}, not exactly 0.5")

        def lif() -> nn.Module:
            return snn5.LIF(tau_mem=SNN5_TAU, dt=SNN5_DT, v_th=V_TH, reset=snn5.Reset.ZERO,
                            surrogate=snn5.Sigmoid(alpha=ALPHA), backend=backend)

        # As snn5's model families build it: the spike-fed second layer is an EventLinear
        # (nn.Linear's math; in training it keeps its spike input as bits, under no_grad it
        # takes the event-driven path at low input rates).
        l1 = _linear(w1, device)
        l2 = snn5.nn.EventLinear(w2.shape[1], w2.shape[0], device=device)
        with torch.no_grad():
            l2.weight.copy_(w2)
            l2.bias.zero_()
        body = snn5.Sequential(l1, lif(), l2, lif())          # returns (spikes, states)
        return Built(Wrapped(body, tuple_out=True), (l1, l2),
                     note=f"snn5.LIF(tau_mem=dt/ln2, dt=1e-3, reset=ZERO, Sigmoid(4), "
                          f"backend={backend!r}); second Linear is snn5.nn.EventLinear")
    return build


# ----------------------------------------------------------------------------- peers

def build_spikingjelly(w1, w2, device) -> Built:
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    def lif() -> nn.Module:
        return neuron.LIFNode(tau=TAU_STEPS, decay_input=True, v_threshold=V_TH, v_reset=0.0,
                              surrogate_function=surrogate.Sigmoid(alpha=ALPHA),
                              detach_reset=False, step_mode="m")

    l1 = layer.Linear(w1.shape[1], w1.shape[0], step_mode="m").to(device)
    l2 = layer.Linear(w2.shape[1], w2.shape[0], step_mode="m").to(device)
    for lin, w in ((l1, w1), (l2, w2)):
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.zero_()
    body = nn.Sequential(l1, lif(), l2, lif())
    return Built(Wrapped(body, before=lambda: functional.reset_net(body)), (l1, l2),
                 note="LIFNode(tau=2, v_reset=0, Sigmoid(alpha=4), detach_reset=False, "
                      "step_mode='m'), layer.Linear(step_mode='m'); reset_net before each call")


class SnnTorchLayer(nn.Module):
    """snnTorch's ``Leaky`` driven layer-wise: one Linear over all steps, then the neuron per
    step with its membrane passed explicitly (so no state leaks between calls)."""

    def __init__(self, lin: nn.Linear) -> None:
        super().__init__()
        import snntorch
        from snntorch import surrogate

        self.lin = lin
        self.lif = snntorch.Leaky(beta=1.0 - 1.0 / TAU_STEPS, threshold=V_TH,
                                  spike_grad=surrogate.sigmoid(slope=ALPHA),
                                  reset_mechanism="zero")

    def forward(self, x: Tensor) -> Tensor:           # x: [T, B, N]
        cur = self.lin(x)                             # [T, B, N]
        mem = cur.new_zeros(cur.shape[1:])            # [B, N]
        out = []
        for c in cur.unbind(0):
            s, mem = self.lif(c, mem)
            out.append(s)
        return torch.stack(out)


def build_snntorch(w1, w2, device) -> Built:
    # Leaky integrates mem = beta mem + I (no 1/tau on the input): the weights carry it.
    scale = 1.0 / TAU_STEPS
    l1, l2 = _linear(w1, device, scale), _linear(w2, device, scale)
    body = nn.Sequential(SnnTorchLayer(l1), SnnTorchLayer(l2))
    return Built(Wrapped(body), (l1, l2), weight_scale=scale,
                 note="Leaky(beta=0.5, threshold=1, reset_mechanism='zero', sigmoid(slope=4)), "
                      "layer-wise; weights pre-scaled by 0.5; snnTorch detaches the reset")


def build_norse(w1, w2, device) -> Built:
    from norse.torch import SequentialState
    from norse.torch.functional.lif_box import (
        LIFBoxFeedForwardState, LIFBoxParameters, lif_box_feed_forward_step,
    )
    from norse.torch.module.snn import SNN

    def t(v: float) -> Tensor:
        return torch.as_tensor(v, device=device)

    # dt * tau_mem_inv = 1/tau: dv = (I + v_leak - v) / 2. Norse has no sigmoid surrogate;
    # its "tanh" one with k = alpha/2 is the same function: 1 - tanh(2x)^2 = 4 s(4x)(1 - s(4x)).
    p = LIFBoxParameters(tau_mem_inv=t(1.0 / TAU_STEPS), v_leak=t(0.0), v_th=t(V_TH),
                         v_reset=t(0.0), method="tanh", alpha=ALPHA / 2)

    def initial(x: Tensor) -> LIFBoxFeedForwardState:      # x: [T, B, N]
        return LIFBoxFeedForwardState(v=x.new_zeros(x.shape[1:]))

    def lif() -> nn.Module:
        return SNN(lif_box_feed_forward_step, initial, p, dt=1.0)

    l1, l2 = _linear(w1, device), _linear(w2, device)
    body = SequentialState(l1, lif(), l2, lif())               # returns (spikes, states)
    return Built(Wrapped(body, tuple_out=True), (l1, l2),
                 note="lif_box_feed_forward_step (dt*tau_mem_inv=0.5, v_reset=0, v_th=1, "
                      "tanh surrogate k=2 == sigmoid alpha=4) in norse SNN time loop, "
                      "SequentialState")


# ----------------------------------------------------------------------------- registry

BUILDERS: dict[str, Callable] = {
    "floor": build_floor,
    "naive": build_naive,
    "snn5_reference": _snn5_builder("reference"),
    "snn5_cpu": _snn5_builder("cpu"),
    "snn5_triton": _snn5_builder("triton"),
    "spikingjelly": build_spikingjelly,
    "snntorch": build_snntorch,
    "norse": build_norse,
    # the naive loop with snnTorch's gradient (reset detached): explains snnTorch in --check
    "naive_detach": lambda w1, w2, device: build_naive(w1, w2, device, detach_reset=True),
}
COMPILE_SUFFIX = "+compile"
# compiled by --compile: the naive loop, SpikingJelly and snn5's fused backend
COMPILED_BY_DEFAULT = ("naive", "spikingjelly", "snn5_cpu", "snn5_triton")


def default_impls(device: str, compile_: bool) -> list[str]:
    fused = "snn5_triton" if device == "cuda" else "snn5_cpu"
    names = ["floor", "naive", "snn5_reference", fused, "spikingjelly", "snntorch", "norse"]
    if compile_:
        names += [n + COMPILE_SUFFIX for n in names if n in COMPILED_BY_DEFAULT]
    return names


def parse_impl(name: str) -> tuple[str, bool]:
    """``"naive+compile"`` -> ``("naive", True)``; unknown names raise with the valid list."""
    base, compiled = (name[: -len(COMPILE_SUFFIX)], True) if name.endswith(COMPILE_SUFFIX) \
        else (name, False)
    if base not in BUILDERS:
        raise ValueError(f"unknown implementation {name!r}; valid: {', '.join(BUILDERS)} "
                         f"(each optionally with the suffix {COMPILE_SUFFIX!r})")
    return base, compiled


def build(name: str, n: int, seed: int, device: torch.device) -> Built:
    """Build implementation ``name`` (``+compile`` wraps its body in ``torch.compile``)."""
    base, compiled = parse_impl(name)
    w1, w2 = make_weights(n, seed)
    try:
        built = BUILDERS[base](w1, w2, device)
    except ImportError as exc:
        raise Unavailable(f"{base} is not installed ({exc}); run benchmarks/setup_peers.sh") \
            from exc
    built.net.to(device)                  # any buffers a library created on the CPU
    if compiled:
        built.net.body = torch.compile(built.net.body)
    return built
