import os

import pytest
import torch

from sa4depth_core import checkpoint as ck
from sa4depth_core.config import config_from_dict, load_config
from sa4depth_core.errors import CheckpointError, InputError


def test_yaml_then_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  lr: 0.001\n  batch_size: 4\nrefine:\n  enabled: false\n")
    cfg = load_config(p, ["train.batch_size=2", "model.scales=[0,1]", "refine.strides=4,2"])
    assert cfg.train.lr == 0.001 and cfg.train.batch_size == 2
    assert cfg.refine.enabled is False and cfg.model.scales == [0, 1]
    assert cfg.refine.strides == [4, 2]
    assert config_from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "override, words",
    [("train.nope=1", "unknown key 'nope'"), ("train.batch_size=2.5", "integer"), ("refine.enabled=maybe", "true/false"),
     ("trainlr", "section.key=value")],
)
def test_bad_overrides_are_named(override, words):
    with pytest.raises(InputError, match=words):
        load_config(None, [override])


def test_bad_yaml(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train: [unclosed\n")
    with pytest.raises(InputError, match="c.yaml: not valid YAML"):
        load_config(p)


class Evil:
    """Any class instance: loading it would need the unpickler to run arbitrary code."""


def _save(path):
    return ck.save_checkpoint(path, config={"a": 1}, model={"w": torch.arange(6.0)}, step=3, metrics={"score": 0.5})


def test_checkpoint_round_trip(tmp_path):
    path = tmp_path / "c.pt"
    digest = _save(path)
    assert digest == ck.file_sha256(path)
    data = ck.load_checkpoint(path)
    assert data["step"] == 3 and torch.equal(data["model"]["w"], torch.arange(6.0))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp files left behind


def test_truncated_empty_foreign_and_pickled(tmp_path):
    good = tmp_path / "good.pt"
    _save(good)
    data = good.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save({"state_dict": {"x": torch.zeros(1)}}, tmp_path / "foreign.pt")

    torch.save({"format": ck.FORMAT, "obj": Evil()}, tmp_path / "evil.pt")
    for name, words in [("trunc.pt", "truncated, corrupt"), ("empty.pt", "truncated, corrupt"), ("foreign.pt", "not an sa4depth"),
                        ("evil.pt", "safe loader"), ("missing.pt", "not found")]:
        with pytest.raises(CheckpointError, match=words) as e:
            ck.load_checkpoint(tmp_path / name)
        assert name in str(e.value)


def test_failed_write_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    _save(path)
    before = path.read_bytes()

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="could not write .*c.pt: No space left"):
        _save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]
