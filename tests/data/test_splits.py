"""Participant-based splits, FS-COCO-seg / file splits and their checks."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sketchseg.data.splits import (
    check_expected_sizes,
    check_splits,
    make_protocol_splits,
    make_splits,
    split_summary,
    splits_from_file,
    splits_from_fscoco_seg,
)
from sketchseg.errors import SketchSegConfigError, SketchSegDataError

TEST_PIDS = [3, 17, 42, 77, 99]


def _manifest(n_participants: int = 100, per_participant: int = 100) -> pd.DataFrame:
    rows = [
        {"sketch_id": pid * 1000 + k, "participant_id": pid, "caption": f"c{pid}-{k}"}
        for pid in range(1, n_participants + 1)
        for k in range(per_participant)
    ]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def manifest() -> pd.DataFrame:
    return _manifest()


@pytest.fixture(scope="module")
def protocol(manifest: pd.DataFrame) -> pd.DataFrame:
    return make_protocol_splits(manifest, test_participants=TEST_PIDS, val_per_participant=5, seed=0)


def test_protocol_sizes(protocol: pd.DataFrame, manifest: pd.DataFrame) -> None:
    counts = protocol["split"].value_counts().to_dict()
    assert counts == {"train": 9025, "val": 475, "test": 500}
    assert list(protocol.columns) == [*manifest.columns, "split"]
    assert protocol["sketch_id"].tolist() == manifest["sketch_id"].tolist()


def test_protocol_participants(protocol: pd.DataFrame) -> None:
    test_pids = set(protocol.loc[protocol["split"] == "test", "participant_id"])
    assert test_pids == set(TEST_PIDS)
    per_pid = protocol.groupby("participant_id")["split"].value_counts().unstack(fill_value=0)
    others = per_pid.drop(index=TEST_PIDS)
    assert len(others) == 95
    assert (others["val"] == 5).all() and (others["train"] == 95).all() and (others["test"] == 0).all()
    assert (per_pid.loc[TEST_PIDS, "test"] == 100).all()


def test_protocol_deterministic(manifest: pd.DataFrame, protocol: pd.DataFrame) -> None:
    again = make_protocol_splits(manifest, test_participants=TEST_PIDS, val_per_participant=5, seed=0)
    assert again["split"].tolist() == protocol["split"].tolist()
    # row order of the manifest does not change the draw
    shuffled = manifest.sample(frac=1.0, random_state=1)
    again = make_protocol_splits(shuffled, test_participants=TEST_PIDS, val_per_participant=5, seed=0)
    assert set(again.loc[again["split"] == "val", "sketch_id"]) == set(
        protocol.loc[protocol["split"] == "val", "sketch_id"]
    )


def test_protocol_seed_changes_val(manifest: pd.DataFrame, protocol: pd.DataFrame) -> None:
    other = make_protocol_splits(manifest, test_participants=TEST_PIDS, val_per_participant=5, seed=1)
    val0 = set(protocol.loc[protocol["split"] == "val", "sketch_id"])
    val1 = set(other.loc[other["split"] == "val", "sketch_id"])
    assert len(val1) == 475 and val0 != val1
    assert set(other.loc[other["split"] == "test", "sketch_id"]) == set(
        protocol.loc[protocol["split"] == "test", "sketch_id"]
    )


def test_protocol_quota_errors() -> None:
    small = _manifest(n_participants=6, per_participant=4)
    with pytest.raises(SketchSegDataError, match="fewer than the validation quota"):
        make_protocol_splits(small, test_participants=[1], val_per_participant=5, seed=0)
    with pytest.raises(SketchSegDataError, match=r"\[7\]"):
        make_protocol_splits(small, test_participants=[7], val_per_participant=1, seed=0)
    with pytest.raises(SketchSegConfigError):
        make_protocol_splits(small, test_participants=[1], val_per_participant=-1, seed=0)


def test_check_splits_summary(protocol: pd.DataFrame) -> None:
    summary = check_splits(protocol, TEST_PIDS)
    assert summary == {
        "n_train": 9025,
        "n_val": 475,
        "n_test": 500,
        "n_sketches": 10000,
        "n_participants_train": 95,
        "n_participants_val": 95,
        "n_participants_test": 5,
    }
    table = split_summary(protocol)
    assert table.to_dict("records") == [
        {"split": "train", "n_sketches": 9025, "n_participants": 95},
        {"split": "val", "n_sketches": 475, "n_participants": 95},
        {"split": "test", "n_sketches": 500, "n_participants": 5},
    ]


def test_check_splits_catches_overlap(protocol: pd.DataFrame) -> None:
    dup = protocol.iloc[[0]].copy()
    dup["split"] = "val"
    with pytest.raises(SketchSegDataError, match="more than once"):
        check_splits(pd.concat([protocol, dup]), TEST_PIDS)
    same = pd.concat([protocol, protocol.iloc[[0]]])  # twice in the same split
    with pytest.raises(SketchSegDataError, match="more than once"):
        check_splits(same)


def test_check_splits_catches_leakage(protocol: pd.DataFrame) -> None:
    leaky = protocol.copy()
    idx = leaky.index[leaky["participant_id"] == 42][:3]
    leaky.loc[idx, "split"] = "train"
    with pytest.raises(SketchSegDataError, match=r"\[42\]"):
        check_splits(leaky, TEST_PIDS)
    # without the test participant list the same table passes (only a warning)
    assert check_splits(leaky)["n_test"] == 497


def test_check_splits_unknown_value(protocol: pd.DataFrame) -> None:
    bad = protocol.copy()
    bad.loc[bad.index[0], "split"] = "holdout"
    with pytest.raises(SketchSegDataError, match="holdout"):
        check_splits(bad)


def test_fscoco_seg_mode() -> None:
    m = _manifest(n_participants=3, per_participant=4)
    m["annotated_split"] = None
    m.loc[[0, 1], "annotated_split"] = "val"
    m.loc[[4, 5, 6], "annotated_split"] = "test"
    out = splits_from_fscoco_seg(m)
    assert out["split"].tolist() == ["val", "val", "train", "train", "test", "test", "test"] + ["train"] * 5
    assert check_splits(out)["n_train"] == 7


def test_fscoco_seg_mode_errors() -> None:
    m = _manifest(n_participants=2, per_participant=2)
    with pytest.raises(SketchSegDataError, match="annotated_split"):
        splits_from_fscoco_seg(m)
    m["annotated_split"] = None
    with pytest.raises(SketchSegDataError, match="no manifest sketch is annotated"):
        splits_from_fscoco_seg(m)
    m.loc[0, "annotated_split"] = "train"
    with pytest.raises(SketchSegDataError, match="'train'"):
        splits_from_fscoco_seg(m)


def _write(path: Path, rows: list[tuple[object, object]]) -> Path:
    pd.DataFrame(rows, columns=["sketch_id", "split"]).to_csv(path, index=False)
    return path


def test_file_mode(tmp_path: Path) -> None:
    m = _manifest(n_participants=2, per_participant=2)  # ids 1000, 1001, 2000, 2001
    path = _write(tmp_path / "s.csv", [(2001, "test"), (1000, "train"), (1001, " Val"), (2000, "test")])
    out = splits_from_file(m, path)
    assert out["split"].tolist() == ["train", "val", "test", "test"]
    assert list(out.columns) == [*m.columns, "split"]


@pytest.mark.parametrize(
    ("rows", "pattern"),
    [
        ([(1000, "train"), (1001, "dev"), (2000, "test"), (2001, "test")], "unknown split name"),
        ([(1000, "train"), (1001, "val"), (2000, "test"), (2001, "test"), (9999, "train")], "absent from the manifest"),
        ([(1000, "train"), (1001, "val"), (2000, "test")], r"no split for 1 manifest sketch.*2001"),
        ([(1000, "train"), (1000, "val"), (1001, "val"), (2000, "test"), (2001, "test")], "more than once"),
    ],
)
def test_file_mode_errors(tmp_path: Path, rows: list[tuple[object, object]], pattern: str) -> None:
    m = _manifest(n_participants=2, per_participant=2)
    path = _write(tmp_path / "splits.csv", rows)
    with pytest.raises(SketchSegDataError, match=pattern) as info:
        splits_from_file(m, path)
    assert str(path) in str(info.value)


def test_file_mode_missing_file_and_columns(tmp_path: Path) -> None:
    m = _manifest(n_participants=1, per_participant=2)
    with pytest.raises(SketchSegDataError, match="nope.csv"):
        splits_from_file(m, tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("id,part\n1000,train\n")
    with pytest.raises(SketchSegDataError, match="lacks column"):
        splits_from_file(m, bad)


def test_redrawn_split_warns_when_fscoco_seg_sketches_land_in_train(caplog) -> None:
    """protocol / file mode may put sketches of FS-COCO-seg's own val/test folders into train: say so."""
    import logging

    m = _manifest(n_participants=4, per_participant=3)
    m["annotated_split"] = None
    m.loc[m["participant_id"] == 2, "annotated_split"] = "test"  # the release's test participant
    params = {"mode": "protocol", "test_participants": [1], "val_per_participant": 1, "seed": 0}
    with caplog.at_level(logging.WARNING, logger="sketchseg.data.splits"):
        table, _ = make_splits(m, **params)
    moved = table[(table["participant_id"] == 2) & (table["split"] == "train")]
    assert len(moved) == 2  # participant 2: one sketch drawn for val, two left in train
    assert "puts 2 sketches of FS-COCO-seg's own val/test folders into train" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sketchseg.data.splits"):
        make_splits(m, **{**params, "test_participants": [2]})  # the release's test participant is test again
    assert "FS-COCO-seg's own val/test" not in caplog.text


