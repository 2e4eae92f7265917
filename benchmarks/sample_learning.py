"""Does the CPU sample demo learn? Untrained (epoch 0) vs trained model on the sample's val and test.

Usage::

    python benchmarks/sample_learning.py --run [--workdir /tmp/sketchseg-learning] [--out docs/sample-results.md]
    python benchmarks/sample_learning.py --project .          # read an existing demo run instead

``--run`` copies the project (conf + pyproject) into ``--workdir`` and runs the demo there, timed:
``kedro run --pipelines=make_sample --env=sample`` (the sample), ``--pipelines=pretrain_sample``
(the tiny CLIP's CLIP-style pre-training) and ``--pipelines=train``. Then, in both modes, it
scores on the annotated val and test sketches (a) the model with random CLIP weights, untrained,
(b) the untrained model: the configured model as built before training (the pre-trained tiny
CLIP, fresh prompts / cross-attention / threshold, seeded with ``training.seed``) and (c) the
trained one: the checkpoint the train pipeline chose on val mIoU.
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
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

try:
    import sketchseg  # noqa: F401
except ModuleNotFoundError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from sketchseg.experiments import project  # noqa: E402
from sketchseg.experiments.compare import load_project_config as project_config  # noqa: E402

logger = logging.getLogger("sample_learning")
REPO = Path(__file__).resolve().parents[1]
METRICS = (("miou", "mIoU"), ("pixel_acc", "Acc@P"), ("stroke_acc", "Acc@S"))
HAND_WRITTEN = "## What else was tried"
#: the trained checkpoint scored again on test with other test-time settings (README, "Baselines"):
#: the min-max step of the authors' test.py alone, and their whole test-time inference
RESCORING = (
    ("minmax", {"inference_normalization": "minmax"}),
    ("ensemble", {"inference_prompts": "ensemble"}),
    ("ensemble_minmax", {"inference_prompts": "ensemble", "inference_normalization": "minmax"}),
    ("ensemble_nosub", {"inference_prompts": "ensemble", "ensemble_subtract_empty": False}),
    ("ensemble_nosub_minmax", {"inference_prompts": "ensemble", "ensemble_subtract_empty": False,
                               "inference_normalization": "minmax"}),
    ("authors", {"inference_normalization": "minmax", "inference_prompts": "ensemble", "upsample_mode": "bilinear"}),
)
RESCORING_TEXT = {
    "minmax": "\"A sketch of <category>.\", min-max maps (`model.inference_normalization=minmax`; paper-vs-code row 12)",
    "ensemble": "85-template ensemble minus the empty string's (`model.inference_prompts=ensemble`; row 13), raw maps",
    "ensemble_minmax": "85-template ensemble minus the empty string's, min-max maps",
    "ensemble_nosub": "85-template ensemble, nothing subtracted (`model.ensemble_subtract_empty=false`), raw maps",
    "ensemble_nosub_minmax": "85-template ensemble, nothing subtracted, min-max maps",
    "authors": "the authors' whole test-time inference: ensemble minus the empty string's, min-max maps, bilinear "
               "upsampling (preset `authors_eval_protocol`'s model settings)",
}  # a section of --out from this heading on is kept on rewrite


def write_report(path: Path, text: str, hand_written: str = HAND_WRITTEN) -> None:
    """Write the generated ``text`` to ``path``, keeping a hand-written section (``hand_written``
    heading to the end) of the file it replaces."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if hand_written in old:
        text = text.rstrip("\n") + "\n\n" + old[old.index(hand_written):]
    path.write_text(text, encoding="utf-8")


def copy_project(dest: Path) -> Path:
    """A fresh runnable copy of the Kedro project whose relative data paths land in ``dest``."""
    return project.copy_project(REPO, dest, replace=True)


def kedro_env() -> dict[str, str]:
    return project.kedro_subprocess_env(REPO.parent / "shared" / "nltk_data", offline=True)


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


def parse_params(text: str) -> dict[str, Any]:
    """``key=value,key=value`` as ``kedro run --params`` reads it (values typed by OmegaConf), nested."""
    from omegaconf import OmegaConf

    items = [item.strip() for item in text.split(",") if item.strip()]
    return OmegaConf.to_container(OmegaConf.from_dotlist(items)) if items else {}  # type: ignore[return-value]


