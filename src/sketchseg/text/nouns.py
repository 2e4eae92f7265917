"""Caption -> object categories -> "A sketch of *" prompts (paper §3.2).

FS-COCO captions are short, mostly lower case and often without punctuation
("Kid flying kite very high"). Categories are the nouns of the caption, singular and lower case,
with known noun-noun compounds ("traffic light") kept whole. The NLTK perceptron tagger makes
predictable mistakes on such captions; they are repaired with WordNet:

* a token tagged as adjective or verb that WordNet knows as a noun but not as an adjective (or
  not as a verb) is a noun ("kite" tagged JJ in "kid flying kite"), unless, tagged JJ, it
  modifies the next noun ("stop"/JJ "sign" without the "stop sign" compound; a participle
  mis-tagged as noun is none: "a kite"/JJ "stuck"/NN "in");
* a token tagged as noun whose adjective use dominates in WordNet is not ("tall" in "tall trees"),
  unless it heads its noun phrase: after a determiner, possessive, noun or "a big", with no noun
  or adjective after it ("a fishing net", "near the net"/JJ, "the man's hat"/WP);
* an ``-ing`` verb form tagged as noun right after a noun is a participle ("cow grazing grass");
* participles ("standing", "flying", "parked") are never promoted to nouns;
* two adjacent words that WordNet knows as one noun are one category, open ("swimming pool") or
  closed ("skate board" -> "skateboard"), even with the first mis-tagged ("washing"/JJ).

The caption is lower-cased before tagging (``lowercase=True``): on sentence-initial capitals the
tagger otherwise labels adjectives as proper nouns ("Old man" -> Old/NNP) and "Tall" as a
determiner; lower-cased, the tags are right and nouns stay nouns. Unlike the authors' code, the
last noun of a caption is never dropped.
"""

from __future__ import annotations

import functools
import logging
import re
from collections import Counter
from collections.abc import Collection, Sequence

import pandas as pd
from sketchseg.progress import progress

from sketchseg.errors import SketchSegConfigError, SketchSegDataError
from sketchseg.text.prompts import PROMPT_TEMPLATE, make_prompt

logger = logging.getLogger(__name__)

DEFAULT_TEMPLATE = PROMPT_TEMPLATE
NO_NOUN_FALLBACKS = ("caption", "skip", "error")

#: Nouns that name a view, a position, a quantity or the drawing itself, never an object to segment.
DEFAULT_STOP_WORDS: frozenset[str] = frozenset(
    {
        "sketch", "picture", "image", "drawing", "photo", "photograph", "scene", "view",
        "side", "front", "back", "top", "bottom", "middle", "center", "centre", "corner", "edge",
        "background", "foreground", "left", "right", "distance", "area", "part", "rest", "end",
        "lot", "lots", "couple", "group", "pair", "bunch", "number", "kind", "type", "sort",
        "variety", "piece", "bit", "row", "line", "set", "pile", "herd", "flock",
        "thing", "something", "anything", "nothing", "way",
    }
)  # fmt: skip

#: Noun compounds kept as one category even when the tagger splits them (e.g. "stop"/JJ "sign").
DEFAULT_COMPOUNDS: tuple[str, ...] = (
    "traffic light", "fire hydrant", "stop sign", "teddy bear", "tennis racket", "hot dog",
    "parking meter", "baseball bat", "baseball glove", "cell phone", "mobile phone", "street light",
    "street lamp", "fire truck", "ice cream", "bus stop", "parking lot", "dining table",
    "wine glass", "hair drier", "hair dryer", "potted plant", "sports ball", "tennis ball",
    "tennis court", "traffic sign", "road sign", "light pole", "lamp post", "power line",
    "tree trunk", "clock tower", "park bench", "water bottle", "coffee table", "living room",
    "sail boat", "fishing rod", "table tennis", "christmas tree", "palm tree", "ski pole",
    "double decker bus", "double decker", "tennis player", "baseball player", "train station", "ski slope",
)  # fmt: skip

