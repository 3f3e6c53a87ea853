"""Ternary layers of the logic-gated SNN: training-time layers with weights in
``gamma * {-1, 0, +1}``, their add-only inference twins for binary spikes, and the input noise
of hyper-robust training.

- :class:`TernaryLinear`, :class:`TernaryConv2d`: ``nn.Linear`` / ``nn.Conv2d`` whose forward
  uses ``ternarize(W) = gamma * clip(round(W / gamma), -1, 1)`` with ``gamma = mean |W|``
  (absmean, BitNet b1.58) and a straight-through gradient to the latent float weight ``W``.
- :class:`AddOnlyLinear`, :class:`AddOnlyConv2d`: the same layer for binary spike input
  ``x in {0, 1}``. The product ``sum_j c_ij x_j`` with codes ``c in {-1, 0, 1}`` becomes: gather
  the fan-out code rows of the active inputs (``x.nonzero()``) and add them into the output
  (``index_add_`` on int32 accumulators). No multiplication touches the codes or the spikes;
  every forward counts its operations in ``op_counts``.
- :class:`InputNoise`: replaces a random fraction ``p ~ U(min_fraction, max_fraction)`` of each
  training sample by uniform noise (identity in ``eval()``).

Which operations remain, and where (add-only layers):

====================  ==========================================  =============================
``fold_scale``        the layer computes                          left to the caller
====================  ==========================================  =============================
``False`` (default)   ``acc`` (additions), ``gamma * acc`` (one   nothing
                      multiplication per output), ``+ bias`` (one
                      addition per output)
``True``              ``acc`` only: additions, no multiplication  fold ``gamma`` and ``bias``
                                                                  into the next neuron
====================  ==========================================  =============================

Folding (``fold_scale=True``, see :meth:`AddOnlyLinear.folded`): a neuron fed by the layer
integrates ``v <- leak * v + gamma * acc + bias`` and fires at ``v >= v_th``. Dividing the
membrane by ``gamma > 0`` gives the same spikes: ``v' <- leak * v' + acc + bias / gamma``,
firing at ``v' >= v_th / gamma`` and resetting by ``v_th / gamma``. So the neuron gets the
threshold ``v_th / gamma`` and adds the constant ``offset = bias / gamma`` once per step (one
addition per neuron and step; none without bias); both are computed once, at conversion, by
one division per layer and per output channel. A neuron with an initial membrane scales it by
``1 / gamma`` too (nothing changes if it is given as a fraction of ``v_th``). For the readout
layer, ``argmax(gamma * acc + bias) = argmax(acc + bias / gamma)`` since ``gamma > 0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from snn5.core.conversion import replace_noise, ternarize, ternary_codes, ternary_scale

# Symbolic tracing (torch.fx) records ``ternarize`` as one call node rather than tracing into it:
# traced through, the straight-through gradient would be lost (``round`` has zero gradient). The
# registration only affects fx tracing. Trace with ternary layers as leaf modules to keep them
# (``snn5.train.conversion.logic_gated.LogicGatedTracer``).
torch.fx.wrap("ternarize")

# The add-only accumulation gathers [pairs, fan_out] codes at a time; this bounds that buffer.
_CHUNK_ELEMENTS = 1 << 22


# ----------------------------------------------------------------------------- training layers

class TernaryLinear(nn.Linear):
    """``nn.Linear`` with ternary weights ``gamma * {-1, 0, 1}`` (absmean scale, straight-through
    gradient to the latent weight). Same constructor as ``nn.Linear``; the bias stays float.

    ``y = x @ (gamma * C)^T + b`` with ``gamma = mean |W|``, ``C = clip(round(W / gamma), -1, 1)``.
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, ternarize(self.weight), self.bias)

    def codes(self) -> Tensor:
        """The ternary codes ``C`` as int8, shape of ``weight`` (no gradient)."""
        return ternary_codes(self.weight)

    def scale(self) -> Tensor:
        """The scale ``gamma = mean |W|`` (a 0-d tensor, no gradient)."""
        return ternary_scale(self.weight)

    @classmethod
    def from_dense(cls, layer: nn.Linear) -> TernaryLinear:
        """A ternary layer whose latent weight and bias are copies of ``layer``'s."""
        new = cls(layer.in_features, layer.out_features, layer.bias is not None,
                  device=layer.weight.device, dtype=layer.weight.dtype)
        with torch.no_grad():
            new.weight.copy_(layer.weight)
            if layer.bias is not None:
                new.bias.copy_(layer.bias)
        return new


