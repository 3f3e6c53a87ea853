"""Config schema of surrogate-gradient (BPTT) training."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OptimizerConfig(_Strict):
    """AdamW (decoupled weight decay) or SGD with momentum (Nesterov optional)."""

    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False


class ScheduleConfig(_Strict):
    """Linear warm-up from 0 to ``lr`` over ``warmup_epochs``, then cosine decay to
    ``min_lr_ratio * lr`` at the last step (or a constant rate)."""

    kind: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)


class RatePenaltyConfig(_Strict):
    """Activity regulariser ``weight * sum_l max(0, rate_l - target)`` over spiking layers,
    ``rate_l`` being the layer's mean spikes per neuron per step (L1 sparsity for target 0)."""

    weight: float = Field(0.0, ge=0)
    target: float = Field(0.0, ge=0, le=1)


class SpikeEntropyConfig(_Strict):
    """Information-maximisation regulariser ``-weight * mean_l H(rate_l)``: ``H`` is the
    entropy (bits) of a binary spike with the layer's firing probability, largest (1 bit) at
    rate 0.5; the objective of IM-Loss (Guo et al., NeurIPS 2022), estimated from the spikes.
    See :func:`snn5.train.surrogate.losses.spike_entropy`."""

    weight: float = Field(0.0, ge=0)


class CELoss(_Strict):
    """Cross-entropy on the readout's logits ``[B, C]`` (the usual SNN loss)."""

    name: Literal["ce"] = "ce"


class TETLoss(_Strict):
    """Temporal efficient training (Deng et al., ICLR 2022): cross-entropy at every step's
    scores, ``(1 - lam) mean_t CE(O_t, y) + lam mean (O - phi)^2``; the authors' defaults."""

    name: Literal["tet"]
    lam: float = Field(1e-3, ge=0, le=1, description="weight of the MSE term")
    phi: float = Field(1.0, description="target of the MSE term")


class TRTLoss(_Strict):
    """Temporal regularisation training (Zhang, Xu & Tao, arXiv:2506.19256, 2025): per-step
    ``(1 - eta) CE(O_t, y) + eta MSE(O_t, onehot(y))`` plus a weight penalty that decays with the
    step, ``sum_w lam w^2 / (1 + (exp(decay t) - 1)(|w| + epsilon))``, averaged over steps;
    the authors' defaults. See :func:`snn5.train.surrogate.losses.trt_loss`."""

    name: Literal["trt"]
    decay: float = Field(0.5, ge=0, description="how fast the weight penalty decays with t")
    lam: float = Field(1e-5, ge=0, description="weight penalty at the first step")
    epsilon: float = Field(1e-5, gt=0)
    eta: float = Field(0.05, ge=0, le=1, description="weight of the MSE-to-one-hot term")


class SurrogateScheduleConfig(_Strict):
    """Surrogate sharpening over training (:class:`snn5.nn.schedule.SurrogateSchedule`): the
    surrogate's own parameter (``alpha`` of atan/sigmoid: larger is sharper; ``width`` of
    triangle/rectangle: smaller is sharper) goes from ``start`` to ``end`` as the fraction of
    optimisation steps done goes from 0 to 1, set before every step."""

    start: float = Field(gt=0)
    end: float = Field(gt=0)
    kind: Literal["linear", "exponential", "cosine"] = "linear"


LossConfig = Annotated[CELoss | TETLoss | TRTLoss, Field(discriminator="name")]
"""``train.loss``: ``ce`` (default), ``tet`` or ``trt``, by ``name``."""


class TrainConfig(_Strict):
    """How a model is trained by backpropagation through time with surrogate gradients."""

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=1)
    eval_batch_size: int = Field(500, ge=1)
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    grad_clip: float | None = Field(1.0, gt=0, description="max global grad norm; None: off")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    rate_penalty: RatePenaltyConfig = RatePenaltyConfig()
    loss: LossConfig = Field(CELoss(), description="ce | tet | trt (or a mapping with name)")
    spike_entropy: SpikeEntropyConfig = SpikeEntropyConfig()
    surrogate_schedule: SurrogateScheduleConfig | None = Field(
        None, description="sharpen the surrogate over training; None: keep the model's")
    tbptt_steps: int | None = Field(
        None, ge=1, description="truncated BPTT: run the spiking body in chunks of this many "
        "steps, detach the state between chunks and backpropagate each chunk's share of the "
        "loss at once (memory bounded by the chunk); None: full BPTT")
    amp: Literal["auto", "off", "bf16", "fp16"] = Field(
        "auto", description="mixed precision: auto = bf16 on CUDA with bf16 support, fp16 on "
        "other CUDA devices, off on CPU")
    checkpoint_every_steps: int = Field(0, ge=0, description="0: at the end of each epoch only")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1, ...")
    threads: int | None = Field(None, ge=1, description="CPU threads (torch.set_num_threads)")

    @field_validator("loss", mode="before")
    @classmethod
    def _loss_by_name(cls, value: Any) -> Any:
        """``loss: tet`` is short for ``loss: {name: tet}``; a mapping without a name is ``ce``."""
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, dict) and "name" not in value:
            return {"name": "ce", **value}
        return value