#: Plural-only nouns that the WordNet lemmatizer would wrongly singularise ("jeans" -> "jean").
PLURAL_NOUNS: dict[str, str] = {
    "jeans": "jeans", "pants": "pants", "shorts": "shorts", "trousers": "trousers",
    "clothes": "clothes", "glasses": "glasses", "sunglasses": "sunglasses", "scissors": "scissors",
    "binoculars": "binoculars", "headphones": "headphones", "goggles": "goggles",
    "species": "species", "stairs": "stairs", "people": "people", "data": "data",
}  # fmt: skip

NOUN_TAGS = frozenset({"NN", "NNS", "NNP", "NNPS"})
ADJ_TAGS = frozenset({"JJ", "JJR", "JJS"})
VERB_TAGS = frozenset({"VB", "VBD", "VBG", "VBN", "VBP", "VBZ"})
#: Tags that announce a noun phrase: "a kite", "two kites", "his kite", "the dog's kite".
DETERMINER_TAGS = frozenset({"DT", "PDT", "PRP$", "WP$", "CD", "POS"})

_WORD_RE = re.compile(r"[a-z][a-z'\-]*[a-z]")


# ----------------------------------------------------------------------------------- WordNet
@functools.lru_cache(maxsize=1)
def _wordnet():  # noqa: ANN202 - nltk corpus reader
    _ensure_ready()
    from nltk.corpus import wordnet

    wordnet.ensure_loaded()
    return wordnet


@functools.lru_cache(maxsize=1)
def _lemmatizer():  # noqa: ANN202
    from nltk.stem import WordNetLemmatizer

    _wordnet()
    return WordNetLemmatizer()


@functools.lru_cache(maxsize=1)  # an exception is not cached: a failed check runs again
def _ensure_ready() -> None:
    """Check once that the NLTK data is findable; raise a helpful SketchSegDataError otherwise."""
    from sketchseg.text.nltk_setup import ensure_nltk_data

    ensure_nltk_data(None, allow_download=False)


@functools.lru_cache(maxsize=65536)
def _pos_counts(word: str, pos: str) -> tuple[int, int]:
    """(number of WordNet synsets, SemCor frequency) of ``word`` for ``pos`` ("n", "v", "a", "r")."""
    wn = _wordnet()
    poses = ("a", "s") if pos == "a" else (pos,)
    n_syn = freq = 0
    for p in poses:
        names = {word, wn.morphy(word, p) or word}
        synsets = wn.synsets(word, p)
        n_syn += len(synsets)
        freq += sum(lem.count() for s in synsets for lem in s.lemmas() if lem.name().lower() in names)
    return n_syn, freq


def _has(word: str, pos: str) -> bool:
    return _pos_counts(word, pos)[0] > 0


@functools.lru_cache(maxsize=65536)
def _verb_base(word: str) -> str | None:
    """WordNet verb lemma of ``word`` (None when it is no verb form)."""
    return _wordnet().morphy(word, "v")


def _is_verb_form(word: str) -> bool:
    """True for inflected verb forms such as "standing", "flying", "parked" (not "kite", "leaves")."""
    base = _verb_base(word)
    return base is not None and base != word and word.endswith(("ing", "ed"))


@functools.lru_cache(maxsize=65536)
def _is_wordnet_noun(name: str) -> bool:
    return bool(_wordnet().synsets(name, "n"))


@functools.lru_cache(maxsize=65536)
def lemma(word: str) -> str:
    """Singular lower-case form of the noun ``word``."""
    word = word.lower()
    if word in PLURAL_NOUNS:
        return PLURAL_NOUNS[word]
    wn = _wordnet()
    try:
        candidates = wn._morphy(word, "n")  # the lemmatizer's own back end
    except AttributeError:  # pragma: no cover - older/newer NLTK
        return _lemmatizer().lemmatize(word, "n")
    # WordNet lists some plurals as lemmas of their own ("men", "teeth", "arms"): prefer the base
    changed = [c for c in candidates if c != word]
    return changed[0] if changed else word


