"""Does the CPU sample demo learn? Untrained (epoch 0) vs trained model on the sample's val and test.

Usage::

    python benchmarks/sample_learning.py --run [--workdir /tmp/sketchseg-learning] [--out docs/sample-results.md]
    python benchmarks/sample_learning.py --project .          # read an existing demo run instead

``--run`` copies the project (conf + pyproject) into ``--workdir`` and runs the demo there, timed:
``kedro run --pipelines=make_sample --env=sample`` (the sample + the tiny CLIP pre-training) and
``kedro run --pipelines=train --env=sample``. Then, in both modes, it scores on the annotated val
and test sketches (a) the untrained model: the configured model as built before training (the
pre-trained tiny CLIP, fresh prompts / cross-attention / threshold, seeded with
``training.seed``) and (b) the trained one: the checkpoint the train pipeline chose on val mIoU.
It prints both, and writes them with the per-epoch validation curve, the timings and the settings
to ``--out`` (markdown).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

try:
    import sketchseg  # noqa: F401
except ModuleNotFoundError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

logger = logging.getLogger("sample_learning")
REPO = Path(__file__).resolve().parents[1]
METRICS = (("miou", "mIoU"), ("pixel_acc", "Acc@P"), ("stroke_acc", "Acc@S"))


def copy_project(dest: Path) -> Path:
    """A runnable copy of the Kedro project whose relative data paths land in ``dest``."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copy(REPO / "pyproject.toml", dest / "pyproject.toml")
    if (REPO / ".telemetry").exists():
        shutil.copy(REPO / ".telemetry", dest / ".telemetry")
    shutil.copytree(REPO / "conf", dest / "conf", ignore=shutil.ignore_patterns("local"))
    (dest / "conf" / "local").mkdir(exist_ok=True)
    (dest / "src").mkdir(exist_ok=True)  # the package itself is installed
    return dest


def kedro_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["KEDRO_DISABLE_TELEMETRY"] = "1"
    if not env.get("NLTK_DATA") and (REPO.parent / "shared" / "nltk_data").is_dir():
        env["NLTK_DATA"] = str(REPO.parent / "shared" / "nltk_data")
    return env


