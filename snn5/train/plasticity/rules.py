"""Plasticity rules as objects a learner attaches to a layer: one recorded sequence in, ``dw`` out.

Each rule wraps the pure updates of :mod:`snn5.core.plasticity` (which cite their papers). A
call to :meth:`Rule.update` sees one batch of independent presentations, ``pre [T, B, in]`` and
``post [T, B, out]``, recorded with the weights fixed; spike traces start from zero for every
presentation (the rest between samples of Diehl & Cook 2015), while what a rule learns across
presentations (BCM's threshold, BCPNN's probabilities) lives in its ``memory``, a dict of
tensors the learner keeps and checkpoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from snn5._registry import Registry
from snn5.core import plasticity as P

Memory = dict[str, Tensor]
RULES: Registry[type[Rule]] = Registry("plasticity rule")


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def _non_negative(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")


@dataclass(frozen=True)
class Rule:
    """A local learning rule for the weights ``w [out, in]`` of one layer.

    ``update`` returns the weight change of one recorded batch (the learner writes ``-dw`` into
    ``.grad``). Three-factor rules (``needs_reward``) return the change only once
    ``reward`` is given: one value per sample, or one for the batch.
    """

    needs_reward: ClassVar[bool] = False

    def update(self, pre: Tensor, post: Tensor, w: Tensor, memory: Memory, *, dt: float,
               reward: Tensor | None = None) -> Tensor:
        raise NotImplementedError


@RULES.register("stdp")
@dataclass(frozen=True)
class STDP(Rule):
    """Pair-based STDP (:func:`snn5.core.plasticity.stdp_step`); ``mu`` 0 additive, 1
    multiplicative (soft bounds in ``[w_min, w_max]``)."""

    a_plus: float = 0.01
    a_minus: float = 0.0105
    tau_plus: float = 20e-3
    tau_minus: float = 20e-3
    w_min: float = 0.0
    w_max: float = 1.0
    mu: float = 0.0
    trace: P.TraceMode = P.TraceMode.ALL_TO_ALL

    def __post_init__(self) -> None:
        _non_negative("a_plus", self.a_plus)
        _non_negative("a_minus", self.a_minus)
        _positive("tau_plus", self.tau_plus)
        _positive("tau_minus", self.tau_minus)
        _non_negative("mu", self.mu)
        if not self.w_min < self.w_max:
            raise ValueError(f"need w_min < w_max, got {self.w_min} and {self.w_max}")
        object.__setattr__(self, "trace", P.TraceMode.parse(self.trace))

    def params(self) -> P.STDPParams:
        return P.STDPParams(self.a_plus, self.a_minus, self.tau_plus, self.tau_minus,
                            self.w_min, self.w_max, self.mu, self.trace)

    def update(self, pre, post, w, memory, *, dt, reward=None):
        dw, _ = P.stdp_scan(pre, post, P.stdp_init(pre[0], post[0]), w, self.params(), dt=dt)
        return dw


@RULES.register("triplet")
@dataclass(frozen=True)
class TripletSTDP(Rule):
    """Triplet STDP (Pfister & Gerstner 2006; :func:`snn5.core.plasticity.triplet_step`)."""

    a2_plus: float = 7.5e-10
    a3_plus: float = 9.3e-3
    a2_minus: float = 7e-3
    a3_minus: float = 2.3e-4
    tau_plus: float = 16.8e-3
    tau_x: float = 101e-3
    tau_minus: float = 33.7e-3
    tau_y: float = 125e-3
    trace: P.TraceMode = P.TraceMode.ALL_TO_ALL

    def __post_init__(self) -> None:
        for name in ("a2_plus", "a3_plus", "a2_minus", "a3_minus"):
            _non_negative(name, getattr(self, name))
        for name in ("tau_plus", "tau_x", "tau_minus", "tau_y"):
            _positive(name, getattr(self, name))
        object.__setattr__(self, "trace", P.TraceMode.parse(self.trace))

    def update(self, pre, post, w, memory, *, dt, reward=None):
        p = P.TripletParams(self.a2_plus, self.a3_plus, self.a2_minus, self.a3_minus,
                            self.tau_plus, self.tau_x, self.tau_minus, self.tau_y, self.trace)
        dw, _ = P.triplet_scan(pre, post, P.triplet_init(pre[0], post[0]), p, dt=dt)
        return dw


@RULES.register("rstdp")
@dataclass(frozen=True)
class RewardSTDP(STDP):
    """Reward-modulated STDP with an eligibility trace (Izhikevich 2007; Florian 2007): each
    sample's pair-STDP change accumulates in an eligibility trace decaying with ``tau_e``; the
    reward given at the end of the presentation scales it, ``dw = lr sum_b r_b e_b``."""

    needs_reward: ClassVar[bool] = True
    tau_e: float = 1.0
    lr: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("tau_e", self.tau_e)
        _positive("lr", self.lr)

    def update(self, pre, post, w, memory, *, dt, reward=None):
        if reward is None:
            raise ValueError("reward-modulated STDP needs a reward: call the learner's "
                             "step(reward=...) with one value per sample or one per batch")
        state = P.eligibility_scan(pre, post, P.eligibility_init(pre[0], post[0]), w,
                                   self.params(), tau_e=self.tau_e, dt=dt)
        return P.reward_modulated(state.e, reward, lr=self.lr)


@RULES.register("bcm")
@dataclass(frozen=True)
class BCM(Rule):
    """BCM with a sliding threshold (:func:`snn5.core.plasticity.bcm_step`) on the spikes of
    every step. ``memory["theta"]`` carries the threshold across presentations."""

    eta: float = 1e-4
    tau_theta: float = 1.0
    y0: float = 1.0

    def __post_init__(self) -> None:
        _positive("eta", self.eta)
        _positive("tau_theta", self.tau_theta)
        _positive("y0", self.y0)

    def update(self, pre, post, w, memory, *, dt, reward=None):
        theta = memory.get("theta")
        if theta is None:
            theta = post.new_zeros(post.shape[2])
        p = P.BCMParams(self.eta, self.tau_theta, self.y0)
        dw = torch.zeros_like(w)
        for x, y in zip(pre.unbind(0), post.unbind(0)):          # [B, in], [B, out]
            step, theta = P.bcm_step(x, y, theta, p, dt=dt)
            dw += step
        memory["theta"] = theta
        return dw


@RULES.register("hebbian")
@dataclass(frozen=True)
class HebbianDecay(Rule):
    """``dw = eta sum_{t,b} (s_i s_j - beta w)`` (:func:`snn5.core.plasticity.hebbian_decay`)."""

    eta: float = 1e-3
    beta: float = 0.1

    def __post_init__(self) -> None:
        _positive("eta", self.eta)
        _non_negative("beta", self.beta)

    def update(self, pre, post, w, memory, *, dt, reward=None):
        return P.hebbian_decay(pre.flatten(0, 1), post.flatten(0, 1), w, eta=self.eta,
                               beta=self.beta)


@RULES.register("bcpnn")
@dataclass(frozen=True)
class BCPNN(Rule):
    """Probabilistic Hebbian learning (:func:`snn5.core.plasticity.bcpnn_step`): the update moves
    ``w`` to the BCPNN weights of the running probability estimates (``dw = w_bcpnn - w``, so
    an SGD step with lr 1 sets them). ``memory`` carries the estimates."""

    tau_p: float = 1.0
    eps: float = 1e-4
    p0: float = 0.01

    def __post_init__(self) -> None:
        _positive("tau_p", self.tau_p)
        _positive("eps", self.eps)
        if not 0 < self.p0 < 1:
            raise ValueError(f"p0 must be a probability in (0, 1), got {self.p0!r}")

    def update(self, pre, post, w, memory, *, dt, reward=None):
        if "p_pre" in memory:
            state = P.BCPNNState(memory["p_pre"], memory["p_post"], memory["p_joint"])
        else:
            state = P.bcpnn_init(pre.shape[2], post.shape[2], p0=self.p0, dtype=w.dtype,
                                 device=w.device)
        for x, z in zip(pre.unbind(0), post.unbind(0)):
            state = P.bcpnn_step(x, z, state, tau_p=self.tau_p, dt=dt)
        memory.update(state._asdict())
        target, _ = P.bcpnn_weights(state, eps=self.eps)
        return target - w


def build_rule(spec: dict) -> Rule:
    """``{"name": "stdp", "a_plus": 0.01, ...}`` -> the rule object; unknown names and fields
    fail with the valid ones."""
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"a rule is a mapping with a 'name' (one of {', '.join(RULES.names())}), "
                         f"got {spec!r}")
    kwargs = dict(spec)
    cls = RULES.get(kwargs.pop("name"))
    valid = set(cls.__dataclass_fields__)
    unknown = sorted(set(kwargs) - valid)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)} for rule '{spec['name']}'; "
                         f"valid: {', '.join(sorted(valid))}")
    for key, value in kwargs.items():               # "5e-4" from YAML or --set is a number
        if cls.__dataclass_fields__[key].type == "float" and isinstance(value, str):
            try:
                kwargs[key] = float(value)
            except ValueError:
                raise ValueError(f"rule field '{key}' must be a number, got {value!r}") from None
    return cls(**kwargs)