# ------------------------------------------------------------------------------- tagging
def tag_caption(caption: str, *, lowercase: bool = True) -> list[tuple[str, str]]:
    """Tokenise and POS-tag ``caption``; tokens are returned lower-cased either way."""
    _ensure_ready()
    import nltk

    text = caption.lower() if lowercase else caption
    try:
        tagged = nltk.pos_tag(nltk.word_tokenize(text))
    except LookupError as exc:  # data removed after the first check
        raise SketchSegDataError(f"NLTK data missing while tagging {caption!r}: {exc}") from exc
    return [(tok.lower(), tag) for tok, tag in tagged]


def _noun_flags(tagged: Sequence[tuple[str, str]]) -> list[bool]:
    """Decide, left to right, which tokens are nouns (tagger output repaired with WordNet)."""
    flags: list[bool] = []
    for i in range(len(tagged)):
        flags.append(_is_noun(tagged, i, flags))
    return flags


def _ends_phrase(tagged: Sequence[tuple[str, str]], i: int) -> bool:
    """True when no noun or adjective of token ``i``'s noun phrase follows: "a net", "a net and a
    bucket", "a net full of fish"; not "a black and white shirt", "a little white dog"."""
    nxt = tagged[i + 1][1] if i + 1 < len(tagged) else None
    after = tagged[i + 2][1] if i + 2 < len(tagged) else None
    if nxt in NOUN_TAGS:  # ... unless it is a verb form WordNet knows as no noun ("net"/JJ "chasing"/NN)
        nxt_word = tagged[i + 1][0]
        return not _has(nxt_word, "n") and _verb_base(nxt_word) not in (None, nxt_word)
    if nxt in ADJ_TAGS:  # "next to", "full of": a predicate; not "two little sheep"/JJ "near"
        nxt_word = tagged[i + 1][0]
        return after in ("TO", "IN") and _pos_counts(nxt_word, "a")[1] > _pos_counts(nxt_word, "n")[1]
    if nxt == "CC":  # "a net and a bucket" vs "a black and white shirt"
        return after is None or after in DETERMINER_TAGS or after in ("PRP", "EX", "IN")
    return True


def _introduces_head(tagged: Sequence[tuple[str, str]], i: int, flags: Sequence[bool]) -> bool:
    """True after a determiner or possessive ("a net"), a noun ("tennis net") or a determiner and
    an adjective ("a big net", "a fishing"/JJ "net")."""
    prev_tag = tagged[i - 1][1] if i > 0 else None
    if prev_tag in DETERMINER_TAGS or (i > 0 and flags[i - 1]):
        return True
    return prev_tag in ADJ_TAGS and i >= 2 and tagged[i - 2][1] in DETERMINER_TAGS


def _is_participle(tagged: Sequence[tuple[str, str]], j: int) -> bool:
    """True when token ``j`` is a participle: "walking", "stuck", "caught" (verb forms WordNet knows
    as no noun), "cut into" (verb use dominant, a preposition next)."""
    word = tagged[j][0]
    if word.endswith("ing") or _is_verb_form(word) or (_verb_base(word) and not _has(word, "n")):
        return True
    after = tagged[j + 1][1] if j + 1 < len(tagged) else None
    return after in ("IN", "TO", "RP") and _pos_counts(word, "v")[1] > _pos_counts(word, "n")[1]


