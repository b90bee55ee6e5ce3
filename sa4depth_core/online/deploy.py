"""How online-learned weights become the deployed model, and what an evaluation came to.

A candidate that passed the gate (safety.gate) is written to the checkpoint store, verified by
loading the file back and running it, then recorded as deployed; when any of that fails, the
deployed model stays what it was.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..loaded_model import load_checked_model
from ..model import SA4DepthModel
from .store import CheckpointEntry, CheckpointStore

# EvalOutcome actions
DEPLOYED, KEPT, ROLLED_BACK, SKIPPED, FAILED = "deployed", "kept", "rolled_back", "skipped", "failed"


@dataclass
class EvalOutcome:
    """Result of OnlineLearner.evaluate.

    action: "deployed", "kept", "rolled_back", "skipped" (not enough validation data) or "failed"
    (the candidate passed the gate but could not be written or verified; nothing changed).
    candidate, reference: score dicts (score.validation_score) or None.
    entry, path: the new deployed checkpoint (action "deployed").
    """

    action: str
    message: str
    candidate: dict | None = None
    reference: dict | None = None
    entry: CheckpointEntry | None = None
    path: str = ""


class DeployFailed(Exception):
    """A candidate passed the gate but was not written, did not load back or was not recorded as
    deployed; the message says which. The deployed model is unchanged."""


def deploy_candidate(store: CheckpointStore, model: SA4DepthModel, config: dict, step: int, candidate: dict,
                     reference: dict, features_trained: bool, device: torch.device) -> tuple[CheckpointEntry, Path]:
    """Write the candidate's weights, verify the file and record it as deployed.

    Args:
        config: the checkpoint's configuration (Config.to_dict()); candidate, reference: score
            dicts of the candidate and of the deployed model (score.validation_score).
    Returns:
        the new deployed entry and its path. Raises DeployFailed.
    """
    try:
        entry = store.write(config=config, model=model.state_dict(), step=step, kind="candidate",
                            parent=store.deployed, score=candidate["score"],
                            metrics={**candidate, "reference_score": reference["score"]},
                            features_trained=features_trained)
    except OSError as exc:
        raise DeployFailed(f"candidate passed the gate but was not written: {exc}") from exc
    path = store.path(entry)
    try:
        load_checked_model(path, device)
    except CheckpointError as exc:
        raise DeployFailed(f"candidate written but not deployed, it does not load back: {exc}") from exc
    try:
        store.set_deployed(path, entry.model_id)
    except OSError as exc:
        raise DeployFailed(f"candidate {path} written but not recorded as deployed: {exc}") from exc
    return entry, path


def record_deployed(store: CheckpointStore, path: Path, model_id: str, report_error: Callable[[str], None]) -> None:
    """Record `path` as the deployed model; when the manifest cannot be written the record is kept
    in memory only and the failure reported."""
    try:
        store.set_deployed(path, model_id)
    except OSError as exc:
        report_error(f"could not record the deployed model {model_id}: {exc}")
        store.deployed, store.deployed_id = str(path), model_id