def load_params(project: Path, runtime_params: dict[str, Any] | None = None) -> dict[str, Any]:
    return project_config(project, "sample", runtime_params).params


def paired_difference(before: pd.Series, after: pd.Series, *, n_boot: int = 10_000,
                      seed: int = 0) -> dict[str, float]:
    """Per-sketch paired comparison of one metric (both indexed by sketch id): the mean of
    after - before, a percentile bootstrap 95 % interval of that mean (resampling sketches), and
    how many sketches got better / worse / stayed equal."""
    if set(before.index) != set(after.index):
        raise ValueError("before and after must score the same sketches")
    diff = (after - before.reindex(after.index)).to_numpy(dtype=float)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(n_boot, len(diff)))].mean(axis=1)
    return {"mean": float(diff.mean()), "ci_low": float(np.percentile(means, 2.5)),
            "ci_high": float(np.percentile(means, 97.5)), "better": int((diff > 1e-9).sum()),
            "worse": int((diff < -1e-9).sum()), "equal": int((np.abs(diff) <= 1e-9).sum())}


def score(project: Path, params: dict[str, Any]) -> dict[str, dict[str, float]]:
    """val/test metrics of the untrained and the trained (chosen checkpoint) model."""
    from sketchseg.pipelines.datasets import SafetensorsCheckpointDataset
    from sketchseg.engine.config import EvalConfig
    from sketchseg.engine.evaluate import annotated_set, evaluate_model
    from sketchseg.engine.runtime import resolve_device, seed_everything
    from sketchseg.model.checkpoint import load_model_from_checkpoint
    from sketchseg.model.config import ModelConfig
    from sketchseg.model.model import build_model

    cwd = Path.cwd()
    os.chdir(project)  # the conf's data paths are relative to the project
    try:
        model_params, training, evaluation = params["model"], params["training"], params["evaluation"]
        splits = pd.read_parquet("data/03_primary/sketch_splits.parquet")
        device = resolve_device(str(training.get("device", "cpu")))
        ecfg = EvalConfig.from_dict(evaluation)
        sets = {split: annotated_set(splits, split, int(model_params["image_size"]), ecfg, params["data"])
                for split in ("val", "test")}
        out: dict[str, dict[str, float]] = {}
        per_sketch: dict[str, pd.DataFrame] = {}
        seed_everything(int(training.get("seed", 42)))
        random = build_model(ModelConfig.from_dict({**model_params, "pretrained": None, "allow_random_init": True}))
        for split, ds in sets.items():
            res = evaluate_model(random, ds, device=device, batch_size=int(evaluation["batch_size"]), desc=f"random {split}")
            out[f"random_{split}"] = {**res.summary, "n": res.n_sketches}
        del random
        seed_everything(int(training.get("seed", 42)))
        model = build_model(ModelConfig.from_dict(model_params))
        for split, ds in sets.items():
            res = evaluate_model(model, ds, device=device, batch_size=int(evaluation["batch_size"]), desc=f"untrained {split}")
            out[f"untrained_{split}"] = {**res.summary, "n": res.n_sketches}
            per_sketch[f"untrained_{split}"] = res.per_sketch
        ckpt = SafetensorsCheckpointDataset(  # the demo variant's folder (catalog best_checkpoint)
            f"data/06_models/{params['experiment']['output_folder']}/best.safetensors").load()
        del model
        seed_everything(int(training.get("seed", 42)))  # the same backbone as the untrained model's
        # the checkpoint's architecture; conf changes inference-time settings only (refused otherwise)
        model, _, _ = load_model_from_checkpoint(ckpt, ModelConfig.from_dict(model_params), config_from="checkpoint")
        for split, ds in sets.items():
            res = evaluate_model(model, ds, device=device, batch_size=int(evaluation["batch_size"]), desc=f"trained {split}")
            out[f"trained_{split}"] = {**res.summary, "n": res.n_sketches}
            per_sketch[f"trained_{split}"] = res.per_sketch
        out["checkpoint"] = {"epoch": int(ckpt["metadata"].get("epoch", -1))}
        for name, overrides in RESCORING:  # the same checkpoint, scored at test time another way
            del model
            seed_everything(int(training.get("seed", 42)))
            model, _, _ = load_model_from_checkpoint(ckpt, ModelConfig.from_dict({**model_params, **overrides}),
                                                     config_from="checkpoint")  # inference settings only
            res = evaluate_model(model, sets["test"], device=device, batch_size=int(evaluation["batch_size"]),
                                 desc=f"trained test, {name}")
            out[f"rescored_{name}"] = {**res.summary, "n": res.n_sketches}
        for split in sets:
            for key, _ in METRICS:
                out[f"paired_{split}_{key}"] = paired_difference(
                    per_sketch[f"untrained_{split}"].set_index("sketch_id")[key],
                    per_sketch[f"trained_{split}"].set_index("sketch_id")[key])
        return out
    finally:
        os.chdir(cwd)


