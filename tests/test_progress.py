"""Progress anywhere (sketchseg.progress): a tqdm bar in a terminal, log lines with step / total,
rate and ETA everywhere else (a fake clock, no sleeping)."""

from __future__ import annotations

import io
import logging
import re
import sys

import pytest

from sketchseg import progress as progress_module
from sketchseg.progress import progress

LOGGER = "sketchseg.progress"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def test_without_a_terminal_lines_come_at_start_every_interval_and_end(caplog, monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal (a log file, CI, nohup)
    clock = FakeClock()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        for _ in progress(range(10), desc="pre-train", unit="step", interval=30, clock=clock):
            clock.now += 10.0  # each step 10 s: a line after steps 3, 6 and 9 (30 s apart)
    lines = _lines(caplog)
    assert len(lines) == 5, lines
    assert lines[0].startswith("pre-train: 0/10 step (0%)") and lines[0].endswith("(started)")
    assert lines[1] == "pre-train: 3/10 step (30%), 10.00 s/step, elapsed 00:30, ETA 01:10"
    assert lines[3].startswith("pre-train: 9/10 step (90%)")
    assert lines[-1] == "pre-train: 10/10 step (100%), 10.00 s/step, elapsed 01:40, ETA 00:00 (done)"
    assert sys.stderr.getvalue() == ""  # no bar drawn into the file


def test_log_lines_show_a_rate_per_second_and_the_postfix(caplog):
    clock = FakeClock()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        bar = progress(range(100), desc="epoch 1/2", unit="batch", interval=1, clock=clock, terminal=False)
        for i in bar:
            clock.now += 0.25
            bar.set_postfix(loss="0.500")
    lines = _lines(caplog)
    assert "epoch 1/2: 4/100 batch (4%), 4.00 batch/s, elapsed 00:01, ETA 00:24, loss=0.500" in lines
    assert lines[-1].endswith("(done)") and len(lines) == 2 + 24  # start, every 4 batches (1 s), end


def test_update_counts_and_an_early_stop_is_logged(caplog):
    clock = FakeClock()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        with progress(total=8, desc="sample sketches", unit="sketch", clock=clock, terminal=False) as bar:
            clock.now += 5
            bar.update(3)
    lines = _lines(caplog)
    assert lines[-1] == "sample sketches: 3/8 sketch (38%), 1.67 s/sketch, elapsed 00:05, ETA 00:08 (stopped)"


def test_interval_from_the_environment(caplog, monkeypatch):
    monkeypatch.setenv(progress_module.INTERVAL_ENV, "2")
    clock = FakeClock()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        for _ in progress(range(4), desc="x", clock=clock, terminal=False):
            clock.now += 1
    assert len(_lines(caplog)) == 3  # start, after 2 s, end (the last step's line is the end line)


def test_disabled_progress_is_silent(caplog, monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert list(progress(range(3), desc="quiet", enabled=False)) == [0, 1, 2]
    assert _lines(caplog) == [] and terminal.getvalue() == ""


def test_in_a_terminal_it_is_a_tqdm_bar_with_rate_and_eta(caplog, monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        bar = progress(range(5), desc="segment", unit="sketch")
        assert list(bar) == [0, 1, 2, 3, 4]
    assert _lines(caplog) == []
    drawn = terminal.getvalue()
    assert "segment" in drawn and re.search(r"5/5 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+(sketch/s|s/sketch)\]", drawn), drawn


def test_pretraining_reports_progress_into_a_log_file(caplog, monkeypatch):
    """The demo's pre-training printed nothing for 18.7 minutes into a file: now it logs its steps."""
    from sketchseg.pretrain.config import PretrainConfig
    from sketchseg.pretrain.loop import pretrain_clip

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    cfg = PretrainConfig.from_dict({"steps": 2, "batch_size": 4, "pool_size": 8, "warmup_steps": 1,
                                    "eval_per_category": 1, "eval_scenes": 2, "ink_loss_weight": 0.0,
                                    "mil_loss_weight": 0.0})
    with caplog.at_level(logging.INFO, logger=LOGGER):
        pretrain_clip(cfg)
    lines = _lines(caplog)
    assert any(line.startswith("pre-training pairs: 8/8 pair (100%)") for line in lines), lines
    assert any(line.startswith("pre-train tiny CLIP: 2/2 step (100%)") and "ETA 00:00" in line for line in lines)


@pytest.mark.parametrize("terminal", [False, True])
def test_len_and_total(terminal, monkeypatch):
    monkeypatch.setattr(sys, "stderr", FakeTerminal() if terminal else io.StringIO())
    assert len(progress([1, 2, 3])) == 3
    assert progress(iter([1, 2]), total=2).total == 2
