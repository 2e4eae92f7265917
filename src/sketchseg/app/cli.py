"""Command line of the web app: ``sketchseg app`` / ``python -m sketchseg.app``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from sketchseg.app.checkpoints import MODELS_DIR, default_checkpoint, find_checkpoints

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="sketchseg app",
        description="Start the sketchseg web app: draw or upload a sketch, name categories, see it segmented.",
    )
    parser.add_argument("--checkpoint", default=None,
                        help="sketchseg .safetensors checkpoint selected first (default: the demo's, "
                             "data/06_models/sample/ours-sample/best.safetensors, else the first found under "
                             "--models-dir)")
    parser.add_argument("--models-dir", default=str(MODELS_DIR),
                        help="folder searched for checkpoints offered in the page (default: %(default)s)")
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, auto")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"--port must be in 1..65535, got {args.port}")
    return args


def launch(args: argparse.Namespace, *, block: bool = True):
    """Build the page, serve it, and load the first checkpoint meanwhile in a thread (the page is up
    while the model loads; the first Segment waits for it). With ``block=False`` return at once with
    ``(page, local URL)`` (``page.close()`` stops it)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline machines: no telemetry calls
    from sketchseg.app.checkpoints import ModelCache
    from sketchseg.app.inputs import MAX_UPLOAD_BYTES
    from sketchseg.app.ui import build_app

    cache = ModelCache(device=args.device)
    first = args.checkpoint or default_checkpoint(find_checkpoints(args.models_dir))
    page = build_app(checkpoint=args.checkpoint, models_dir=args.models_dir, cache=cache)
    page.queue(default_concurrency_limit=1)
    _, url, _ = page.launch(server_name=args.host, server_port=args.port, max_file_size=MAX_UPLOAD_BYTES,
                            ssr_mode=False, mcp_server=False, show_error=False, quiet=not block,
                            prevent_thread_lock=True)
    if first is None:
        logger.warning("no checkpoint given and none found under %s: type a checkpoint path in the page",
                       args.models_dir)
    else:
        threading.Thread(target=_preload, args=(cache, first), name="sketchseg-preload", daemon=True).start()
    if block:
        page.block_thread()
    return page, url


def _preload(cache, checkpoint: str) -> None:
    from sketchseg.app.inputs import whole_message

    try:
        cache.get(checkpoint)
        logger.info("model %s loaded", checkpoint)
    except Exception as exc:  # noqa: BLE001 - the page shows the same error when it is used
        logger.warning("cannot load %s: %s", checkpoint, whole_message(exc))


def startup_problem(args: argparse.Namespace) -> str | None:
    """Why the app must not start, in one line (a ``--checkpoint`` that is not a file, the caption
    parser's NLTK data missing); None when it can."""
    if args.checkpoint and not Path(args.checkpoint).expanduser().is_file():
        return (f"--checkpoint {args.checkpoint}: no such file; give a sketchseg .safetensors checkpoint, or leave "
                f"--checkpoint out to choose among those under {args.models_dir}")
    from sketchseg.errors import SketchSegDataError
    from sketchseg.text.nltk_setup import ensure_nltk_data

    try:
        ensure_nltk_data(None, allow_download=False)
    except SketchSegDataError as exc:
        return f"the caption box needs the NLTK data: {exc}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    problem = startup_problem(args)
    if problem is not None:
        print(f"Error: {problem}", file=sys.stderr)
        return 2
    launch(args)
    return 0
