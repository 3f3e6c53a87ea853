"""Config schema of surrogate-gradient (BPTT) training."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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
    amp: Literal["auto", "off", "bf16", "fp16"] = Field(
        "auto", description="mixed precision: auto = bf16 on CUDA with bf16 support, fp16 on "
        "other CUDA devices, off on CPU")
    checkpoint_every_steps: int = Field(0, ge=0, description="0: at the end of each epoch only")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1, ...")
    threads: int | None = Field(None, ge=1, description="CPU threads (torch.set_num_threads)")