def _is_noun(tagged: Sequence[tuple[str, str]], i: int, flags: Sequence[bool]) -> bool:
    word, tag = tagged[i]
    prev_tag = tagged[i - 1][1] if i > 0 else None
    prev_noun = flags[i - 1] if i > 0 else False
    next_tag = tagged[i + 1][1] if i + 1 < len(tagged) else None
    if not _WORD_RE.fullmatch(word):
        return False
    n_noun, f_noun = _pos_counts(word, "n")
    n_adj, f_adj = _pos_counts(word, "a")
    if tag in NOUN_TAGS:
        if word.endswith("ing") and _verb_base(word) not in (None, word):
            # "cow grazing grass" (participle) vs "a tall building" (noun); "its raining" (no noun)
            after_det = prev_tag in DETERMINER_TAGS or prev_tag in ADJ_TAGS
            return not prev_noun and (n_noun > 0 if after_det else f_noun > 0)
        # the head of a noun phrase is a noun even where WordNet's adjective sense is more
        # frequent: "an orange", "a fishing net", "the tennis net"
        heads_phrase = (prev_tag in DETERMINER_TAGS and next_tag not in NOUN_TAGS) or (
            n_noun > 0 and _ends_phrase(tagged, i) and _introduces_head(tagged, i, flags)
            and not (prev_noun and _is_participle(tagged, i))  # not "a sandwich cut into"
        )
        if n_adj and f_adj > f_noun and not heads_phrase:  # "tall"/NN in "tall trees", "red"/NN in "a man in red"
            return False
        if not n_noun and (n_adj or _verb_base(word) is not None):
            return False  # WordNet knows it, but not as a noun: "snowy"/NN, "parked"/NN
        return True
    if not n_noun or _is_verb_form(word) or tag == "VBG":
        return False
    if prev_tag == "POS" and (not n_adj or _ends_phrase(tagged, i)):  # "the man's hat" with "hat"/WP
        return True
    if tag in ADJ_TAGS and not n_adj:  # "kite"/JJ, "elephant"/JJ, "sheep"/JJ
        # ... unless it modifies the next noun ("toy"/JJ "car"); not if plural ("giraffes"/JJ) or if the
        # next "noun" is a participle ("elephant"/JJ "walking"/NN, "sandwich"/JJ "cut"/NN "into")
        if next_tag not in NOUN_TAGS or lemma(word) != word:
            return True
        return _is_participle(tagged, i + 1)
    if tag in VERB_TAGS and not _has(word, "v"):  # noun-only word tagged as a verb
        return True
    if tag == "MD":  # "a trash can" with "can"/MD; not "the dog can run"
        return prev_noun and next_tag not in VERB_TAGS and next_tag != "RB"
    if tag in ADJ_TAGS and _ends_phrase(tagged, i):
        # head of a noun phrase tagged as adjective: after a determiner or a noun any used noun
        # sense will do ("near the net", "a butterfly net"); after "a big", the noun use must dominate
        if prev_tag in DETERMINER_TAGS or prev_noun:
            return f_noun > 0 or f_adj == 0
        if _introduces_head(tagged, i, flags) and f_noun >= f_adj:
            return True
    if (tag in ADJ_TAGS or tag in VERB_TAGS) and prev_tag in DETERMINER_TAGS and next_tag not in NOUN_TAGS:
        # head of a noun phrase: "a kite" with "kite"/VBP; only when the noun use dominates
        return f_noun >= max(_pos_counts(word, "v")[1], f_adj)
    return False


# ------------------------------------------------------------------------------- public API
def extract_categories(
    caption: str,
    *,
    stop_words: Collection[str] = DEFAULT_STOP_WORDS,
    compounds: Collection[str] = DEFAULT_COMPOUNDS,
    lowercase: bool = True,
) -> list[str]:
    """Object categories named in ``caption``, in caption order, without duplicates.

    Parameters
    ----------
    caption
        Free-text sketch caption.
    stop_words
        Category names to drop (compared after singularisation, lower case).
    compounds
        Multi-word categories (2 or 3 words, last word singular) kept whole when their words are
        adjacent, whatever their tags; any two adjacent words that WordNet knows as one noun
        ("bus_stop", "skateboard") are joined too when the second is a noun.
    lowercase
        Lower-case the caption before tagging (tags short captions better).

    Returns
    -------
    list[str]
        Singular lower-case categories, compounds joined by one space.
    """
    if not isinstance(caption, str) or not caption.strip():
        return []
    stop = {s.lower() for s in stop_words}
    known = {" ".join(c.lower().split()) for c in compounds}
    max_len = max((len(c.split()) for c in known), default=1)
    tagged = tag_caption(caption, lowercase=lowercase)
    flags = _noun_flags(tagged)

    words = [w for w, _ in tagged]  # once: every step below looks at a bounded window of tokens
    found: dict[str, None] = {}  # insertion-ordered set: membership in O(1), not a list scan
    i = 0
    while i < len(tagged):
        category, width = _match_at(tagged, flags, i, known, max_len, words)
        if category is not None and category not in stop and category not in found:
            found[category] = None
        i += width
    return list(found)