def _fmt(v: Any) -> str:
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def pretraining_text(pretrain: dict[str, Any]) -> str:
    """What the untrained rows mean for the configured pre-training: image-level pairs only (its
    patch tokens segment at chance, the fine-tuning teaches them) or with the patch-label term
    (its patches already segment; the fine-tuning keeps rather than raises that)."""
    if float(pretrain.get("patch_label_loss_weight") or 0) > 0:
        return ("sample env starts from a tiny CLIP pre-trained on generated sketch-text pairs, CLIP-style plus "
                "one dense term (`pretrain.patch_label_loss_weight`): its patch tokens learn the categories from "
                "the generator's stroke labels, so that the demo model segments sketches drawn by hand "
                "(docs/demo-model.md). Its patches segment before any fine-tuning (the untrained rows), and the "
                "paper's caption-only fine-tuning keeps rather than raises that start (compare the trained rows "
                "and the paired differences). The earlier, caption-only configuration "
                "(`--params \"pretrain.patch_label_loss_weight=0,pretrain.steps=400,pretrain.pool_size=6000\"` for "
                "`pretrain_sample`) starts the patches at chance and shows what the fine-tuning adds "
                "(`docs/sample-results-caption-only.md`, the same report for it). ")
    return ("sample env starts from a tiny CLIP pre-trained CLIP-style (image-level pairs only) on generated "
            "sketch-text pairs. Like CLIP, it aligns whole images with text but its patch tokens segment at "
            "chance level (the untrained rows); the paper's two-level fine-tuning, from captions only, is "
            "what teaches them categories. ")


