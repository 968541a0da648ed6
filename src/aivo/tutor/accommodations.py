"""Accommodations: how a learner's needs shape the system prompt and the answer's layout.

Each accommodation adds instructions to the system prompt and may rewrite the model's answer
afterwards, so that the shape is guaranteed even when the model ignores the instructions:

- adhd: short chunks and numbered steps;
- dyslexia: short sentences and plain words;
- autism: literal, structured and predictable (fixed "Main idea / Details" layout, no idioms);
- anxiety: encouraging and low-pressure (no "obviously", a kind opener and closer).

Accommodations register through `register_accommodation`, which rejects duplicate names and
aliases; `resolve_accommodations` rejects unknown ones. Shaping applies them in a fixed order
(sentence rewrites, then layout, then wrapping), so the result does not depend on list order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from aivo.errors import DataError
from aivo.tutor.readability import split_sentences

Layout = Literal["steps", "sections"]


@dataclass(frozen=True)
class Accommodation:
    name: str
    aliases: tuple[str, ...]
    instructions: tuple[str, ...]
    # Rewrites the answer's sentences (one sentence may become several).
    rewrite: Callable[[list[str]], list[str]] | None = None
    layout: Layout | None = None
    opener: str | None = None
    closer: str | None = None
    plain_language: bool = False  # lowers the readability band's top
    order: int = field(default=50)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z_]*", self.name):
            raise ValueError(f"accommodation names are lower_snake_case, got {self.name!r}")


_REGISTRY: dict[str, Accommodation] = {}
_ALIASES: dict[str, str] = {}


def register_accommodation(accommodation: Accommodation) -> None:
    keys = (accommodation.name, *accommodation.aliases)
    taken = [k for k in keys if k in _ALIASES]
    if taken:
        raise ValueError(f"accommodation name(s) already registered: {', '.join(taken)}")
    _REGISTRY[accommodation.name] = accommodation
    for key in keys:
        _ALIASES[key] = accommodation.name


def known_accommodations() -> list[str]:
    return sorted(_REGISTRY)


def resolve_accommodations(names: Iterable[str]) -> tuple[str, ...]:
    """Canonical names, deduplicated, in application order. "none" and "" are ignored."""
    resolved: set[str] = set()
    for raw in names:
        key = raw.strip().lower().replace("-", "_").replace(" ", "_")
        if key in ("", "none", "n/a"):
            continue
        if key not in _ALIASES:
            raise DataError(f"unknown accommodation {raw!r}; known: {', '.join(known_accommodations())}")
        resolved.add(_ALIASES[key])
    return tuple(sorted(resolved, key=lambda n: (_REGISTRY[n].order, n)))


def get_accommodation(name: str) -> Accommodation:
    return _REGISTRY[resolve_accommodations([name])[0]]


def accommodation_instructions(names: Iterable[str]) -> list[str]:
    return [line for n in resolve_accommodations(names) for line in _REGISTRY[n].instructions]


def needs_plain_language(names: Iterable[str]) -> bool:
    return any(_REGISTRY[n].plain_language for n in resolve_accommodations(names))


# Layout labels a model may already have written (it was asked for this layout): removed before
# the layout is applied, so that they never appear twice ("Main idea: Main idea: ...").
_LAYOUT_LABEL = re.compile(r"^(?:\*\*)?(?:main idea|details|steps?)(?:\*\*)?\s*:(?:\*\*)?\s*", re.IGNORECASE)


def _strip_layout_labels(sentences: list[str]) -> list[str]:
    out = []
    for sentence in sentences:
        stripped = _LAYOUT_LABEL.sub("", sentence).strip()
        if re.search(r"[A-Za-z0-9]", stripped):
            out.append(stripped)
    return out


def shape_response(text: str, accommodations: Iterable[str], *, frame: bool = True) -> str:
    """Rewrite `text` so its shape follows the accommodations. Without any, `text` is unchanged.

    `frame=False` leaves out the openers and closers (e.g. the anxiety accommodation's "Great
    question!"), for text that does not answer a question, such as assessment feedback."""
    names = resolve_accommodations(accommodations)
    if not names:
        return text.strip()
    accs = [_REGISTRY[n] for n in names]
    sentences = split_sentences(text)
    if any(acc.layout for acc in accs):
        sentences = _strip_layout_labels(sentences)
    for acc in accs:
        if acc.rewrite is not None:
            sentences = acc.rewrite(sentences)
    sentences = [_capitalize(s) for s in sentences if s.strip()]
    layouts = {acc.layout for acc in accs if acc.layout}
    body = _layout(sentences, layouts)
    openers = [acc.opener for acc in accs if acc.opener and frame]
    closers = [acc.closer for acc in accs if acc.closer and frame]
    return "\n\n".join([*openers, body, *closers]).strip()


# --- layouts ------------------------------------------------------------------------------
STEPS_PER_CHUNK = 3  # ADHD: a blank line after every three steps keeps chunks short


def _numbered(sentences: list[str]) -> str:
    chunks = []
    for start in range(0, len(sentences), STEPS_PER_CHUNK):
        chunk = sentences[start:start + STEPS_PER_CHUNK]
        chunks.append("\n".join(f"{start + i + 1}. {s}" for i, s in enumerate(chunk)))
    return "\n\n".join(chunks)


def _layout(sentences: list[str], layouts: set[str]) -> str:
    if not sentences:
        return ""
    if "sections" in layouts:
        main, details = sentences[0], sentences[1:]
        if "steps" in layouts:
            body = _numbered(details) if details else ""
        else:
            body = "\n".join(f"- {s}" for s in details)
        return f"Main idea: {main}" + (f"\n\nDetails:\n{body}" if body else "")
    if "steps" in layouts:
        return _numbered(sentences)
    return " ".join(sentences)


def _capitalize(sentence: str) -> str:
    s = ensure_terminal(sentence)
    return s[:1].upper() + s[1:]


def ensure_terminal(sentence: str) -> str:
    """The sentence ending in exactly one terminal mark ("food?" stays "food?", never "food?.")."""
    s = sentence.strip()
    s = re.sub(r"([.!?])[.!?]*$", r"\1", s)
    return s if s[-1:] in ".!?:" else s + "."


# --- sentence rewrites --------------------------------------------------------------------
MAX_PLAIN_WORDS = 12  # dyslexia: split sentences longer than this at a natural joint

PLAIN_WORDS = {
    "utilize": "use", "utilizes": "uses", "approximately": "about", "additional": "more",
    "demonstrate": "show", "demonstrates": "shows", "obtain": "get", "obtains": "gets",
    "sufficient": "enough", "numerous": "many", "commence": "start", "commences": "starts",
    "terminate": "end", "assist": "help", "assists": "helps", "require": "need",
    "requires": "needs", "purchase": "buy", "therefore": "so", "however": "but",
    "consequently": "so", "subsequently": "then", "individuals": "people", "component": "part",
    "components": "parts", "construct": "build", "constructs": "builds", "indicate": "show",
    "indicates": "shows", "modify": "change", "modifies": "changes", "identical": "the same",
    "initial": "first", "initially": "at first", "frequently": "often", "observe": "see",
    "observes": "sees", "acquire": "get", "acquires": "gets", "adequate": "enough",
    "comprehend": "understand", "illustrate": "show", "illustrates": "shows",
}
MAX_STEP_WORDS = 15  # ADHD: one short sentence per step
MIN_PIECE_WORDS = 3  # a split never leaves a piece shorter than this (unless no joint is left)

# Joints at which a long sentence is split, strongest first. Every word is kept (the facts do
# not change): only punctuation and capitals change, except that a joining "and"/"then" right
# after a comma is dropped and a relative "which" becomes "This"/"These".
_JOINTS = (
    (re.compile(r"\s*;\s+|:\s+(?=\S)"), False),  # between clauses
    (re.compile(r",\s+(?=(?:and|but|so|then|yet|or)\b)", re.IGNORECASE), True),  # ", and ..." joins two clauses
    (re.compile(r",\s+(?=(?:which|where|when|while|because|although|though|since|until|unless|if|as)\b)",
                re.IGNORECASE), False),
    (re.compile(r"\s+(?=(?:because|which|where|when|while|although|so that|until|unless)\b)", re.IGNORECASE), False),
    (re.compile(r",\s+"), False),
    # before a preposition, except a "to" bound to the word before it ("due to", "able to", "have to")
    (re.compile(r"(?<!\bdue)(?<!\bable)(?<!\bhave)(?<!\bhas)(?<!\bhad)(?<!\bneed)(?<!\bused)(?<!\bnext)"
                r"(?<!\border)(?<!\blikely)(?<!\bgoing)(?<!\bwant)(?<!\bclose)(?<!\bsimilar)(?<!\baccording)"
                r"\s+(?=(?:to|with|from|into|by|in|on|for|at|after|before)\b)", re.IGNORECASE), False),
    (re.compile(r"\s+(?=(?:and|but|or|so|then)\b)", re.IGNORECASE), False),
)
_JOIN_WORD = re.compile(r"^(?:and|then)\s+", re.IGNORECASE)
_WHICH = re.compile(r"^which\s+", re.IGNORECASE)
_PLURAL_VERB = re.compile(r"^(?:are|were|have|do)\b", re.IGNORECASE)

IDIOMS = {
    "a piece of cake": "easy", "piece of cake": "easy", "break a leg": "good luck", "hit the books": "study",
    "on the same page": "in agreement", "under the weather": "sick",
    "a piece of the puzzle": "one part of the answer", "in a nutshell": "in short",
    "the big picture": "the main idea", "get the hang of": "learn", "raining cats and dogs":
    "raining hard", "keep an eye on": "watch", "hang in there": "keep going",
}
PRESSURE_WORDS = re.compile(r"\b(?:obviously|simply|just|easily|clearly|of course|quickly)\b\s*",
                            re.IGNORECASE)


def _replace_words(sentence: str, table: dict[str, str]) -> str:
    def swap(m: re.Match) -> str:
        word = m.group(0)
        plain = table[word.lower()]
        return plain[:1].upper() + plain[1:] if word[:1].isupper() else plain

    return re.sub(r"\b(" + "|".join(map(re.escape, table)) + r")\b", swap, sentence,
                  flags=re.IGNORECASE)


def _opening(piece: str, drop_join_word: bool) -> str:
    """The start of a piece split off after a joint, made to read as its own sentence."""
    if drop_join_word:
        piece = _JOIN_WORD.sub("", piece)
    m = _WHICH.match(piece)
    if m is None:
        return piece
    rest = piece[m.end():]
    return ("These " if _PLURAL_VERB.match(rest) else "This ") + rest


def split_to_limit(sentence: str, max_words: int) -> list[str]:
    """`sentence` as pieces of at most `max_words` words: split at the strongest joint that leaves
    both sides at least MIN_PIECE_WORDS long (nearest the middle among joints of that strength),
    again as needed; with no joint left, into even runs of words."""
    words = sentence.split()
    if len(words) <= max_words:
        return [sentence]
    for joint, drop_join_word in _JOINTS:
        best = None
        for m in joint.finditer(sentence):
            left, right = sentence[:m.start()].strip(" ,;:"), _opening(sentence[m.end():].strip(), drop_join_word)
            n_left, n_right = len(left.split()), len(right.split())
            if n_left >= MIN_PIECE_WORDS and n_right >= MIN_PIECE_WORDS:
                if best is None or abs(n_left - n_right) < best[0]:
                    best = (abs(n_left - n_right), left, right)
        if best is not None:
            return split_to_limit(best[1], max_words) + split_to_limit(best[2], max_words)
    runs = -(-len(words) // max_words)
    size = -(-len(words) // runs)
    return [" ".join(words[i:i + size]) for i in range(0, len(words), size)]


def split_long(sentences: list[str], *, max_words: int) -> list[str]:
    """Sentences longer than `max_words` split until none is (shorter ones are left alone): the
    quoted lesson sentences of a grounded answer as well as the model's own."""
    return [piece for sentence in sentences for piece in split_to_limit(sentence, max_words)]


def plain_sentences(sentences: list[str]) -> list[str]:
    return split_long([_replace_words(s, PLAIN_WORDS) for s in sentences], max_words=MAX_PLAIN_WORDS)


def short_step_sentences(sentences: list[str]) -> list[str]:
    return split_long(sentences, max_words=MAX_STEP_WORDS)


def literal_sentences(sentences: list[str]) -> list[str]:
    out = []
    for sentence in sentences:
        s = sentence
        for idiom, literal in IDIOMS.items():
            s = re.sub(re.escape(idiom), literal, s, flags=re.IGNORECASE)
        out.append(s.replace("!", "."))
    return out


def low_pressure_sentences(sentences: list[str]) -> list[str]:
    return [PRESSURE_WORDS.sub("", s).strip() for s in sentences]


# --- the built-in accommodations -----------------------------------------------------------
register_accommodation(Accommodation(
    name="dyslexia", aliases=("dyslexic", "reading_disability"), order=10, plain_language=True,
    instructions=("Use short sentences of at most 12 words.", "Use plain, common words.",
                  "Avoid long paragraphs; put one idea in each sentence."),
    rewrite=plain_sentences,
))
register_accommodation(Accommodation(
    name="autism", aliases=("asd", "autistic", "autism_spectrum"), order=20, layout="sections",
    instructions=("Be literal: no idioms, sarcasm or figures of speech.",
                  "Use the same predictable structure every time: the main idea first, "
                  "then the details in order.", "Say exactly what to do next."),
    rewrite=literal_sentences,
))
register_accommodation(Accommodation(
    name="adhd", aliases=("add", "attention"), order=30, layout="steps",
    instructions=("Break the explanation into short chunks.", "Use numbered steps.",
                  "Keep each step to one short sentence."),
    rewrite=short_step_sentences,
))
register_accommodation(Accommodation(
    name="anxiety", aliases=("anxious",), order=40,
    instructions=("Be warm and encouraging.", "Keep it low-pressure: mistakes are part of learning.",
                  "Never say that something is easy or obvious."),
    rewrite=low_pressure_sentences,
    opener="Great question! Let's work through it together.",
    closer="Take your time. It is okay to ask again or try a different way.",
))
