"""Caption -> categories -> prompts, and the NLTK data check."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import nltk
import pandas as pd
import pytest

from sketchseg.errors import SketchSegConfigError, SketchSegDataError
from sketchseg.text import nltk_setup, nouns
from sketchseg.text.nltk_setup import ensure_nltk_data
from sketchseg.text.nouns import (
    DEFAULT_STOP_WORDS,
    extract_categories,
    extract_table,
    tag_caption,
)
from sketchseg.text.prompts import make_prompt

# The repository is cloned at X/main with X/shared beside it.
NLTK_DIR = Path(__file__).resolve().parents[3] / "shared" / "nltk_data"


@pytest.fixture(autouse=True, scope="module")
def _nltk_data() -> None:
    """Make the NLTK data findable ($NLTK_DATA if set, else ../shared/nltk_data); never download."""
    ensure_nltk_data(None if os.environ.get("NLTK_DATA") else str(NLTK_DIR), allow_download=False)


CASES = [
    # the brief's examples
    ("a giraffe standing next to two trees", ["giraffe", "tree"]),
    ("Kid flying kite very high", ["kid", "kite"]),  # upstream issue #4: the last noun is kept
    ("there is a traffic light near the road", ["traffic light", "road"]),
    ("two zebras grazing in a field", ["zebra", "field"]),
    ("a man riding a horse on the beach", ["man", "horse", "beach"]),
    ("cars parked in front of a house", ["car", "house"]),
    ("a boat in the water with mountains behind", ["boat", "water", "mountain"]),
    # tagger mistakes repaired: gerund tagged NN after a noun, noun tagged JJ, adjective tagged NN
    ("A cow grazing grass", ["cow", "grass"]),
    ("Elephant walking in the forest", ["elephant", "forest"]),
    ("sheep grazing on a hill", ["sheep", "hill"]),
    ("Giraffes eating leaves from tall trees", ["giraffe", "leaf", "tree"]),
    ("a man skiing down a snowy mountain", ["man", "mountain"]),
    ("A kite flying in the sky", ["kite", "sky"]),
    ("Horse grazing", ["horse"]),
    ("Kite", ["kite"]),
    # compounds: from the list even when mis-tagged ("stop"/JJ), and from WordNet ("bus_stop")
    ("a fire hydrant on the sidewalk", ["fire hydrant", "sidewalk"]),
    ("a stop sign next to a tree", ["stop sign", "tree"]),
    ("a teddy bear sitting on a bed", ["teddy bear", "bed"]),
    ("two teddy bears on a bed", ["teddy bear", "bed"]),
    ("a man holding a tennis racket", ["man", "tennis racket"]),
    ("a man eating a hot dog", ["man", "hot dog"]),
    ("a cell phone on a desk", ["cell phone", "desk"]),
    ("a parking meter on the street", ["parking meter", "street"]),
    ("a girl with an ice cream", ["girl", "ice cream"]),
    ("people standing at the bus stop", ["people", "bus stop"]),
    ("a clock tower in the city", ["clock tower", "city"]),
    ("a traffic lights and cars", ["traffic light", "car"]),
    # adjectives never become compounds or categories
    ("a white house with a tree", ["house", "tree"]),
    ("a big truck on the road", ["truck", "road"]),
    ("Tall giraffe near a tree", ["giraffe", "tree"]),
    ("Old man with a stick", ["man", "stick"]),
    # participles are no categories
    ("a bus parked on the street", ["bus", "street"]),
    ("birds flying over the sea", ["bird", "sea"]),
    ("Skier skiing down the hill", ["skier", "hill"]),
    ("Parked cars near buildings", ["car", "building"]),
    ("a tall building with many windows", ["building", "window"]),
    # singular forms, irregular plurals and plural-only nouns
    ("three men and two women on the beach", ["man", "woman", "beach"]),
    ("children with their kites at the park", ["child", "kite", "park"]),
    ("a man in jeans walking his dog", ["man", "jeans", "dog"]),
    ("a plane flying above clouds", ["plane", "cloud"]),
    # stop words and duplicates
    ("a picture of a car on the left side of the road", ["car", "road"]),
    ("a group of people standing near a bus", ["people", "bus"]),
    ("a couple of birds sitting on a fence", ["bird", "fence"]),
    ("lots of trees in the distance", ["tree"]),
    ("a boat sailing on the lake with a mountain in the background", ["boat", "lake", "mountain"]),
    ("a dog chasing another dog", ["dog"]),
    ("a man in a red shirt standing near a fire hydrant", ["man", "shirt", "fire hydrant"]),
    ("a kitchen with a sink and a window", ["kitchen", "sink", "window"]),
    # a word whose adjective sense dominates still heads its noun phrase after a determiner
    ("a bowl with an orange", ["bowl", "orange"]),
    ("an orange and an apple on a plate", ["orange", "apple", "plate"]),
    ("a man sitting on the couch with a remote", ["man", "couch", "remote"]),
    # ... but stays an adjective before a noun or without a determiner
    ("a man in red holding a kite", ["man", "kite"]),
    ("the tall trees near a red house", ["tree", "house"]),
    ("a man wearing a black and white shirt", ["man", "shirt"]),
]


@pytest.mark.parametrize(("caption", "expected"), CASES, ids=[c for c, _ in CASES])
def test_extract_categories(caption: str, expected: list[str]) -> None:
    assert extract_categories(caption) == expected


def test_enough_cases() -> None:
    assert len(CASES) >= 30


def test_last_noun_is_never_dropped() -> None:
    for caption in ("Kid flying kite very high", "a dog and a cat", "a cat on a mat"):
        cats = extract_categories(caption)
        assert cats and cats[-1] in {"kite", "cat", "mat"}
    assert extract_categories("a cat on a mat") == ["cat", "mat"]


def test_lowercasing_tags_better() -> None:
    # cased, the tagger reads "White"/NNP "clouds"/VBZ and loses the clouds
    assert extract_categories("White clouds over a house", lowercase=False) == ["house"]
    assert extract_categories("White clouds over a house") == ["cloud", "house"]
    assert dict(tag_caption("White clouds over a house"))["clouds"] == "NNS"


def test_no_noun_captions() -> None:
    assert extract_categories("a sketch of the scene") == []
    assert extract_categories("running and jumping") == []
    assert extract_categories("") == []


def test_custom_stop_words_and_compounds() -> None:
    assert "sketch" in DEFAULT_STOP_WORDS
    assert extract_categories("a dog and a cat", stop_words={"dog"}) == ["cat"]
    assert extract_categories("a picture of a tree", stop_words=()) == ["picture", "tree"]
    # without the compound, "stop"/JJ modifies "sign" and is no category
    assert extract_categories("a stop sign next to a tree", compounds=()) == ["sign", "tree"]
    assert extract_categories("a red double decker bus") == ["double decker bus"]
    assert extract_categories("a dog house", compounds=["dog house"]) == ["dog house"]


def test_make_prompt() -> None:
    assert make_prompt("traffic light") == "A sketch of traffic light."
    assert make_prompt("tree", "a drawing of a {}") == "a drawing of a tree"
    with pytest.raises(SketchSegConfigError, match="placeholder"):
        make_prompt("tree", "a sketch")
    with pytest.raises(SketchSegConfigError):
        make_prompt("tree", "{} and {}")


def _captions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sketch_id": [11, 12, 13, 14, 15],
            "caption": [
                "a dog and a cat",
                "two dogs in a park",
                "a cat on a mat",
                "a sketch of the scene",
                "a dog chasing another dog",
            ],
        }
    )


def test_extract_table_caption_fallback() -> None:
    table, vocab = extract_table(_captions(), template="A sketch of {}.")
    assert list(table.columns) == ["sketch_id", "categories", "prompts", "n_categories", "no_noun"]
    assert table["sketch_id"].tolist() == [11, 12, 13, 14, 15]
    assert table["categories"].tolist() == [
        ["dog", "cat"],
        ["dog", "park"],
        ["cat", "mat"],
        ["a sketch of the scene"],
        ["dog"],
    ]
    assert table.loc[0, "prompts"] == ["A sketch of dog.", "A sketch of cat."]
    assert table.loc[3, "prompts"] == ["a sketch of the scene"]  # whole caption, no template
    assert table["n_categories"].tolist() == [2, 2, 2, 1, 1]
    assert table["no_noun"].tolist() == [False, False, False, True, False]
    # vocabulary counts sketches (dog is counted once in sketch 15), not fallback captions
    assert vocab.to_dict("records") == [
        {"category": "dog", "count": 3},
        {"category": "cat", "count": 2},
        {"category": "mat", "count": 1},
        {"category": "park", "count": 1},
    ]


def test_extract_table_vocab_ties_sorted_by_name() -> None:
    df = pd.DataFrame({"sketch_id": [1, 2], "caption": ["a zebra and a cat", "a cat and a zebra"]})
    _, vocab = extract_table(df)
    assert vocab["category"].tolist() == ["cat", "zebra"]
    assert vocab["count"].tolist() == [2, 2]


def test_extract_table_skip_and_error() -> None:
    table, _ = extract_table(_captions(), no_noun_fallback="skip")
    row = table.set_index("sketch_id").loc[14]
    assert row["categories"] == [] and row["prompts"] == [] and row["n_categories"] == 0 and row["no_noun"]
    assert len(table) == 5
    with pytest.raises(SketchSegDataError, match="sketch 14"):
        extract_table(_captions(), no_noun_fallback="error")
    with pytest.raises(SketchSegConfigError, match="no_noun_fallback"):
        extract_table(_captions(), no_noun_fallback="drop")


def test_extract_table_empty_caption_under_caption_fallback() -> None:
    df = pd.DataFrame({"sketch_id": [1], "caption": [""]})
    table, vocab = extract_table(df)
    assert table.loc[0, "categories"] == [] and bool(table.loc[0, "no_noun"])
    assert vocab.empty


def test_extract_table_bad_input() -> None:
    with pytest.raises(SketchSegDataError, match="caption"):
        extract_table(pd.DataFrame({"sketch_id": [1]}))
    with pytest.raises(SketchSegDataError, match="repeats"):
        extract_table(pd.DataFrame({"sketch_id": [1, 1], "caption": ["a dog", "a cat"]}))
    with pytest.raises(SketchSegConfigError):
        extract_table(_captions(), template="no placeholder")


# ------------------------------------------------------------------------------ NLTK data


def _missing_list(message: str) -> list[str]:
    first = message.split("\n", 1)[0]
    return first.split("missing: ", 1)[1].split(" (", 1)[0].split(", ")


@pytest.fixture()
def no_project_nltk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The project's own data/00_nltk (filled by scripts/setup.sh) out of the search."""
    monkeypatch.setattr(nltk_setup, "project_nltk_dirs", lambda: [])