@pytest.mark.parametrize("test_participants", [[], None])
def test_protocol_split_without_test_participants_is_a_config_error(test_participants) -> None:
    with pytest.raises(SketchSegConfigError, match="splits.test_participants is empty"):
        make_splits(_manifest(n_participants=4, per_participant=3), mode="protocol",
                    test_participants=test_participants, val_per_participant=1, seed=0)


def test_make_splits_modes(tmp_path: Path) -> None:
    """The mode switch: each mode gives its split function's table and the check_splits counts."""
    m = _manifest(n_participants=4, per_participant=3)
    table, counts = make_splits(m, mode="protocol", test_participants=[1], val_per_participant=1, seed=0)
    pd.testing.assert_frame_equal(table, make_protocol_splits(m, test_participants=[1], val_per_participant=1, seed=0))
    assert counts == check_splits(table, [1])
    seg = m.assign(annotated_split=[None] * 9 + ["test"] * 3)
    table, counts = make_splits(seg, mode="fscoco_seg", val_per_participant=None, seed=None)
    pd.testing.assert_frame_equal(table, splits_from_fscoco_seg(seg))
    assert counts["n_test"] == 3 and counts["n_participants_test"] == 1
    path = _write(tmp_path / "splits.csv", [(s, "train") for s in m["sketch_id"]])
    table, counts = make_splits(m, mode="file", split_file=path)
    assert counts["n_train"] == len(m)
    with pytest.raises(SketchSegConfigError, match="split_file is not set"):
        make_splits(m, mode="file")
    with pytest.raises(SketchSegConfigError, match="must be protocol, fscoco_seg or file"):
        make_splits(m, mode="participants")