def _match_at(
    tagged: Sequence[tuple[str, str]], flags: Sequence[bool], i: int, known: set[str], max_len: int,
    words: Sequence[str],
) -> tuple[str | None, int]:
    """Category starting at token ``i`` (or None) and the number of tokens it spans (a window of at
    most ``max_len`` tokens from ``i``: constant work per token; ``words``: the tokens of ``tagged``)."""
    for width in range(min(max_len, len(words) - i), 1, -1):
        span = words[i : i + width]
        if all(_WORD_RE.fullmatch(w) for w in span):
            key = " ".join([*span[:-1], lemma(span[-1])])
            if key in known:
                return key, width
    word = words[i]
    hyphenated = " ".join(word.split("-")[:-1] + [lemma(word.split("-")[-1])])
    if flags[i] and "-" in word and hyphenated in known:
        return hyphenated, 1
    if i + 1 < len(words) and flags[i + 1] and (flags[i] or _can_modify(tagged, i, flags)):
        compound = _wordnet_compound(word, words[i + 1])
        if compound is not None:
            return compound, 2
    return (lemma(word), 1) if flags[i] else (None, 1)


def _can_modify(tagged: Sequence[tuple[str, str]], i: int, flags: Sequence[bool]) -> bool:
    """True when token ``i`` may open a noun-noun compound though it is no category: its noun use is
    as frequent as its adjective use ("washing"/JJ "machine"; not "green house", "young person"),
    and it is no participle after a noun ("a man riding horse")."""
    word, tag = tagged[i]
    if not (tag in NOUN_TAGS or tag in ADJ_TAGS or tag in VERB_TAGS) or not _WORD_RE.fullmatch(word):
        return False
    n_noun, f_noun = _pos_counts(word, "n")
    participle = word.endswith("ing") and i > 0 and flags[i - 1]
    return n_noun > 0 and f_noun >= _pos_counts(word, "a")[1] and not participle


def _wordnet_compound(first: str, second: str) -> str | None:
    """The noun-noun compound ``first second`` when WordNet knows it as one lemma: open
    ("swimming_pool" -> "swimming pool") or closed ("skate board" -> "skateboard")."""
    head = lemma(second)
    for modifier in dict.fromkeys((first, lemma(first))):
        if _is_wordnet_noun(f"{modifier}_{head}"):
            return f"{modifier} {head}"
    return first + head if _is_wordnet_noun(first + head) else None


_NAMED = 20  # sketches named in the "no noun" warning