class TernaryConv2d(nn.Conv2d):
    """``nn.Conv2d`` with ternary weights ``gamma * {-1, 0, 1}`` (absmean scale over the whole
    kernel, straight-through gradient). Same constructor as ``nn.Conv2d``; the bias stays float.
    """

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, ternarize(self.weight), self.bias)

    def codes(self) -> Tensor:
        """The ternary codes as int8, shape of ``weight`` ``[C_out, C_in / groups, kH, kW]``."""
        return ternary_codes(self.weight)

    def scale(self) -> Tensor:
        """The scale ``gamma = mean |W|`` (a 0-d tensor, no gradient)."""
        return ternary_scale(self.weight)

    @classmethod
    def from_dense(cls, layer: nn.Conv2d) -> TernaryConv2d:
        """A ternary layer with ``layer``'s geometry, latent weight and bias (copies)."""
        new = cls(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                  layer.padding, layer.dilation, layer.groups, layer.bias is not None,
                  layer.padding_mode, device=layer.weight.device, dtype=layer.weight.dtype)
        with torch.no_grad():
            new.weight.copy_(layer.weight)
            if layer.bias is not None:
                new.bias.copy_(layer.bias)
        return new


# ----------------------------------------------------------------------------- add-only layers

@dataclass
class OpCounts:
    """Arithmetic operations performed on data by add-only layers (shape and index bookkeeping
    not included). ``additions``: accumulations of codes (active inputs x fan-out), plus the bias
    additions when the layer adds the bias itself; ``multiplications``: the ``gamma`` multiply
    (one per output) when the layer is not told to leave it to the caller (``fold_scale``)."""

    additions: int = 0
    multiplications: int = 0

    def __add__(self, other: OpCounts) -> OpCounts:
        return OpCounts(self.additions + other.additions,
                        self.multiplications + other.multiplications)

    def reset(self) -> None:
        self.additions = 0
        self.multiplications = 0


class ScaleFold(NamedTuple):
    """What the neuron fed by a ``fold_scale`` add-only layer uses instead of ``gamma`` and the
    bias: threshold ``v_th / gamma`` and a per-step input ``offset = bias / gamma`` (None without
    bias). Shapes: ``v_th`` as given; ``offset [C_out]``."""

    v_th: Tensor
    offset: Tensor | None


def _check_binary(x: Tensor, layer: str, dense: str) -> None:
    if x.dtype == torch.bool:
        return
    if x.is_complex() or not (x.is_floating_point() or x.dtype in (torch.uint8, torch.int8,
                                                                     torch.int16, torch.int32,
                                                                     torch.int64)):
        raise TypeError(f"{layer} takes binary spikes (bool, integer or float 0/1), got {x.dtype}")
    bad = (x != 0) & (x != 1)
    if bool(bad.any()):
        example = x[bad].flatten()[0].item()
        raise ValueError(f"{layer} needs binary spikes in {{0, 1}}, got the value {example!r} "
                         f"(and {int(bad.sum())} non-binary entries in all). Feed it binary "
                         "spikes (a neuron with levels=1 emitting spike counts, not "
                         f"n * v_th), or use {dense} for real-valued or multi-level input.")


