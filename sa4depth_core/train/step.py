"""The guarded optimiser step of the offline Trainer and the online learner: a step whose loss or
gradient is unusable is skipped and leaves the weights as they were."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch


def step_problem(loss: float, grad_norm: float | None, max_grad_norm: float = math.inf) -> str | None:
    """Why a step must be skipped, or None to apply it.

    Args:
        loss: the step's loss; grad_norm: its gradient norm before clipping, None before backward.
        max_grad_norm: a larger gradient norm counts as exploding.
    """
    if not math.isfinite(loss):
        return f"non-finite loss ({loss})"
    if grad_norm is None:
        return None
    if not math.isfinite(grad_norm):
        return f"non-finite gradient norm ({grad_norm})"
    if grad_norm > max_grad_norm:
        return f"exploding gradient (norm {grad_norm:.4g} > {max_grad_norm:g})"
    return None


def guarded_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, parameters: Iterable[torch.nn.Parameter],
                 grad_clip: float, check: Callable[[float, float | None], str | None] = step_problem,
                 scaler: torch.amp.GradScaler | None = None) -> tuple[float | None, str | None]:
    """Backward, clip and apply one optimiser step unless `check` refuses the loss or the gradient.

    Args:
        loss: scalar tensor of the step.
        parameters: whose gradient norm is clipped to `grad_clip` (0 = no clipping).
        check: (loss, grad_norm or None before backward) -> why the step is skipped, or None.
        scaler: mixed precision's GradScaler; the gradient is unscaled before clipping.
    Returns:
        (gradient norm before clipping, None when the loss was refused before backward;
        the problem, None when the step was applied). The gradients are cleared either way.
    """
    value = loss.item()
    problem = check(value, None)
    grad_norm = None
    if problem is None:
        optimizer.zero_grad(set_to_none=True)
        (loss if scaler is None else scaler.scale(loss)).backward()
        if scaler is not None:
            scaler.unscale_(optimizer)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(parameters, grad_clip or math.inf))
        problem = check(value, grad_norm)
        if problem is None:
            if scaler is None:
                optimizer.step()
            else:
                scaler.step(optimizer)
        if scaler is not None:
            scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm, problem