def test_missing_nltk_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_project_nltk) -> None:
    monkeypatch.setattr(nltk.data, "path", [])
    monkeypatch.delenv("NLTK_DATA", raising=False)
    with pytest.raises(SketchSegDataError) as info:
        ensure_nltk_data(str(tmp_path), allow_download=False)
    msg = str(info.value)
    assert "\n" not in msg  # one line: the app shows the first line of it (it said "Searched:" and no list)
    assert _missing_list(msg) == ["punkt_tab", "averaged_perceptron_tagger_eng", "wordnet"]
    assert f"searched {tmp_path})" in msg
    assert "prompts.nltk_data_path" in msg and "NLTK_DATA" in msg and "bash scripts/setup.sh" in msg


def _fake_project(root: Path, with_data: bool) -> Path:
    """A Kedro-project-shaped folder whose data/00_nltk holds the real NLTK data (linked) or nothing."""
    (root / "conf").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[tool.kedro]\n")
    local = root / "data" / "00_nltk"
    local.mkdir(parents=True)
    if with_data:
        for category in ("tokenizers", "taggers", "corpora"):
            (local / category).symlink_to(NLTK_DIR / category)
    return local


def test_project_local_nltk_data_is_found_without_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`source .venv/bin/activate` sets no NLTK_DATA: the project's data/00_nltk is found from the working directory."""
    if not NLTK_DIR.is_dir():
        pytest.skip("no ../shared/nltk_data to link")
    local = _fake_project(tmp_path / "proj", with_data=True)
    (tmp_path / "proj" / "src").mkdir()
    monkeypatch.chdir(tmp_path / "proj" / "src")  # a sub-folder of the project works too
    monkeypatch.setattr(nltk.data, "path", ["/nowhere"])
    monkeypatch.delenv("NLTK_DATA", raising=False)
    assert str(local) in nltk_setup.project_nltk_dirs()
    path = ensure_nltk_data(None, allow_download=False)
    assert path.index(str(local)) < path.index("/nowhere")