def extract_table(
    captions: pd.DataFrame,
    *,
    template: str = DEFAULT_TEMPLATE,
    stop_words: Collection[str] = DEFAULT_STOP_WORDS,
    compounds: Collection[str] = DEFAULT_COMPOUNDS,
    no_noun_fallback: str = "caption",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Categories and prompts for every caption, and the category vocabulary.

    Parameters
    ----------
    captions
        Columns ``sketch_id`` and ``caption`` (and optionally ``participant_id``: messages name it).
    no_noun_fallback
        For a caption without any category: ``"caption"`` uses the whole caption as the single
        category and prompt, ``"skip"`` keeps the row with empty lists, ``"error"`` raises.
        Such rows have ``no_noun=True`` and do not count in the vocabulary. An empty caption
        cannot serve as a prompt, so under ``"caption"`` it is handled as ``"skip"``.

    Returns
    -------
    (table, vocabulary)
        ``table``: sketch_id, categories (list[str]), prompts (list[str]), n_categories, no_noun.
        ``vocabulary``: category, count (number of sketches), sorted by count desc then name.
    """
    if no_noun_fallback not in NO_NOUN_FALLBACKS:
        raise SketchSegConfigError(
            f"prompts.no_noun_fallback must be one of {NO_NOUN_FALLBACKS}, got {no_noun_fallback!r}"
        )
    make_prompt("x", template)  # validate the template once
    missing = {"sketch_id", "caption"} - set(captions.columns)
    if missing:
        raise SketchSegDataError(f"caption table lacks column(s) {sorted(missing)}; has {list(captions.columns)}")
    dup = captions["sketch_id"][captions["sketch_id"].duplicated()]
    if len(dup):
        raise SketchSegDataError(f"caption table repeats sketch_id(s) {sorted(dup.unique().tolist())[:10]}")

    rows = []
    counts: Counter[str] = Counter()
    no_noun: list[str] = []
    pids = captions["participant_id"].tolist() if "participant_id" in captions.columns else [None] * len(captions)
    pairs = zip(captions["sketch_id"].tolist(), captions["caption"].tolist(), pids, strict=True)
    for sketch_id, caption, pid in progress(pairs, total=len(captions), desc="captions", unit="caption"):
        text = caption.strip() if isinstance(caption, str) else ""
        try:
            cats = extract_categories(text, stop_words=stop_words, compounds=compounds)
        except SketchSegDataError:
            raise
        except Exception as exc:  # a tagger/tokenizer failure names the sketch, not only a regex
            who = f"sketch {sketch_id}" + (f" (participant {pid})" if pid is not None else "")
            raise SketchSegDataError(
                f"{who}: noun extraction failed on its caption ({len(text)} characters, {text[:60]!r}...): "
                f"{type(exc).__name__}: {exc}") from exc
        if not cats:
            who = f"sketch {sketch_id}" + (f" (participant {pid})" if pid is not None else "")
            no_noun.append(f"{who} {text!r}")
            if no_noun_fallback == "error":
                raise SketchSegDataError(f"{who}: no object category found in caption {text!r}")
            if no_noun_fallback == "caption" and text:
                rows.append((sketch_id, [text], [text], 1, True))
            else:
                if no_noun_fallback == "caption":
                    logger.warning("sketch %s has an empty caption; no prompt for its category level", sketch_id)
                rows.append((sketch_id, [], [], 0, True))
            continue
        counts.update(cats)
        rows.append((sketch_id, cats, [make_prompt(c, template) for c in cats], len(cats), False))

    columns = ["sketch_id", "categories", "prompts", "n_categories", "no_noun"]
    table = pd.DataFrame(rows, columns=columns).astype({"n_categories": "int64", "no_noun": bool})
    if len(captions):
        table["sketch_id"] = table["sketch_id"].astype(captions["sketch_id"].dtype)
    if no_noun:
        shown = ", ".join(no_noun[:_NAMED])
        more = f" and {len(no_noun) - _NAMED} more (the no_noun column)" if len(no_noun) > _NAMED else ""
        logger.warning("%d of %d captions had no noun (no_noun_fallback=%r): %s%s", len(no_noun), len(captions),
                       no_noun_fallback, shown, more)
    vocab = pd.DataFrame(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])), columns=["category", "count"])
    vocab = vocab.astype({"category": object, "count": "int64"})
    mean = float(table["n_categories"].mean()) if len(table) else 0.0
    logger.info("%d captions -> %d categories (%.2f per sketch)", len(table), len(vocab), mean)
    return table, vocab
