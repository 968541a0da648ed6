"""Learner-id pseudonymization (keyed HMAC) and free-text PII scrubbing.

* `pseudonymize_learner_id(raw_id, key=...)`: HMAC-SHA256 of the id under the service's secret
  key (`AIVO_SECRET_KEY`, or the key embedded mode keeps in AIVO_HOME/secret.key: use
  `Settings.resolved_secret_key()`). The same id and key always give the same 64-hex pseudonym;
  without the key the mapping can neither be reversed nor recomputed from a list of ids.
* `scrub_pii(text, names=...)`: replaces e-mail addresses with [EMAIL], phone numbers with
  [PHONE] and names from a configured list (`AIVO_PII_NAMES`: comma list or @file) with [NAME].

Phone numbers are recognised by their shape, not by being long digit runs, so that scores,
years, dates and ids stay as they are: +CC international numbers, NANP numbers written with
separators ((555) 123-4567, 555-123-4567, 555.123.4567, +1 555 123 4567) and national
numbers with a leading 0 and separators (020 7946 0958). Bare runs of digits and 7-digit local
numbers (555-1234, indistinguishable from ranges like 120-1350) are not redacted.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import pandas as pd

from aivo.data.schema import CORE_COLUMNS
from aivo.errors import ConfigError, DataError

log = logging.getLogger(__name__)

EMAIL_TAG, PHONE_TAG, NAME_TAG = "[EMAIL]", "[PHONE]", "[NAME]"
MIN_KEY_BYTES = 16
_PHONE_DIGITS = (7, 15)  # E.164 allows at most 15 digits

_EMAIL = r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])"
_SEP = r"[ .\-]"
_PHONE_INTL = rf"(?<![\w+])\+\d{{1,3}}(?:{_SEP}?\(?\d{{1,4}}\)?){{2,5}}(?![\w])"
_PHONE_NANP = (rf"(?<![\w+])(?:1{_SEP}?)?(?:\(\d{{3}}\){_SEP}?|\d{{3}}{_SEP})\d{{3}}{_SEP}\d{{4}}"
               r"(?![\w])(?![.\-]\d)")
_PHONE_NATIONAL = rf"(?<![\w.+])0\d{{1,4}}{_SEP}\d{{3,4}}{_SEP}?\d{{3,4}}(?![\w])(?![.\-]\d)"
_BASE_PATTERNS = (("email", _EMAIL), ("phone", _PHONE_INTL), ("phone", _PHONE_NANP),
                  ("phone", _PHONE_NATIONAL))


# --- pseudonyms ----------------------------------------------------------------------------

def _check_key(key: bytes) -> None:
    if not isinstance(key, (bytes, bytearray)):
        raise TypeError(f"key must be bytes (Settings.resolved_secret_key()), got {type(key).__name__}")
    if len(key) == 0:
        raise ConfigError("the pseudonymization key is empty: set AIVO_SECRET_KEY")


def _normalize_id(raw_id: str | int) -> str:
    """Ids are compared after trimming and Unicode NFC normalization ('Jos\u00e9' has two spellings)."""
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
        raise DataError(f"learner ids must be text or whole numbers, got {type(raw_id).__name__}")
    text = unicodedata.normalize("NFC", str(raw_id).strip())
    if not text:
        raise DataError("empty learner id cannot be pseudonymized")
    return text


def pseudonymize_learner_id(raw_id: str | int, *, key: bytes) -> str:
    """HMAC-SHA256(key, id) as 64 lowercase hex characters; stable for a given key."""
    _check_key(key)
    return hmac.new(bytes(key), _normalize_id(raw_id).encode("utf-8"), hashlib.sha256).hexdigest()


def pseudonymize_learner_ids(raw_ids: Iterable[str | int], *, key: bytes) -> list[str]:
    """Pseudonyms for many ids (each distinct id is hashed once)."""
    _check_key(key)
    if len(key) < MIN_KEY_BYTES:
        log.warning("the pseudonymization key is only %d bytes; use at least %d random bytes",
                    len(key), MIN_KEY_BYTES)
    raw_ids = list(raw_ids)
    cache = {raw: pseudonymize_learner_id(raw, key=key) for raw in dict.fromkeys(raw_ids)}
    return [cache[raw] for raw in raw_ids]


def pseudonymize_frame(frame: pd.DataFrame, *, key: bytes, column: str = "learner_id") -> pd.DataFrame:
    """A copy of `frame` whose `column` holds pseudonyms instead of raw ids."""
    if column not in frame.columns:
        raise DataError(f"no column {column!r} to pseudonymize; found: {', '.join(map(str, frame.columns))}")
    out = frame.copy()
    out[column] = pd.array(pseudonymize_learner_ids(frame[column].tolist(), key=key), dtype="string")
    return out


# --- names configuration --------------------------------------------------------------------

def load_pii_names(spec: str) -> tuple[str, ...]:
    """Names from `AIVO_PII_NAMES`: a comma list ("Maria Lopez, Sam") or `@path` to a file with
    one name per line (commas also split; lines starting with # are comments)."""
    spec = (spec or "").strip()
    if spec.startswith("@"):
        path = Path(spec[1:]).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"AIVO_PII_NAMES: cannot read the names file {path}: {exc.strerror}") from None
        lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
        parts = [p for line in lines for p in line.split(",")]
    else:
        parts = spec.split(",")
    names: dict[str, str] = {}
    for part in parts:
        name = " ".join(part.split())
        if not name:
            continue
        if len(name) < 2:
            raise ConfigError(f"AIVO_PII_NAMES: {name!r} is too short to be redacted safely (2+ characters)")
        names.setdefault(name.casefold(), name)
    return tuple(names.values())


