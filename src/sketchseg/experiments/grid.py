"""Run a grid of experiment variants, one ``kedro run`` subprocess each, sequentially.

Each variant runs as ``kedro run --pipelines=train --env=<env>
--params=experiment.variant=<name>,experiment.grid=<grid id>[,<extra>]`` in the project folder,
its output going to ``<log_dir>/<variant>.log``. A failing variant is reported and the grid goes
on. Every variant is checked first (its effective parameters must build a valid ModelConfig and
TrainConfig), so a typo fails in seconds, not after hours of the other variants.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from sketchseg.progress import progress

from sketchseg.errors import SketchSegConfigError, SketchSegError
from sketchseg.experiments.compare import check_grid_id, load_project_config
from sketchseg.experiments.params_check import check_project_parameters
from sketchseg.experiments.project import kedro_subprocess_env
from sketchseg.experiments.variants import apply_variant, flatten_keys
from sketchseg.model.errors import ModelError

logger = logging.getLogger(__name__)

DEFAULT_PIPELINE = "train"
DEFAULT_LOG_DIR = "data/08_reporting/grid"
_RESERVED = ("experiment.variant", "experiment.grid")


@dataclass
class VariantRun:
    """Outcome of one variant of a grid."""

    variant: str
    returncode: int
    seconds: float
    log_path: Path | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def default_grid_id() -> str:
    """``grid-YYYYmmdd-HHMMSS`` (local time)."""
    return datetime.now().strftime("grid-%Y%m%d-%H%M%S")


def parse_params(extra: str | None) -> dict[str, Any]:
    """``"a.b=1,c=x"`` -> ``{"a": {"b": 1}, "c": "x"}``, as ``kedro run --params`` parses it
    (split on commas, values typed by OmegaConf; lists with commas cannot pass)."""
    items = [item.strip() for item in (extra or "").split(",") if item.strip()]
    bad = [item for item in items if "=" not in item or not item.split("=", 1)[0].strip()]
    if bad:
        raise SketchSegConfigError(f"--params: {bad[0]!r} is not key=value (items are separated by commas)")
    items = [f"{k.strip()}={v}" for k, v in (item.split("=", 1) for item in items)]
    return OmegaConf.to_container(OmegaConf.from_dotlist(items)) if items else {}  # type: ignore[return-value]


def kedro_command(env: str, variant: str, grid_id: str, extra_params: str | None = None,
                  pipeline: str = DEFAULT_PIPELINE) -> list[str]:
    """The ``kedro run`` command line of one variant."""
    extra = (extra_params or "").strip().strip(",")
    clash = [k for k in flatten_keys(parse_params(extra)) if k in _RESERVED]
    if clash:
        raise SketchSegConfigError(f"--params must not set {clash}: the grid sets them per variant")
    params = f"experiment.variant={variant},experiment.grid={grid_id}" + (f",{extra}" if extra else "")
    kedro = Path(sys.executable).with_name("kedro")
    exe = [str(kedro)] if kedro.is_file() else [sys.executable, "-m", "kedro"]
    return [*exe, "run", f"--pipelines={pipeline}", f"--env={env}", f"--params={params}"]


def check_variants(project: str | Path, env: str, names: Sequence[str],
                   extra_params: str | None = None) -> dict[str, str]:
    """``{variant: error}`` for the variants whose effective parameters are invalid in ``env``."""
    from sketchseg.engine.train import TrainConfig
    from sketchseg.model.clip_loader import looks_like_path
    from sketchseg.model.config import ModelConfig

    runtime = parse_params(extra_params)
    check_project_parameters(Path(project) / "conf", env, runtime)  # a typo fails the grid before any run
    cfg = load_project_config(project, env, runtime)
    explicit = flatten_keys(runtime)
    errors: dict[str, str] = {}
    for name in names:
        try:
            params = apply_variant(cfg.params, cfg.variants, name, explicit)
            model = ModelConfig.from_dict(params.get("model"))
            model.validate(backbone_layers(model.clip_model))  # block indices against the backbone
            TrainConfig.from_dict(dict(params.get("training") or {}))
            weights = model.pretrained  # runs start in the project folder: relative paths are from there
            if weights and looks_like_path(weights) and not (Path(project) / Path(weights).expanduser()).is_file():
                raise SketchSegConfigError(
                    f"model.pretrained = '{weights}' does not exist (relative to {project}); in the sample env "
                    "run `kedro run --pipelines=pretrain_sample --env=sample` first"
                )
        except (SketchSegError, ModelError, TypeError, ValueError) as exc:
            errors[name] = str(exc)
    return errors


#: grid pipelines that extract categories from captions (the caption parser needs the NLTK data)
NLTK_PIPELINES = frozenset({"train", "__default__", "data", "prompts"})


def check_grid_nltk(project: str | Path, env: str, extra_params: str | None = None) -> None:
    """The NLTK data the variants' runs need is findable from ``project`` (the runs' working
    directory), downloaded first when allowed and online; else one-line SketchSegDataError."""
    import contextlib

    from sketchseg.pipelines.preflight import check_nltk

    cfg = load_project_config(project, env, parse_params(extra_params))
    with contextlib.chdir(project):
        check_nltk(cfg.params)


def backbone_layers(clip_model: str) -> int:
    """Number of vision blocks of the open_clip model ``clip_model`` (sketchseg-tiny included)."""
    import open_clip

    from sketchseg.model.clip_loader import register_model_configs

    register_model_configs()
    config = open_clip.get_model_config(clip_model)
    if config is None:
        raise SketchSegConfigError(f"model.clip_model {clip_model!r} is not an open_clip model name")
    return int(config["vision_cfg"]["layers"])


TIMEOUT_CODE = 124
_GRACE_SECONDS = 30.0


def _subprocess_runner(cmd: list[str], cwd: Path, log_path: Path, timeout: float | None) -> int:
    """Run ``cmd`` in its own process group. Past ``timeout``, or when the grid itself is
    interrupted (Ctrl-C, SIGTERM), the group gets Ctrl-C (SIGINT, so Kedro and kedro-mlflow end the
    MLflow run), then the whole group SIGKILL after a grace period, so no child (nor its loader
    workers) outlives it."""
    env = kedro_subprocess_env()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w", encoding="utf-8") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_default_sigint)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.write(f"\n[grid] timed out after {timeout} s: interrupting\n")
            log.flush()
            _stop_group(proc)
            return TIMEOUT_CODE
        except BaseException:  # the grid was interrupted: its child must not run on as an orphan
            log.write("\n[grid] interrupted: stopping the variant\n")
            log.flush()
            _stop_group(proc)
            raise
        return code


def _default_sigint() -> None:
    """In the child, before exec: Ctrl-C back to its default, even when the grid itself started
    with it ignored (``nohup``, a background job), so that the interruption reaches Kedro."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGINT the process group, wait ``_GRACE_SECONDS`` for the leader, then SIGKILL the group."""
    _signal_group(proc, signal.SIGINT)
    try:
        proc.wait(timeout=_GRACE_SECONDS)
    except BaseException:  # noqa: BLE001 - grace over (or a second Ctrl-C): kill below either way
        pass
    finally:
        _signal_group(proc, signal.SIGKILL)
        try:
            proc.wait(timeout=_GRACE_SECONDS)
        except subprocess.TimeoutExpired:  # pragma: no cover - unkillable child
            logger.error("process %d did not end after SIGKILL", proc.pid)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):  # already gone
        pass


