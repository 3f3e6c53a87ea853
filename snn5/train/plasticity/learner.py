"""Attach plasticity rules to the layers of an ordinary snn5 model and turn them into ``.grad``.

A :class:`PlasticityLearner` records, during a normal forward pass, the input of each plastic
layer (``pre [T, B, in]``) and the spikes of the neuron that follows it (``post [T, B, out]``).
:meth:`PlasticityLearner.step` asks each layer's rule for ``dw`` and writes ``-dw`` into the
weight's ``.grad``, so any ``torch.optim`` optimizer applies it (SGD with ``lr=1`` applies it
as is) and checkpoints, logging and search are shared with the gradient-based paradigms.
:meth:`PlasticityLearner.constrain` then enforces weight bounds, normalisation, Dale's law and
homeostasis after the optimizer step.

Example:
    >>> learner = PlasticityLearner(model, {"stem.1": STDP(a_plus=0.01)},
    ...                             constraints={"stem.1": [WeightBounds(0.0, 1.0)]})
    >>> opt = torch.optim.SGD(learner.parameters(), lr=1.0)
    >>> with torch.no_grad(), learner.recording():
    ...     model(x)
    >>> learner.step()
    >>> opt.step(); opt.zero_grad(); learner.constrain()
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from snn5.core import plasticity as P
from snn5.nn.neurons import NeuronBase
from snn5.train.plasticity.rules import Memory, Rule

_SYNAPSES = (nn.Linear,)


# ----------------------------------------------------------------------------- constraints

@dataclass(frozen=True)
class WeightBounds:
    """Clip weights into ``[w_min, w_max]`` after every update."""

    w_min: float = 0.0
    w_max: float = 1.0

    def __post_init__(self) -> None:
        if not self.w_min < self.w_max:
            raise ValueError(f"need w_min < w_max, got {self.w_min} and {self.w_max}")

    def apply(self, layer: nn.Module, rate: Tensor | None) -> None:
        layer.weight.copy_(P.clip_weights(layer.weight, self.w_min, self.w_max))


@dataclass(frozen=True)
class Normalize:
    """Scale each neuron's afferent weights to sum to ``total`` (Diehl & Cook 2015: 78 for
    784 inputs, about 0.1 per input)."""

    total: float

    def __post_init__(self) -> None:
        if not self.total > 0:
            raise ValueError(f"Normalize.total must be positive, got {self.total}")

    def apply(self, layer: nn.Module, rate: Tensor | None) -> None:
        layer.weight.copy_(P.normalize_weights(layer.weight, self.total))


@dataclass(frozen=True)
class Dale:
    """Dale's law: the first ``n_exc`` inputs are excitatory (outgoing weights >= 0), the rest
    inhibitory (<= 0); a weight pushed across zero is set to zero."""

    n_exc: int

    def apply(self, layer: nn.Module, rate: Tensor | None) -> None:
        n_in = layer.weight.shape[1]
        if not 0 <= self.n_exc <= n_in:
            raise ValueError(f"Dale.n_exc must be in [0, {n_in}] for a layer with {n_in} inputs, "
                             f"got {self.n_exc}")
        signs = P.dale_signs(self.n_exc, n_in - self.n_exc).to(layer.weight.device)
        layer.weight.copy_(P.apply_dale(layer.weight, signs))


@dataclass(frozen=True)
class Homeostasis:
    """Firing-rate homeostasis of the layer's neurons (:func:`snn5.core.plasticity.rate_homeostasis`).

    The neurons share one threshold, so each neuron's adaptive threshold ``theta`` acts as an
    input offset: ``bias <- bias - eta (rate - target)``, rates in spikes per step averaged over
    the last recorded batch. (For rate coding, a threshold ``v_th + theta`` and an input offset
    ``-theta`` move the firing rate the same way; they differ only by the reset residue.)
    """

    target: float
    eta: float = 0.1

    def __post_init__(self) -> None:
        if not 0 <= self.target <= 1:
            raise ValueError(f"Homeostasis.target is a rate in spikes per step in [0, 1], got "
                             f"{self.target}")
        if not self.eta > 0:
            raise ValueError(f"Homeostasis.eta must be positive, got {self.eta}")

    def apply(self, layer: nn.Module, rate: Tensor | None) -> None:
        if layer.bias is None:
            raise ValueError("Homeostasis adapts the layer's bias (its neurons' input offset); "
                             "build the layer with bias=True")
        if rate is None:
            return
        theta = -layer.bias
        layer.bias.copy_(-P.rate_homeostasis(theta, rate, target=self.target, eta=self.eta))


Constraint = WeightBounds | Normalize | Dale | Homeostasis


# ----------------------------------------------------------------------------- learner

@dataclass
class Synapse:
    """A plastic layer, the neuron whose spikes are its postsynaptic activity, and its records."""

    name: str
    layer: nn.Module
    neuron: NeuronBase
    rule: Rule
    constraints: tuple[Constraint, ...] = ()
    winners: int | None = None
    memory: Memory = field(default_factory=dict)
    pre: Tensor | None = None
    post: Tensor | None = None


def _winner_mask(post: Tensor, k: int) -> Tensor:
    """``[B, out]`` mask of the ``k`` neurons per sample with the most spikes in ``post [T, B,
    out]``, ties broken by the earlier first spike; neurons that never fired are not winners."""
    T = post.shape[0]
    count = post.sum(0)                                          # [B, out]
    first = torch.where(post.any(0), (post > 0).float().argmax(0).to(post.dtype),
                        torch.full_like(count, T))
    score = count - first / (T + 1)                              # more spikes, then earlier
    return P.winner_take_all((count > 0).to(post.dtype), score, k=k)


def _post_neuron(model: nn.Module, name: str) -> NeuronBase:
    """The first spiking neuron after layer ``name`` in the model's module order (the execution
    order of snn5's sequential models), before any other synaptic layer."""
    found = False
    for other, module in model.named_modules():
        if other == name:
            found = True
            continue
        if not found or other.startswith(name + "."):
            continue
        if isinstance(module, NeuronBase) and module.spiking:
            return module
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            break
    raise ValueError(f"no spiking neuron follows layer '{name}' before the next synaptic layer; "
                     "a plasticity rule needs the layer's postsynaptic spikes")


