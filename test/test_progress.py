"""Training progress: steps, loss, rate and time left; a bar on a terminal, a plain line every few
steps elsewhere; and the Trainer reporting through it."""
import io

import pytest

from sa4depth_core.config import load_config
from sa4depth_core.data.kitti_odometry import KittiOdometrySequence
from sa4depth_core.data.sequence import TripletDataset
from sa4depth_core.train import progress as progress_module
from sa4depth_core.train.progress import TrainProgress
from sa4depth_core.train.trainer import Trainer


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(progress, clock, steps, seconds_per_step, loss=0.5):
    for step in range(progress.step + 1, progress.step + steps + 1):
        clock.now += seconds_per_step
        progress.update(step, loss)


def test_plain_lines_every_n_steps_but_not_closer_than_the_minimum_interval():
    clock, lines = _Clock(), []
    progress = TrainProgress(1000, 0, log=lines.append, stream=io.StringIO(), every=10, clock=clock)
    assert progress.bar is None
    _run(progress, clock, 100, seconds_per_step=1.0)  # a line at most every 15 s: steps 20, 40, 60, 80, 100
    assert [line.split(",")[0] for line in lines] == [f"step {s}/1000" for s in (20, 40, 60, 80, 100)]
    assert lines[-1] == "step 100/1000, loss 0.5000, 1.00 steps/s, 15:00 left"
    _run(progress, clock, 5, seconds_per_step=1.0)
    progress.close()
    assert lines[-1].startswith("step 105/1000") and len(lines) == 6


def test_a_slow_run_still_reports_once_a_minute():
    clock, lines = _Clock(), []
    progress = TrainProgress(1000, 0, log=lines.append, stream=io.StringIO(), every=10, clock=clock)
    _run(progress, clock, 9, seconds_per_step=25.0)  # 225 s, never a tenth step: a line at steps 3, 6 and 9
    progress.close()  # nothing new to say since step 9
    assert [line.split(",")[0] for line in lines] == [f"step {s}/1000" for s in (3, 6, 9)]


def test_time_left_is_that_of_the_budget_that_runs_out_first():
    clock = _Clock()
    by_steps = TrainProgress(100, 10.0, start_step=40, log=lambda _: None, stream=io.StringIO(), clock=clock)
    _run(by_steps, clock, 20, seconds_per_step=2.0)  # 0.5 steps/s: 40 steps left = 80 s; 560 s of budget left
    assert by_steps.status()["seconds_left"] == pytest.approx(80.0)
    clock = _Clock()
    by_time = TrainProgress(100000, 1.0, log=lambda _: None, stream=io.StringIO(), clock=clock)
    _run(by_time, clock, 10, seconds_per_step=2.0)
    assert by_time.status()["seconds_left"] == pytest.approx(40.0) and by_time.text().startswith("step 10, ")
    assert "0:40 left" in by_time.text() and by_steps.text().startswith("step 60/100, ")
    epochs_only = TrainProgress(0, 0, log=lambda _: None, stream=io.StringIO(), clock=_Clock())
    assert epochs_only.status()["seconds_left"] is None and "left" not in epochs_only.text()


def test_a_terminal_gets_a_bar_and_no_lines():
    clock, lines, terminal = _Clock(), [], _Terminal()
    progress = TrainProgress(50, 0, log=lines.append, stream=terminal, every=1, clock=clock)
    _run(progress, clock, 20, seconds_per_step=1.0)
    progress.close()
    assert lines == [] and "train: 20 steps" in terminal.getvalue() and "0:30 left" in terminal.getvalue()


def test_the_trainer_reports_progress_to_its_log(synth_root, tmp_path, monkeypatch):
    monkeypatch.setattr(progress_module, "MIN_LINE_SECONDS", 0.0)
    cfg = load_config(None, ["model.height=64", "model.width=128", "train.batch_size=2", "refine.enabled=false",
                             "train.max_steps=2", "train.log_every=1", "train.val_every=100", "train.threads=1",
                             f"train.out_dir={tmp_path}"])
    lines = []
    Trainer(cfg, TripletDataset(KittiOdometrySequence(synth_root, "00"), 64, 128), None, log=lines.append).fit()
    progress = [line for line in lines if line.startswith("step ")]
    assert [line.split(",")[0] for line in progress] == ["step 1/2", "step 2/2"]
    assert "loss" in progress[0] and "steps/s" in progress[0] and "left" in progress[0]
