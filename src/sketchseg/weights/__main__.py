"""``python -m sketchseg.weights convert-authors IN OUT [--clip-model NAME]``: the authors' released
checkpoint (``sketch_seg_best_miou.pth``) -> a sketchseg checkpoint (``weights/authors.py``).

Prints what it mapped and dropped on stdout; a file that is not that checkpoint gets one line on
stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from collections.abc import Sequence

from sketchseg.errors import SketchSegError
from sketchseg.model.errors import ModelError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sketchseg.weights", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert-authors", help="the authors' sketch_seg_best_miou.pth -> a sketchseg .safetensors")
    conv.add_argument("source", help="their checkpoint (torch.save of a DataParallel state_dict)")
    conv.add_argument("target", help="the sketchseg checkpoint to write (.safetensors)")
    conv.add_argument("--clip-model", default=None, help="open_clip architecture (default: read off the weights)")
    conv.add_argument("-v", "--verbose", action="store_true", help="log how the model is built (INFO lines)")
    args = parser.parse_args(argv)
    # quiet by default: the result (stdout) or one error line (stderr); warnings still show
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from sketchseg.weights.authors import convert_authors_checkpoint

    try:
        result = convert_authors_checkpoint(args.source, args.target, clip_model=args.clip_model)
    except (SketchSegError, ModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    dropped = Counter(k.rsplit(".", 2)[0] if k.count(".") > 2 else k for k in result.dropped)
    print(f"mapped {len(result.state)} tensors of {args.source} onto sketchseg's model")
    print(f"dropped {len(result.dropped)} tensors their forward never reads: "
          + ", ".join(f"{p}.* ({n})" for p, n in sorted(dropped.items())))
    print(f"wrote {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
