"""Is the fast path right in bf16 on a GPU? One script, one call on a lent CUDA machine (issue #5).

Usage::

    python benchmarks/gpu_check.py --device cuda --json out/gpu_check.json [--sample .gpu/sample.json]
    python benchmarks/gpu_check.py --quick        # CPU, tiny model, bf16 through CPU autocast (CI)

The checks follow the method for lent GPUs: compare with a higher-precision reference by relative
error ``||out - ref|| / ||ref||``, on fresh random inputs, never on zeros.

1. ``fp32``: the fast implementation (SDPA, shared q/k/v, batched categories, device losses) against
   the straightforward reference one, same weights, both fp32 with TF32 off: losses, gradients of
   every trainable tensor, similarity maps. Float32 rounding only: far under 1e-3.
2. ``bf16``: the fast implementation under bf16 autocast (what training and evaluation use on CUDA)
   against the fp32 reference: losses and maps within bf16's band (1e-3 to 1e-2), the label maps
   (argmax) agreeing on nearly every pixel, and the gradients no worse than FLOOR_FACTOR times
   what bf16 costs the reference implementation itself (see FLOOR_FACTOR below). Run for each
   ``--model`` (ViT-B-16 and the 6-block tiny model by default, both with random weights).
3. ``train``: ``--train-steps`` steps of ``engine.train.train_step`` in bf16 on one batch (fused
   AdamW with NaN skipping on the device on CUDA): every loss finite, no step skipped, and the loss
   falls at least half as far as the same steps in fp32 from the same weights.
4. ``checkpoint``: the trainable state after those steps written as safetensors and loaded
   into a freshly built model (``load_model_from_checkpoint``): the maps agree bit for bit, the
   weights are fp32.
5. ``sample`` (``--sample FILE``, written by ``benchmarks/gpu_prepare.sh``): the training node
   ``train_model`` and the evaluation node ``evaluate_test`` on the generated sample, on this
   device in bf16, against the CPU fp32 numbers recorded with the same configuration: training
   must learn (best val mIoU above the untrained epoch 0) and land near the CPU result.

Printed: one row per check (value, limit, verdict); ``--json`` writes everything. Exit status 1
when any check fails, 0 otherwise.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_model  # noqa: E402  (sets up the import of sketchseg from a checkout)

from sketchseg.engine.runtime import resolve_device  # noqa: E402
from sketchseg.engine.train import TrainConfig, make_optimizer, train_step  # noqa: E402
from sketchseg.model.checkpoint import load_model_from_checkpoint, save_checkpoint  # noqa: E402
from sketchseg.model.model import SketchSegModel, build_model  # noqa: E402
from sketchseg.model.similarity import predict_labels  # noqa: E402

logger = logging.getLogger("gpu_check")

# Limits (relative errors unless named otherwise). fp32: rounding only. bf16: 8 mantissa bits,
# errors of 1e-3..1e-2 per value and a little more after 12 blocks of accumulation.
LIMITS = {
    "fp32": {"loss": 1e-4, "grad": 1e-3, "map": 1e-4},
    "bf16": {"loss": 3e-2, "grad": 0.05, "map": 3e-2, "label_agreement": 0.97},
}
# Gradients reach the trainable LayerNorms and prompts through every block, and the triplet losses'
# gradient is a difference of terms that can be nearly equal: with random weights ViT-B-16 maps all
# sketches to nearly one embedding (mean cosine 0.999 between two sketches), so bf16's rounding of
# the activations (3.9e-3) is as large as what the gradient depends on. How much bf16 costs is
# therefore measured, not guessed: the "bf16 floor" is the gradient error of the straightforward
# reference implementation under the same bf16 autocast. The fast path may cost at most
# FLOOR_FACTOR times that (or the fixed limit, where that is looser). Measured with CPU autocast:
# ViT-B-16, 4 random sketches: floor 0.15, fast path 0.43 (the CPU SDPA kernel in bf16 adds most of
# it: 0.23 without it); the 6-block tiny model, 8 sketches: floor 0.04, fast path 0.07. CUDA has
# other kernels: the GPU run tells.
FLOOR_FACTOR = 3.0


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    ref64 = ref.detach().double().cpu()
    return float((out.detach().double().cpu() - ref64).norm() / ref64.norm().clamp_min(1e-30))


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a64, b64 = a.detach().double().flatten().cpu(), b.detach().double().flatten().cpu()
    return float(a64 @ b64 / (a64.norm() * b64.norm()).clamp_min(1e-30))


class Report:
    """Rows of (check, measure, value, limit, ok)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, check: str, measure: str, value: float, limit: float, *, at_least: bool = False) -> None:
        ok = bool(value >= limit if at_least else value <= limit)  # NaN compares false: it never passes
        self.rows.append({"check": check, "measure": measure, "value": value,
                          "limit": f"{'>=' if at_least else '<='} {limit:g}", "ok": ok})
        logger.info("%-10s %-34s %12.4g  %-10s %s", check, measure, value, self.rows[-1]["limit"],
                    "ok" if ok else "FAIL")

    def note(self, check: str, measure: str, value: Any) -> None:
        self.rows.append({"check": check, "measure": measure, "value": value, "limit": "", "ok": True})
        logger.info("%-10s %-34s %12s", check, measure, value)

    @property
    def ok(self) -> bool:
        return all(r["ok"] for r in self.rows)

    def markdown(self) -> str:
        lines = ["| check | measure | value | limit | verdict |", "|---|---|---:|---|---|"]
        for r in self.rows:
            v = f"{r['value']:.4g}" if isinstance(r["value"], float) else str(r["value"])
            lines.append(f"| {r['check']} | {r['measure']} | {v} | {r['limit']} | "
                         f"{'ok' if r['ok'] else '**FAIL**'} |" if r["limit"] else
                         f"| {r['check']} | {r['measure']} | {v} | | |")
        return "\n".join(lines)