def _accumulate(active: Tensor, codes: Tensor) -> tuple[Tensor, int]:
    """``acc[m, o] = sum_k codes[o, k] * active[m, k]`` for binary ``active [M, K]`` and int8
    ``codes [O, K]``, by additions only: each active pair (m, k) adds the code column
    ``codes[:, k]`` (its fan-out) into row m. Returns ``(acc [M, O] int32, additions)``."""
    M, O = active.shape[0], codes.shape[0]
    rows, cols = active.nonzero(as_tuple=True)                 # [P], [P]  active pairs
    fanout = codes.t()                                         # [K, O]  code row per input
    acc = torch.zeros(M, O, dtype=torch.int32, device=active.device)
    step = max(1, _CHUNK_ELEMENTS // max(O, 1))
    for start in range(0, rows.numel(), step):
        r, c = rows[start:start + step], cols[start:start + step]
        acc.index_add_(0, r, fanout[c].to(torch.int32))         # [p, O] added into rows r
    return acc, rows.numel() * O


class _AddOnly(nn.Module):
    """Shared parts: the int8 codes, ``gamma``, the bias, folding and op counting."""

    codes: Tensor
    gamma: Tensor
    bias: Tensor | None

    def __init__(self, codes: Tensor, gamma: Tensor | float, bias: Tensor | None,
                 fold_scale: bool) -> None:
        super().__init__()
        if codes.dtype != torch.int8 or bool(((codes < -1) | (codes > 1)).any()):
            raise ValueError(f"{type(self).__name__} needs int8 codes in {{-1, 0, 1}}, got "
                             f"{codes.dtype}; build it with {type(self).__name__}.from_ternary")
        gamma = torch.as_tensor(gamma, dtype=torch.float32 if bias is None else bias.dtype,
                                device=codes.device).detach().clone().reshape(())
        if not (torch.isfinite(gamma) and gamma > 0):
            raise ValueError(f"the scale gamma must be a positive finite number, got "
                             f"{float(gamma)!r}")
        if bias is not None and bias.shape != codes.shape[:1]:
            raise ValueError(f"bias must have one entry per output ({codes.shape[0]}), got shape "
                             f"{tuple(bias.shape)}")
        self.register_buffer("codes", codes.detach().clone())
        self.register_buffer("gamma", gamma)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.fold_scale = bool(fold_scale)
        self.op_counts = OpCounts()

    def folded(self, v_th: Tensor | float) -> ScaleFold:
        """Threshold and per-step offset of the neuron this layer feeds when ``fold_scale`` is
        on: ``ScaleFold(v_th / gamma, bias / gamma)`` (see the module docstring)."""
        v_th = torch.as_tensor(v_th, dtype=self.gamma.dtype, device=self.gamma.device)
        offset = None if self.bias is None else self.bias / self.gamma
        return ScaleFold(v_th / self.gamma, offset)

    def _finish(self, acc: Tensor, additions: int, dtype: torch.dtype, channel_dim: int
                ) -> Tensor:
        """int32 ``acc`` -> output in ``dtype``; applies ``gamma`` and the bias unless folded."""
        out = acc.to(dtype)
        if not self.fold_scale:
            out = out * self.gamma.to(dtype)
            self.op_counts.multiplications += out.numel()
            if self.bias is not None:
                shape = [1] * out.ndim
                shape[channel_dim] = -1
                out = out + self.bias.to(dtype).reshape(shape)
                additions += out.numel()
        self.op_counts.additions += additions
        return out

    @staticmethod
    def _out_dtype(x: Tensor, gamma: Tensor) -> torch.dtype:
        return x.dtype if x.is_floating_point() else gamma.dtype


class AddOnlyLinear(_AddOnly):
    """Inference twin of :class:`TernaryLinear` for binary spikes: additions only.

    ``y = gamma * acc + b`` with ``acc[..., o] = sum_{j: x_j = 1} C[o, j]``, computed by adding
    the code column ``C[:, j]`` of every active input ``j`` into the output (int32). With
    ``fold_scale=True`` the forward returns ``acc`` itself (integer-valued, in the input's float
    dtype): no multiplication at all, ``gamma`` and ``bias`` left to the next neuron
    (:meth:`folded`).

    Per forward, ``op_counts.additions`` grows by (active inputs) x ``out_features`` (each
    active input's whole fan-out is added, zero codes included), plus one per output for the
    bias when not folded; ``op_counts.multiplications`` by one per output when not folded.

    Args:
        codes: int8 ``[out_features, in_features]`` in {-1, 0, 1}.
        gamma: the scale (> 0); multiply it by the amplitude of one input spike when the
            neuron feeding this layer would emit ``n * v_th``.
        bias: float ``[out_features]`` or None.
        fold_scale: return ``acc`` and leave ``gamma`` and the bias to the caller.

    Shape:
        ``x [..., in_features]`` binary -> ``[..., out_features]``.
    """

    def __init__(self, codes: Tensor, gamma: Tensor | float, bias: Tensor | None = None, *,
                 fold_scale: bool = False) -> None:
        if codes.ndim != 2:
            raise ValueError(f"AddOnlyLinear codes are [out_features, in_features], got shape "
                             f"{tuple(codes.shape)}")
        super().__init__(codes, gamma, bias, fold_scale)
        self.out_features, self.in_features = codes.shape

    @classmethod
    def from_ternary(cls, layer: TernaryLinear, *, fold_scale: bool = False,
                     input_scale: float = 1.0) -> AddOnlyLinear:
        """The add-only twin of a trained ``layer``: its codes, ``gamma * input_scale`` and bias."""
        if not isinstance(layer, TernaryLinear):
            raise TypeError(f"AddOnlyLinear.from_ternary takes a TernaryLinear, got "
                            f"{type(layer).__name__}")
        return cls(layer.codes(), layer.scale() * float(input_scale),
                   None if layer.bias is None else layer.bias.detach(), fold_scale=fold_scale)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"AddOnlyLinear expects [..., {self.in_features}], got shape "
                             f"{tuple(x.shape)}")
        _check_binary(x, "AddOnlyLinear", "TernaryLinear")
        lead = x.shape[:-1]
        acc, additions = _accumulate(x.reshape(-1, self.in_features), self.codes)  # [M, O]
        out = self._finish(acc, additions, self._out_dtype(x, self.gamma), channel_dim=1)
        return out.reshape(*lead, self.out_features)             # [..., out_features]

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"gamma={float(self.gamma):.4g}, bias={self.bias is not None}, "
                f"fold_scale={self.fold_scale}")