class PlasticityLearner:
    """Local learning rules on the synaptic layers of ``model``.

    Args:
        model: an snn5 model whose plastic layers are ``nn.Linear`` (or ``EventLinear``) each
            followed by a spiking neuron.
        rules: layer name (as in ``model.named_modules()``) -> rule.
        constraints: layer name -> constraints applied by :meth:`constrain`, in order.
        winners: competitive learning (Masquelier & Thorpe 2007; Diehl & Cook 2015 reach the
            same through lateral inhibition): per sample, only the ``k`` neurons of a layer that
            fired most (ties: the earlier first spike) pass their spikes to the rule; the others
            do not learn from this sample. None: every neuron learns.
    """

    def __init__(self, model: nn.Module, rules: Mapping[str, Rule],
                 constraints: Mapping[str, Sequence[Constraint]] | None = None, *,
                 winners: int | None = None) -> None:
        if winners is not None and winners < 1:
            raise ValueError(f"winners must be >= 1 (or None for no competition), got {winners}")
        if not rules:
            raise ValueError("give at least one layer -> rule, e.g. {'stem.1': STDP()}")
        modules = dict(model.named_modules())
        constraints = dict(constraints or {})
        extra = sorted(set(constraints) - set(rules))
        if extra:
            raise ValueError(f"constraints for layer(s) without a rule: {', '.join(extra)}")
        self.synapses: list[Synapse] = []
        for name, rule in rules.items():
            layer = modules.get(name)
            if layer is None:
                linears = [n for n, m in modules.items() if isinstance(m, _SYNAPSES)]
                raise ValueError(f"model has no layer '{name}'; its linear layers are: "
                                 f"{', '.join(linears) or 'none'}")
            if not isinstance(layer, _SYNAPSES):
                raise TypeError(f"layer '{name}' is a {type(layer).__name__}; plasticity rules "
                                "apply to nn.Linear layers")
            if not isinstance(rule, Rule):
                raise TypeError(f"the rule for '{name}' must be a Rule (e.g. STDP()), got {rule!r}")
            self.synapses.append(Synapse(name, layer, _post_neuron(model, name), rule,
                                         tuple(constraints.get(name, ())), winners))
        self._hooks: list = []

    def parameters(self) -> Iterator[nn.Parameter]:
        """The plastic weights (what the optimizer should update)."""
        for s in self.synapses:
            yield s.layer.weight

    @property
    def needs_reward(self) -> bool:
        return any(s.rule.needs_reward for s in self.synapses)

    @contextlib.contextmanager
    def recording(self) -> Iterator[PlasticityLearner]:
        """Record pre/post activity of every plastic layer during the forward passes inside."""
        for s in self.synapses:
            s.pre = s.post = None
            self._hooks.append(s.layer.register_forward_hook(self._record_pre(s)))
            self._hooks.append(s.neuron.register_forward_hook(self._record_post(s)))
        try:
            yield self
        finally:
            for h in self._hooks:
                h.remove()
            self._hooks.clear()

    @staticmethod
    def _record_pre(s: Synapse):
        def hook(module, args, output):
            x = args[0]
            if x.ndim != 3:
                raise ValueError(f"plastic layer '{s.name}' got input {tuple(x.shape)}; expected "
                                 "a time-major [T, B, in] sequence")
            s.pre = x.detach()
        return hook

    @staticmethod
    def _record_post(s: Synapse):
        def hook(module, args, output):
            s.post = output[0].detach()
        return hook

    def step(self, reward: Tensor | float | None = None) -> dict[str, Tensor]:
        """Compute every rule's ``dw`` from the last recording and add ``-dw`` to ``.grad``
        (gradients accumulate as in autograd; zero them between updates).

        Args:
            reward: for three-factor rules: one value per sample ``[B]`` or one for the batch.

        Returns:
            layer name -> ``dw``.
        """
        out = {}
        for s in self.synapses:
            if s.pre is None or s.post is None:
                raise RuntimeError(f"nothing recorded for layer '{s.name}': run the model inside "
                                   "`with learner.recording():` before learner.step()")
            pre, post = s.pre, s.post
            if pre.shape[0] == 1 and post.shape[0] > 1:           # direct input: same every step
                pre = pre.expand(post.shape[0], *pre.shape[1:])
            if post.ndim != 3:
                post = post.flatten(2)
            if s.winners is not None:
                post = post * _winner_mask(post, s.winners)
            r = None
            if s.rule.needs_reward:
                if reward is None:
                    raise ValueError(f"layer '{s.name}' learns by {type(s.rule).__name__}, which "
                                     "needs a reward: learner.step(reward=...)")
                r = torch.as_tensor(reward, dtype=pre.dtype, device=pre.device)
            w = s.layer.weight
            dw = s.rule.update(pre.to(w.dtype), post.to(w.dtype), w.detach(), s.memory,
                               dt=s.neuron.dt, reward=r)
            if not torch.isfinite(dw).all():
                raise FloatingPointError(f"the {type(s.rule).__name__} update of layer '{s.name}' "
                                         "is not finite; lower its learning rates")
            w.grad = -dw if w.grad is None else w.grad - dw
            out[s.name] = dw
        return out

    @torch.no_grad()
    def constrain(self) -> None:
        """Apply each layer's constraints (after the optimizer step)."""
        for s in self.synapses:
            rate = None if s.post is None else s.post.flatten(2).mean((0, 1))   # [out]
            for c in s.constraints:
                c.apply(s.layer, rate)

    def state_dict(self) -> dict[str, Tensor]:
        """Rule memories (thresholds, probability estimates) as ``"layer/key" -> tensor``."""
        return {f"{s.name}/{k}": v for s in self.synapses for k, v in s.memory.items()}

    def load_state_dict(self, tensors: Mapping[str, Tensor]) -> None:
        by_name = {s.name: s for s in self.synapses}
        for key, value in tensors.items():
            name, _, field_ = key.rpartition("/")
            if name not in by_name:
                raise KeyError(f"learner state '{key}' names no plastic layer "
                               f"(layers: {', '.join(by_name)})")
            by_name[name].memory[field_] = value
