"""Custom Kedro datasets."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset
from kedro.io.core import get_filepath_str, get_protocol_and_path

from sketchseg.errors import SketchSegDataError
from sketchseg.model import fileio
from sketchseg.pipelines.environment import run_command


class SafetensorsCheckpointDataset(AbstractDataset[dict[str, Any], dict[str, Any]]):
    """A model checkpoint as a safetensors file: ``{"state": {name: Tensor}, "metadata": {str: str}}``.

    A thin wrapper over ``sketchseg.model.checkpoint``: ``load`` is its ``read_checkpoint`` (never
    unpickles anything, so a checkpoint from a stranger cannot run code), ``save`` its
    ``write_checkpoint`` (atomic, sorted metadata; metadata without the backbone fingerprint refused). A missing
    file is reported as not made yet, with the command that makes it (``produced_by``: the
    pipeline that writes it, ``train`` by default); an unreadable one names the file.
    """

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None, produced_by: str = "train") -> None:
        protocol, path = get_protocol_and_path(filepath)
        if protocol != "file":
            raise ValueError(f"SafetensorsCheckpointDataset only supports local files, got {filepath}")
        self._filepath = PurePosixPath(path)
        self._protocol = protocol
        self.metadata = metadata
        self._produced_by = produced_by

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "produced_by": self._produced_by}

    def missing_error(self) -> SketchSegDataError:
        """The one-line error of a missing file: not made yet, and the command that makes it (also
        the run's pre-flight, sketchseg.pipelines.preflight)."""
        what = "trained checkpoint" if self._produced_by == "train" else "file"
        path = get_filepath_str(self._filepath, self._protocol)
        return SketchSegDataError(f"no {what} yet: {path} does not exist; run `{run_command(self._produced_by)}` first")

    def load(self) -> dict[str, Any]:
        from sketchseg.model.checkpoint import read_checkpoint
        from sketchseg.model.errors import CheckpointMismatchError

        path = get_filepath_str(self._filepath, self._protocol)
        if not Path(path).is_file():
            raise self.missing_error()
        try:
            return read_checkpoint(path)
        except CheckpointMismatchError as exc:
            raise SketchSegDataError(str(exc)) from exc

    def save(self, data: dict[str, Any]) -> None:
        from sketchseg.model.checkpoint import write_checkpoint

        write_checkpoint(get_filepath_str(self._filepath, self._protocol), data["state"], data.get("metadata") or {})

    def _exists(self) -> bool:
        return Path(get_filepath_str(self._filepath, self._protocol)).is_file()


class SafetensorsWeightsDataset(SafetensorsCheckpointDataset):
    """Weights that are not a sketchseg checkpoint (the sample's pre-trained tiny CLIP, an open_clip
    state dict that ``model.pretrained`` reads) as a safetensors file ``{"state", "metadata"}``:
    read as a checkpoint is (never unpickled), written atomically with sorted metadata, without the
    checkpoint's metadata checks."""

    def save(self, data: dict[str, Any]) -> None:
        from safetensors.torch import save_file

        from sketchseg.model.checkpoint import sort_safetensors_metadata

        path = Path(get_filepath_str(self._filepath, self._protocol))
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in data["state"].items()}
        meta = {str(k): str(v) for k, v in (data.get("metadata") or {}).items()}
        with fileio.atomic_path(path) as tmp:
            save_file(state, tmp, metadata=meta)
            sort_safetensors_metadata(tmp)  # the same weights, the same bytes


def _jsonable_cell(value: Any) -> Any:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return "; ".join(str(v) for v in value)
    return value


try:  # kedro-datasets is a dependency; the guard only keeps this module importable without it
    from kedro_datasets.pandas import ParquetDataset as _ParquetDataset
except ImportError:  # pragma: no cover
    _ParquetDataset = None  # type: ignore[assignment,misc]

if _ParquetDataset is not None:

    class ParquetDataset(_ParquetDataset):
        """pandas ParquetDataset whose kedro-viz preview shows list columns as "a; b; c" text."""

        def preview(self, nrows: int = 5):  # type: ignore[override]
            preview = super().preview(nrows)
            preview["data"] = [[_jsonable_cell(v) for v in row] for row in preview["data"]]
            return preview


def _atomic_write(path: Path, write: Any, *, mode: str = "wb", **open_args: Any) -> None:
    """``write(file)`` into a temporary file beside ``path``, then rename it over ``path``: a failed
    or interrupted save leaves the old file (or none), never a truncated or 0-byte one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with fileio.atomic_path(path, hidden=True) as tmp:  # renamed with the umask's mode, removed on failure
        with open(tmp, mode, **open_args) as f:
            write(f)


try:
    from kedro_datasets.pandas import CSVDataset as _CSVDataset
    from kedro_datasets.pillow import ImageDataset as _ImageDataset
except ImportError:  # pragma: no cover
    _CSVDataset = _ImageDataset = None  # type: ignore[assignment,misc]

if _CSVDataset is not None:

    class AtomicCSVDataset(_CSVDataset):
        """pandas CSVDataset whose local saves are atomic (temporary file + rename)."""

        def save(self, data: Any) -> None:  # type: ignore[override]
            if self._protocol != "file":
                return super().save(data)
            path = Path(get_filepath_str(self._get_save_path(), self._protocol))
            open_args = {k: v for k, v in self._fs_open_args_save.items() if k != "mode"}
            open_args.setdefault("newline", "")
            _atomic_write(path, lambda f: data.to_csv(path_or_buf=f, **self._save_args), mode="w", **open_args)
            self._invalidate_cache()

    class AtomicImageDataset(_ImageDataset):
        """pillow ImageDataset whose local saves are atomic (temporary file + rename)."""

        def save(self, data: Any) -> None:  # type: ignore[override]
            if self._protocol != "file":
                return super().save(data)
            save_path = self._get_save_path()
            path = Path(get_filepath_str(save_path, self._protocol))
            fmt = self._get_format(save_path)
            _atomic_write(path, lambda f: data.save(f, format=fmt, **self._save_args))
            self._invalidate_cache()
