"""The Diehl & Cook (2015) network as a module: plastic input weights, adaptive thresholds and
the neurons' class labels.

P. U. Diehl and M. Cook, "Unsupervised learning of digit recognition using spike-timing-
dependent plasticity", Front. Comput. Neurosci. 9:99 (2015); reference code
github.com/peter-u-diehl/stdp-mnist. The physics is :mod:`snn5.core.diehl_cook` (its docstring
lists the differences from the reference code); the fused kernel :mod:`snn5.kernels.diehl_cook`.
Learning is done by :mod:`snn5.train.plasticity.diehl_cook`, which writes ``-dw`` into
``weight.grad``.

Example:
    >>> model = DiehlCook(n_e=100)
    >>> counts = model(images)                 # [B, n_e] spike counts, no learning
    >>> model.assign(counts, labels)           # label the neurons
    >>> model.predict(test_images)             # [B] classes
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from snn5.core.diehl_cook import (
    DiehlCookParams, DiehlCookResult, assign_labels, check_params, class_sums, classify,
    init_delays, init_weight, input_rates, normalize_weight,
)
from snn5.kernels.diehl_cook import present_diehl_cook
from snn5.kernels.dispatch import Backend

NUM_CLASSES = 10


class DiehlCook(nn.Module):
    """``n_in`` Poisson inputs -> ``n_e`` excitatory neurons with adaptive thresholds, laterally
    inhibited through ``n_e`` inhibitory neurons.

    Args:
        n_e: excitatory (= inhibitory) neurons (the paper: 100, 400, 1600, 6400).
        n_in: inputs (784 pixels for MNIST).
        params: physics constants (reference-code defaults).
        generator: RNG of the initial weights and of the synaptic delays.
        backend: ``auto`` (fused kernel if built), ``cpu`` or ``reference``.

    Attributes:
        weight: ``[n_e, n_in]`` parameter, input -> excitatory (changed by a learner only),
            stored input-major (a transposed view of a ``[n_in, n_e]`` tensor): the kernel adds
            one contiguous row ``weight[:, i]`` per input spike and reads it without a copy.
        theta: ``[n_e]`` float64 buffer, adaptive thresholds (V).
        delays: ``[n_e, n_in]`` uint8 buffer, input -> excitatory delays in steps (fixed),
            stored input-major as the weight.
        assignments: ``[n_e]`` int64 buffer, each neuron's class (-1 before labelling).
    """

    def __init__(self, n_e: int = 100, n_in: int = 784, params: DiehlCookParams | None = None,
                 *, generator: torch.Generator | None = None,
                 backend: Backend | str = Backend.AUTO) -> None:
        super().__init__()
        for name, value in (("n_e", n_e), ("n_in", n_in)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.params = params if params is not None else DiehlCookParams()
        check_params(self.params)
        self.backend = Backend.parse(backend)
        self.n_e, self.n_in = n_e, n_in
        w = init_weight(n_e, n_in, self.params, generator)                  # [n_e, n_in]
        self.weight = nn.Parameter(w.t().contiguous().t())                  # input-major
        self.register_buffer("theta", torch.full((n_e,), self.params.theta_init,
                                                 dtype=torch.float64))
        d = init_delays(n_e, n_in, self.params, generator)                  # [n_e, n_in]
        self.register_buffer("delays", d.t().contiguous().t())              # input-major
        self.register_buffer("assignments", torch.full((n_e,), -1, dtype=torch.int64))

    def extra_repr(self) -> str:
        return f"n_in={self.n_in}, n_e={self.n_e}"

    # ------------------------------------------------------------------ presentations
    def present(self, rates: Tensor, seeds: Tensor, *, learn: bool = False, attempt: int = 0,
                retry: bool = True, v_offset: float = 0.0) -> DiehlCookResult:
        """Present samples given as rates ``[B, n_in]`` (Hz at intensity 1) and seeds ``[B]``
        (see :func:`snn5.kernels.diehl_cook.present_diehl_cook`); the weights and theta are
        read, not changed: with ``learn`` (one sample) the result holds the weights at the end
        of the presentation, ``dw`` and ``dtheta`` for a learner to apply."""
        return present_diehl_cook(self.weight, self.theta, self.params, rates=rates, seeds=seeds,
                                  delays=self.delays, learn=learn, attempt=attempt, retry=retry,
                                  v_offset=v_offset, backend=self.backend)

    @torch.no_grad()
    def forward(self, images: Tensor, *, generator: torch.Generator | None = None,
                seeds: Tensor | None = None) -> Tensor:
        """Spike counts ``[B, n_e]`` (int64) of images ``[B, ...]`` in [0, 1], without learning.

        Each sample draws its input spikes from ``seeds[b]`` (default: one draw per sample from
        ``generator``, or from torch's global RNG) and is repeated at a higher intensity while
        its response has fewer than ``params.min_spikes`` spikes.
        """
        rates = self.rates(images)
        if seeds is None:
            seeds = torch.randint(0, 2**62, (rates.shape[0],), generator=generator)
        return self.present(rates, seeds).counts

    @torch.no_grad()
    def predict(self, images: Tensor, *, generator: torch.Generator | None = None,
                seeds: Tensor | None = None) -> Tensor:
        """Classes ``[B]``: the class whose neurons respond most on average (needs labels, see
        :meth:`assign`)."""
        if bool((self.assignments < 0).any()):
            raise RuntimeError("the neurons have no class labels yet; call model.assign(counts, "
                               "labels) with the responses to labelled images first (the "
                               "trainer does this after training)")
        return classify(self(images, generator=generator, seeds=seeds), self.assignments,
                        NUM_CLASSES)

    @torch.no_grad()
    def assign(self, counts: Tensor, labels: Tensor) -> Tensor:
        """Label each neuron with the class it responds to most (mean spikes per presentation
        over ``counts [N, n_e]`` and ``labels [N]``); returns and stores ``assignments``."""
        if counts.ndim != 2 or counts.shape[1] != self.n_e or labels.shape != counts.shape[:1]:
            raise ValueError(f"expected counts [N, n_e={self.n_e}] and labels [N], got "
                             f"{tuple(counts.shape)} and {tuple(labels.shape)}")
        self.assignments.copy_(assign_labels(*class_sums(counts, labels, NUM_CLASSES)))
        return self.assignments

    # ------------------------------------------------------------------ learner helpers
    @torch.no_grad()
    def normalize_(self) -> None:
        """Scale each neuron's input weights to sum ``params.w_sum`` (before every sample)."""
        self.weight.copy_(normalize_weight(self.weight, self.params))

    def rates(self, images: Tensor) -> Tensor:
        """Input rates at intensity 1 (Hz, float64 ``[B, n_in]``) of images ``[B, ...]`` in
        [0, 1]."""
        rates = input_rates(images, self.params)                             # [B, n_in]
        if rates.shape[1] != self.n_in:
            raise ValueError(f"images have {rates.shape[1]} pixels each, the model has "
                             f"{self.n_in} inputs; build DiehlCook(n_in={rates.shape[1]})")
        return rates


__all__ = ["DiehlCook", "NUM_CLASSES"]
