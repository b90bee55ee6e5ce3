"""Online self-supervised learning with safe deployment (pure torch + numpy, no ROS).

keyframes  frame checks, keyframe selection, Triplet
buffer     bounded triplet buffers mirrored to disk, buffer manifest
score      self-supervised validation score (photometric with refined poses + depth inconsistency)
safety     deployment gate and divergence monitor
store      checkpoint files, manifest and retention that never deletes the deployed model
options    OnlineOptions, the learner's settings
resume     where a learner starts: resumed checkpoint, deployed model, restored buffers
deploy     a candidate written, verified and recorded as deployed; EvalOutcome
learner    OnlineLearner: train, evaluate, deploy, roll back, save
worker     BackgroundTrainer (thread with a compute budget) and feed_sequence (bags, folders)
"""
from .buffer import TripletBuffer, load_buffer_manifest, save_buffer_manifest
from .deploy import EvalOutcome
from .keyframes import KeyframeSelector, Triplet, grey_thumbnail, image_motion
from .learner import OnlineLearner
from .options import OnlineOptions
from .safety import DivergenceMonitor, GateDecision, gate
from .score import depth_inconsistency, triplet_batch, validation_score
from .store import CheckpointEntry, CheckpointStore
from .worker import BackgroundTrainer, feed_sequence

__all__ = [
    "BackgroundTrainer", "CheckpointEntry", "CheckpointStore", "DivergenceMonitor", "EvalOutcome", "GateDecision",
    "KeyframeSelector", "OnlineLearner", "OnlineOptions", "Triplet", "TripletBuffer", "depth_inconsistency",
    "feed_sequence", "gate", "grey_thumbnail", "image_motion", "load_buffer_manifest", "save_buffer_manifest",
    "triplet_batch", "validation_score",
]
