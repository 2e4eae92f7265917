"""``sketchseg app`` / ``python -m sketchseg.app``: arguments and the dispatcher of ``sketchseg``."""

from __future__ import annotations

import subprocess
import sys

import pytest

import sketchseg.__main__ as entry
from sketchseg.app import cli


def test_parse_args_defaults_and_options():
    args = cli.parse_args([])
    assert (args.checkpoint, args.host, args.port, args.device, args.models_dir) == (
        None, "127.0.0.1", 7860, "cpu", "data/06_models")
    args = cli.parse_args(["--checkpoint", "m.safetensors", "--port", "8123", "--host", "0.0.0.0"])
    assert (args.checkpoint, args.port, args.host) == ("m.safetensors", 8123, "0.0.0.0")
    with pytest.raises(SystemExit):
        cli.parse_args(["--port", "70000"])


def test_sketchseg_app_dispatches_to_the_app_and_anything_else_to_kedro_run(monkeypatch):
    seen = {}
    monkeypatch.setattr(cli, "main", lambda argv: seen.setdefault("app", list(argv)) and 0)
    monkeypatch.setattr(sys, "argv", ["sketchseg", "app", "--port", "9000"])
    entry.main()
    assert seen == {"app": ["--port", "9000"]}

    def fake_run(*args, **kwargs):
        seen["run"] = (args, kwargs)
    monkeypatch.setattr(entry, "configure_project", lambda name: None)
    monkeypatch.setattr(entry, "find_run_command", lambda name: fake_run)
    monkeypatch.setattr(sys, "argv", ["sketchseg", "--pipelines", "report"])
    entry.main()
    assert seen["run"] == ((), {"standalone_mode": True})


def test_python_m_sketchseg_app_help():
    out = subprocess.run([sys.executable, "-m", "sketchseg.app", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--checkpoint" in out.stdout and "--port" in out.stdout and "--host" in out.stdout


def test_app_refuses_to_start_on_a_missing_checkpoint(tmp_path):
    """It used to start anyway, the page then doubling the path in its message."""
    missing = tmp_path / "nope.safetensors"
    out = subprocess.run([sys.executable, "-m", "sketchseg.app", "--checkpoint", str(missing), "--port", "7999"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"Error: --checkpoint {missing}: no such file"), out.stderr


def test_app_start_checks_the_nltk_data(tmp_path, monkeypatch):
    import nltk

    from sketchseg.text import nltk_setup

    args = cli.parse_args([])
    assert cli.startup_problem(args) is None  # the data is found (conftest / data/00_nltk)
    monkeypatch.setattr(nltk.data, "path", [])
    monkeypatch.delenv("NLTK_DATA", raising=False)
    monkeypatch.setattr(nltk_setup, "project_nltk_dirs", lambda: [])
    problem = cli.startup_problem(args)
    assert problem is not None and "NLTK data missing" in problem and "\n" not in problem
