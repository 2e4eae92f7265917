"""Wall-clock time of the real training loop at FS-COCO scale (issue #5's "20 epochs in 10 min").

Usage::

    python benchmarks/bench_fit.py --device cuda --epochs 2 --json out/fit.json [--out docs/benchmarks.md]
    python benchmarks/bench_fit.py --quick      # CPU, tiny model, a few dozen sketches (CI)

Unlike ``bench_model.py`` (the model alone on synthetic tensors), this runs ``engine.train.fit``
itself, as the training node does: JPEG rasters decoded and resized by ``--workers`` loader
processes, pinned-memory copies, the text cache, the fused AdamW step, the per-epoch validation
on annotated sketches rendered from their strokes at 512 px (cached after the first pass), and
checkpoint selection. The sketches are the generated sample's (``kedro run --pipelines=data
--env=sample`` writes the two tables), repeated to FS-COCO's sizes (``--train`` 9025, ``--val``
475). The model is the configured one with RANDOM weights (ViT-B-16, the paper's trainable set;
speed does not depend on the weights).

Measured per epoch: epoch 0 is the validation before training (it includes rendering the
validation set once); every later epoch is one pass over the training set plus validation.
Estimated 20 epochs = epoch 0 + epoch 1 + 19 x the mean of epochs 2.. (epoch 1 carries the
warm-up: loader start, kernel selection, compilation). A loader-only pass over the training set
says whether data loading could keep up on its own.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_model  # noqa: E402  (sets up the import of sketchseg from a checkout)

from sketchseg.data.strokes import load_vector_sketch, render_strokes  # noqa: E402
from sketchseg.engine.runtime import resolve_device  # noqa: E402
from sketchseg.data.annotated import AnnotatedSketches, annotated_subset  # noqa: E402
from sketchseg.data.train_set import TrainSketches, collate_train  # noqa: E402
from sketchseg.engine.train import TrainConfig, fit  # noqa: E402
from sketchseg.model.model import build_model  # noqa: E402
from sketchseg.engine.run import training_table  # noqa: E402

logger = logging.getLogger("bench_fit")
TARGET_MIN = 10.0  # issue #5: 20 epochs at FS-COCO scale on one H100


def repeat_rows(table: pd.DataFrame, n: int) -> pd.DataFrame:
    """``table``'s rows cycled to ``n`` rows; copy k of a sketch gets id ``sketch_id + k * 10**9``."""
    if table.empty:
        raise ValueError("no sketches to repeat: run `kedro run --pipelines=data --env=sample` first")
    reps = -(-n // len(table))
    parts = [table.assign(sketch_id=table["sketch_id"] + k * 10**9) for k in range(reps)]
    return pd.concat(parts, ignore_index=True).head(n).reset_index(drop=True)


class StrokeRenderedSketches(TrainSketches):
    """``TrainSketches`` that draws each sketch from its vector strokes instead of decoding its
    pre-rendered raster: the same picture (3-px lines at FS-COCO's 256 px raster size, then the
    Lanczos resize ``load_sketch_image`` applies), minus the JPEG. The ``--loader-levers`` row that
    shows what pre-rendered rasters buy."""

    raster_size = 256

    def load_image(self, row: pd.Series) -> np.ndarray:
        ink, _ = render_strokes(load_vector_sketch(row["vector_path"]), self.raster_size, thickness=3)
        grey = ink.astype(np.float32) / 255.0
        if self.raster_size != self.image_size:
            grey = np.asarray(Image.fromarray(grey).resize((self.image_size, self.image_size),
                                                           Image.Resampling.LANCZOS), dtype=np.float32)
        return np.clip(grey, 0.0, 1.0)


def loader_rate(dataset: TrainSketches, batch: int, workers: int, *, pin: bool = False,
                device: torch.device | None = None, passes: int = 1) -> float:
    """Sketches per second of one training ``DataLoader`` setting (best of ``passes`` full passes),
    counting the host-to-device copy of every batch when ``device`` is CUDA (``non_blocking`` copies
    only overlap with pinned memory)."""
    best = 0.0
    for _ in range(passes):
        loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, collate_fn=collate_train,
                            pin_memory=pin, persistent_workers=False, prefetch_factor=4 if workers else None)
        t0 = time.perf_counter()
        n = 0
        for b in loader:
            if device is not None and device.type == "cuda":
                b["images"].to(device, non_blocking=pin)
            n += len(b["captions"])
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)
        best = max(best, n / (time.perf_counter() - t0))
    return best


