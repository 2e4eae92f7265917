"""How long does the demo take? The steps of ``bash scripts/demo.sh`` (once the environment exists),
timed in fresh copies of the project: idle, and with competing CPU-bound processes.

Usage::

    python benchmarks/demo_timing.py [--modes idle,compete] [--competitors 1] [--workdir /tmp/sketchseg-demo-timing]
                                     [--out docs/demo-timing.md]

For each mode it copies the project (conf + pyproject, as ``benchmarks/sample_learning.py``) into
``--workdir/<mode>`` and runs, timed, ``kedro run --env=sample`` with ``--pipelines=make_sample``
(the generated sample), ``--pipelines=pretrain_sample`` (the tiny CLIP's pre-training, first run)
and ``--pipelines=train``. ``compete`` starts ``--competitors`` busy-looping Python processes
(one core each) before the first step and stops them after the last. The load average before and
after each mode, the CPU count and the torch threads go to the table: a shared machine's numbers
are only comparable with the same load. Each step's log is kept under ``--workdir/<mode>/logs``.
Run it on an otherwise idle machine; it does not touch the checkout's own ``data/``. The
hand-written part of ``--out`` (from the heading ``## Why competition costs less now`` on) is kept.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

try:
    import sketchseg  # noqa: F401
except ModuleNotFoundError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sample_learning import write_report  # noqa: E402
from sketchseg.experiments import project  # noqa: E402

logger = logging.getLogger("demo_timing")
REPO = Path(__file__).resolve().parents[1]
STEPS = (("make_sample", "generate the sample"), ("pretrain_sample", "pre-train the tiny CLIP"),
         ("train", "train + evaluate"))
BUSY_LOOP = "while True:\n    pass\n"
HAND_WRITTEN = "## Why competition costs less now"  # a section of --out from this heading on is kept on rewrite


def load_average() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # not on this platform
        return "n/a"


def run_step(workdir: Path, pipeline: str, log: Path) -> float:
    """``kedro run --pipelines=<pipeline> --env=sample`` in ``workdir``; returns wall seconds."""
    kedro = Path(sys.executable).with_name("kedro")
    cmd = [str(kedro) if kedro.exists() else "kedro", "run", f"--pipelines={pipeline}", "--env=sample"]
    env = project.kedro_subprocess_env(REPO.parent / "shared" / "nltk_data", offline=True)
    logger.info("running %s in %s (log: %s)", " ".join(cmd), workdir, log)
    t0 = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.run(cmd, cwd=workdir, env=env, stdout=fh, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {proc.returncode}; see {log}")
    logger.info("%s: %.1f s", pipeline, seconds)
    return seconds


def speed_probe() -> float:
    """Seconds for a fixed CPU workload shaped like the demo's (small float32 matmuls at torch's
    default threads, then a pure-Python loop like the sample's drawing): how fast the machine is
    at the time. A shared host's speed drifts by tens of percent; demo times are only comparable
    with their probes."""
    import torch

    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(8320, 96, generator=g), torch.randn(96, 384, generator=g)
    for _ in range(20):  # warm-up: thread pool, allocator
        x @ w
    t0 = time.perf_counter()
    for _ in range(400):
        x @ w
    total = 0
    for i in range(3_000_000):
        total += i % 7
    return time.perf_counter() - t0


def start_competitor() -> subprocess.Popen:
    """A busy-looping Python process: one core's worth of CPU-bound competition."""
    return subprocess.Popen([sys.executable, "-c", BUSY_LOOP])


def time_mode(mode: str, workdir: Path, competitors: int) -> dict:
    dest = project.copy_project(REPO, workdir / mode, replace=True)
    logs = dest / "logs"
    logs.mkdir()
    probe = speed_probe()  # before the competitors start: the machine itself
    logger.info("speed probe: %.2f s", probe)
    busy = [start_competitor() for _ in range(competitors if mode == "compete" else 0)]
    row = {"mode": mode, "competitors": len(busy), "load_before": load_average(), "probe": probe, "seconds": {}}
    try:
        for pipeline, _ in STEPS:
            row["seconds"][pipeline] = run_step(dest, pipeline, logs / f"{pipeline}.log")
    finally:
        for p in busy:  # only the processes this script started
            p.terminate()
            p.wait()
    row["load_after"] = load_average()
    return row


def report(rows: list[dict]) -> str:
    import torch

    when = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [
        "# Demo timing",
        "",
        f"Generated by `python benchmarks/demo_timing.py` on {when} ({platform.machine()}, {os.cpu_count()} CPU "
        f"cores, torch {torch.__version__}, {torch.get_num_threads()} threads). Each mode is a fresh copy of the "
        "project: the first demo run, the environment already set up (`scripts/setup.sh` not timed). "
        "`compete` runs busy-looping processes (one core each) beside the demo. Load average = 1 / 5 / 15 min. "
        "Speed probe = seconds of a fixed CPU workload run just before the mode (`speed_probe`: lower = faster; "
        "a shared host's speed drifts, so compare demo times with their probes).",
        "",
        "| mode | competing processes | " + " | ".join(f"{p} ({what})" for p, what in STEPS)
        + " | demo total | speed probe | load before | load after |",
        "|---|---|" + "---|" * len(STEPS) + "---|---|---|---|",
    ]
    for r in rows:
        s = r["seconds"]
        total = sum(s.values())
        lines.append(f"| {r['mode']} | {r['competitors']} | " + " | ".join(f"{s[p]:.0f} s" for p, _ in STEPS)
                     + f" | {total:.0f} s ({total / 60:.1f} min) | {r['probe']:.2f} s | {r['load_before']} | {r['load_after']} |")
    lines += ["", "Later demo runs skip `make_sample` (the sample exists) and reuse the pre-trained tiny CLIP "
              "(`pretrain.reuse_existing`): only `train` and a few seconds of `pretrain_sample`.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="idle,compete", help="comma-separated: idle, compete")
    ap.add_argument("--competitors", type=int, default=1, help="busy processes in the compete mode")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/sketchseg-demo-timing"))
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "demo-timing.md")
    args = ap.parse_args(argv)
    # a SIGTERM ends the script through its `finally`s: the competing processes are stopped too
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = sorted(set(modes) - {"idle", "compete"})
    if bad:
        ap.error(f"unknown mode(s) {bad}; use idle and/or compete")
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        rows = [time_mode(m, args.workdir, args.competitors) for m in modes]
    finally:  # given back: main() also runs inside other processes (the tests)
        signal.signal(signal.SIGTERM, previous)
    text = report(rows)
    write_report(args.out, text, HAND_WRITTEN)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