# --- scrubbing ------------------------------------------------------------------------------

@lru_cache(maxsize=32)
def _compiled(names: tuple[str, ...]) -> re.Pattern[str]:
    """One alternation, scanned once: leftmost match wins, e-mail before phone before name (so a
    name inside an address is redacted as part of the address). Longer names first ("Mary Ann"
    before "Mary")."""
    parts = [f"(?P<{kind}{i}>{pattern})" for i, (kind, pattern) in enumerate(_BASE_PATTERNS)]
    words = [r"\s+".join(re.escape(w) for w in name.split()) for name in sorted(names, key=len, reverse=True)]
    if words:
        parts.append(rf"(?P<name>(?<!\w)(?:{'|'.join(words)})(?!\w))")
    return re.compile("|".join(parts), re.IGNORECASE)


def _scrub(text: str, pattern: re.Pattern[str], counts: Counter) -> str:
    def replace(match: re.Match[str]) -> str:
        kind = match.lastgroup.rstrip("0123456789")
        if kind == "phone":
            digits = sum(c.isdigit() for c in match.group())
            if not _PHONE_DIGITS[0] <= digits <= _PHONE_DIGITS[1]:
                return match.group()
        counts[kind] += 1
        return {"email": EMAIL_TAG, "phone": PHONE_TAG, "name": NAME_TAG}[kind]

    return pattern.sub(replace, text)


def _names_tuple(names: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(names, str):
        return load_pii_names(names)
    return tuple(" ".join(n.split()) for n in names if n and n.strip())


def scrub_pii(text: str, *, names: Sequence[str] | str = ()) -> str:
    """Redact e-mails, phone numbers and the given names (case-insensitive, whole words).

    `names` is a sequence of names or an `AIVO_PII_NAMES`-style spec (comma list or @file)."""
    if not isinstance(text, str):
        raise TypeError(f"scrub_pii takes text, got {type(text).__name__}")
    return _scrub(text, _compiled(_names_tuple(names)), Counter())


def free_text_columns(frame: pd.DataFrame) -> list[str]:
    """Text columns that are not part of the interaction schema (ids and labels are not free text)."""
    return [c for c in frame.columns if c not in CORE_COLUMNS and c != "accommodation"
            and (frame[c].dtype == object or isinstance(frame[c].dtype, pd.StringDtype))]


def scrub_frame(frame: pd.DataFrame, *, names: Sequence[str] | str = (),
                columns: Sequence[str] | None = None) -> pd.DataFrame:
    """A copy of `frame` with PII redacted in `columns` (default: `free_text_columns(frame)`).
    Missing values stay missing; each distinct text is scrubbed once."""
    columns = free_text_columns(frame) if columns is None else list(columns)
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise DataError(f"cannot scrub missing column(s): {', '.join(absent)}")
    pattern = _compiled(_names_tuple(names))
    counts: Counter = Counter()
    out = frame.copy()
    for column in columns:
        values = out[column]
        # Only text is scrubbed: numbers and true/false keep their type (an `extra` false stays false).
        if isinstance(values.dtype, pd.StringDtype):
            is_text = values.notna()
        else:
            is_text = values.map(lambda v: isinstance(v, str)).astype(bool)
        if not is_text.any():
            continue
        scrubbed = {}
        for text, repeats in values[is_text].value_counts(sort=False).items():
            found: Counter = Counter()
            scrubbed[text] = _scrub(text, pattern, found)
            counts.update({kind: n * repeats for kind, n in found.items()})
        if isinstance(values.dtype, pd.StringDtype):
            out[column] = values.map(scrubbed)
        else:
            out[column] = values.where(~is_text, values[is_text].map(scrubbed))
    if counts:
        log.info("redacted PII in %s: %s", ", ".join(columns),
                 ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())))
    return out