def mark_unfinished_runs(tracking_uri: str, experiment_name: str, grid_id: str, variant: str) -> list[str]:
    """End the variant's grid runs that MLflow still shows RUNNING (a killed ``kedro run`` cannot
    end its own run) as KILLED; returns their run ids."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return []
    query = (f"tags.`sketchseg.grid` = '{check_grid_id(grid_id)}' and tags.`sketchseg.variant` = '{variant}' "
             "and attributes.status = 'RUNNING'")
    ids = [r.info.run_id for r in client.search_runs([experiment.experiment_id], filter_string=query)]
    for run_id in ids:
        client.set_terminated(run_id, status="KILLED")
    return ids


def run_grid(
    project: str | Path,
    env: str,
    variants: Sequence[str],
    grid_id: str,
    *,
    extra_params: str | None = None,
    pipeline: str = DEFAULT_PIPELINE,
    log_dir: str | Path | None = None,
    timeout: float | None = None,
    runner: Callable[[list[str], Path, Path, float | None], int] | None = None,
) -> list[VariantRun]:
    """Run every variant of ``variants`` in turn; never stops at a failing one.

    ``runner(cmd, cwd, log_path, timeout) -> returncode`` defaults to a subprocess whose output
    goes to ``log_path`` (``<log_dir>/<variant>.log``, default ``data/08_reporting/grid/<grid id>``).
    """
    project = Path(project).resolve()
    check_grid_id(grid_id)
    logs = Path(log_dir) if log_dir is not None else project / DEFAULT_LOG_DIR / grid_id
    logs = logs if logs.is_absolute() else project / logs
    runner = runner or _subprocess_runner
    invalid = check_variants(project, env, variants, extra_params)
    if NLTK_PIPELINES & set(pipeline.split(",")):
        check_grid_nltk(project, env, extra_params)  # stops the grid before any run, in one line
    results: list[VariantRun] = []
    logger.info("grid %s: %d variants in env %s (logs in %s)", grid_id, len(variants), env, logs)
    bar = progress(variants, desc=f"grid {grid_id}", unit="variant")
    for i, name in enumerate(bar, start=1):
        bar.set_postfix_str(name)
        if name in invalid:
            logger.error("[%d/%d] %s: invalid configuration, not run: %s", i, len(variants), name, invalid[name])
            results.append(VariantRun(name, 2, 0.0, None, invalid[name]))
            continue
        cmd = kedro_command(env, name, grid_id, extra_params, pipeline)
        log_path = logs / f"{name}.log"
        logger.info("[%d/%d] %s: %s", i, len(variants), name, " ".join(cmd[1:]))
        t0 = time.perf_counter()
        code = runner(cmd, project, log_path, timeout)
        seconds = time.perf_counter() - t0
        error = "" if code == 0 else f"exit code {code}, see {log_path}"
        if code == TIMEOUT_CODE:
            error = f"timed out after {timeout} s, see {log_path}"
            try:
                cfg = load_project_config(project, env)
                killed = mark_unfinished_runs(cfg.tracking_uri, cfg.experiment_name, grid_id, name)
                if killed:
                    logger.warning("%s: MLflow run(s) %s marked KILLED", name, ", ".join(k[:8] for k in killed))
            except Exception as exc:  # noqa: BLE001 - the grid goes on; the run stays RUNNING
                logger.warning("%s: could not mark its unfinished MLflow run as KILLED: %s", name, exc)
        results.append(VariantRun(name, code, seconds, log_path, error))
        if code == 0:
            logger.info("[%d/%d] %s done in %.0f s", i, len(variants), name, seconds)
        else:
            logger.error("[%d/%d] %s FAILED (%s) after %.0f s; going on", i, len(variants), name, error, seconds)
    failed = [r.variant for r in results if not r.ok]
    logger.info("grid %s: %d of %d variants succeeded%s", grid_id, len(results) - len(failed), len(results),
                f"; failed: {', '.join(failed)}" if failed else "")
    return results
