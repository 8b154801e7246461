"""Classifier-based feature distillation (CFD) loss of RCFD."""

import torch.nn.functional as F


def cfd_loss(f_student, f_teacher, tau):
    """KL( softmax(f_teacher / tau) || softmax(f_student) ), summed over features, batch mean.

    f_student, f_teacher: pooled classifier features [B, D]. Only the teacher is
    sharpened by tau; the teacher side carries no gradient.
    """
    if f_student.ndim != 2 or f_student.shape != f_teacher.shape:
        raise ValueError(
            f"cfd_loss expects two [B, D] feature tensors of one shape, got "
            f"{tuple(f_student.shape)} and {tuple(f_teacher.shape)}"
        )
    if tau <= 0:
        raise ValueError(f"cfd_loss: tau must be positive, got {tau}")
    log_p_teacher = F.log_softmax(f_teacher.detach() / tau, dim=1)
    log_p_student = F.log_softmax(f_student, dim=1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
