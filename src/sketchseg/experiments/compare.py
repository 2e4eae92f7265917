"""Comparison table of tracked variant runs (like the paper's Tab. 2 / Tab. 4), from MLflow.

One row per variant: the latest finished run that trained and was scored on the test set (within a
grid when ``grid`` is given; an evaluation-only re-scoring only when there is none), our test metrics, the best validation mIoU and its epoch, and the paper's
numbers beside them (``paper:`` of ``conf/base/parameters_variants.yml``). Written as
``comparison.csv`` and ``comparison.md``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sketchseg.errors import SketchSegConfigError
from sketchseg.experiments.variants import PAPER_METRICS, REFERENCE_VARIANT

logger = logging.getLogger(__name__)

#: (CSV column, Markdown header) of our metrics, in table order
METRIC_COLUMNS: tuple[tuple[str, str], ...] = (
    ("test_miou", "mIoU"),
    ("test_pixel_acc", "Acc@P"),
    ("test_stroke_acc", "Acc@S"),
    ("test_mean_acc", "MeanAcc"),
    ("test_fwiou", "FWIoU"),
    ("best_val_miou", "best val mIoU"),
    ("best_epoch", "best epoch"),
)
#: (CSV column, Markdown header) of the paper's numbers
PAPER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("paper_miou", "paper mIoU"),
    ("paper_pixel_acc", "paper Acc@P"),
    ("paper_stroke_acc", "paper Acc@S"),
)
DELTA_COLUMNS: tuple[tuple[str, str], ...] = (
    ("delta_miou", "Δ mIoU vs ours"),
    ("paper_delta_miou", "paper Δ mIoU"),
)
TABLE_COLUMNS: tuple[str, ...] = (
    ("variant", "group", "description")
    + tuple(c for c, _ in METRIC_COLUMNS)
    + tuple(c for c, _ in PAPER_COLUMNS)
    + tuple(c for c, _ in DELTA_COLUMNS)
    + ("status", "run_id", "grid")
)
_HEADERS = {"variant": "variant", "group": "group", "description": "description", "status": "status",
            "run_id": "run id", "grid": "grid", **dict(METRIC_COLUMNS), **dict(PAPER_COLUMNS), **dict(DELTA_COLUMNS)}
_MODEL_PIPELINES = ("train", "training", "evaluation", "__default__")
DEFAULT_EXPERIMENT = "sketchseg"


# ---------------------------------------------------------------------- project configuration
@dataclass
class ProjectConfig:
    """What the experiments tools need from a Kedro project's configuration for one environment."""

    params: dict[str, Any]
    tracking_uri: str
    experiment_name: str

    @property
    def variants(self) -> dict[str, Any]:
        return dict(self.params.get("variants") or {})


def load_project_config(project: str | Path, env: str = "local",
                        runtime_params: Mapping[str, Any] | None = None) -> ProjectConfig:
    """Parameters and MLflow settings of ``project`` for ``env``, read with the project's own
    config loader settings (``${cwd:}`` resolves to the project folder)."""
    from kedro.config import MissingConfigException

    from sketchseg import settings

    project = Path(project).resolve()
    conf = project / "conf"
    if not (conf / "base").is_dir():
        raise SketchSegConfigError(f"{project}: not a Kedro project root (no conf/base); pass --project")
    if env not in ("base", "local") and not (conf / env).is_dir():
        raise SketchSegConfigError(f"{conf / env}: no such configuration environment")
    with contextlib.chdir(project):
        loader = settings.CONFIG_LOADER_CLASS(conf_source=str(conf), env=env, runtime_params=dict(runtime_params or {}),
                                   **settings.CONFIG_LOADER_ARGS)
        params = dict(loader["parameters"])
        try:
            mlflow_conf = dict(loader["mlflow"])
        except MissingConfigException:
            mlflow_conf = {}
    uri = (mlflow_conf.get("server") or {}).get("mlflow_tracking_uri") or f"sqlite:///{project.as_posix()}/mlflow.db"
    name = ((mlflow_conf.get("tracking") or {}).get("experiment") or {}).get("name") or DEFAULT_EXPERIMENT
    return ProjectConfig(params=params, tracking_uri=str(uri), experiment_name=str(name))


# ---------------------------------------------------------------------- runs
_GRID_ID = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]*")


