"""``python -m sketchseg.app [--checkpoint PATH] [--port N] [--host ADDR]``: start the web app."""

from sketchseg.app.cli import main

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
