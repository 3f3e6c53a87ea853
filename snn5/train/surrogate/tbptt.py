"""Truncated backpropagation through time (TBPTT) for a :class:`snn5.models.SpikingClassifier`.

The spiking body runs over the sequence in chunks of ``K`` steps. After each chunk its loss is
backpropagated at once and the state handed to the next chunk is detached, so autograd never
holds more than one chunk of the body's graph: activation memory is bounded by K steps, not T
(Williams & Peng, Neural Computation 1990, "BPTT(h; h)"; the same cut as in online SNN training).

What each chunk backpropagates (``chunk_objective``, see
:func:`snn5.train.surrogate.losses.chunk_loss`) is its share of the loss: for per-step losses
(TET, TRT) the shares add up to the whole-sequence loss exactly, and the gradient differs from
full BPTT only by the paths that cross a chunk boundary through the neurons' (and the LI
readout's) state, which are cut. With ``K >= T`` there is one chunk and the gradient is that of
full BPTT, bit for bit.

The stem (the stateless layers before the first neuron) runs once on the whole input; its
output is made a leaf, the chunks' gradients collect on it, and one backward through the stem
follows the last chunk. No gradient crosses a chunk boundary through time: the stem is
stateless, and a chunk's loss reaches only the stem outputs of its own steps (with direct
encoding every step shares the one stem output, so all chunks reach it, as they share the
input).

BatchNorm in training mode inside the body is refused when ``K < T``: it would normalise each
chunk with the statistics of that chunk's ``K * B`` samples instead of the ``T * B`` samples a
whole-sequence pass uses (spiking activity is not stationary in time: the first steps spike
less), and update its running statistics once per chunk, so the model evaluated (one pass,
running statistics) would not be the model trained. BatchNorm in the stem is fine (it sees the
whole sequence).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from snn5.nn.layers import detach_state


class TBPTTError(ValueError):
    """A model or configuration truncated BPTT cannot train as asked; the message says why."""


def check_tbptt(model: nn.Module, steps: int, timesteps: int) -> None:
    """Raise :class:`TBPTTError` if ``model`` cannot be trained with chunks of ``steps``."""
    missing = [a for a in ("sequence", "body", "readout") if not hasattr(model, a)]
    if missing or not hasattr(model.readout, "steps"):
        raise TBPTTError(f"train.tbptt_steps needs a SpikingClassifier (encoder, stem, body, "
                         f"readout with steps()); {type(model).__name__} is not one. Remove "
                         "train.tbptt_steps for this model.")
    if steps < 1:
        raise TBPTTError(f"train.tbptt_steps must be >= 1, got {steps}")
    if steps >= timesteps:
        return
    norms = [name for name, m in model.body.named_modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    if norms:
        raise TBPTTError(f"train.tbptt_steps={steps} < T={timesteps} would normalise the "
                         f"BatchNorm 'body.{norms[0]}' with per-chunk statistics (and update "
                         "its running statistics once per chunk), unlike the whole-sequence "
                         "pass used at evaluation. Set model.batch_norm: false, or "
                         f"train.tbptt_steps >= {timesteps} (full BPTT).")


def tbptt_backward(model: nn.Module, x: Tensor, steps: int,
                   chunk_objective: Callable[[Tensor, int, int], Tensor],
                   backward: Callable[[Tensor], None] = Tensor.backward,
                   ) -> tuple[float, Tensor]:
    """Forward and backward of ``model`` on ``x`` by truncated BPTT in chunks of ``steps``.

    Gradients accumulate into ``.grad`` of the parameters (zero them before).

    Args:
        model: a :class:`snn5.models.SpikingClassifier`.
        x: a batch ``[B, *input_shape]``.
        steps: K, the chunk length.
        chunk_objective: ``(scores [K, B, C], first_step, T) -> loss`` of one chunk (the
            chunk's share of the loss; see :func:`snn5.train.surrogate.losses.chunk_loss`).
        backward: runs the backward of one chunk's loss (e.g. with a gradient scaler and a
            NaN check).

    Returns:
        ``(loss, logits)``: the sum of the chunks' losses and the logits ``[B, C]`` of the whole
        sequence (the readout's reduction of all chunks' scores; no graph).
    """
    h = model.sequence(x)                                  # [T, B, ...] the body's input
    T = h.shape[0]
    check_tbptt(model, steps, T)
    leaf = h.detach().requires_grad_(h.requires_grad)     # the stem's backward waits to the end
    body_state = readout_state = None
    scores_seen: list[Tensor] = []
    total = 0.0
    for first in range(0, T, steps):
        chunk = leaf[first:first + steps]                  # [K, B, ...]
        out, body_state = model.body(chunk, body_state,
                                     checkpoint_steps=getattr(model, "checkpoint_steps", None))
        scores, readout_state = model.readout.steps(out, readout_state)     # [K, B, C]
        loss = chunk_objective(scores, first, T)
        total += float(loss.detach())
        backward(loss)                                     # frees this chunk's graph
        body_state = detach_state(body_state)              # truncation: no gradient crosses
        readout_state = detach_state(readout_state)        # the chunk boundary
        scores_seen.append(scores.detach())
    if h.requires_grad and leaf.grad is not None:
        h.backward(leaf.grad)                              # through the stem, once
    with torch.no_grad():
        logits = model.readout.reduce_steps(torch.cat(scores_seen))        # [B, C]
    return total, logits
