"""``python -m sketchseg.experiments {list,grid,compare}``: variant presets, grids and comparison tables.

Examples (from the project root)::

    python -m sketchseg.experiments list --env sample
    python -m sketchseg.experiments grid --env sample --variants tab4
    python -m sketchseg.experiments grid --env sample --variants ours,wo_vv --params training.epochs=2
    python -m sketchseg.experiments compare --env sample --grid grid-20260101-120000
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from sketchseg.errors import SketchSegError
from sketchseg.experiments.compare import check_grid_id, compare, load_project_config, markdown_table
from sketchseg.experiments.grid import DEFAULT_PIPELINE, default_grid_id, run_grid
from sketchseg.experiments.variants import select_variants
from sketchseg.model.errors import ModelError

logger = logging.getLogger("sketchseg.experiments")

DEFAULT_OUT = "data/08_reporting/comparison"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--project", default=".", help="Kedro project root (default: the current folder)")
    p.add_argument("--env", default="local", help="configuration environment, as kedro run --env (default: local)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sketchseg.experiments", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p_list = sub.add_parser("list", help="list the variant presets (name, group, description)")
    _common(p_list)

    p_grid = sub.add_parser("grid", help="run variants one after the other, then write the comparison table")
    _common(p_grid)
    p_grid.add_argument("--variants", default="all",
                        help="comma-separated names and/or groups (tab2, tab4, fig6, fig6a, fig6b, authors) or 'all' "
                             "(default); a group brings the reference 'ours' along")
    p_grid.add_argument("--params", default=None,
                        help="extra kedro --params for every variant, e.g. training.epochs=2 (they win over presets)")
    p_grid.add_argument("--tag", "--grid", dest="grid", default=None,
                        help="grid id (MLflow tag sketchseg.grid; default grid-<timestamp>)")
    p_grid.add_argument("--pipeline", default=DEFAULT_PIPELINE, help="pipeline to run per variant (default: train)")
    p_grid.add_argument("--timeout", type=float, default=None, help="seconds per variant before it is stopped")
    p_grid.add_argument("--out", default=DEFAULT_OUT, help=f"comparison folder (default {DEFAULT_OUT})")
    p_grid.add_argument("--no-compare", action="store_true", help="skip the comparison table")

    p_cmp = sub.add_parser("compare", help="comparison table (CSV + Markdown) from the tracked MLflow runs")
    _common(p_cmp)
    p_cmp.add_argument("--grid", default=None, help="only runs of this grid id (default: all runs)")
    p_cmp.add_argument("--variants", default=None, help="rows to show (names/groups/all; default: every run's variant)")
    p_cmp.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    p_cmp.add_argument("--tracking-uri", default=None, help="override the tracking URI of the env's mlflow.yml")
    p_cmp.add_argument("--experiment", default=None, help="override the MLflow experiment name of the env's mlflow.yml")
    return parser


def variants_table(variants: Mapping[str, Any]) -> str:
    """The presets as an aligned text table (variant, group, description), one row each."""
    rows = [("variant", "group", "description")]
    rows += [(str(name), str((spec or {}).get("group", "")), str((spec or {}).get("description", "")))
             for name, spec in variants.items()]
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    return "\n".join(f"{r[0]:<{width[0]}}  {r[1]:<{width[1]}}  {r[2]}".rstrip() for r in rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Tables and other results go to stdout (``| grep``, ``| less``); progress and errors are log
    lines on stderr."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_project_config(args.project, args.env)
        if args.command == "list":
            print(variants_table(cfg.variants))
            return 0
        if args.command == "grid":
            names = select_variants(cfg.variants, args.variants)
            grid_id = check_grid_id(args.grid or default_grid_id())
            results = run_grid(args.project, args.env, names, grid_id, extra_params=args.params,
                               pipeline=args.pipeline, timeout=args.timeout)
            failed = [r for r in results if not r.ok]
            unscored: list[str] = []
            if not args.no_compare:
                table = compare(args.project, args.env, grid=grid_id, out=args.out, selection=names)
                print(f"comparison (grid {grid_id}):\n{markdown_table(table)}", flush=True)
                done = {r.variant for r in results if r.ok}
                scores = args.pipeline in ("train", "__default__") or "evaluation" in args.pipeline.split(",")
                unscored = [v for v, status in zip(table["variant"], table["status"])
                            if scores and v in done and not str(status).startswith("ok")]
            for r in failed:
                logger.error("variant %s failed: %s", r.variant, r.error)
            for v in unscored:
                logger.error("variant %s ran but has no scored run of grid %s in MLflow (see its log)", v, grid_id)
            return 1 if failed or unscored else 0
        selection = select_variants(cfg.variants, args.variants) if args.variants else None
        table = compare(args.project, args.env, grid=args.grid, out=args.out, selection=selection,
                        tracking_uri=args.tracking_uri, experiment_name=args.experiment)
        print(markdown_table(table), flush=True)
        return 0
    except (SketchSegError, ModelError) as exc:
        logger.error("%s", exc)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
