"""K-12 safety filter for tutor inputs and outputs.

Four categories: self-harm, violence, sexual content, and personal data (asking for it, or
sharing contact details). Each is a set of intent patterns over normalised text, written to
catch requests and threats while letting school topics through ("How did World War II
end?", "sexual reproduction in plants"). A blocked message gets a kind refusal; self-harm
points to a trusted adult and a helpline.

This is a lexical filter: precise and fast (it also runs on every streamed token), but it
only knows the phrasings it was written for. Its recall on the held-out half of the
evaluation set is reported in docs/tutor.md. A learned classifier can be registered as
another category checker through `register_category`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

SELF_HARM_REFUSAL = (
    "I'm really sorry you're feeling this way. You matter, and you don't have to handle this alone. "
    "Please talk to a trusted adult right now, like a parent, a teacher or your school counselor. "
    "In the US you can call or text 988 (Suicide & Crisis Lifeline) any time, day or night; in other "
    "countries, find a free helpline at findahelpline.com. If you are in danger right now, call your "
    "local emergency number (911 in the US).")
VIOLENCE_REFUSAL = (
    "I can't help with hurting anyone or with weapons. If someone might be in danger, please tell a "
    "trusted adult right away. I'm happy to help with your schoolwork, like a history or science question.")
SEXUAL_REFUSAL = (
    "That's not something I can talk about here. I'm your learning helper, so let's stick to school "
    "topics. If you have questions about your body or health, a parent, the school nurse or a counselor "
    "is a great person to ask.")
PERSONAL_DATA_REFUSAL = (
    "For your safety, I never ask for or share personal details like home addresses, phone numbers, "
    "passwords or photos. Let's keep those private. What would you like to learn about?")


@dataclass(frozen=True)
class SafetyCategory:
    name: str
    refusal: str
    check: Callable[[str], str | None]  # normalised text -> the matched phrase, or None


@dataclass(frozen=True)
class SafetyVerdict:
    allowed: bool
    category: str | None = None
    matched: str | None = None
    refusal: str | None = None


_CATEGORIES: dict[str, SafetyCategory] = {}


def register_category(category: SafetyCategory) -> None:
    if category.name in _CATEGORIES:
        raise ValueError(f"safety category {category.name!r} is already registered")
    _CATEGORIES[category.name] = category


def categories() -> list[str]:
    return list(_CATEGORIES)


# "@" stays "@" so that email addresses survive normalisation
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "$": "s"})


def normalize(text: str) -> str:
    """Lowercase, ASCII apostrophes, de-leeted words, single spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u200b", "")
    # digits inside letter runs are leetspeak ("k1ll"); whole numbers stay numbers
    text = re.sub(r"\b(?=\w*[a-z])(?=\w*[013457$])[\w$]+\b", lambda m: m.group(0).translate(_LEET), text)
    text = re.sub(r"[^a-z0-9'@.+\- ]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def _patterns(*patterns: str) -> Callable[[str], str | None]:
    compiled = [re.compile(p) for p in patterns]

    def check(text: str) -> str | None:
        for pattern in compiled:
            match = pattern.search(text)
            if match:
                return match.group(0)
        return None

    return check


_ME = r"(?:myself|my self|my own life|me)"
_OTHERS = (r"(?:him|her|them|someone|somebody|anyone|everyone|people|a person|my (?:teacher|brother|sister|"
           r"mom|mum|dad|parents?|classmates?|friends?|neighbou?r|family|cousin)|the (?:teacher|class|kids?)|"
           r"(?:this|that) (?:kid|boy|girl|guy)|my whole class|kids at school)")
_WEAPON = r"(?:bomb|explosive|pipe bomb|molotov|grenade|gun|rifle|weapon|poison|napalm|thermite)"
_PRIVATE = (r"(?:home address|address|phone number|phone|cell number|number|password|email(?: address)?|"
            r"social security(?: number)?|credit card(?: number)?|bank account|full name|last name|"
            r"location|where (?:you|they|she|he) li?ves?)")

register_category(SafetyCategory("self_harm", SELF_HARM_REFUSAL, _patterns(
    r"\b(?:kill|hurt|harm|cut|cutting|burn|starve|starving|hang|hanging|poison) " + _ME + r"\b(?! up)",
    r"\bsuicid\w*", r"\bself[- ]?harm\w*", r"\b(?:end|take|ending|taking) (?:my|my own) li(?:fe|ves)\b",
    r"\b(?:want|wanna|going|gonna|wish i could|i should) (?:to )?die\b", r"\bwish i (?:was|were) dead\b",
    r"\b(?:don'?t|do not) want to (?:live|be alive|exist)(?: anymore)?\b", r"\bbetter off dead\b",
    r"\bno reason to live\b", r"\bkms\b", r"\boverdos\w*", r"\bhow many pills\b.*\b(?:die|dead|kill)\b",
    r"\bnobody would (?:care|miss me) if i\b", r"\bi hate my life and\b.*\bdie\b",
)))
register_category(SafetyCategory("violence", VIOLENCE_REFUSAL, _patterns(
    r"\b(?:how (?:do|can|would|could|to)|teach me (?:how )?to|help me|ways? to|steps to|instructions? (?:for|to))"
    r"(?: i| you| we| someone)?(?: make| build| get| buy| use| hide)? (?:a |an )?(?:homemade )?" + _WEAPON + r"s?\b",
    r"\b(?:make|build|making|building) (?:a |an )?(?:homemade )?(?:bomb|explosive|pipe bomb|molotov|grenade)s?\b",
    r"\b(?:kill|murder|shoot|stab|strangle|choke|poison|beat up|hurt|attack|punch|stalk)(?:ing)? " + _OTHERS + r"\b",
    r"\b(?:i'?m|i am|i will|i'?ll|gonna|going to|want to|wanna)(?: go| going to)? (?:kill|murder|shoot|stab|"
    r"attack|blow up)\b",
    r"\b(?:bring|take|sneak)(?:ing)? (?:a |my )?(?:gun|knife|weapon|bomb)s? (?:to|into) (?:school|class)\b",
    r"\bschool shoot(?:ing|er)\b.*\b(?:plan|how|do|start)\b|\b(?:plan|how|do|start)\b.*\bschool shoot(?:ing|er)\b",
    r"\bhow (?:to|do i|can i) (?:murder|torture)\b", r"\bblow up (?:the |my )?(?:school|house|building)\b",
)))
register_category(SafetyCategory("sexual", SEXUAL_REFUSAL, _patterns(
    r"\bporn\w*", r"\bnudes?\b", r"\bnaked (?:pic|pics|photo|photos|picture|pictures|girls?|boys?|women|men)\b",
    r"\bsext\w*", r"\bhorny\b", r"\bnsfw\b", r"\bxxx\b", r"\bhentai\b", r"\bonlyfans\b", r"\berotic\w*",
    r"\b(?:have|having|had) sex\b", r"\bsex (?:with|tips|positions?|stor(?:y|ies)|chat|video|videos|scene)\b",
    r"\bsexy\b", r"\bmaking out\b", r"\b(?:make|makes|made) out with\b", r"\bsex (?:feel|feels|is like)\b",
    r"\bwhat (?:is|does) sex(?: mean)?\b(?! cells?)", r"\bstrip(?:per|tease|club)\b", r"\bblow ?job\b", r"\bmasturbat\w*",
    r"\b(?:boobs|tits|dick pic)\b", r"\b(?:talk|be) dirty\b", r"\bdirty (?:talk|pictures|pics)\b",
    r"\bhook ?up with\b", r"\bin bed with\b", r"\bsend (?:me )?(?:a )?(?:pic|pics|picture|photo)s? of "
    r"(?:your|ur) body\b", r"\btake off (?:your|ur|my) clothes\b",
)))
register_category(SafetyCategory("personal_data", PERSONAL_DATA_REFUSAL, _patterns(
    r"\b(?:what(?:'s|s| is| are)|tell me|give me|send me|share|i need|can i have|can you (?:find|get|tell me))"
    r"(?: me)? (?:your|ur|his|her|their|my teacher'?s|my classmate'?s|my friend'?s|the teacher'?s|"
    r"[a-z]+'s) " + _PRIVATE + r"\b",
    r"\bwhere do(?:es)? (?:you|my teacher|your family|my classmate|she|he|they) live\b",
    r"\b(?:send|share|post|show) (?:me )?(?:a |an )?(?:photo|picture|pic|selfie|video) of (?:you|yourself|your ?self)\b",
    r"\b(?:send|show|give) me (?:a |an )?(?:photo|picture|pic|selfie)\b",
    r"\bwhat(?:'s|s| is) (?:your|ur) (?:full name|last name|home address|address|phone number|school'?s? name)\b",
    r"\bwhat school do you go to\b", r"\b(?:home|street) address\b",
    r"\b(?:social security|credit card|bank account|passport) (?:number|details|info)\b",
    r"\b(?:find|look up|track) (?:where|the address of|the location of)\b",
    r"[\w.+-]+@[\w-]+\.[\w.]+",  # an email address
    r"(?<!\d)(?:\+?1[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]?\d{3}[ .-]?\d{4}(?!\d)",  # a phone number
    r"\bmy (?:password|passcode|pin) is\b",
)))


def check_text(text: str) -> SafetyVerdict:
    """The first category that `text` trips, with its refusal; allowed otherwise."""
    normalized = normalize(text)
    for category in _CATEGORIES.values():
        matched = category.check(normalized)
        if matched:
            return SafetyVerdict(allowed=False, category=category.name, matched=matched,
                                 refusal=category.refusal)
    return SafetyVerdict(allowed=True)


def check_input(text: str) -> SafetyVerdict:
    """Check what a learner sent, before anything is generated."""
    return check_text(text)


def check_output(text: str) -> SafetyVerdict:
    """Check what the model wrote, before (or while) it reaches the learner."""
    return check_text(text)
