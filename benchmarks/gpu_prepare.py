"""Get ready, on a machine without a GPU, for issue #5's GPU run (``benchmarks/gpu_session.sh``).

Usage (in the project folder, after ``bash scripts/demo.sh``)::

    python benchmarks/gpu_prepare.py            # writes .gpu/sample.json and .gpu/wheels/
    python benchmarks/gpu_prepare.py --no-wheels

A lent GPU machine has its own Python with PyTorch but neither this project's other dependencies
nor a way to download anything. What it needs beside the working tree goes into ``.gpu/`` (git
ignores it), and the device call carries that folder and the sample's data:

* ``.gpu/sample.json``: the sample environment's parameters, resolved here by Kedro's config
  loader (the GPU machine has no Kedro), the paths of the two sample tables, and the CPU fp32
  results of the same configuration (``data/08_reporting/sample/ours-sample/test_metrics.json``,
  the variant's folder ``experiment.output_folder``, of the last
  ``kedro run --pipelines=train --env=sample``), which ``gpu_check.py --sample`` compares with;
* ``.gpu/wheels/``: pure-Python wheels of open_clip and what it needs that the GPU image lacks
  (``ftfy``, ``wcwidth``), at the versions installed here.

Printed last: the ``carry`` list and the command for the device call.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

logger = logging.getLogger("gpu_prepare")

PARAM_GROUPS = ("model", "training", "evaluation", "data", "experiment")
WHEELS = ("open_clip_torch", "ftfy", "wcwidth")  # the GPU image has torch, timm, huggingface_hub, ...
TABLES = {"sketch_splits": "data/03_primary/sketch_splits.parquet",
          "sketch_prompts": "data/04_feature/sketch_prompts.parquet"}
CPU_RESULTS = "data/08_reporting/{output_folder}/test_metrics.json"  # the variant's folder (catalog test_metrics)
SEE = "run `bash scripts/demo.sh` (make_sample, pretrain_sample and train on the sample) first"


def resolved_params(project: Path, env: str, runtime_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The parameter groups the training and evaluation nodes take, as Kedro resolves them for ``env``."""
    from sketchseg.experiments.compare import load_project_config

    params = load_project_config(project, env, runtime_params).params
    return {group: params[group] for group in PARAM_GROUPS}


def sample_spec(project: Path, env: str = "sample", runtime_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything ``gpu_check.py --sample`` needs, paths relative to ``project``."""
    for name, rel in TABLES.items():
        if not (project / rel).is_file():
            raise FileNotFoundError(f"{project / rel} ({name}) is missing: {SEE}")
    params = resolved_params(project, env, runtime_params)
    weights = params["model"].get("pretrained")
    if weights and not (project / weights).is_file():
        raise FileNotFoundError(f"{project / weights} (model.pretrained) is missing: {SEE}")
    results_path = project / CPU_RESULTS.format(output_folder=params["experiment"]["output_folder"])
    if not results_path.is_file():
        raise FileNotFoundError(f"{results_path} (the CPU fp32 results to compare with) is missing: {SEE}")
    results = json.loads(results_path.read_text(encoding="utf-8"))
    return {
        "env": env,
        "written": dt.datetime.now().isoformat(timespec="seconds"),
        "params": params,
        **TABLES,
        "cpu_fp32": {"best_val_miou": results["checkpoint_val_miou"], "test_miou": results["test_miou"],
                     "test_pixel_acc": results["test_pixel_acc"], "checkpoint_epoch": results["checkpoint_epoch"]},
        "carry": sorted({".gpu", "data/01_raw/sample", *(str(Path(t).parent) for t in TABLES.values())}
                        | ({str(weights)} if weights else set())),  # the weights alone, not the sample's checkpoints
    }


def download_wheels(dest: Path) -> list[Path]:
    """Pure-Python wheels of ``WHEELS`` at the versions installed here (for the GPU image's Python)."""
    dest.mkdir(parents=True, exist_ok=True)
    pins = [f"{name}=={metadata.version(name)}" for name in WHEELS]
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux2014_x86_64",
           "-d", str(dest), *pins]
    subprocess.run(cmd, check=True)
    return sorted(dest.glob("*.whl"))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="sample")
    p.add_argument("--dest", type=Path, default=Path(".gpu"))
    p.add_argument("--no-wheels", action="store_true")
    args = p.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    project = Path.cwd()
    spec = sample_spec(project, args.env)
    args.dest.mkdir(parents=True, exist_ok=True)
    (args.dest / "sample.json").write_text(json.dumps(spec, indent=2), encoding="utf-8")
    wheels = [] if args.no_wheels else download_wheels(args.dest / "wheels")
    size = sum(f.stat().st_size for c in spec["carry"] for f in (project / c).rglob("*") if f.is_file())
    logger.info("wrote %s; %d wheels; %.1f MiB to carry", args.dest / "sample.json", len(wheels), size / 2**20)
    sys.stdout.write(
        "device call:\n"
        f"  carry:   {json.dumps(spec['carry'])}\n"
        "  command: bash benchmarks/gpu_session.sh\n"
        "  timeout_s: 540   (the three steps stop themselves after 150 + 200 + 150 s)\n"
    )
    return spec


if __name__ == "__main__":
    main()
