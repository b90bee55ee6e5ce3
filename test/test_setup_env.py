"""`make setup` re-runs exactly when one of its inputs changes: the set-up scripts, the requirement
files, and the vendored launch sources beside the repository (their presence and their content)."""
import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _layout(root: Path) -> Path:
    """A copy of what the set-up reads, as a clone at root/repo beside root/shared would have it."""
    repo = root / "repo"
    shutil.copytree(REPO / "scripts", repo / "scripts")
    shutil.copy(REPO / "requirements.txt", repo / "requirements.txt")
    return repo


def _hash(repo: Path) -> str:
    # PYTHON=false: were --hash ignored, the set-up would fail at once instead of building a venv
    env = dict(os.environ, VENV=str(repo / "venv"), PYTHON="false")
    done = subprocess.run(["bash", str(repo / "scripts" / "setup_env.sh"), "--hash"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert not (repo / "venv").exists()
    return done.stdout.strip()


def test_setup_hash_covers_scripts_requirements_and_the_vendored_launch_sources(tmp_path):
    repo = _layout(tmp_path)
    seen = [_hash(repo)]
    assert _hash(repo) == seen[0]

    package_xml = tmp_path / "shared" / "vendor" / "ros2_launch" / "src" / "launch" / "package.xml"
    package_xml.parent.mkdir(parents=True)
    package_xml.write_text("<package/>")
    seen.append(_hash(repo))  # the vendor folder appeared
    package_xml.write_text("<package format='3'/>")
    seen.append(_hash(repo))  # a vendored file changed
    with (repo / "scripts" / "requirements-launch.txt").open("a") as f:
        f.write("colcon-mixin\n")
    seen.append(_hash(repo))
    with (repo / "scripts" / "install_ros2_launch.sh").open("a") as f:
        f.write("# changed\n")
    seen.append(_hash(repo))
    with (repo / "requirements.txt").open("a") as f:
        f.write("rich\n")
    seen.append(_hash(repo))
    assert len(set(seen)) == len(seen), seen
