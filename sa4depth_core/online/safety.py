"""The rules that keep online learning from making a deployed model worse.

`gate` decides what a validation score means for a candidate; `DivergenceMonitor` watches the
training steps between evaluations. Both are pure functions of numbers, tested without models.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..train.step import step_problem

# gate() actions
DEPLOY, KEEP, COLLAPSE = "deploy", "keep", "collapse"


@dataclass(frozen=True)
class GateDecision:
    """action: "deploy" (write and announce the candidate), "keep" (deployed model stays, training
    goes on) or "collapse" (candidate broken or far worse: roll back); reason: one line for logs."""

    action: str
    reason: str


def gate(candidate: float, reference: float, margin: float, collapse_factor: float) -> GateDecision:
    """Compare validation scores (lower is better) of the candidate and the deployed model.

    Args:
        margin: relative improvement required: deploy iff candidate < reference * (1 - margin).
        collapse_factor: candidate > reference * collapse_factor (or non-finite) is a collapse.
    """
    if not math.isfinite(candidate):
        return GateDecision(COLLAPSE, f"candidate score is {candidate}")
    if not math.isfinite(reference):
        # Only a broken reference can get here (e.g. a deployed file with NaN weights): any
        # finite candidate is better than it.
        return GateDecision(DEPLOY, f"deployed model scores {reference}; candidate {candidate:.5g}")
    if candidate > reference * collapse_factor:
        return GateDecision(COLLAPSE,
                            f"candidate score {candidate:.5g} > {collapse_factor:g} x deployed {reference:.5g}")
    threshold = reference * (1.0 - margin)
    if candidate < threshold:
        return GateDecision(DEPLOY, f"candidate score {candidate:.5g} < deployed {reference:.5g} - {100 * margin:g} %")
    return GateDecision(KEEP, f"candidate score {candidate:.5g} does not beat deployed {reference:.5g} by "
                              f"{100 * margin:g} %")


class DivergenceMonitor:
    """Counts bad training steps (non-finite loss or gradient, gradient norm above
    `max_grad_norm`); `max_bad_steps` of them in a row mean divergence.

    A single bad step (one odd batch) is skipped without touching the weights; a run of them
    means the weights themselves have gone bad.
    """

    def __init__(self, max_grad_norm: float, max_bad_steps: int):
        self.max_grad_norm = float(max_grad_norm)
        self.max_bad_steps = int(max_bad_steps)
        self.bad_in_a_row = 0
        self.bad_total = 0

    def check_step(self, loss: float, grad_norm: float | None) -> str | None:
        """Why this step must be skipped (None = apply it). grad_norm None: not computed yet."""
        return step_problem(loss, grad_norm, self.max_grad_norm)

    def record(self, problem: str | None) -> str | None:
        """Record a step's outcome; returns the divergence reason when a rollback is due."""
        if problem is None:
            self.bad_in_a_row = 0
            return None
        self.bad_in_a_row += 1
        self.bad_total += 1
        if self.bad_in_a_row >= self.max_bad_steps:
            self.bad_in_a_row = 0
            return f"{self.max_bad_steps} bad training steps in a row, last: {problem}"
        return None
