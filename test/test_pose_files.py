"""Trajectory files are written whole or not at all: a write that fails part-way (a full disk,
a file size limit) leaves no partial file and an older file of the same name intact."""
import subprocess
import sys

import numpy as np
import pytest

from sa4depth_core.data.pose_io import load_kitti_poses, load_tum_poses, save_kitti_poses, save_tum_poses

# The writer runs in a child process under RLIMIT_FSIZE: every write past 4 KiB then fails with
# EFBIG, as a full disk fails with ENOSPC, wherever the writer is in the file.
WRITE_UNDER_LIMIT = """
import resource, signal, sys
import numpy as np
from sa4depth_core.data.pose_io import save_kitti_poses, save_tum_poses
poses = np.tile(np.eye(4), (500, 1, 1))
poses[:, :3, 3] = np.arange(1500).reshape(500, 3)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    if sys.argv[1] == "kitti":
        save_kitti_poses(sys.argv[2], poses)
    else:
        save_tum_poses(sys.argv[2], np.arange(500.0), poses)
except OSError as exc:
    print("OSError", exc.errno)
"""


@pytest.mark.parametrize("kind", ["kitti", "tum"])
def test_a_failed_write_leaves_no_partial_file_and_the_old_file_intact(tmp_path, kind):
    old = np.tile(np.eye(4), (2, 1, 1))
    kept = tmp_path / "kept.txt"
    if kind == "kitti":
        save_kitti_poses(kept, old)
    else:
        save_tum_poses(kept, [0.0, 1.0], old)
    for path in (tmp_path / "new.txt", kept):
        done = subprocess.run([sys.executable, "-c", WRITE_UNDER_LIMIT, kind, str(path)], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0 and done.stdout.startswith("OSError"), done.stdout + done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.txt"], "a partial or temporary file is left"
    loaded = load_kitti_poses(kept) if kind == "kitti" else load_tum_poses(kept)[1]
    np.testing.assert_array_equal(loaded, old)