def report(project: Path, params: dict[str, Any], scores: dict[str, dict[str, float]],
           timings: dict[str, float], command: str = "python benchmarks/sample_learning.py --run") -> str:
    history = pd.read_csv(project / "data/07_model_output" / params["experiment"]["output_folder"]
                          / "training_history.csv")
    pre_path = project / "data/08_reporting/sample/tiny_clip_pretrain.json"
    pre = json.loads(pre_path.read_text()) if pre_path.is_file() else {}
    m, t, p = params["model"], params["training"], params.get("pretrain", {})
    lines = [
        "# Does the sample demo learn?",
        "",
        f"Generated by `{command}` on {dt.datetime.now().strftime('%Y-%m-%d %H:%M')} "
        f"({platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load average at the end {os.getloadavg()[0]:.1f}).",
        "",
        "Random = random CLIP weights, untrained (where the paper's recipe cannot start from). "
        "Untrained = the configured model before fine-tuning (the pre-trained tiny CLIP with fresh visual "
        "prompts, cross-attention and threshold; epoch 0). Trained = the checkpoint chosen on validation "
        f"mIoU (epoch {scores['checkpoint']['epoch']}). Percent, averaged over sketches (the evaluation protocol's "
        f"rendering and scoring, strokes rendered at {params['evaluation']['render_size']} px).",
        "",
        "| split | model | mIoU | Acc@P | Acc@S |",
        "|---|---|---|---|---|",
    ]
    for split in ("val", "test"):
        for which in ("random", "untrained", "trained"):
            s = scores[f"{which}_{split}"]
            lines.append(f"| {split} ({s['n']} sketches) | {which} | " + " | ".join(_fmt(s[k]) for k, _ in METRICS) + " |")
    lines += ["", "Trained minus untrained, sketch by sketch (mean difference in points, bootstrap 95 % "
              "interval over sketches, sketches better / worse / equal):", "",
              "| split | mIoU | Acc@P | Acc@S |", "|---|---|---|---|"]
    for split in ("val", "test"):
        cells = []
        for key, _ in METRICS:
            d = scores[f"paired_{split}_{key}"]
            cells.append(f"{d['mean']:+.2f} [{d['ci_low']:+.2f}, {d['ci_high']:+.2f}], "
                         f"{d['better']}/{d['worse']}/{d['equal']}")
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    rescored = [name for name, _ in RESCORING if f"rescored_{name}" in scores]
    if rescored:
        lines += ["", "The trained checkpoint scored again on test with other test-time settings (no retraining; "
                  "README, \"Baselines, ablations and comparing runs\"):", "",
                  "| test-time scoring | mIoU | Acc@P | Acc@S |", "|---|---|---|---|",
                  "| the paper's §3.4 (raw similarity maps, bicubic; the trained row above) | "
                  + " | ".join(_fmt(scores["trained_test"][k]) for k, _ in METRICS) + " |"]
        lines += [f"| {RESCORING_TEXT[name]} | " + " | ".join(_fmt(scores[f"rescored_{name}"][k]) for k, _ in METRICS) + " |"
                  for name in rescored]
    lines += ["", "Reading the numbers: the sample's val and test splits are small (the counts above), so a "
              "point or two of mIoU is within noise; the test rows are the honest comparison (the checkpoint "
              "was chosen on val). The tiny CLIP (6 blocks, width 96, 64 px, 8x8 patches) is far weaker than "
              "CLIP ViT-B/16, so absolute values say nothing about the paper's. From random weights the "
              "recipe cannot learn (the random rows; fine-tuning them stays at that level), which is why the "
              + pretraining_text(p)
              + ("The sample fine-tunes the whole visual tower (`finetune: full`): the paper's LayerNorms + "
                 "prompts do not move a 6-block tiny CLIP. " if m["finetune"] == "full" else "")
              + "conf/base is the paper's configuration and uses none of this."]
    lines += ["", "Validation after every epoch (epoch 0 = untrained, as logged by the train pipeline):", "",
              "| epoch | val mIoU | val Acc@P | val Acc@S | train loss | threshold |", "|---|---|---|---|---|---|"]
    for _, r in history.iterrows():
        lines.append(f"| {int(r['epoch'])} | {r.get('val_miou', float('nan')):.2f} | {r.get('val_pixel_acc', float('nan')):.2f} | "
                     f"{r.get('val_stroke_acc', float('nan')):.2f} | {r.get('train_loss', float('nan')):.3f} | "
                     f"{r.get('threshold', float('nan')):.3f} |")
    if pre:
        lines += ["", "Tiny-CLIP pre-training (pipeline `pretrain_sample`, node `pretrain_tiny_clip`), held-out generated pairs:", "",
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
    ap.add_argument("--params", default="", help="kedro --params for every step of --run (and for reading the "
                    "configuration), e.g. the caption-only pre-training of docs/sample-results-caption-only.md")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    timings: dict[str, float] = {}
    project = (args.project or args.workdir).resolve()
    if args.run:
        project = copy_project(args.workdir.resolve())
        extra = [f"--params={args.params}"] if args.params else []
        timings["make_sample (the generated sample)"] = run_kedro(project, ["--pipelines=make_sample", *extra], project / "make_sample.log")
        timings["pretrain_sample (tiny-CLIP pre-training)"] = run_kedro(project, ["--pipelines=pretrain_sample", *extra], project / "pretrain.log")
        timings["train (ingestion ... fit ... test evaluation)"] = run_kedro(project, ["--pipelines=train", *extra], project / "train.log")
        timings["demo total (first run; later runs reuse the pre-trained weights)"] = sum(timings.values())
    params = load_params(project, parse_params(args.params))
    scores = score(project, params)
    for split in ("val", "test"):
        for which in ("random", "untrained", "trained"):
            s = scores[f"{which}_{split}"]
            logger.info("%-5s %-9s " + "  ".join(f"{name} {s[k]:6.2f}" for k, name in METRICS), split, which)
    command = "python benchmarks/sample_learning.py " + ("--run" if args.run else f"--project {args.project or args.workdir}")
    if args.params:
        command += f' --params "{args.params}"'

    text = report(project, params, scores, timings, command)
    if args.out:
        write_report(args.out, text)
        logger.info("wrote %s", args.out)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
