"""The comparison table from tracked runs (latest finished run per variant, grid filter, order,
paper columns, missing / failed variants, exact CSV / Markdown content) and the grid runner
(command line, failure handling) without subprocesses."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from sketchseg.errors import SketchSegConfigError
from sketchseg.experiments.compare import (
    check_grid_id,
    compare,
    comparison_table,
    fetch_runs,
    markdown_table,
    write_comparison,
)
from sketchseg.experiments.grid import kedro_command, mark_unfinished_runs, parse_params, run_grid
from tests.conftest import copy_project

REPO = Path(__file__).resolve().parents[2]
EXPERIMENT = "sketchseg-sample"

VARIANTS = {
    "ours": {"group": "Ours", "description": "full model", "paper": {"miou": 73.48, "pixel_acc": 85.54,
                                                                     "stroke_acc": 87.02}},
    "zero_shot_clip": {"group": "Tab. 2", "description": "zero-shot CLIP",
                       "paper": {"miou": 17.33, "pixel_acc": 28.82, "stroke_acc": 27.15}},
    "wo_vv": {"group": "Tab. 4", "description": "w/o v-v", "paper": {"miou": 43.55, "pixel_acc": 58.09,
                                                                     "stroke_acc": 59.03}},
    "wo_global_loss": {"group": "Tab. 4", "description": "w/o global loss"},
}


def metrics(miou: float, epoch: int = 3) -> dict[str, float]:
    return {"test_miou": miou, "test_pixel_acc": miou + 10, "test_stroke_acc": miou + 20, "test_mean_acc": miou - 5,
            "test_fwiou": miou + 1, "best_val_miou": miou + 2, "best_epoch": float(epoch)}


# (variant, grid, start time in ms, status, pipeline, metrics)
RUNS = [
    ("ours", "g1", 1000, "FINISHED", "train", metrics(50.0, 2)),
    ("ours", "g1", 2000, "FINISHED", "train", metrics(52.0, 4)),        # latest of ours in g1
    ("ours", "g0", 3000, "FINISHED", "train", metrics(99.0, 1)),        # another grid, newest overall
    ("wo_vv", "g1", 1500, "FINISHED", "train", metrics(40.5, 5)),
    ("wo_vv", "g1", 2500, "FAILED", "train", {"val_miou": 1.0}),        # newer but failed: not chosen, named
    ("ours", "g1", 2600, "FINISHED", "evaluation", metrics(77.0, 4)),  # a re-scoring: not the row, not the Δ
    ("zero_shot_clip", "g1", 1200, "FAILED", "train", {}),              # only a failed run
    ("ours-sample", "g1", 900, "FINISHED", "make_sample", {}),          # a data-only run
    ("custom", "g0", 2800, "FINISHED", "train", metrics(10.0, 0)),      # not a preset
    ("custom", "g0", 2900, "FINISHED", "training", {"best_val_miou": 3.0}),  # retrained, not scored yet
]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment(EXPERIMENT)
    for variant, grid, start, status, pipeline, values in RUNS:
        tags = {"sketchseg.variant": variant, "sketchseg.grid": grid, "sketchseg.pipeline": pipeline,
                "sketchseg.group": "tagged group", "sketchseg.description": f"tagged {variant}"}
        run = client.create_run(exp, start_time=start, tags=tags, run_name=variant)
        for key, value in values.items():
            client.log_metric(run.info.run_id, key, value, timestamp=start)
        client.set_terminated(run.info.run_id, status=status, end_time=start + 10)
    return uri


def test_fetch_runs_filters_by_grid_newest_first(store):
    runs = fetch_runs(store, EXPERIMENT, grid="g1")
    assert list(runs["start_time"]) == [2600, 2500, 2000, 1500, 1200, 1000, 900]
    assert set(runs["grid"]) == {"g1"}
    assert len(fetch_runs(store, EXPERIMENT)) == len(RUNS)


def test_table_takes_latest_finished_run_per_variant_in_the_grid(store):
    runs = fetch_runs(store, EXPERIMENT, grid="g1")
    table = comparison_table(runs, VARIANTS, selection=["ours", "zero_shot_clip", "wo_vv", "wo_global_loss"])
    assert list(table["variant"]) == ["ours", "zero_shot_clip", "wo_vv", "wo_global_loss"]
    assert table["status"].iloc[0] == "ok" and table["status"].iloc[3] == "missing"
    assert table["status"].iloc[1] == "FAILED"
    newer_failed = runs.loc[(runs["variant"] == "wo_vv") & (runs["status"] == "FAILED"), "run_id"].iloc[0]
    assert table["status"].iloc[2] == f"ok (newer run FAILED {newer_failed[:8]})"
    assert table["test_miou"].iloc[0] == 52.0 and table["best_epoch"].iloc[0] == 4
    assert table["test_miou"].iloc[2] == 40.5 and table["test_fwiou"].iloc[2] == 41.5
    assert math.isnan(table["test_miou"].iloc[1]) and math.isnan(table["test_miou"].iloc[3])
    assert table["delta_miou"].iloc[2] == pytest.approx(-11.5)
    assert table["paper_miou"].iloc[2] == 43.55 and table["paper_delta_miou"].iloc[2] == pytest.approx(-29.93)
    assert math.isnan(table["paper_miou"].iloc[3])
    assert table["description"].iloc[0] == "full model"  # from the presets, not the run tags


def test_without_grid_or_selection_every_model_run_variant_appears(store):
    table = comparison_table(fetch_runs(store, EXPERIMENT), VARIANTS)
    # presets in their order, then other variants alphabetically; data-only runs ignored
    assert list(table["variant"]) == ["ours", "zero_shot_clip", "wo_vv", "custom"]
    assert table["test_miou"].iloc[0] == 99.0  # the newest finished run, whatever its grid
    assert table.loc[3, "description"] == "tagged custom" and table.loc[3, "group"] == "tagged group"
    retrained = fetch_runs(store, EXPERIMENT).query("pipeline == 'training'")["run_id"].iloc[0]
    assert table.loc[3, "status"] == f"ok (newer run unscored {retrained[:8]})"


def test_an_evaluation_only_run_is_used_only_without_a_trained_one(store):
    runs = fetch_runs(store, EXPERIMENT, grid="g1")
    assert table_row(runs, "ours")["test_miou"] == 52.0  # the trained run, not the newer re-scoring (77)
    only_eval = runs[(runs["variant"] != "ours") | (runs["pipeline"] == "evaluation")]
    row = table_row(only_eval, "ours")
    assert row["test_miou"] == 77.0 and row["status"] == "ok (evaluation only)"


def table_row(runs, variant):
    return comparison_table(runs, VARIANTS, selection=[variant]).iloc[0]


def test_grid_ids_that_kedro_would_retype_are_refused(store):
    for bad in ("007", "0123", "1.10", "true", "it's", ""):
        with pytest.raises(SketchSegConfigError, match="must start with a letter"):
            check_grid_id(bad)
        with pytest.raises(SketchSegConfigError, match="must start with a letter"):
            run_grid(REPO, "sample", ["ours"], bad, runner=lambda *a: 0)
    assert check_grid_id("grid-20261126-101010") == "grid-20261126-101010" and check_grid_id("v2.1_b") == "v2.1_b"
    with pytest.raises(SketchSegConfigError, match="must start with a letter"):
        fetch_runs(store, EXPERIMENT, grid="x' or '1'='1")


def test_a_killed_variants_running_run_is_marked_killed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("exp")
    runs = {}
    for name, grid in (("wo_vv", "g1"), ("ours", "g1"), ("wo_vv", "g2")):
        runs[name, grid] = client.create_run(exp, tags={"sketchseg.variant": name, "sketchseg.grid": grid}).info.run_id
    assert mark_unfinished_runs(uri, "exp", "g1", "wo_vv") == [runs["wo_vv", "g1"]]
    status = {key: client.get_run(run_id).info.status for key, run_id in runs.items()}
    assert status == {("wo_vv", "g1"): "KILLED", ("ours", "g1"): "RUNNING", ("wo_vv", "g2"): "RUNNING"}


def test_subprocess_runner_interrupts_a_variant_past_its_timeout(tmp_path):
    import sys
    import time

    from sketchseg.experiments.grid import TIMEOUT_CODE, _subprocess_runner

    script = ("import signal, sys, time\n"
              "def stop(*a):\n    print('interrupted, cleaning up', flush=True); sys.exit(3)\n"
              "signal.signal(signal.SIGINT, stop)\nprint('started', flush=True)\ntime.sleep(60)\n")
    log = tmp_path / "v.log"
    t0 = time.perf_counter()
    assert _subprocess_runner([sys.executable, "-c", script], tmp_path, log, timeout=3) == TIMEOUT_CODE
    assert time.perf_counter() - t0 < 30
    text = log.read_text()
    after = text.split("timed out after 3 s", 1)[1]  # (the log's first line echoes the script)
    assert "interrupted, cleaning up" in after  # Ctrl-C reached the child, which could clean up
    assert _subprocess_runner([sys.executable, "-c", "pass"], tmp_path, log, timeout=30) == 0


def test_markdown_and_csv_content(store, tmp_path):
    runs = fetch_runs(store, EXPERIMENT, grid="g1")
    table = comparison_table(runs, VARIANTS, selection=["ours", "wo_vv", "wo_global_loss"])
    ours_id, wo_id = table["run_id"].iloc[0], table["run_id"].iloc[1]
    md = markdown_table(table).splitlines()
    assert md[0] == ("| variant | group | description | mIoU | Acc@P | Acc@S | MeanAcc | FWIoU | best val mIoU | "
                     "best epoch | paper mIoU | paper Acc@P | paper Acc@S | Δ mIoU vs ours | paper Δ mIoU | status | "
                     "run id |")
    assert md[2] == (f"| ours | Ours | full model | 52.00 | 62.00 | 72.00 | 47.00 | 53.00 | 54.00 | 4 | 73.48 | 85.54 | "
                     f"87.02 | +0.00 | +0.00 | ok | {ours_id[:8]} |")
    failed_id = runs.loc[(runs["variant"] == "wo_vv") & (runs["status"] == "FAILED"), "run_id"].iloc[0]
    assert md[3] == (f"| wo_vv | Tab. 4 | w/o v-v | 40.50 | 50.50 | 60.50 | 35.50 | 41.50 | 42.50 | 5 | 43.55 | 58.09 | "
                     f"59.03 | -11.50 | -29.93 | ok (newer run FAILED {failed_id[:8]}) | {wo_id[:8]} |")
    assert md[4] == "| wo_global_loss | Tab. 4 | w/o global loss | – | – | – | – | – | – | – | – | – | – | – | – | missing |  |"
    csv_path, md_path = write_comparison(table, tmp_path / "out", env="sample", experiment=EXPERIMENT, grid="g1")
    back = pd.read_csv(csv_path, keep_default_na=False, na_values=[""])
    assert list(back["variant"]) == ["ours", "wo_vv", "wo_global_loss"]
    assert back["test_miou"].tolist()[:2] == [52.0, 40.5] and back["best_epoch"].tolist()[:2] == [4, 5]
    assert back["run_id"].tolist()[:2] == [ours_id, wo_id]
    text = md_path.read_text(encoding="utf-8")
    assert "grid `g1`" in text and "\n".join(md) in text


def test_compare_reads_the_project_presets_and_writes_both_files(store, tmp_path):
    table = compare(REPO, "sample", grid="g1", out=tmp_path / "cmp", selection=["ours", "wo_vv"],
                    tracking_uri=store, experiment_name=EXPERIMENT)
    assert list(table["variant"]) == ["ours", "wo_vv"] and list(table["paper_miou"]) == [73.48, 43.55]
    assert table["group"].tolist() == ["Ours", "Tab. 4"]
    assert (tmp_path / "cmp" / "comparison.csv").is_file() and (tmp_path / "cmp" / "comparison.md").is_file()


def test_an_experiment_without_runs_gives_missing_rows(store):
    MlflowClient(tracking_uri=store).create_experiment("empty")
    table = comparison_table(fetch_runs(store, "empty"), VARIANTS, selection=["ours", "wo_vv"])
    assert list(table["status"]) == ["missing", "missing"] and table["test_miou"].isna().all()
    with pytest.raises(SketchSegConfigError, match="no MLflow experiment 'nope'"):
        fetch_runs(store, "nope")


# ---------------------------------------------------------------------- grid (no subprocess)
def test_kedro_command_and_params_parsing():
    cmd = kedro_command("sample", "wo_vv", "g1", "training.epochs=2,splits.test_participants=[1]")
    assert cmd[-4:] == ["run", "--pipelines=train", "--env=sample",
                        "--params=experiment.variant=wo_vv,experiment.grid=g1,training.epochs=2,"
                        "splits.test_participants=[1]"]
    assert parse_params("training.epochs=2, model.vv_train=false") == {"training": {"epochs": 2},
                                                                       "model": {"vv_train": False}}
    with pytest.raises(SketchSegConfigError, match="must not set"):
        kedro_command("sample", "wo_vv", "g1", "experiment.variant=ours")
    with pytest.raises(SketchSegConfigError, match="not key=value"):
        parse_params("training.epochs")


# the sample env's tiny-CLIP weights need a pretrain_sample run; these tests do without
RANDOM_WEIGHTS = "model.pretrained=null,model.allow_random_init=true"


def test_run_grid_refuses_missing_weight_files_before_running_anything(tmp_path):
    project = copy_project(tmp_path / "project")
    calls = []

    def runner(cmd, cwd, log_path, timeout):
        calls.append(cmd)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("log", encoding="utf-8")
        return 0

    results = run_grid(project, "sample", ["ours"], "g-test", log_dir=tmp_path / "logs", runner=runner)
    assert not results[0].ok and calls == []
    assert "tiny-clip.safetensors" in results[0].error and "pretrain_sample" in results[0].error
    weights = project / "data/06_models/sample/tiny-clip.safetensors"
    weights.parent.mkdir(parents=True, exist_ok=True)
    weights.write_bytes(b"x")  # exists now: the check passes and the variant runs
    assert run_grid(project, "sample", ["ours"], "g-test", log_dir=tmp_path / "logs", runner=runner)[0].ok
    assert len(calls) == 1


def test_run_grid_goes_on_after_a_failure_and_skips_invalid_variants(tmp_path, monkeypatch):
    calls = []

    def fake_runner(cmd, cwd, log_path, timeout):
        calls.append(cmd[-1])
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("log", encoding="utf-8")
        return 1 if "variant=wo_vv" in cmd[-1] else 0

    results = run_grid(REPO, "sample", ["wo_vv", "ours"], "g-test", extra_params=RANDOM_WEIGHTS,
                       log_dir=tmp_path / "logs", runner=fake_runner)
    assert [(r.variant, r.ok) for r in results] == [("wo_vv", False), ("ours", True)]
    assert len(calls) == 2 and "see" in results[0].error and results[1].log_path == tmp_path / "logs" / "ours.log"
    # an invalid effective configuration is reported without running anything
    calls.clear()
    results = run_grid(REPO, "sample", ["ft_ln", "ours"], "g-test",
                       extra_params=f"model.num_visual_prompts=2,{RANDOM_WEIGHTS}",
                       log_dir=tmp_path / "logs", runner=fake_runner)
    # the command line wins over the preset: ft_ln gets 2 prompts, which ModelConfig rejects for LN-only
    assert [(r.variant, r.ok) for r in results] == [("ft_ln", False), ("ours", True)]
    assert "num_visual_prompts" in results[0].error and results[0].log_path is None
    assert len(calls) == 1 and "variant=ours" in calls[0]
    # block indices the backbone does not have (the sample's tiny CLIP has 6) fail before any run
    calls.clear()
    results = run_grid(REPO, "sample", ["ours"], "g-test", extra_params=f"model.category_loss_layers=[12],{RANDOM_WEIGHTS}",
                       log_dir=tmp_path / "logs", runner=fake_runner)
    assert not results[0].ok and "category_loss_layers" in results[0].error and "valid 1..6" in results[0].error
    assert calls == []


def test_grid_command_fails_when_a_variant_left_no_scored_run(monkeypatch, tmp_path):
    from sketchseg.experiments import __main__ as cli
    from sketchseg.experiments.grid import VariantRun

    monkeypatch.setattr(cli, "run_grid", lambda *a, **k: [VariantRun("ours", 0, 1.0, None),
                                                          VariantRun("wo_vv", 0, 1.0, None)])
    statuses = {"ok": ["ok", "ok (newer run FAILED 1a2b3c4d)"], "missing": ["ok", "missing"]}
    for case, expected in (("ok", 0), ("missing", 1)):
        table = pd.DataFrame({"variant": ["ours", "wo_vv"], "status": statuses[case]})
        monkeypatch.setattr(cli, "compare", lambda *a, **k: table)
        monkeypatch.setattr(cli, "markdown_table", lambda t: "")
        code = cli.main(["grid", "--project", str(REPO), "--env", "sample", "--variants", "ours,wo_vv",
                         "--tag", "g-cli", "--out", str(tmp_path)])
        assert code == expected, case
    # a grid that does not score (--pipeline training) leaves no scored run by design
    assert cli.main(["grid", "--project", str(REPO), "--env", "sample", "--variants", "ours,wo_vv", "--tag", "g-cli",
                     "--pipeline", "training", "--out", str(tmp_path)]) == 0
    assert cli.main(["grid", "--project", str(REPO), "--env", "sample", "--tag", "007"]) == 2


def test_an_interrupted_grid_stops_its_variant(tmp_path):
    """Ctrl-C / SIGTERM on the grid reaches the variant's process group: no orphan keeps training."""
    import os
    import signal
    import subprocess
    import sys
    import time

    pid_file = tmp_path / "child.pid"
    child = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    # the grid as a user runs it, Ctrl-C live (a CI job may start everything with SIGINT ignored)
    parent = ("import signal, sys; from pathlib import Path; from sketchseg.experiments.grid import _subprocess_runner\n"
              "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
              f"_subprocess_runner([sys.executable, '-c', {child!r}], Path({str(tmp_path)!r}), "
              f"Path({str(tmp_path / 'v.log')!r}), None)\n")
    proc = subprocess.Popen([sys.executable, "-c", parent])
    for _ in range(200):
        if pid_file.exists() and pid_file.read_text():
            break
        time.sleep(0.05)
    pid = int(pid_file.read_text())
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the variant outlived the interrupted grid")
    assert "[grid] interrupted" in (tmp_path / "v.log").read_text()