def test_split_node_unpacks_its_params(caplog) -> None:
    """The ingestion node: params -> make_splits -> expected-size check, summary and metric items."""
    from sketchseg.pipelines.ingestion.nodes import split

    m = _manifest(n_participants=4, per_participant=3)
    params = {"mode": "protocol", "test_participants": [1], "val_per_participant": 1, "seed": 0,
              "split_file": None, "expected_sizes": {"train": 6, "test": 4}}
    with caplog.at_level("WARNING"):
        table, summary, metrics = split(m, params)
    pd.testing.assert_frame_equal(table, make_splits(m, mode="protocol", test_participants=[1],
                                                     val_per_participant=1, seed=0)[0])
    pd.testing.assert_frame_equal(summary, split_summary(table))
    assert "test 3 (expected 4)" in caplog.text and "train 6" not in caplog.text
    assert metrics


def test_max_val_sketches_spreads_over_participants() -> None:
    from sketchseg.data.annotated import annotated_subset

    table = pd.DataFrame({"sketch_id": range(10), "participant_id": [1] * 5 + [2] * 5, "split": ["val"] * 10,
                          "labels_json": ["[]"] * 10})
    assert annotated_subset(table, "val", limit=4)["sketch_id"].tolist() == [0, 3, 6, 9]
    assert annotated_subset(table, "val", limit=1)["sketch_id"].tolist() == [0]
    assert annotated_subset(table, "val", limit=0).empty
    assert len(annotated_subset(table, "val", limit=50)) == 10 and len(annotated_subset(table, "val")) == 10