def _conv_padding(padding: str | int | tuple[int, int], kernel_size: tuple[int, int],
                  dilation: tuple[int, int]) -> tuple[int, int, int, int]:
    """``F.pad`` order ``(left, right, top, bottom)``, as ``nn.Conv2d`` pads (``'same'``: the
    odd one out goes right/bottom)."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        (th, tw) = (dilation[0] * (kernel_size[0] - 1), dilation[1] * (kernel_size[1] - 1))
        return (tw // 2, tw - tw // 2, th // 2, th - th // 2)
    if isinstance(padding, str):
        raise ValueError(f"padding must be 'same', 'valid', an int or a pair, got {padding!r}")
    ph, pw = _pair(padding)
    if ph < 0 or pw < 0:
        raise ValueError(f"padding must be >= 0, got {padding!r}")
    return (pw, pw, ph, ph)


class AddOnlyConv2d(_AddOnly):
    """Inference twin of :class:`TernaryConv2d` for binary spikes: additions only.

    The binary input is padded and unfolded into its receptive fields (``F.pad`` and
    ``F.unfold``: data movement), then each output position adds the code columns of its active
    inputs, as :class:`AddOnlyLinear` does (per group). Any ``groups`` and ``padding_mode``
    of ``nn.Conv2d`` (padding a binary map keeps it binary).

    Per forward, ``op_counts.additions`` grows by (active entries of the receptive fields) x
    ``out_channels / groups``, i.e. one addition per active synapse, plus one per output for
    the bias when not folded; ``op_counts.multiplications`` by one per output when not folded.

    Args:
        codes: int8 ``[C_out, C_in / groups, kH, kW]`` in {-1, 0, 1}.
        gamma, bias, fold_scale: as :class:`AddOnlyLinear`.
        stride, padding, dilation, groups, padding_mode: as ``nn.Conv2d``.

    Shape:
        ``x [N, C_in, H, W]`` binary -> ``[N, C_out, H_out, W_out]``.
    """

    def __init__(self, codes: Tensor, gamma: Tensor | float, bias: Tensor | None = None, *,
                 stride: int | tuple[int, int] = 1, padding: str | int | tuple[int, int] = 0,
                 dilation: int | tuple[int, int] = 1, groups: int = 1,
                 padding_mode: str = "zeros", fold_scale: bool = False) -> None:
        if codes.ndim != 4:
            raise ValueError(f"AddOnlyConv2d codes are [C_out, C_in / groups, kH, kW], got "
                             f"shape {tuple(codes.shape)}")
        super().__init__(codes, gamma, bias, fold_scale)
        if not isinstance(groups, int) or groups < 1 or codes.shape[0] % groups:
            raise ValueError(f"groups must be a positive integer dividing C_out="
                             f"{codes.shape[0]}, got {groups!r}")
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ValueError(f"padding_mode must be 'zeros', 'reflect', 'replicate' or "
                             f"'circular', got {padding_mode!r}")
        self.out_channels = codes.shape[0]
        self.in_channels = codes.shape[1] * groups
        self.kernel_size: tuple[int, int] = tuple(codes.shape[2:])  # type: ignore[assignment]
        self.stride, self.dilation = _pair(stride), _pair(dilation)
        if min(self.stride) < 1 or min(self.dilation) < 1:
            raise ValueError(f"stride and dilation must be >= 1, got {stride!r}, {dilation!r}")
        self.padding = padding
        self.groups = groups
        self.padding_mode = padding_mode
        self._pad = _conv_padding(padding, self.kernel_size, self.dilation)

    @classmethod
    def from_ternary(cls, layer: TernaryConv2d, *, fold_scale: bool = False,
                     input_scale: float = 1.0) -> AddOnlyConv2d:
        """The add-only twin of a trained ``layer``: codes, ``gamma * input_scale``, bias and
        geometry."""
        if not isinstance(layer, TernaryConv2d):
            raise TypeError(f"AddOnlyConv2d.from_ternary takes a TernaryConv2d, got "
                            f"{type(layer).__name__}")
        return cls(layer.codes(), layer.scale() * float(input_scale),
                   None if layer.bias is None else layer.bias.detach(), stride=layer.stride,
                   padding=layer.padding, dilation=layer.dilation, groups=layer.groups,
                   padding_mode=layer.padding_mode, fold_scale=fold_scale)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"AddOnlyConv2d expects [N, {self.in_channels}, H, W] (fold time "
                             f"into the batch: [T*B, C, H, W]), got shape {tuple(x.shape)}")
        _check_binary(x, "AddOnlyConv2d", "TernaryConv2d")
        dtype = self._out_dtype(x, self.gamma)
        N, _, H, W = x.shape
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        left, right, top, bottom = self._pad
        xf = x.to(dtype)                                           # unfold needs floats
        if any(self._pad):
            mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
            xf = F.pad(xf, self._pad, mode=mode)                   # [N, C, H', W']
        H_out = (H + top + bottom - dh * (kh - 1) - 1) // sh + 1
        W_out = (W + left + right - dw * (kw - 1) - 1) // sw + 1
        if H_out < 1 or W_out < 1:
            raise ValueError(f"AddOnlyConv2d: input {H}x{W} is smaller than the kernel "
                             f"{kh}x{kw} (dilation {dh}x{dw}) after padding")
        fields = F.unfold(xf, (kh, kw), dilation=(dh, dw), stride=(sh, sw))  # [N, C*kh*kw, L]
        L = fields.shape[2]
        fields = fields.transpose(1, 2).reshape(N * L, -1)         # [N*L, C*kh*kw]
        K_g, O_g = fields.shape[1] // self.groups, self.out_channels // self.groups
        codes = self.codes.reshape(self.out_channels, -1)          # [C_out, C_in/g*kh*kw]
        accs, additions = [], 0
        for g in range(self.groups):
            acc, adds = _accumulate(fields[:, g * K_g:(g + 1) * K_g],
                                    codes[g * O_g:(g + 1) * O_g])  # [N*L, O_g]
            accs.append(acc)
            additions += adds
        acc = accs[0] if self.groups == 1 else torch.cat(accs, dim=1)  # [N*L, C_out]
        acc = acc.reshape(N, L, self.out_channels).transpose(1, 2)       # [N, C_out, L]
        acc = acc.reshape(N, self.out_channels, H_out, W_out)            # [N, C_out, H_o, W_o]
        return self._finish(acc, additions, dtype, channel_dim=1)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding!r}, dilation={self.dilation}, "
                f"groups={self.groups}, padding_mode={self.padding_mode!r}, "
                f"gamma={float(self.gamma):.4g}, bias={self.bias is not None}, "
                f"fold_scale={self.fold_scale}")


# ----------------------------------------------------------------------------- input noise

class InputNoise(nn.Module):
    """Hyper-robust training: in ``train()`` mode each sample draws a noise fraction
    ``p ~ U(min_fraction, max_fraction)`` and each of its entries is replaced, with probability
    ``p``, by noise drawn uniformly from ``noise_range`` (:func:`snn5.core.conversion.
    replace_noise`). Identity in ``eval()`` mode.

    Args:
        min_fraction, max_fraction: range of the per-sample noise fraction (0 and 0.45).
        noise_range: ``(low, high)`` of the replacing noise (``[0, 1)``, for inputs in [0, 1]).
        generator: draws the fractions and the noise (reproducible runs); its device must be
            the input's. None: the global RNG.

    Shape:
        ``x [B, *F]`` float (dim 0 is the sample) -> same.
    """

    def __init__(self, min_fraction: float = 0.0, max_fraction: float = 0.45, *,
                 noise_range: tuple[float, float] = (0.0, 1.0),
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        for name, value in (("min_fraction", min_fraction), ("max_fraction", max_fraction)):
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a fraction of the input in [0, 1], got {value!r} "
                                 "(45 % is 0.45)")
        if min_fraction > max_fraction:
            raise ValueError(f"min_fraction ({min_fraction}) must not exceed max_fraction "
                             f"({max_fraction})")
        low, high = (float(v) for v in noise_range)
        if not (torch.isfinite(torch.tensor([low, high])).all() and low < high):
            raise ValueError(f"noise_range must be finite (low, high) with low < high, got "
                             f"{noise_range!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        self.min_fraction, self.max_fraction = float(min_fraction), float(max_fraction)
        self.noise_range = (low, high)
        self.generator = generator

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.max_fraction == 0.0:
            return x
        if not x.is_floating_point() or x.ndim < 1:
            raise ValueError(f"InputNoise takes float input [B, ...], got {x.dtype} of shape "
                             f"{tuple(x.shape)}")
        u = torch.rand(x.shape[0], generator=self.generator, device=x.device, dtype=x.dtype)
        fraction = self.min_fraction + (self.max_fraction - self.min_fraction) * u     # [B]
        return replace_noise(x, fraction.clamp(0.0, 1.0), self.generator, *self.noise_range)

    def extra_repr(self) -> str:
        return (f"fraction=U({self.min_fraction:g}, {self.max_fraction:g}), "
                f"noise_range={self.noise_range}")


TERNARY_LAYERS = (TernaryLinear, TernaryConv2d)
ADD_ONLY_LAYERS = (AddOnlyLinear, AddOnlyConv2d)

__all__ = ["ADD_ONLY_LAYERS", "AddOnlyConv2d", "AddOnlyLinear", "InputNoise", "OpCounts",
           "ScaleFold", "TERNARY_LAYERS", "TernaryConv2d", "TernaryLinear"]