def test_a_variant_gets_ctrl_c_even_when_the_grid_ignores_it(tmp_path):
    """Started under nohup / as a background job, the grid has Ctrl-C ignored; its variants must
    not inherit that, or a timed-out variant could only be killed, never interrupted."""
    import subprocess
    import sys
    import time

    log = tmp_path / "v.log"
    parent = ("import signal, sys; from pathlib import Path; from sketchseg.experiments.grid import _subprocess_runner\n"
              "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
              "sys.exit(_subprocess_runner([sys.executable, '-c', 'import time; time.sleep(60)'], "
              f"Path({str(tmp_path)!r}), Path({str(log)!r}), 2))\n")
    t0 = time.perf_counter()
    assert subprocess.run([sys.executable, "-c", parent], timeout=60).returncode == 124
    assert time.perf_counter() - t0 < 20  # interrupted at once, not killed after the 30 s grace
    assert "KeyboardInterrupt" in log.read_text().split("timed out after 2 s", 1)[1]


def test_tables_go_to_stdout_not_the_log(monkeypatch, tmp_path, capsys, caplog):
    """`list`, `compare` and the grid's summary print their tables on stdout (| grep, | less)."""
    from sketchseg.experiments import __main__ as cli
    from sketchseg.experiments.grid import VariantRun

    with caplog.at_level("INFO"):
        assert cli.main(["list", "--project", str(REPO), "--env", "sample"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["variant", "group", "description"]
    assert any(line.split()[:3] == ["wo_vv", "Tab.", "4"] for line in out)
    assert not any("wo_vv" in r.getMessage() for r in caplog.records)

    monkeypatch.setattr(cli, "compare", lambda *a, **k: pd.DataFrame({"variant": ["ours"], "status": ["ok"]}))
    monkeypatch.setattr(cli, "markdown_table", lambda t: "| THE TABLE |")
    monkeypatch.setattr(cli, "run_grid", lambda *a, **k: [VariantRun("ours", 0, 1.0, None)])
    assert cli.main(["compare", "--project", str(REPO), "--env", "sample", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == "| THE TABLE |"
    assert cli.main(["grid", "--project", str(REPO), "--env", "sample", "--variants", "ours", "--tag", "g-out",
                     "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == ["comparison (grid g-out):", "| THE TABLE |"]
    assert not any("THE TABLE" in r.getMessage() for r in caplog.records)


def test_run_grid_stops_before_any_run_when_the_nltk_data_is_missing(tmp_path, monkeypatch):
    """Each variant used to fail after 13 s with `NLTK resource(s) missing`: the grid's pre-flight says it once."""
    import nltk

    from sketchseg.errors import SketchSegDataError
    from sketchseg.text import nltk_setup

    monkeypatch.setattr(nltk.data, "path", [])
    monkeypatch.delenv("NLTK_DATA", raising=False)
    monkeypatch.setattr(nltk_setup, "project_nltk_dirs", lambda: [str(tmp_path / "00_nltk")])
    monkeypatch.setattr(nltk_setup, "_is_online", lambda *a, **k: False)
    calls = []
    with pytest.raises(SketchSegDataError, match="NLTK data missing: .*wordnet.*scripts/setup.sh"):
        run_grid(REPO, "sample", ["ours"], "g-test", extra_params=RANDOM_WEIGHTS, log_dir=tmp_path / "logs",
                 runner=lambda *a: calls.append(a) or 0)
    assert calls == []