def _as_kedro_param(value: str) -> Any:
    """``value`` as ``kedro run --params key=value`` types it (OmegaConf)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.from_dotlist([f"x={value}"]))["x"]


def check_grid_id(grid: str) -> str:
    """A grid id must start with a letter and hold only letters, digits, ``_ . -``: Kedro's
    ``--params`` would type '007' as 7, '0123' as 83 and 'true' as True, and the tag would not match."""
    if not isinstance(grid, str) or not _GRID_ID.fullmatch(grid) or _as_kedro_param(grid) != grid:
        raise SketchSegConfigError(
            f"grid id {grid!r} must start with a letter and hold only letters, digits, '_', '.' and '-' "
            "(e.g. 'ablation-v2'): kedro run --params would turn '007' into 7 or 'true' into True"
        )
    return grid


def fetch_runs(tracking_uri: str, experiment_name: str, grid: str | None = None) -> pd.DataFrame:
    """Every run of ``experiment_name`` tagged with a variant (optionally of one grid), newest first.

    Columns: run_id, variant, group, description, grid, pipeline, status, start_time, and one
    column per logged metric.
    """
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        raise SketchSegConfigError(
            f"no MLflow experiment {experiment_name!r} at {tracking_uri}; run the grid (or kedro run) first"
        )
    query = "tags.`sketchseg.variant` != ''"
    if grid:
        query += f" and tags.`sketchseg.grid` = '{check_grid_id(grid)}'"
    runs = client.search_runs([experiment.experiment_id], filter_string=query, run_view_type=ViewType.ACTIVE_ONLY,
                              max_results=50_000, order_by=["attributes.start_time DESC"])
    rows = []
    for r in runs:
        tags = r.data.tags
        rows.append({
            "run_id": r.info.run_id,
            "variant": tags.get("sketchseg.variant", ""),
            "group": tags.get("sketchseg.group", ""),
            "description": tags.get("sketchseg.description", ""),
            "grid": tags.get("sketchseg.grid", ""),
            "pipeline": tags.get("sketchseg.pipeline", ""),
            "status": r.info.status,
            "start_time": int(r.info.start_time or 0),
            **{k: float(v) for k, v in r.data.metrics.items()},
        })
    cols = ["run_id", "variant", "group", "description", "grid", "pipeline", "status", "start_time"]
    table = pd.DataFrame(rows) if rows else pd.DataFrame(columns=cols)
    return table.sort_values("start_time", ascending=False, kind="stable").reset_index(drop=True)


def _pipelines(pipeline: str) -> set[str]:
    """The pipeline names of a run's ``sketchseg.pipeline`` tag ("train" or "data,training")."""
    return {p.strip() for p in str(pipeline or "").split(",")}


def _is_model_run(pipeline: str) -> bool:
    return bool(_pipelines(pipeline) & set(_MODEL_PIPELINES))


def _trains(pipeline: str) -> bool:
    """A run that trained its checkpoint (not an evaluation-only re-scoring of one on disk)."""
    return bool(_pipelines(pipeline) & {"train", "training", "__default__"})