# ------------------------------------------------------------------------------ helpers
def precision_context(device: torch.device, bf16: bool):  # noqa: ANN201 - a context manager
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16)


def losses_and_grads(model: SketchSegModel, batch: dict[str, Any], device: torch.device,
                     bf16: bool) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    model.train()
    model.zero_grad(set_to_none=True)
    images = batch["images"].to(device)
    with precision_context(device, bf16):
        out = model.training_losses(images, batch["captions"], batch["categories"], batch["prompts"])
    out["loss"].backward()
    grads = {n: p.grad.detach().float().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    losses = {k: v.detach().float() for k, v in out.items() if torch.is_tensor(v) and k.startswith("loss")}
    return losses, grads


@torch.no_grad()
def maps_of(model: SketchSegModel, images: torch.Tensor, categories: list[list[str]], size: int,
            device: torch.device, bf16: bool) -> list[torch.Tensor]:
    model.eval()
    with precision_context(device, bf16):
        maps = model.segment(images.to(device), categories, size=size)
    return [m.float() for m in maps]


def set_implementation(model: SketchSegModel, implementation: str) -> None:
    """Switch to ``implementation``'s levers with a cold text cache, as the benchmark does."""
    bench_model.configure(model, bench_model.Variant(implementation, implementation), [])


def gradient_agreement(got: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> dict[str, float]:
    """Relative error and cosine of all gradients together, and the worst single tensor's cosine."""
    names = sorted(ref)
    flat_g = torch.cat([got[n].flatten().cpu() for n in names])
    flat_r = torch.cat([ref[n].flatten().cpu() for n in names])
    return {"rel_err": rel_err(flat_g, flat_r), "cosine": cosine(flat_g, flat_r),
            "worst_cosine": min(cosine(got[n], ref[n]) for n in names if ref[n].norm() > 0)}


def compare(report: Report, check: str, limits: dict[str, float], got: tuple, ref: tuple,
            maps: list[torch.Tensor], ref_maps: list[torch.Tensor], *,
            floor: dict[str, float] | None = None) -> None:
    (lg, gg), (lr, gr) = got, ref
    for key in sorted(lr):
        report.add(check, f"{key} rel. error", rel_err(lg[key], lr[key]), limits["loss"])
    if gg.keys() != gr.keys():
        report.add(check, "same parameters get gradients", 0.0, 1.0, at_least=True)
    agree = gradient_agreement(gg, gr)
    limit = limits["grad"] if floor is None else max(limits["grad"], FLOOR_FACTOR * floor["rel_err"])
    report.add(check, f"gradients rel. error ({len(gr)} tensors)", agree["rel_err"], limit)
    report.note(check, "gradient cosine: all together / worst tensor",
                f"{agree['cosine']:.4f} / {agree['worst_cosine']:.4f}")
    report.add(check, "similarity maps rel. error", rel_err(torch.cat([m.flatten() for m in maps]),
                                                            torch.cat([m.flatten() for m in ref_maps])), limits["map"])
    if "label_agreement" in limits:
        same = sum(int((predict_labels(a) == predict_labels(b)).sum()) for a, b in zip(maps, ref_maps))
        total = sum(a.shape[-1] * a.shape[-2] for a in maps)
        report.add(check, "label maps: pixels that agree", same / total, limits["label_agreement"], at_least=True)


# ------------------------------------------------------------------------------ checks
def check_paths(report: Report, tag: str, model: SketchSegModel, batch: dict, images: torch.Tensor,
                categories: list[list[str]], size: int, device: torch.device) -> None:
    """Checks 1 and 2: fast (fp32 and bf16) against the fp32 reference implementation."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    set_implementation(model, "reference")
    ref = losses_and_grads(model, batch, device, bf16=False)
    ref_maps = maps_of(model, images, categories, size, device, bf16=False)
    floor = gradient_agreement(losses_and_grads(model, batch, device, bf16=True)[1], ref[1])
    report.note(f"bf16 {tag}", "floor: reference path in bf16, gradients",
                f"rel. error {floor['rel_err']:.3g}, cosine {floor['cosine']:.4f} / {floor['worst_cosine']:.4f}")
    set_implementation(model, "fast")
    fast32 = losses_and_grads(model, batch, device, bf16=False)
    compare(report, f"fp32 {tag}", LIMITS["fp32"], fast32, ref,
            maps_of(model, images, categories, size, device, bf16=False), ref_maps)
    fast16 = losses_and_grads(model, batch, device, bf16=True)
    compare(report, f"bf16 {tag}", LIMITS["bf16"], fast16, ref,
            maps_of(model, images, categories, size, device, bf16=True), ref_maps, floor=floor)


def train_steps(model: SketchSegModel, batch: dict, device: torch.device, steps: int, learning_rate: float,
                bf16: bool) -> tuple[torch.Tensor, torch.Tensor, list[torch.nn.Parameter]]:
    """``steps`` optimisation steps of ``engine.train.train_step`` on one batch: (losses, finite flags, params)."""
    set_implementation(model, "fast")
    model.precompute_text(list(batch["captions"]) + [p for ps in batch["prompts"] for p in ps])
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer, skips_on_device = make_optimizer(
        params, TrainConfig(learning_rate=learning_rate, weight_decay=0.0, fused_optimizer=device.type == "cuda"))
    model.train()
    losses, finite = [], []
    for _ in range(steps):
        with precision_context(device, bf16 and device.type == "cpu"):  # runtime.autocast covers CUDA itself
            out, ok = train_step(model.training_losses, optimizer, batch, device=device,
                                 precision="bf16" if bf16 else "fp32", skips_on_device=skips_on_device)
        losses.append(out["loss"].detach().float())
        finite.append(ok)
    return torch.stack(losses).cpu(), torch.stack(finite).cpu(), params


def check_training(report: Report, tag: str, model: SketchSegModel, batch: dict, device: torch.device, steps: int,
                   learning_rate: float) -> None:
    """Check 3: bf16 optimisation steps through the training loop's own step function, against
    the same steps in fp32 from the same starting weights."""
    twin = copy.deepcopy(model)
    fp32_losses, _, _ = train_steps(twin, batch, device, steps, learning_rate, bf16=False)
    del twin
    losses, finite, params = train_steps(model, batch, device, steps, learning_rate, bf16=True)
    drop, fp32_drop = float(losses[0] - losses[-1]), float(fp32_losses[0] - fp32_losses[-1])
    report.add(f"train {tag}", f"finite steps of {steps}", float(finite.float().sum()), float(steps), at_least=True)
    report.note(f"train {tag}", "loss first -> last: bf16 / fp32",
                f"{float(losses[0]):.4f} -> {float(losses[-1]):.4f} / {float(fp32_losses[0]):.4f} -> "
                f"{float(fp32_losses[-1]):.4f}")
    report.add(f"train {tag}", "fp32 loss drop (the yardstick)", fp32_drop, 1e-6, at_least=True)
    report.add(f"train {tag}", "bf16 loss drop / fp32 loss drop", drop / fp32_drop if fp32_drop > 0 else float("nan"),
               0.5, at_least=True)
    report.add(f"train {tag}", "trainable weights stay fp32", float(all(p.dtype == torch.float32 for p in params)), 1.0,
               at_least=True)


def check_checkpoint(report: Report, tag: str, model: SketchSegModel, seed: int,
                     images: torch.Tensor, categories: list[list[str]], size: int, device: torch.device) -> None:
    """Check 4: safetensors round trip of the bf16-trained state."""
    with tempfile.TemporaryDirectory() as tmp:
        path = save_checkpoint(Path(tmp) / "check.safetensors", model, {"kind": "gpu_check"})
        torch.manual_seed(seed)  # the backbone (and frozen weights) ``model`` was built with
        other = load_model_from_checkpoint(path, model.cfg)[0].to(device)
    for m in (model, other):
        set_implementation(m, "fast")  # both with a cold text cache
    a = maps_of(model, images, categories, size, device, bf16=False)
    b = maps_of(other, images, categories, size, device, bf16=False)
    report.add(f"checkpoint {tag}", "maps after reload: max abs. difference",
               max(float((x - y).abs().max()) for x, y in zip(a, b)), 0.0)


def check_sample(report: Report, spec_path: Path, device: torch.device, num_workers: int) -> dict[str, Any]:
    """Check 5: the training and evaluation nodes on the generated sample, bf16 on ``device``."""
    import pandas as pd

    from sketchseg.pipelines.evaluation.nodes import evaluate_test
    from sketchseg.pipelines.training.nodes import train_model

    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    params = spec["params"]
    training = dict(params["training"], device=str(device), precision="bf16", num_workers=num_workers)
    evaluation = dict(params["evaluation"], num_workers=num_workers)
    splits = pd.read_parquet(spec["sketch_splits"])
    prompts = pd.read_parquet(spec["sketch_prompts"])
    t0 = time.perf_counter()
    best, _, history = train_model(splits, prompts, params["model"], training, evaluation, params["data"],
                                   params["experiment"])
    train_s = time.perf_counter() - t0
    test, _, _ = evaluate_test(best, splits, params["model"], evaluation, training, params["data"])
    epoch0 = float(history.loc[history["epoch"] == 0, "val_miou"].iloc[0])
    best_val = float(best["metadata"]["val_miou"])
    cpu = spec.get("cpu_fp32", {})
    report.note("sample", "train node seconds (bf16)", round(train_s, 1))
    report.add("sample", "best val mIoU - untrained (points)", best_val - epoch0, 2.0, at_least=True)
    for key, name in (("best_val_miou", "val mIoU"), ("test_miou", "test mIoU"), ("test_pixel_acc", "test Acc@P")):
        got = best_val if key == "best_val_miou" else float(test[key])
        if key in cpu:
            report.add("sample", f"abs. difference {name} to CPU fp32 (points)", abs(got - float(cpu[key])), 3.0)
        report.note("sample", f"{name} bf16 / CPU fp32", f"{got:.2f} / {cpu.get(key, float('nan')):.2f}")
    return {"history": history.to_dict(orient="records"), "test": test, "train_seconds": train_s}


# ------------------------------------------------------------------------------ main
def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--model", default=None,
                   help="open_clip ViT names, comma-separated (default ViT-B-16,sketchseg-tiny; sketchseg-tiny with --quick)")
    p.add_argument("--batch", type=int, default=None, help="training sketches per batch (default 8; 4 with --quick)")
    p.add_argument("--categories", type=int, default=3, help="category prompts per training sketch")
    p.add_argument("--size", type=int, default=None, help="output map size (default 512; 128 with --quick)")
    p.add_argument("--train-steps", type=int, default=30, help="bf16 optimisation steps on one batch")
    p.add_argument("--learning-rate", type=float, default=1e-3, help="for the train check (overfits one batch)")
    p.add_argument("--sample", type=Path, default=None, help="JSON from gpu_prepare.sh: run check 5")
    p.add_argument("--num-workers", type=int, default=4, help="loader workers for check 5")
    p.add_argument("--quick", action="store_true", help="CI size: tiny model on CPU")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="write rows and details as JSON")
    args = p.parse_args(argv)
    args.model = (args.model or ("sketchseg-tiny" if args.quick else "ViT-B-16,sketchseg-tiny")).split(",")
    args.batch = args.batch or 8
    args.size = args.size or (128 if args.quick else 512)
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device)
    report = Report()
    report.note("env", "device", torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu")
    report.note("env", "torch", torch.__version__)

    for name in args.model:
        torch.manual_seed(args.seed)  # the same backbone weights as the checkpoint check's reload
        model = build_model(bench_model.model_config(name)).to(device)
        size = int(model.cfg.image_size)
        # fresh random sketches (not the benchmark's seeds), several categories each
        batch = bench_model.synthetic_batches(1, args.batch, size, args.categories, args.seed + 7919, pin=False)[0]
        images = bench_model.synthetic_images(args.batch, size, args.seed + 104729)
        categories = bench_model.inference_categories(args.batch, args.seed + 1)
        check_paths(report, name, model, batch, images, categories, args.size, device)
        check_training(report, name, model, batch, device, args.train_steps, args.learning_rate)
        check_checkpoint(report, name, model, args.seed, images, categories, args.size, device)
        del model
    details: dict[str, Any] = {}
    if args.sample is not None:
        details["sample"] = check_sample(report, args.sample, device, args.num_workers)
    return {"ok": report.ok, "rows": report.rows, "markdown": report.markdown(), "details": details,
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parse(argv)
    bench_model.setup_logging()
    result = run(args)
    bench_model.write_outputs(result["markdown"], result, None, args.json)
    sys.stdout.write(result["markdown"] + f"\n\ngpu_check: {'all checks passed' if result['ok'] else 'FAILED'}\n")
    return result


if __name__ == "__main__":
    raise SystemExit(0 if main()["ok"] else 1)
