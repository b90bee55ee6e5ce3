"""Synthetic street sequences with exact depth and pose, written in the KITTI odometry layout.

scene     textured planar primitives and materials (Scene, SceneBuilder)
texture   band-limited material texture
render    ray-casting: exact z-depth and colour per pixel (render_frame, default_intrinsics)
street    street layouts along a camera path (build_street_scene)
sequence  sequences on disk (generate_sequence)
cli       `sa4depth-synth`
"""
from .cli import main
from .render import default_intrinsics, render_frame
from .scene import Scene, SceneBuilder
from .sequence import GENERATOR_VERSION, generate_sequence

__all__ = ["GENERATOR_VERSION", "Scene", "SceneBuilder", "default_intrinsics", "generate_sequence", "main",
           "render_frame"]
