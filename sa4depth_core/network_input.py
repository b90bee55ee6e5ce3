"""The input sizes the depth, pose and feature networks accept: multiples of 32 (the encoder
halves the image five times) of at least 64 a side, within a memory budget."""
from __future__ import annotations

# Network input sizes beyond these would take gigabytes of activations per frame: a file or a
# setting that declares one is refused before anything is allocated.
MAX_NETWORK_SIDE = 4096
MAX_NETWORK_PIXELS = 1 << 22


def network_size_problem(height: int, width: int) -> str | None:
    """Why (height, width) cannot be a network input size, or None."""
    if height % 32 or width % 32 or height < 64 or width < 64:
        return f"network input size {width}x{height} must be multiples of 32 of at least 64 in both directions"
    if max(height, width) > MAX_NETWORK_SIDE or height * width > MAX_NETWORK_PIXELS:
        return (f"network input size {width}x{height} is beyond the budget of {MAX_NETWORK_SIDE} px a side and "
                f"{MAX_NETWORK_PIXELS} px in all")
    return None
