"""Quantization-aware training (QAT) of weights and membranes, in place, with its inverse.

``quantize_(model, WeightQuant(bits=4), filter_fn)`` registers a fake-quantization
parametrization on the ``weight`` of every selected Linear/Conv layer through
``torch.nn.utils.parametrize`` (torchao-style): the layer keeps the float *latent* weight as
``parametrizations.weight.original`` (what the optimizer updates) and every forward sees the
weight on the integer grid, ``weight = s * q`` with integer codes ``q``. ``dequantize_`` takes
the parametrizations off again: ``restore=True`` gives back the latent float weights (exactly the
weights from before ``quantize_`` when no training happened in between), ``restore=False`` bakes
the grid values into plain float weights. ``export_quantized`` gives the integer codes (int8) and
scales; ``load_quantized_`` writes them back into a float model.

Weights (:class:`WeightQuant`): symmetric uniform quantization with a max-abs scale per output
channel (Linear rows, Conv filters; ``per_channel=False``: one scale per layer), as in Jacob et
al., "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only
Inference", CVPR 2018 (symmetric weights), and Krishnamoorthi, "Quantizing deep convolutional
networks for efficient inference: A whitepaper", arXiv 2018 (per-channel scales):

    s = max|w_c| / q_max,   q = clamp(round(w / s), q_min, q_max),   w_hat = s * q

with the narrow range ``q_min = -q_max = -(2^(b-1) - 1)`` (int8 +-127, int4 +-7, 2 bits
``{-1, 0, 1}``) or, with ``narrow_range=False``, the full two's-complement range
``[-2^(b-1), 2^(b-1) - 1]`` (2 bits ``{-2, -1, 0, 1}``) and ``s = max(max w_c / q_max,
-min w_c / 2^(b-1))``, so that no weight is clipped in either case. The scale follows the latent
weight (it is not learned; LSQ, Esser et al., ICLR 2020, is not implemented) and is treated as a
constant in backward. The gradient passes the rounding unchanged: the straight-through estimator
(Bengio, Leonard & Courville, arXiv 2013; Courbariaux et al., "BinaryConnect", NeurIPS 2015),
``dL/dw = dL/dw_hat``.

Ternary weights (:class:`TernaryQuant`): ``gamma * clip(round(w / gamma), -1, 1)`` with
``gamma = mean |w|`` over the whole layer (absmean, BitNet b1.58: Ma et al., arXiv 2024) or,
with ``per_channel=True``, over each output channel; :func:`snn5.core.conversion.ternarize`, the
quantizer of the logic-gated SNN, straight-through.

Membranes (:class:`MembraneQuant`): stateful QAT (SQUAT: Venkatesh, Marinescu & Eshraghian,
"SQUAT: Stateful Quantization-Aware Training in Recurrent Spiking Neural Networks", NICE 2024,
arXiv:2404.19668, its uniform scheme): the membrane potential is put on a uniform grid after
every time step with a straight-through gradient. SQUAT spreads ``2^b`` levels evenly over
``[-v_th, 1.2 v_th]`` before firing; here the stored membrane (after the reset, what a chip keeps
between steps) is a ``b``-bit two's-complement fixed-point number: ``v = delta * q``, ``q in
[-2^(b-1), 2^(b-1) - 1]``, ``delta = v_range * v_th / 2^(b-1)``. The grid holds 0 (the resting
state) and, for ``v_range = 1``, the threshold is the code ``2^(b-1)``: the register stores
``[-v_th, v_th - delta]``. Firing still compares the float charge of the step with ``v_th``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from snn5.core.conversion import ternarize, ternary_codes, ternary_scale
from snn5.nn.neurons import NeuronBase
from snn5.nn.quant import MembraneGrid, fake_quant
from snn5.nn.ternary import TernaryConv2d, TernaryLinear

__all__ = ["MembraneQuant", "TernaryQuant", "WeightQuant", "dequantize_", "export_quantized",
           "is_quantized", "load_quantized_", "quantize_"]

FilterFn = Callable[[nn.Module, str], bool]
QUANTIZABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BITS = (2, 4, 8)
_EPS = 1e-12                                   # scale of an all-zero channel


@dataclass(frozen=True)
class WeightQuant:
    """Fake-quantize weights to ``bits`` bits (symmetric, max-abs scales, straight-through).

    Args:
        bits: 2, 4 or 8.
        per_channel: one scale per output channel (Linear row, Conv filter); False: per layer.
        narrow_range: codes in ``+-(2^(b-1) - 1)`` (symmetric; 2 bits: ``{-1, 0, 1}``);
            False: the full range ``[-2^(b-1), 2^(b-1) - 1]`` (2 bits: ``{-2, -1, 0, 1}``).
    """

    bits: int = 8
    per_channel: bool = True
    narrow_range: bool = True

    def __post_init__(self) -> None:
        if self.bits not in _BITS or isinstance(self.bits, bool):
            raise ValueError(f"WeightQuant.bits must be one of {_BITS}, got {self.bits!r}; for "
                             "three levels with an absmean scale use TernaryQuant()")

    @property
    def code_range(self) -> tuple[int, int]:
        """``(q_min, q_max)``, the integer codes a weight can take."""
        q_max = 2 ** (self.bits - 1) - 1
        return (-q_max if self.narrow_range else -q_max - 1), q_max


@dataclass(frozen=True)
class TernaryQuant:
    """Ternary weights ``gamma * {-1, 0, 1}`` with the absmean scale ``gamma = mean |w|``.

    Args:
        per_channel: one ``gamma`` per output channel (the mean over that channel's weights);
            False: one per layer, as BitNet b1.58.
    """

    per_channel: bool = False


@dataclass(frozen=True)
class MembraneQuant:
    """Store every spiking neuron's membrane at ``bits`` bits after each step (stateful QAT).

    Args:
        bits: width of the membrane register, 2 to 16.
        v_range: the register spans ``[-v_range * v_th, v_range * v_th)`` in steps of
            ``delta = v_range * v_th / 2^(bits-1)``; values outside are clipped.
    """

    bits: int = 8
    v_range: float = 1.0

    def __post_init__(self) -> None:
        if not (isinstance(self.bits, int) and not isinstance(self.bits, bool)
                and 2 <= self.bits <= 16):
            raise ValueError(f"MembraneQuant.bits must be an integer in [2, 16], got "
                             f"{self.bits!r}")
        if not (isinstance(self.v_range, (int, float)) and self.v_range > 0):
            raise ValueError(f"MembraneQuant.v_range is the register's span in units of v_th "
                             f"(> 0), got {self.v_range!r}; 1.0 stores [-v_th, v_th)")


QuantConfig = WeightQuant | TernaryQuant | MembraneQuant


# ----------------------------------------------------------------------------- weights

def weight_scale(w: Tensor, cfg: WeightQuant) -> Tensor:
    """The scale ``s`` of ``w`` under ``cfg``: ``[C_out, 1, ...]`` per channel, else ``[]``.

    No gradient (the scale is a constant of the straight-through estimator).
    """
    q_min, q_max = cfg.code_range
    w = w.detach()
    flat = w.reshape(w.shape[0], -1) if cfg.per_channel else w.reshape(1, -1)   # [C, fan_in]
    s = torch.maximum(flat.amax(1).clamp_min(0) / q_max,
                      (-flat.amin(1)).clamp_min(0) / -q_min).clamp_min(_EPS)   # [C]
    if cfg.per_channel:
        return s.reshape(-1, *([1] * (w.ndim - 1)))                       # [C, 1, ...]
    return s.reshape(())


def weight_codes(w: Tensor, cfg: WeightQuant) -> Tensor:
    """The integer codes ``q = clamp(round(w / s), q_min, q_max)`` as int8, shape of ``w``."""
    q_min, q_max = cfg.code_range
    return torch.clamp(torch.round(w.detach() / weight_scale(w, cfg)), q_min, q_max).to(torch.int8)


class FakeQuant(nn.Module):
    """Parametrization ``w -> s * q`` (straight-through gradient to the latent ``w``)."""

    def __init__(self, cfg: WeightQuant) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(self, w: Tensor) -> Tensor:
        return fake_quant(w, weight_scale(w, self.cfg), *self.cfg.code_range)

    def codes(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """``(int8 codes, scale)`` of the latent weight ``w``."""
        s = weight_scale(w, self.cfg)
        return weight_codes(w, self.cfg), s.reshape(-1) if self.cfg.per_channel else s  # [C]

    def extra_repr(self) -> str:
        return repr(self.cfg)


class TernaryFakeQuant(nn.Module):
    """Parametrization ``w -> ternarize(w)`` (absmean, straight-through).

    Per channel, each channel is divided by its own absmean ``g_c`` (a constant in backward)
    before :func:`ternarize`, whose layer-wide absmean is then 1, and multiplied back.
    """

    def __init__(self, cfg: TernaryQuant) -> None:
        super().__init__()
        self.cfg = cfg

    def _channel_scale(self, w: Tensor) -> Tensor:
        g = w.detach().abs().reshape(w.shape[0], -1).mean(1).clamp_min(_EPS)   # [C]
        return g.reshape(-1, *([1] * (w.ndim - 1)))                          # [C, 1, ...]

    def forward(self, w: Tensor) -> Tensor:
        if not self.cfg.per_channel:
            return ternarize(w)
        g = self._channel_scale(w)
        return ternarize(w / g) * g

    def codes(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """``(int8 codes in {-1, 0, 1}, gamma)`` of the latent weight ``w`` (``gamma``: ``[]``,
        or ``[C_out]`` per channel, the magnitude the forward weight takes exactly)."""
        if not self.cfg.per_channel:
            return ternary_codes(w), ternary_scale(w)
        w_hat = self.forward(w.detach())
        gamma = w_hat.abs().reshape(w.shape[0], -1).amax(1)                    # [C]
        gamma = torch.where(gamma > 0, gamma, self._channel_scale(w).reshape(-1))
        return torch.sign(w_hat).to(torch.int8), gamma

    def extra_repr(self) -> str:
        return repr(self.cfg)


# ----------------------------------------------------------------------------- transforms

def _weight_quantizer(module: nn.Module) -> FakeQuant | TernaryFakeQuant | None:
    if not parametrize.is_parametrized(module, "weight"):
        return None
    for p in module.parametrizations.weight:
        if isinstance(p, (FakeQuant, TernaryFakeQuant)):
            return p
    return None


def is_quantized(module: nn.Module) -> bool:
    """Whether ``module`` itself carries a quantizer (weight or membrane) of :func:`quantize_`."""
    return (_weight_quantizer(module) is not None
            or isinstance(getattr(module, "state_quantizer", None), MembraneGrid))


def _default_filter(cfg: QuantConfig) -> FilterFn:
    if isinstance(cfg, MembraneQuant):
        return lambda m, name: isinstance(m, NeuronBase) and m.spiking
    return lambda m, name: isinstance(m, QUANTIZABLE)


def _check_neuron(name: str, module: nn.Module) -> None:
    if not (isinstance(module, NeuronBase) and module.spiking):
        raise ValueError(f"MembraneQuant quantizes spiking neurons' membranes; '{name}' is "
                         f"{type(module).__name__}; exclude it with filter_fn")
    if "v" not in module._state_type._fields:
        raise ValueError(f"'{name}' ({type(module).__name__}) has no membrane field 'v' in its "
                         f"state {module._state_type.__name__}; exclude it with filter_fn")
    if getattr(module, "spike_driven", False):
        raise ValueError(f"'{name}' runs spike-driven binary sub-steps in eval mode, which "
                         "bypass the state quantizer; build it with spike_driven=False")


def _selected(model: nn.Module, cfg: QuantConfig, filter_fn: FilterFn
              ) -> list[tuple[str, nn.Module]]:
    membrane = isinstance(cfg, MembraneQuant)
    kinds = (NeuronBase,) if membrane else QUANTIZABLE
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, kinds) and filter_fn(m, n)]
    if not layers:
        what = "spiking neuron" if membrane else "Linear/Conv layer"
        raise ValueError(f"quantize_ found nothing to quantize: filter_fn selected no {what} of "
                         "the model; check the filter (it is called as filter_fn(module, name))")
    for name, module in layers:
        if membrane:
            _check_neuron(name, module)
            if module.state_quantizer is not None:
                raise ValueError(f"the membrane of '{name}' is already quantized; call "
                                 "dequantize_(model) first, or quantize once with the final bits")
        elif _weight_quantizer(module) is not None:
            raise ValueError(f"the weight of '{name}' is already quantized; call "
                             "dequantize_(model) first, or quantize once with the final bits")
        elif isinstance(module, (TernaryLinear, TernaryConv2d)):
            raise ValueError(f"'{name}' is a {type(module).__name__}, ternary by construction; "
                             "exclude it with filter_fn")
        elif parametrize.is_parametrized(module) or hasattr(module, "weight_mask"):
            raise ValueError(f"'{name}' already transforms its weight (a pruning mask or another "
                             "parametrization); remove it first (remove_pruning_(model, "
                             "restore=False) keeps the zeros), then quantize")
    return layers


def quantize_(model: nn.Module, config: QuantConfig, filter_fn: FilterFn | None = None
              ) -> nn.Module:
    """Quantize ``model`` in place for quantization-aware training; returns ``model``.

    Weights and membranes are separate calls: ``quantize_(m, WeightQuant(4))`` then
    ``quantize_(m, MembraneQuant(8))``.

    Args:
        model: any module.
        config: :class:`WeightQuant`, :class:`TernaryQuant` (Linear/Conv weights) or
            :class:`MembraneQuant` (spiking neurons' membranes).
        filter_fn: ``filter_fn(module, name) -> bool`` picks the layers among the candidates
            (default: every Linear/Conv layer, or every spiking neuron for MembraneQuant).

    Example:
        >>> quantize_(model, WeightQuant(bits=4))      # train as usual: QAT
        >>> ints = export_quantized(model)             # {name: (int8 codes, scales)}
        >>> dequantize_(model, restore=False)          # plain float weights on the grid
    """
    if not isinstance(config, (WeightQuant, TernaryQuant, MembraneQuant)):
        raise TypeError(f"config must be a WeightQuant, TernaryQuant or MembraneQuant, got "
                        f"{type(config).__name__}")
    layers = _selected(model, config, filter_fn or _default_filter(config))
    for _, module in layers:
        if isinstance(config, MembraneQuant):
            module.state_quantizer = MembraneGrid(config.bits, config.v_range)
        else:
            quantizer = (FakeQuant(config) if isinstance(config, WeightQuant)
                         else TernaryFakeQuant(config))
            parametrize.register_parametrization(module, "weight", quantizer)
    return model


def dequantize_(model: nn.Module, *, restore: bool = True) -> nn.Module:
    """Take every quantizer of :func:`quantize_` off ``model`` in place; returns ``model``.

    Args:
        model: a model quantized by :func:`quantize_`.
        restore: ``True``: each weight becomes its float latent weight (the weight before
            ``quantize_`` if nothing trained it since); ``False``: the quantized values
            ``s * q`` become the plain float weight. Membrane quantizers are removed either way.
    """
    found = False
    for module in model.modules():
        if _weight_quantizer(module) is not None:
            # torch deletes the ``weight`` property from the module's injected class, which a
            # deep copy of the model shares: give this module a class of its own first.
            cls = type(module)
            module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=not restore)
            found = True
        if isinstance(getattr(module, "state_quantizer", None), MembraneGrid):
            module.state_quantizer = None
            found = True
    if not found:
        raise ValueError("dequantize_ found no quantized layer in the model; nothing to undo")
    return model


def export_quantized(model: nn.Module) -> dict[str, tuple[Tensor, Tensor]]:
    """The integer weights of every weight-quantized layer: ``{name: (codes, scale)}``.

    ``codes`` is int8 in the weight's shape, ``scale`` float: ``[C_out]`` per channel or ``[]``
    per layer (ternary: ``gamma``, ``[]``); ``scale * codes`` (the scale broadcast over the
    output channel) equals the weight the quantized layer computes with.
    """
    out = {}
    for name, module in model.named_modules():
        quantizer = _weight_quantizer(module)
        if quantizer is not None:
            out[name] = quantizer.codes(module.parametrizations.weight.original)
    if not out:
        raise ValueError("export_quantized found no weight-quantized layer; call "
                         "quantize_(model, WeightQuant(...)) or TernaryQuant() first")
    return out


def load_quantized_(model: nn.Module, exported: Mapping[str, tuple[Tensor, Tensor]]
                    ) -> nn.Module:
    """Inverse of :func:`export_quantized`: ``weight = scale * codes`` for each named layer of
    a float (not quantized) ``model`` of the same architecture; returns ``model``."""
    modules = dict(model.named_modules())
    missing = [n for n in exported if n not in modules]
    if missing:
        raise KeyError(f"the model has no layer(s) {', '.join(missing)}; load into a model of "
                       "the architecture the integers were exported from")
    for name, (codes, scale) in exported.items():
        module = modules[name]
        if is_quantized(module):
            raise ValueError(f"'{name}' is quantized; load the integers into a float model "
                             "(dequantize_ it first)")
        if tuple(codes.shape) != tuple(module.weight.shape):
            raise ValueError(f"codes of '{name}' have shape {tuple(codes.shape)}, its weight "
                             f"{tuple(module.weight.shape)}; wrong architecture?")
        s = scale.reshape(-1, *([1] * (codes.ndim - 1))) if scale.ndim == 1 else scale  # [C, 1..]
        with torch.no_grad():
            module.weight.copy_(codes.to(module.weight.dtype) * s.to(module.weight.dtype))
    return model