def test_download_goes_into_the_project_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = _fake_project(tmp_path / "proj", with_data=False)
    monkeypatch.chdir(tmp_path / "proj")
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "home_nltk")])
    monkeypatch.delenv("NLTK_DATA", raising=False)
    monkeypatch.setattr(nltk_setup, "project_nltk_dirs", lambda: [str(local)])
    monkeypatch.setattr(nltk_setup, "_is_online", lambda *a, **k: True)
    targets: list[str] = []

    def fake_download(resource: str, download_dir: str, **kwargs: object) -> bool:
        targets.append(download_dir)
        sub = {"punkt_tab": "tokenizers/punkt_tab/english", "wordnet": "corpora/wordnet"}.get(
            resource, f"taggers/{resource}")
        (Path(download_dir) / sub).mkdir(parents=True)
        return True

    monkeypatch.setattr(nltk, "download", fake_download)
    ensure_nltk_data(None, allow_download=True)
    assert targets == [str(local)] * 3


def test_missing_nltk_data_names_only_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_project_nltk) -> None:
    (tmp_path / "tokenizers" / "punkt_tab" / "english").mkdir(parents=True)
    monkeypatch.setattr(nltk.data, "path", [])
    monkeypatch.delenv("NLTK_DATA", raising=False)
    with pytest.raises(SketchSegDataError) as info:
        ensure_nltk_data(tmp_path, allow_download=False)
    assert _missing_list(str(info.value)) == ["averaged_perceptron_tagger_eng", "wordnet"]


