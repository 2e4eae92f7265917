"""benchmarks/demo_timing.py: the demo's steps timed in a copied project, idle and with competitors
(kedro replaced by a stub: the real run is the lead's, on an idle machine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import load_benchmark

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "demo_timing.py"


@pytest.fixture(scope="module")
def dt():
    return load_benchmark("demo_timing")


def test_modes_time_every_step_and_stop_their_competitors(dt, tmp_path, monkeypatch):
    seen = []

    def fake_step(workdir, pipeline, log):
        seen.append((workdir.name, pipeline, [p.poll() for p in busy_now()]))
        return {"make_sample": 10.0, "pretrain_sample": 170.0, "train": 60.0}[pipeline]

    started = []
    real_start = dt.start_competitor

    def start():
        started.append(real_start())
        return started[-1]

    def busy_now():
        return started

    monkeypatch.setattr(dt, "run_step", fake_step)
    monkeypatch.setattr(dt, "speed_probe", lambda: 1.25)
    monkeypatch.setattr(dt, "start_competitor", start)
    out = tmp_path / "demo-timing.md"
    out.write_text("# Demo timing\n\n| stale | table |\n\n## Why competition costs less now\n\nkept by hand\n")
    assert dt.main(["--workdir", str(tmp_path / "w"), "--out", str(out), "--competitors", "2"]) == 0
    assert [(w, p) for w, p, _ in seen] == [(m, p) for m in ("idle", "compete")
                                            for p in ("make_sample", "pretrain_sample", "train")]
    assert all(polls == [] for w, _, polls in seen if w == "idle")  # idle: nothing competes
    assert all(polls == [None, None] for w, _, polls in seen if w == "compete")  # 2 busy processes running
    assert len(started) == 2 and all(p.poll() is not None for p in started)  # and stopped afterwards
    text = out.read_text()
    assert "| idle | 0 | 10 s | 170 s | 60 s | 240 s (4.0 min) | 1.25 s |" in text
    assert "| compete | 2 | 10 s | 170 s | 60 s | 240 s (4.0 min) | 1.25 s |" in text
    assert "stale" not in text and text.endswith("## Why competition costs less now\n\nkept by hand\n")


def test_speed_probe_times_a_fixed_workload(dt):
    first, second = dt.speed_probe(), dt.speed_probe()
    assert 0.0 < first < 60.0 and 0.0 < second < 60.0
