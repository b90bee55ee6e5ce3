"""Material texture of the synthetic scenes: value noise in metres on each surface, band-limited
to the pixel footprint.

Noise octaves finer than the pixel footprint fade out smoothly (the footprint grows with distance
and grazing angle), which keeps distant surfaces from aliasing.
"""
from __future__ import annotations

import numpy as np

from sa4depth_core.data.synth.scene import DETAIL_OCTAVES, LATTICE, Scene

_BASE_FREQ = 0.6  # lattice cells per metre of the coarsest grain octave
_AMPS = (0.8 ** np.arange(DETAIL_OCTAVES)).astype(np.float32)


def _value_noise(x: np.ndarray, y: np.ndarray, quads: np.ndarray) -> np.ndarray:
    """Smoothly interpolated lattice noise.

    Args:
        x, y: (n,) float32 positions in lattice cells.
        quads: (LATTICE**2, 4) float32 lattice values of each cell's corners (00, 10, 01, 11).
    Returns:
        (n,) float32 in [0,1].
    """
    xf, yf = np.floor(x), np.floor(y)
    tx, ty = x - xf, y - yf
    cell = (yf.astype(np.int32) & (LATTICE - 1)) * LATTICE + (xf.astype(np.int32) & (LATTICE - 1))
    corner = np.take(quads, cell, axis=0)  # much faster than fancy indexing for row gathers
    sx = tx * tx * (3 - 2 * tx)
    top = corner[:, 0] + (corner[:, 1] - corner[:, 0]) * sx
    bottom = corner[:, 2] + (corner[:, 3] - corner[:, 2]) * sx
    return top + (bottom - top) * (ty * ty * (3 - 2 * ty))



def _fade(cells_per_pixel: np.ndarray) -> np.ndarray:
    """Octave weight: 1 while a noise cell spans >= 4 pixels, 0 below 2 pixels."""
    return np.clip(2 - 4 * cells_per_pixel, 0, 1)


def surface_colour(scene: Scene, mat: np.ndarray, u: np.ndarray, v: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Colour of surface points from their material and uv (metres), band-limited to the pixel footprint.

    Args:
        mat: (n,) material ids; u, v: (n,) float64 metres; footprint: (n,) float32 metres per pixel.
    Returns:
        (n,3) float32 RGB in [0,1] before shading.
    """
    # float32 resolves these (< ~4 km) to a fraction of a millimetre, far below the finest cell.
    su = (u + scene.mat_shift[mat, 0]).astype(np.float32)
    sv = (v + scene.mat_shift[mat, 1]).astype(np.float32)
    freq = scene.mat_blotch_freq[mat]
    blotch = 0.5 + _fade(freq * footprint) * (_value_noise(su * freq, sv * freq, scene.noise[0]) - 0.5)
    base = np.take(scene.mat_base, mat, axis=0)
    colour = base + (np.take(scene.mat_blotch, mat, axis=0) - base) * blotch[:, None]

    grain = np.zeros(len(mat), np.float32)
    idx = np.arange(len(mat))
    for k in range(DETAIL_OCTAVES):
        f = np.float32(_BASE_FREQ * 2.0 ** k)
        weight = _fade(f * footprint[idx])
        live = weight > 0
        idx, weight = idx[live], weight[live]
        if idx.size == 0:
            break  # finer octaves have even smaller cells, so none of them survives either
        c, s = np.float32(f * np.cos(0.7 * k)), np.float32(f * np.sin(0.7 * k))  # rotated lattices
        uk, vk = su[idx], sv[idx]
        grain[idx] += (_AMPS[k] * weight) * (_value_noise(c * uk - s * vk, s * uk + c * vk, scene.noise[1 + k]) - 0.5)
    colour += (scene.mat_grain[mat] * grain)[:, None]

    win = np.flatnonzero(scene.mat_window_cell[mat, 0] > 0)
    if win.size:
        m, w = mat[win], footprint[win]
        cell, frac = np.take(scene.mat_window_cell, m, axis=0), np.take(scene.mat_window_frac, m, axis=0)
        cover = np.ones(win.size, np.float32)
        # Window grids are anchored at each face's corner, so face-local u, v are small numbers.
        for axis, coord in ((0, u[win].astype(np.float32)), (1, v[win].astype(np.float32))):
            size = cell[:, axis]
            phase = coord / size
            off_centre = np.abs(phase - np.floor(phase) - 0.5) * size
            cover *= np.clip((0.5 * frac[:, axis] * size - off_centre) / w + 0.5, 0, 1)
        # Where a window cell spans under ~6 pixels the grid would alias: blend to its mean cover.
        resolved = np.clip(np.minimum(cell[:, 0], cell[:, 1]) / w / 3 - 1, 0, 1)
        cover = resolved * cover + (1 - resolved) * (frac[:, 0] * frac[:, 1])
        colour[win] += (np.take(scene.mat_window, m, axis=0) - colour[win]) * cover[:, None]
    return colour

