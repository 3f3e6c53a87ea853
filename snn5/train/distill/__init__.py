"""Knowledge distillation: an ANN teacher's logits, cached on disk, teach an SNN student
(Hinton, Vinyals & Dean, 2015). The trainer gets the soft term as a per-batch hook; the wiring
of ``paradigm: distill`` lives in :mod:`snn5.runs.run`. See docs/distillation.md."""

from snn5.train.distill.cache import (
    CachedLogits, CacheKey, LiveTeacher, cache_key, compute_logits, inputs_hash, teacher_logits,
)
from snn5.train.distill.config import DistillConfig
from snn5.train.distill.loss import SoftTargetLoss, kd_loss, soft_kd_term
from snn5.train.distill.teacher import (
    TeacherArchitectureError, TeacherError, TeacherNotFoundError, architecture_hash,
    load_teacher, teacher_weights_path, weights_hash,
)

__all__ = [
    "CacheKey", "CachedLogits", "DistillConfig", "LiveTeacher", "SoftTargetLoss",
    "TeacherArchitectureError", "TeacherError", "TeacherNotFoundError", "architecture_hash",
    "cache_key", "compute_logits", "inputs_hash", "kd_loss", "load_teacher", "soft_kd_term",
    "teacher_logits", "teacher_weights_path", "weights_hash",
]
