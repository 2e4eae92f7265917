"""`kedro viz build` renders every registered pipeline with its layers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sketchseg.pipeline_registry import register_pipelines
from tests.pipelines.kedro_utils import run


@pytest.mark.slow
def test_kedro_viz_build_shows_all_pipelines_with_previews(kedro_project):
    run(kedro_project, "make_sample")
    run(kedro_project, "data")
    kedro = Path(sys.executable).with_name("kedro")
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
    proc = subprocess.run([str(kedro), "viz", "build", "--include-previews"], cwd=kedro_project, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    main = json.loads((kedro_project / "build" / "api" / "main").read_text())
    assert {p["id"] for p in main["pipelines"]} == set(register_pipelines())
    assert {"intermediate", "primary", "feature", "models", "reporting"} <= set(main["layers"])
    names = {n["name"] for n in main["nodes"]}
    assert {"fscoco_manifest", "best_checkpoint", "training_curves"} <= names
    # tables with list columns (categories, prompts) preview as text
    prompts_id = next(n["id"] for n in main["nodes"] if n["name"] == "sketch_prompts")
    detail = json.loads((kedro_project / "build" / "api" / "nodes" / prompts_id).read_text())
    preview = detail["preview"]
    assert "categories" in preview["columns"] and len(preview["data"]) == 10
    cell = preview["data"][0][preview["columns"].index("prompts")]
    assert isinstance(cell, str) and cell.startswith("A sketch of ")
