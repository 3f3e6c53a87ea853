"""The knowledge-distillation loss (Hinton, Vinyals & Dean, "Distilling the Knowledge in a
Neural Network", NIPS Deep Learning Workshop 2015, section 2)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def soft_kd_term(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """``T^2 * KL(softmax(t / T) || softmax(s / T))``, averaged over the batch.

    The ``T^2`` factor keeps the gradient of the soft term on the scale of the hard term when
    the temperature changes (Hinton et al., 2015, section 2).

    Args:
        student_logits: ``s``, the student's class scores.
        teacher_logits: ``t``, the teacher's class scores for the same samples.
        temperature: ``T > 0``.

    Returns:
        A scalar tensor.

    Shape:
        ``student_logits``, ``teacher_logits``: ``[B, C]``.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ in shape; the teacher must "
                         "score the same classes as the student.")
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return temperature ** 2 * kl


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, targets: Tensor, *,
            temperature: float, alpha: float) -> Tensor:
    """``alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y)``.

    Args:
        student_logits: ``s``, shape ``[B, C]``.
        teacher_logits: ``t``, shape ``[B, C]``.
        targets: class labels ``y``, shape ``[B]``.
        temperature: ``T > 0``.
        alpha: weight of the soft term, in ``[0, 1]``.

    Returns:
        A scalar tensor.
    """
    hard = F.cross_entropy(student_logits.float(), targets)
    return alpha * soft_kd_term(student_logits, teacher_logits, temperature) + (1 - alpha) * hard


class SoftTargetLoss:
    """The soft term ``alpha * T^2 * KL`` as a trainer hook ``(logits, batch_indices) -> loss``.

    The trainer weighs its own label loss by ``1 - alpha`` (``task_weight``), so the sum is
    :func:`kd_loss`.

    Args:
        teacher_logits: ``indices [B] -> teacher logits [B, C]`` of the training samples at
            these dataset indices (a :class:`~snn5.train.distill.cache.CachedLogits` lookup, or
            a live teacher).
        temperature: ``T > 0``.
        alpha: weight of the soft term, in ``[0, 1]``.
    """

    def __init__(self, teacher_logits: Callable[[Tensor], Tensor], *, temperature: float,
                 alpha: float) -> None:
        self.teacher_logits = teacher_logits
        self.temperature = temperature
        self.alpha = alpha

    @property
    def task_weight(self) -> float:
        """Weight of the label loss: ``1 - alpha``."""
        return 1.0 - self.alpha

    def __call__(self, logits: Tensor, batch_indices: Tensor) -> Tensor:
        with torch.no_grad():
            target = self.teacher_logits(batch_indices).to(logits.device)
        return self.alpha * soft_kd_term(logits, target, self.temperature)