def _num(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def _row(name: str, mine: pd.DataFrame, spec: Mapping[str, Any]) -> dict[str, Any]:
    """The table row of variant ``name`` from its runs ``mine`` (newest first) and its preset."""
    row: dict[str, Any] = {"variant": name, **{col: math.nan for col, _ in METRIC_COLUMNS}}
    scored = mine[(mine["status"] == "FINISHED") & mine["test_miou"].notna()] if "test_miou" in mine else mine.iloc[0:0]
    trained = scored[scored["pipeline"].map(_trains)]
    if len(scored):
        # a run that trained and scored its checkpoint; an evaluation-only re-scoring (other
        # settings, whichever checkpoint was on disk) only when the variant has no such run
        run = trained.iloc[0] if len(trained) else scored.iloc[0]
        status = "ok" if len(trained) else "ok (evaluation only)"
        newer = mine[mine["pipeline"].map(_trains) & (mine["start_time"] > run["start_time"])
                     & (mine["run_id"] != run["run_id"])]
        if len(newer):  # a later training attempt that failed, was killed or left no test score
            latest = newer.iloc[0]
            state = latest["status"] if latest["status"] != "FINISHED" else "unscored"
            status += f" (newer run {state} {str(latest['run_id'])[:8]})"
        row.update(status=status, run_id=run["run_id"], grid=run["grid"])
        row.update({col: _num(run.get(col)) for col, _ in METRIC_COLUMNS})
    else:
        model_runs = mine[mine["pipeline"].map(_is_model_run)]
        latest = model_runs.iloc[0] if len(model_runs) else None
        row.update(status=str(latest["status"]) if latest is not None else "missing",
                   run_id=latest["run_id"] if latest is not None else "",
                   grid=latest["grid"] if latest is not None else "")
    tagged = mine.iloc[0] if len(mine) else None
    row["group"] = spec.get("group") or (tagged["group"] if tagged is not None else "")
    row["description"] = spec.get("description") or (tagged["description"] if tagged is not None else "")
    paper = dict(spec.get("paper") or {})
    row.update({col: _num(paper.get(key)) for (col, _), key in zip(PAPER_COLUMNS, PAPER_METRICS)})
    return row


def comparison_table(
    runs: pd.DataFrame,
    variants: Mapping[str, Any],
    selection: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per variant (columns :data:`TABLE_COLUMNS`).

    The row's run is the latest FINISHED run with a ``test_miou`` metric that trained its checkpoint
    (an evaluation-only run only when there is none: status ``ok (evaluation only)``); a newer
    training run is named in the status (``ok (newer run FAILED 1a2b3c4d)``; ``unscored`` when it
    finished without test metrics, e.g. ``--pipelines=training``).
    A variant without a scored run shows the status of its latest model run (e.g. ``FAILED``,
    ``KILLED``, ``RUNNING``) or ``missing``. Rows follow
    ``selection`` when given (all its variants, found or not), else every variant with a run, in the
    order of ``variants`` and then alphabetically (data-only runs, e.g. ``make_sample``, are ignored).
    """
    runs = runs.sort_values("start_time", ascending=False, kind="stable") if len(runs) else runs
    found = list(dict.fromkeys(runs.loc[runs["pipeline"].map(_is_model_run), "variant"])) if len(runs) else []
    if selection is not None:
        names = list(dict.fromkeys(selection))
    else:
        names = [n for n in variants if n in found] + sorted(n for n in found if n not in variants and n)
    rows = [_row(name, runs[runs["variant"] == name] if len(runs) else runs, dict(variants.get(name) or {}))
            for name in names]
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    ref = table[table["variant"] == REFERENCE_VARIANT]
    ours = float(ref["test_miou"].iloc[0]) if len(ref) else math.nan
    paper_ours = _num(dict((variants.get(REFERENCE_VARIANT) or {}).get("paper") or {}).get("miou"))
    table["delta_miou"] = table["test_miou"] - ours
    table["paper_delta_miou"] = table["paper_miou"] - paper_ours
    table["best_epoch"] = pd.to_numeric(table["best_epoch"]).round().astype("Int64")
    return table.reset_index(drop=True)


# ---------------------------------------------------------------------- output
def _cell(value: Any, col: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "–"
    if col == "best_epoch":
        return str(int(value))
    if col in ("delta_miou", "paper_delta_miou"):
        return f"{float(value):+.2f}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{float(value):.2f}"
    if col == "run_id":
        return str(value)[:8]
    return str(value).replace("|", "\\|")


def markdown_table(table: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    """A GitHub Markdown table (numbers with 2 decimals, missing = –, run ids shortened to 8)."""
    columns = list(columns or [c for c in TABLE_COLUMNS if c != "grid"])
    lines = ["| " + " | ".join(_HEADERS.get(c, c) for c in columns) + " |",
             "|" + "|".join("---" if c in ("variant", "group", "description", "status", "run_id") else "---:"
                            for c in columns) + "|"]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(_cell(row[c], c) for c in columns) + " |")
    return "\n".join(lines)


def markdown_report(table: pd.DataFrame, *, env: str, experiment: str, grid: str | None) -> str:
    """``comparison.md``: a short header and the table."""
    scope = f"grid `{grid}`" if grid else "all tracked runs"
    head = [
        "# Variant comparison",
        "",
        f"Environment `{env}`, MLflow experiment `{experiment}`, {scope}: the latest finished run per variant "
        "that trained and scored its checkpoint (an evaluation-only run only where none did: status *ok (evaluation "
        "only)*). Test-set metrics in %; *best val mIoU* / *best epoch*: the checkpoint chosen on validation "
        "mIoU; *paper*: the paper's FS-COCO test numbers (Tab. 2 / Tab. 4) for reference; Δ: difference to `ours`.",
        "",
    ]
    return "\n".join(head) + "\n" + markdown_table(table) + "\n"


def write_comparison(table: pd.DataFrame, out_dir: str | Path, *, env: str, experiment: str,
                     grid: str | None) -> tuple[Path, Path]:
    """Write ``comparison.csv`` and ``comparison.md`` into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / "comparison.csv", out / "comparison.md"
    table.to_csv(csv_path, index=False, float_format="%.4f")
    md_path.write_text(markdown_report(table, env=env, experiment=experiment, grid=grid), encoding="utf-8")
    return csv_path, md_path


def compare(
    project: str | Path = ".",
    env: str = "local",
    *,
    grid: str | None = None,
    out: str | Path = "data/08_reporting/comparison",
    selection: Sequence[str] | None = None,
    tracking_uri: str | None = None,
    experiment_name: str | None = None,
) -> pd.DataFrame:
    """Read the tracked runs of ``project`` / ``env`` and write the comparison table (relative
    ``out`` is under the project). Returns the table."""
    project = Path(project).resolve()
    cfg = load_project_config(project, env)
    uri = tracking_uri or cfg.tracking_uri
    name = experiment_name or cfg.experiment_name
    runs = fetch_runs(uri, name, grid)
    table = comparison_table(runs, cfg.variants, selection)
    out_dir = Path(out) if Path(out).is_absolute() else project / out
    csv_path, md_path = write_comparison(table, out_dir, env=env, experiment=name, grid=grid)
    logger.info("comparison of %d variants (%d runs read from %s, experiment %s): %s, %s",
                len(table), len(runs), uri, name, csv_path, md_path)
    return table