def test_tables_of_other_data_are_refused(tmp_path) -> None:
    from sketchseg.data.annotated import check_data_root

    table = pd.DataFrame({"raster_path": [str(tmp_path / "sample/fscoco/raster_sketches/1/1.jpg"),
                                          str(tmp_path / "sample/fscoco/raster_sketches/2/2.jpg")]})
    check_data_root(table, {"fscoco_root": str(tmp_path / "sample/fscoco")})  # its own data: fine
    check_data_root(table, {})  # no root configured: nothing to check
    with pytest.raises(SketchSegDataError, match=r"lists 2 of 2 sketches outside data.fscoco_root=.*fscoco_real"):
        check_data_root(table, {"fscoco_root": str(tmp_path / "fscoco_real")})
    with pytest.raises(SketchSegDataError, match="lists 1 of 2"):
        check_data_root(table.assign(raster_path=[table["raster_path"][0], "elsewhere/2/2.jpg"]),
                        {"fscoco_root": str(tmp_path / "sample/fscoco")})


def test_split_sizes_are_compared_with_the_papers(caplog):
    paper = {"train": 9025, "val": 475, "test": 500, "test_participants": 5}
    same = {"n_train": 9025, "n_val": 475, "n_test": 500, "n_participants_test": 5, "n_sketches": 10000}
    assert check_expected_sizes(same, paper) == []
    partial = {**same, "n_train": 8990, "n_participants_test": 4}
    with caplog.at_level("WARNING"):
        assert check_expected_sizes(partial, paper) == ["train", "test_participants"]
    assert "train 8990 (expected 9025)" in caplog.text and "test_participants 4 (expected 5)" in caplog.text
    assert check_expected_sizes(partial, None) == []  # null: nothing to compare with
    with pytest.raises(SketchSegConfigError, match="unknown keys"):
        check_expected_sizes(same, {"training": 9025})


def test_the_sample_env_expects_the_generated_samples_own_sizes():
    """conf/sample's expected_sizes, hand-computed from its generator settings (no warning in the demo)."""
    import yaml

    conf = Path(__file__).resolve().parents[2] / "conf"
    sample = yaml.safe_load((conf / "sample" / "parameters.yml").read_text(encoding="utf-8"))
    n, per = sample["sample"]["n_participants"], sample["sample"]["sketches_per_participant"]
    test_p, val_per = sample["splits"]["test_participants"], sample["splits"]["val_per_participant"]
    test, val = len(test_p) * per, (n - len(test_p)) * val_per
    assert sample["splits"]["expected_sizes"] == {"train": n * per - test - val, "val": val, "test": test,
                                                  "test_participants": len(test_p)}
    assert (test, val, n * per - test - val) == (40, 36, 324)