def loader_levers(train_set: TrainSketches, batch: int, workers: list[int], device: torch.device,
                  passes: int = 2) -> list[dict[str, Any]]:
    """The data-loading levers, one row each: loader processes (``workers``), pinned memory with
    asynchronous copies (CUDA only) and pre-rendered rasters against rendering from the strokes."""
    cuda = device.type == "cuda"
    rows: list[dict[str, Any]] = []
    for w in workers:
        for pin in ([False, True] if cuda else [False]):
            rate = loader_rate(train_set, batch, w, pin=pin, device=device, passes=passes)
            rows.append({"source": "raster (JPEG decode + resize)", "workers": w, "pin_memory": pin,
                         "sketches_per_s": rate})
            logger.info("loader: raster, %d workers, pin_memory=%s: %.0f sketches/s", w, pin, rate)
    strokes = StrokeRenderedSketches(train_set.rows, image_size=train_set.image_size,
                                     max_categories=train_set.max_categories, seed=train_set.seed)
    for w in sorted({workers[0], workers[-1]}):
        rate = loader_rate(strokes, batch, w, pin=cuda, device=device, passes=passes)
        rows.append({"source": "rendered from strokes", "workers": w, "pin_memory": cuda, "sketches_per_s": rate})
        logger.info("loader: strokes, %d workers: %.0f sketches/s", w, rate)
    base = rows[0]["sketches_per_s"]
    for r in rows:
        r["x_first"] = r["sketches_per_s"] / base if base else float("nan")
    return rows


def estimate_20(epoch_seconds: list[float], epochs: int = 20) -> float:
    """Minutes for ``epochs`` epochs from measured epoch times (index 0 = validation before training)."""
    if len(epoch_seconds) < 2:
        raise ValueError("need epoch 0 and at least one training epoch")
    steady = epoch_seconds[2:] or epoch_seconds[1:2]
    return (epoch_seconds[0] + epoch_seconds[1] + (epochs - 1) * sum(steady) / len(steady)) / 60.0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--model", default=None, help="open_clip ViT name (default ViT-B-16; sketchseg-tiny with --quick)")
    p.add_argument("--splits", type=Path, default=Path("data/03_primary/sketch_splits.parquet"))
    p.add_argument("--prompts", type=Path, default=Path("data/04_feature/sketch_prompts.parquet"))
    p.add_argument("--train", type=int, default=None, help="training sketches per epoch (default 9025)")
    p.add_argument("--val", type=int, default=None, help="validation sketches per epoch (default 475)")
    p.add_argument("--epochs", type=int, default=2, help="epochs to run (>= 2 gives a steady-state epoch)")
    p.add_argument("--batch", type=int, default=16, help="training batch (the paper's 16)")
    p.add_argument("--max-categories", type=int, default=3,
                   help="category prompts per sketch and epoch (0: every category, conf/base's null = the paper)")
    p.add_argument("--eval-batch", type=int, default=None, help="validation batch (default 64; 8 with --quick)")
    p.add_argument("--workers", type=int, default=None, help="loader processes (default 8; 0 with --quick)")
    p.add_argument("--precision", default="bf16", help="bf16 (autocast on CUDA) | fp32")
    p.add_argument("--compile", action="store_true", help="torch.compile the sketch encoder")
    p.add_argument("--skip-loader-pass", action="store_true")
    p.add_argument("--loader-levers", action="store_true",
                   help="also measure the loader per setting: loader processes, pinned memory (CUDA), "
                        "pre-rendered rasters vs rendering from strokes")
    p.add_argument("--loader-workers", type=int, nargs="+", default=None,
                   help="loader process counts for --loader-levers (default 0 1 2 on CPU, 0 4 8 12 on CUDA, "
                        "capped at the CPU count)")
    p.add_argument("--loader-only", action="store_true", help="measure the loader, skip the training run")
    p.add_argument("--loader-sketches", type=int, default=None,
                   help="measure --loader-levers on the first N training sketches (default all)")
    p.add_argument("--quick", action="store_true", help="CI size: tiny model, 48 + 8 sketches, CPU")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="markdown file to append the result section to")
    p.add_argument("--json", type=Path, default=None, help="write the full result as JSON")
    args = p.parse_args(argv)
    args.model = args.model or ("sketchseg-tiny" if args.quick else "ViT-B-16")
    args.train = args.train or (48 if args.quick else bench_model.FSCOCO_TRAIN)
    args.val = args.val or (8 if args.quick else bench_model.FSCOCO_VAL)
    args.eval_batch = args.eval_batch or (8 if args.quick else 64)
    args.workers = (0 if args.quick else 8) if args.workers is None else args.workers
    if args.quick:
        args.batch = min(args.batch, 8)
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device)
    splits, prompts = pd.read_parquet(args.splits), pd.read_parquet(args.prompts)
    torch.manual_seed(args.seed)
    model = build_model(bench_model.model_config(args.model))
    size = int(model.cfg.image_size)
    cap = args.max_categories if args.max_categories > 0 else None
    train_set = TrainSketches(repeat_rows(training_table(splits, prompts), args.train), image_size=size,
                              max_categories=cap, seed=args.seed)
    val_set = AnnotatedSketches(repeat_rows(annotated_subset(splits, "val"), args.val), image_size=size,
                                render_size=512)
    rate = None if args.skip_loader_pass else loader_rate(train_set, args.batch, args.workers, device=device)
    if rate is not None:
        logger.info("loader alone: %.0f sketches/s with %d workers", rate, args.workers)
    levers, subset = None, None
    if args.loader_levers or args.loader_only:
        counts = args.loader_workers or ([0, 4, 8, 12] if device.type == "cuda" else [0, 1, 2])
        counts = sorted({min(w, os.cpu_count() or 1) for w in counts})
        subset = train_set if args.loader_sketches is None else TrainSketches(
            train_set.rows.head(args.loader_sketches), image_size=size, max_categories=cap, seed=args.seed)
        levers = loader_levers(subset, args.batch, counts, device)
    base = {"environment": bench_model.environment(device), "device": str(device),
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "loader_levers": levers, "loader_levers_sketches": len(subset) if subset is not None else None}
    if args.loader_only:
        return {**base, "summary": {"loader_sketches_per_s": rate}, "history": []}
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch, device=str(device), precision=args.precision,
                      num_workers=args.workers, compile=args.compile, seed=args.seed)
    stamps: list[float] = []
    metrics: list[dict[str, float]] = []
    t0 = time.perf_counter()
    fit(model, train_set, val_set, cfg, eval_batch_size=args.eval_batch, eval_num_workers=args.workers,
        on_epoch_end=lambda epoch, m: (stamps.append(time.perf_counter()), metrics.append({"epoch": epoch, **m})))
    epoch_s = [b - a for a, b in zip([t0, *stamps[:-1]], stamps)]
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    summary = {
        "epoch_seconds": epoch_s,
        "train_sketches_per_s_steady": args.train / (sum(epoch_s[2:]) / len(epoch_s[2:])) if len(epoch_s) > 2 else None,
        "estimated_20_epochs_min": estimate_20(epoch_s),
        "target_min": TARGET_MIN,
        "loader_sketches_per_s": rate,
        "peak_mib": peak,
    }
    summary["meets_target"] = summary["estimated_20_epochs_min"] <= TARGET_MIN
    return {**base, "summary": summary, "history": metrics}