def run_kedro(project: Path, args: list[str], log: Path) -> float:
    """Run ``kedro run <args> --env=sample`` in ``project``; returns wall seconds."""
    kedro = Path(sys.executable).with_name("kedro")
    cmd = [str(kedro) if kedro.exists() else "kedro", "run", "--env=sample", *args]
    logger.info("running %s (log: %s)", " ".join(cmd), log)
    t0 = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.run(cmd, cwd=project, env=kedro_env(), stdout=fh, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {proc.returncode}; see {log}")
    return seconds


def load_params(project: Path) -> dict[str, Any]:
    from kedro.config import OmegaConfigLoader

    from sketchseg.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(conf_source=str(project / "conf"), **{**CONFIG_LOADER_ARGS, "default_run_env": "sample"})
    return dict(loader["parameters"])


def score(project: Path, params: dict[str, Any]) -> dict[str, dict[str, float]]:
    """val/test metrics of the untrained and the trained (chosen checkpoint) model."""
    from sketchseg.datasets import SafetensorsCheckpointDataset
    from sketchseg.engine.data import AnnotatedSketches
    from sketchseg.engine.evaluate import evaluate_model
    from sketchseg.engine.runtime import resolve_device, seed_everything
    from sketchseg.model.checkpoint import load_trainable_state
    from sketchseg.model.config import ModelConfig
    from sketchseg.model.model import build_model
    from sketchseg.pipelines.training.nodes import annotated_subset, class_order

    cwd = Path.cwd()
    os.chdir(project)  # the conf's data paths are relative to the project
    try:
        model_params, training, evaluation = params["model"], params["training"], params["evaluation"]
        splits = pd.read_parquet("data/03_primary/sketch_splits.parquet")
        device = resolve_device(str(training.get("device", "cpu")))
        sets = {
            split: AnnotatedSketches(annotated_subset(splits, split), image_size=int(model_params["image_size"]),
                                     render_size=int(evaluation["render_size"]), thickness=int(evaluation["thickness"]),
                                     class_order=class_order(params["data"]))
            for split in ("val", "test")
        }
        seed_everything(int(training.get("seed", 42)))
        model = build_model(ModelConfig.from_dict(model_params))
        out: dict[str, dict[str, float]] = {}
        for split, ds in sets.items():
            res = evaluate_model(model, ds, device=device, batch_size=int(evaluation["batch_size"]), desc=f"untrained {split}")
            out[f"untrained_{split}"] = {**res.summary, "n": res.n_sketches}
        ckpt = SafetensorsCheckpointDataset("data/06_models/best.safetensors").load()
        load_trainable_state(model, ckpt["state"], source="best.safetensors")
        for split, ds in sets.items():
            res = evaluate_model(model, ds, device=device, batch_size=int(evaluation["batch_size"]), desc=f"trained {split}")
            out[f"trained_{split}"] = {**res.summary, "n": res.n_sketches}
        out["checkpoint"] = {"epoch": int(ckpt["metadata"].get("epoch", -1))}
        return out
    finally:
        os.chdir(cwd)


def _fmt(v: Any) -> str:
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def report(project: Path, params: dict[str, Any], scores: dict[str, dict[str, float]],
           timings: dict[str, float]) -> str:
    history = pd.read_csv(project / "data/07_model_output/training_history.csv")
    pre_path = project / "data/08_reporting/sample/tiny_clip_pretrain.json"
    pre = json.loads(pre_path.read_text()) if pre_path.is_file() else {}
    m, t, p = params["model"], params["training"], params.get("pretrain", {})
    lines = [
        "# Does the sample demo learn?",
        "",
        f"Generated by `python benchmarks/sample_learning.py --run` on {dt.datetime.now().strftime('%Y-%m-%d %H:%M')} "
        f"({platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load average at the end {os.getloadavg()[0]:.1f}).",
        "",
        "Untrained = the configured model before fine-tuning (the pre-trained tiny CLIP with fresh visual "
        "prompts, cross-attention and threshold; epoch 0). Trained = the checkpoint chosen on validation "
        f"mIoU (epoch {scores['checkpoint']['epoch']}). Percent, averaged over sketches (reference protocol).",
        "",
        "| split | model | mIoU | Acc@P | Acc@S |",
        "|---|---|---|---|---|",
    ]
    for split in ("val", "test"):
        for which in ("untrained", "trained"):
            s = scores[f"{which}_{split}"]
            lines.append(f"| {split} ({s['n']} sketches) | {which} | " + " | ".join(_fmt(s[k]) for k, _ in METRICS) + " |")
    lines += ["", "Validation after every epoch (epoch 0 = untrained, as logged by the train pipeline):", "",
              "| epoch | val mIoU | val Acc@P | val Acc@S | train loss | threshold |", "|---|---|---|---|---|---|"]
    for _, r in history.iterrows():
        lines.append(f"| {int(r['epoch'])} | {r.get('val_miou', float('nan')):.2f} | {r.get('val_pixel_acc', float('nan')):.2f} | "
                     f"{r.get('val_stroke_acc', float('nan')):.2f} | {r.get('train_loss', float('nan')):.3f} | "
                     f"{r.get('threshold', float('nan')):.3f} |")
    if pre:
        lines += ["", "Tiny-CLIP pre-training (make_sample pipeline, node `pretrain_tiny_clip`), held-out generated pairs:", "",
                  f"- zero-shot category accuracy of single objects (20 classes, prompt \"A sketch of <c>.\"): "
                  f"{_fmt(pre.get('before_zero_shot_acc', 'n/a'))} % before, {_fmt(pre.get('after_zero_shot_acc', 'n/a'))} % after",
                  f"- scene -> caption retrieval R@1 among {p.get('eval_scenes', '?')}: {_fmt(pre.get('before_scene_r1', 'n/a'))} % before, "
                  f"{_fmt(pre.get('after_scene_r1', 'n/a'))} % after",
                  f"- loss {_fmt(pre.get('first_loss', 'n/a'))} -> {_fmt(pre.get('final_loss_ema', 'n/a'))}; "
                  f"{pre.get('steps', '?')} steps, {_fmt(pre.get('train_seconds', pre.get('seconds', 'n/a')))} s training "
                  f"+ {_fmt(pre.get('data_seconds', 'n/a'))} s generating pairs"]
    if timings:
        lines += ["", "Wall-clock times (kedro start-up included):", ""]
        lines += [f"- {k}: {v:.0f} s" for k, v in timings.items()]
    lines += ["", "Settings (conf/sample over conf/base):", "",
              f"- model: `{m['clip_model']}` from `{m['pretrained']}`, finetune `{m['finetune']}`, image {m['image_size']} px, "
              f"v-v blocks {m['vv_blocks']}, cross-attention {m['cross_attention_layers']}, prompts {m['num_visual_prompts']}",
              f"- training: {t['epochs']} epochs, batch {t['batch_size']}, AdamW lr {t['learning_rate']}, "
              f"weight decay {t.get('weight_decay')}, seed {t.get('seed')}",
              "- pretrain: " + ", ".join(f"{k} {v}" for k, v in p.items() if k not in ("weights_path", "reuse_existing"))]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="store_true", help="run the demo in a fresh copy of the project first")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/sketchseg-learning"), help="where --run runs")
    ap.add_argument("--project", type=Path, default=None, help="read this project's outputs (default: --workdir)")
    ap.add_argument("--out", type=Path, default=None, help="markdown report to write (e.g. docs/sample-results.md)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    timings: dict[str, float] = {}
    project = (args.project or args.workdir).resolve()
    if args.run:
        project = copy_project(args.workdir.resolve())
        timings["make_sample (sample + tiny-CLIP pre-training)"] = run_kedro(project, ["--pipelines=make_sample"], project / "make_sample.log")
        timings["train (ingestion ... fit ... test evaluation)"] = run_kedro(project, ["--pipelines=train"], project / "train.log")
        timings["demo total"] = sum(timings.values())
    params = load_params(project)
    scores = score(project, params)
    for split in ("val", "test"):
        for which in ("untrained", "trained"):
            s = scores[f"{which}_{split}"]
            logger.info("%-5s %-9s " + "  ".join(f"{name} {s[k]:6.2f}" for k, name in METRICS), split, which)
    text = report(project, params, scores, timings)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        logger.info("wrote %s", args.out)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