def test_offline_never_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_project_nltk) -> None:
    monkeypatch.setattr(nltk.data, "path", [])
    monkeypatch.delenv("NLTK_DATA", raising=False)
    monkeypatch.setattr(nltk_setup, "_is_online", lambda *a, **k: False)

    def no_download(*args: object, **kwargs: object) -> bool:
        raise AssertionError("nltk.download called while offline")

    monkeypatch.setattr(nltk, "download", no_download)
    with pytest.raises(SketchSegDataError, match="wordnet"):
        ensure_nltk_data(str(tmp_path), allow_download=True)


def test_online_downloads_into_first_writable_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_project_nltk) -> None:
    target = tmp_path / "nltk"
    monkeypatch.setattr(nltk.data, "path", [])
    monkeypatch.delenv("NLTK_DATA", raising=False)
    monkeypatch.setattr(nltk_setup, "_is_online", lambda *a, **k: True)
    calls: list[tuple[str, str]] = []
    layout = {
        "punkt_tab": "tokenizers/punkt_tab/english",
        "averaged_perceptron_tagger_eng": "taggers/averaged_perceptron_tagger_eng",
        "wordnet": "corpora/wordnet",
    }

    def fake_download(resource: str, download_dir: str, **kwargs: object) -> bool:
        calls.append((resource, download_dir))
        (Path(download_dir) / layout[resource]).mkdir(parents=True)
        return True

    monkeypatch.setattr(nltk, "download", fake_download)
    path = ensure_nltk_data(str(target), allow_download=True)
    assert path[0] == str(target)
    assert calls == [(r, str(target)) for r in layout]


def test_search_path_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_a, env_b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setattr(nltk.data, "path", ["/somewhere/else"])
    monkeypatch.setenv("NLTK_DATA", os.pathsep.join([str(env_a), str(env_b)]))
    monkeypatch.setattr(nltk_setup, "project_nltk_dirs", lambda: [str(tmp_path / "proj")])
    path = ensure_nltk_data(str(NLTK_DIR), allow_download=False)
    assert path[:5] == [str(NLTK_DIR), str(env_a), str(env_b), str(tmp_path / "proj"), "/somewhere/else"]


def test_online_probe_never_hangs() -> None:
    start = time.monotonic()
    # a TCP port that may accept connections but never answers HTTP, and a name that never resolves
    assert nltk_setup._is_online("http://10.255.255.1:9/index.xml", timeout=0.3) is False
    assert nltk_setup._is_online("http://nltk-data.invalid/index.xml", timeout=0.3) is False
    assert time.monotonic() - start < 2.0


def test_conf_spells_out_the_module_defaults():
    """conf/base is what runs: it must not silently lose default stop words ("a herd of elephants")."""
    import yaml

    conf = yaml.safe_load((Path(__file__).resolve().parents[2] / "conf/base/parameters_prompts.yml").read_text())
    p = conf["prompts"]
    assert set(p["stop_words"]) == set(nouns.DEFAULT_STOP_WORDS)
    assert set(p["compounds"]) == set(nouns.DEFAULT_COMPOUNDS)
    assert nouns.extract_categories("a herd of elephants walking", stop_words=p["stop_words"],
                                    compounds=p["compounds"]) == ["elephant"]


def test_no_noun_warning_names_the_sketch_and_participant(caplog) -> None:
    """Which caption has no noun: the warning names the sketch (and participant) (issue #17)."""
    df = _captions().assign(participant_id=[3, 3, 4, 7, 4])
    with caplog.at_level(logging.WARNING, logger="sketchseg.text.nouns"):
        extract_table(df)
    assert "1 of 5 captions had no noun (no_noun_fallback='caption'): sketch 14 (participant 7) " \
           "'a sketch of the scene'" in caplog.text
    with pytest.raises(SketchSegDataError, match=r"sketch 14 \(participant 7\)"):
        extract_table(df, no_noun_fallback="error")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sketchseg.text.nouns"):
        extract_table(_captions(), no_noun_fallback="skip")  # without participant_id: the sketch alone
    assert "sketch 14 'a sketch of the scene'" in caplog.text