def loader_markdown(result: dict[str, Any]) -> list[str]:
    """The ``--loader-levers`` table (empty without it)."""
    rows = result.get("loader_levers")
    if not rows:
        return []
    lines = ["", f"Data loading alone (best of 2 full passes over {result['loader_levers_sketches']} training sketches; on CUDA each batch is "
             "also copied to the GPU):", "", "| source | loader processes | pinned memory | sketches/s | × first row |",
             "|---|---:|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['source']} | {r['workers']} | {'yes' if r['pin_memory'] else 'no'} | "
                     f"{r['sketches_per_s']:.0f} | {r['x_first']:.2f} |")
    return lines


def markdown(result: dict[str, Any]) -> str:
    a, s, env = result["args"], result["summary"], result["environment"]
    where = env.get("gpu") or "CPU " + env["cpu"]
    if a.get("loader_only"):
        lines = [f"### {dt.date.today().isoformat()} · training data loader · {where} · "
                 f"{a['train']} sketches of {a['model']}'s input size, batch {a['batch']}", "",
                 f"`benchmarks/bench_fit.py --loader-only`: torch {env.get('torch')}, {os.cpu_count()} CPUs.",
                 *loader_markdown(result)]
        return "\n".join(lines) + "\n"
    lines = [
        f"### {dt.date.today().isoformat()} · fit at FS-COCO scale · {where} · "
        f"{a['model']} · {a['train']} training + {a['val']} validation sketches per epoch",
        "",
        f"`benchmarks/bench_fit.py`: torch {env.get('torch')}, batch {a['batch']}, {a['workers']} loader workers, "
        f"precision {a['precision']}{', compiled' if a['compile'] else ''}.",
        "",
        "| epoch | seconds | what |",
        "|---:|---:|---|",
    ]
    for k, sec in enumerate(s["epoch_seconds"]):
        lines.append(f"| {k} | {sec:.1f} | {'validation before training (renders the val set)' if k == 0 else 'train + validate'} |")
    loader = s["loader_sketches_per_s"]
    lines += [
        "",
        f"Estimated 20 epochs: **{s['estimated_20_epochs_min']:.1f} min** "
        + (f"(target ≤ {s['target_min']:.0f} min on one H100: {'met' if s['meets_target'] else 'not met'} on this GPU). "
           if result["device"].startswith("cuda") else f"(the ≤ {s['target_min']:.0f} min target is for one H100). ")
        + (f"Steady state: {s['train_sketches_per_s_steady']:.0f} training sketches/s including validation. "
           if s["train_sketches_per_s_steady"] else "")
        + (f"Loader alone: {loader:.0f} sketches/s. " if loader else "")
        + (f"Peak GPU memory {s['peak_mib']:.0f} MiB." if s["peak_mib"] else ""),
        *loader_markdown(result),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parse(argv)
    bench_model.setup_logging()
    result = run(args)
    text = markdown(result)
    bench_model.write_outputs(text, result, args.out, args.json)
    sys.stdout.write(text)
    return result


if __name__ == "__main__":
    main()
