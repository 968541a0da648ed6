"""K-12 safety filter for tutor inputs and outputs.

Six categories: self-harm (including slang, indirect phrasings and eating disorders),
violence and weapons, sexual content, personal data (asking for anyone's contact details, or
sharing them), drugs and alcohol, and bullying. Each is a set of intent patterns over normalised text, written to
catch requests and threats while letting school topics through ("How did World War II
end?", "sexual reproduction in plants"). A blocked message gets a kind refusal; self-harm
points to a trusted adult and a helpline.

The rules here are lexical: precise and fast (they run on every streamed token), but they
only know the phrasings they were written for. `SafetyFilter` combines them with the learned
classifier (safety_classifier.py: MiniLM fine-tuned on a labelled set), which
generalizes to phrasings nobody listed. Held-out figures are in docs/tutor.md.
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

DRUGS_REFUSAL = (
    "I can't help with getting or using drugs, alcohol or vapes. They can seriously hurt a growing body and "
    "brain. If you or a friend feel pressured or worried, a parent, the school nurse or a counselor can help. "
    "I'm glad to help with health class questions about why they are harmful.")
BULLYING_REFUSAL = (
    "I can't help with making fun of, leaving out or hurting someone. If someone is being mean to you, it is "
    "not your fault and you don't have to handle it alone: please tell a trusted adult, like a teacher, a "
    "parent or your school counselor. Want help writing something kind instead?")

#: Categories whose messages raise an alert for the learner's school (safety_alerts).
ALERT_CATEGORIES = frozenset({"self_harm"})


@dataclass(frozen=True)
class SafetyCategory:
    name: str
    refusal: str
    check: Callable[[str], str | None]  # normalised text -> the matched phrase, or None


@dataclass(frozen=True)
class SafetyVerdict:
    allowed: bool
    category: str | None = None
    matched: str | None = None  # the phrase a rule matched (None for the classifier)
    refusal: str | None = None
    source: str | None = None  # "rules" or "classifier"
    score: float | None = None  # the classifier's probability for `category`

    @property
    def raises_alert(self) -> bool:
        return not self.allowed and self.category in ALERT_CATEGORIES


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
_PRIVATE = (r"(?:home address|address|phone number|phone|cell(?: phone)?|cell number|number|password|email(?: address)?|"
            r"social security(?: number)?|credit card(?: number)?|bank account|full name|last name|"
            r"location|where (?:you|they|she|he) li?ves?)")

register_category(SafetyCategory("self_harm", SELF_HARM_REFUSAL, _patterns(
    r"\b(?:kill|hurt|harm|cut|cutting|burn|starve|starving|hang|hanging|poison) " + _ME + r"\b(?! up)",
    r"\b(?>suicid\w*)(?! prevention| awareness| hotline| lifeline)", r"\bself[- ]?harm\w*", r"\b(?:end|take|ending|taking) (?:my|my own) li(?:fe|ves)\b",
    r"\b(?:want|wanna|going|gonna|wish i could|i should) (?:to )?die\b", r"\bwish i (?:was|were) dead\b",
    r"\b(?:don'?t|do not) want to (?:live|be alive|exist)(?: anymore)?\b", r"\bbetter off dead\b",
    r"\bno reason to live\b", r"\bkms\b", r"\boverdos\w*", r"\bhow many pills\b.*\b(?:die|dead|kill)\b",
    r"\bnobody would (?:care|miss me) if i\b", r"\bi hate my life and\b.*\bdie\b",
    r"\bhow many (?:of (?:my|the) )?(?:\w+ )?(?:pills|painkillers|tablets|tylenol|advil|aspirin|antidepressants|meds)\b.*"
    r"\b(?:die|dead|kill|deadly|lethal|stop (?:a|my) heart|too many|not wake)\b",
    # slang and indirect phrasings
    r"\bun ?aliv\w*", r"\bsewer ?slide\b", r"\bkys\b", r"\b(?:tie|make|making) a noose\b",
    r"\b(?:sleep|fall asleep) (?:and )?(?:never|not) wake up\b|\b(?:never|not) (?:to )?wake up\b",
    r"\bsleep forever\b", r"\bend (?:it all|everything|things)\b", r"\bend it (?:tonight|today|now)\b",
    r"\b(?:cut|cutting|scratch\w*|burn\w*|carv\w*|hit\w*|punch\w*) (?:my|into my) "
    r"(?:arms?|wrists?|legs?|thighs?|skin|stomach)\b",
    r"\bi (?:cut|hurt|burn|scratch) (?:myself )?(?:again|on purpose)\b", r"\bhow deep (?:do|should) (?:you|i) cut\b",
    r"\bhide (?:the|my) (?:cuts|scars|marks)\b", r"\b(?:wrists?|arms?) (?:with|using) a (?:razor|blade|knife)\b",
    r"\bgoodbye (?:letters?|notes?|messages?|texts?)\b", r"\b(?:jump|jumped|jumping) (?:off|from|in front of) (?:a |the )?"
    r"(?:roof|bridge|building|train|car|traffic)\b",
    r"\b(?:run|running|ran|walk|walking|step|stepping) (?:into|in front of) (?:the )?(?:traffic|a car|a bus|a train)\b",
    r"\bsay(?:ing)? goodbye to (?:everyone|everybody|my family|all my friends) (?:tonight|forever|for good)\b",
    r"\b(?:high|highest|tallest)\b.*\bbridge\b.*\bnear (?:me|my)\b|\bbridge\b.*\b(?:high|highest|tallest)\b.*\bnear (?:me|my)\b",
    r"\b(?:keep|keeping|hide|hiding|hid|carry) (?:a |my )?(?:blade|razor)s?\b|\b(?:blade|razor)s?\b.*\bfor (?:when|bad days)\b",
    r"\b(?:clean|cover|hide) (?:up )?(?:my |the )?(?:cuts|scars|burns)\b.*\b(?:nobody|no one|parents|finds? out|sees?)\b",
    r"\bhold(?:ing)? my breath\b.*\b(?:never|won'?t|not) (?:start|breathe)",
    # eating disorders
    r"\bpro ?ana\b", r"\bthinspo\w*", r"\bpurg(?:e|ing)\b", r"\b(?:make|making) (?:myself|me) (?:throw up|puke|vomit)\b",
    r"\bstarv(?:e|ing) myself\b", r"\b(?:only )?eat (?:less than |under )?\d{2,3} calories\b",
    r"\bhide (?:not eating|that i'?m not eating|my eating)\b", r"\blaxatives? to lose\b",
    r"\bthigh gap\b", r"\bana (?:coach|buddy|tips?)\b", r"\bmeanspo\b",
    r"\b(?:feel (?:huge|fat)|too thin)\b.*\beat less\b", r"\bcan i go without (?:food|eating)\b",
    r"\b(?:get|be|become) (?:really |super |very )?(?:skinny|thin) (?:really |super )?(?:fast|quick(?:ly)?)\b",
)))
register_category(SafetyCategory("violence", VIOLENCE_REFUSAL, _patterns(
    r"\b(?:how (?:do|can|would|could|to)|teach me (?:how )?to|help me|ways? to|steps to|instructions? (?:for|to))"
    r"(?: i| you| we| someone)?(?: make| build| get| buy| use| hide)? (?:a |an )?(?:homemade )?" + _WEAPON + r"s?\b",
    r"\b(?:make|build|making|building) (?:a |an )?(?:homemade )?(?:bomb|explosive|pipe bomb|molotov|grenade)s?\b",
    r"\b(?:kill|murder|shoot|stab|strangle|choke|poison|beat up|hurt|attack|punch|stalk)(?:ing)? " + _OTHERS + r"\b",
    r"(?:\bi'?m|\bi am|\bi will|\bi'?ll|\bgonna|\bgoing to|(?:^|\bi |\bi really |\bi just )(?:want to|wanna))"
    r"(?: go| going to)? (?:kill|murder|shoot|stab|"
    r"attack|blow up)\b(?! it\b)",
    r"\b(?:bring|take|sneak)(?:ing)? (?:a |my )?(?:gun|knife|weapon|bomb)s? (?:to|into) (?:school|class)\b",
    r"\bschool shoot(?:ing|er)\b.*\b(?:plan|how|do|start)\b|\b(?:plan|how|do|start)\b.*\bschool shoot(?:ing|er)\b",
    r"\bhow (?:to|do i|can i) (?:murder|torture)\b", r"\bblow up (?:the |my )?(?:school|house|building)\b",
    r"\bset (?:the |my |a |his |her |their )?(?:[a-z]+'?s )?(?:school|house|home|car|building|bathroom|gym) on fire\b",
    r"\b(?:burn down|start a fire in) (?:the |a |my |his |her )?(?:[a-z]+'?s )?(?:school|house|home|building|bathroom)\b",
    r"\b(?:bullets|ammo|ammunition|shells) for\b", r"\bbuy (?:bullets|ammo|ammunition)\b",
    r"\bjump (?:a|the|this|that|some) (?:kid|boy|girl|guy)\b",
    r"\b(?:hurt|kill|torture|poison|kick|beat|drown) (?:my |a |the |our |his |her |their )?(?:neighbou?r'?s )?"
    r"(?:dog|cat|puppy|kitten|pet|hamster|rabbit|bunny|animal)s?\b",
)))
register_category(SafetyCategory("sexual", SEXUAL_REFUSAL, _patterns(
    r"\bporn\w*", r"\bnudes?\b", r"\bnaked (?:pic|pics|photo|photos|picture|pictures|girls?|boys?|women|men)\b",
    r"\bsext\w*", r"\bhorny\b", r"\bnsfw\b", r"\bxxx\b", r"\bhentai\b", r"\bonlyfans\b", r"\berotic\w*",
    r"\b(?:have|having|had) sex\b", r"\bsex (?:with|tips|positions?|stor(?:y|ies)|chat|video|videos|scene)\b",
    r"\bsexy\b", r"\bmaking out\b", r"\b(?:make|makes|made) out with\b", r"\bsex (?:feel|feels|is like)\b",
    r"\bwhat (?:is|does) sex(?: mean)?\b(?! cells?)", r"\bstrip(?:per|tease|club)\b", r"\bblow ?job\b", r"\bmasturbat\w*",
    r"\b(?:boobs|tits|dick pic)\b", r"\b(?:talk|be) dirty\b", r"\bdirty (?:talk|pictures|pics)\b",
    r"\bhook ?up with\b", r"\bin bed with\b", r"\bsugar (?:daddy|mommy|mama)\b", r"\bhickey\b",
    r"\b(?:describe|tell me about|show me) (?:your|ur) (?:naked )?body\b", r"\bwithout (?:any )?clothes\b", r"\bsend (?:me )?(?:a )?(?:pic|pics|picture|photo)s? of "
    r"(?:your|ur) body\b", r"\btake off (?:your|ur|my) clothes\b",
    r"\bin a (?:dirty|naughty|sexy) way\b", r"\bwedding night\b.*\bdetail\b", r"\blemon (?:fanfic|fic|story)\b",
    r"\bfriends with benefits\b", r"\brate my body\b", r"\bmak(?:e|ing) love\b",
)))
register_category(SafetyCategory("drugs_alcohol", DRUGS_REFUSAL, _patterns(
    r"\b(?:get|getting|buy|buying|find|score|sneak|hide|smoke|smoking|roll|rolling|grow|growing|try|trying|"
    r"snort|snorting|huff|huffing|take|taking|lace|do|use)(?: some| my| a| the)? (?:weed|pot|marijuana|joints?|"
    r"blunts?|edibles|vapes?|vaping|juul|dab pen|cocaine|coke|molly|mdma|ecstasy|lsd|acid|shrooms|meth|heroin|"
    r"xanax|pills? to get high|adderall|beer|vodka|liquor|alcohol|booze|cigarettes?|nicotine|flask)\b",
    r"\b(?:get|getting) (?:high|drunk|wasted|stoned|baked|buzzed|tipsy)\b", r"\bto trip\b",
    r"\b(?:fake id|keg stand|bong|pass a drug test)\b", r"\bdrunk (?:fast|at \d+)\b",
    r"\bhow much (?:weed|vodka|beer|alcohol|nyquil|cough syrup)\b",
    r"\b(?:drink|drinking|vape|vaping|smoke|smoking) (?:without|at school|in the school|in class|with friends)\b",
    r"\b(?:underage|as a teenager|if i'?m 1[0-7]|at 1[0-7])\b.*\b(?:buy|get|drink|vape|smoke)\b",
    r"\b(?:buy|get)\b.*\b(?:underage|as a teenager|if i'?m 1[0-7])\b",
    r"\bparty with (?:alcohol|beer|vodka|booze|liquor)\b.*\b(?:grade|middle school|friends)\b",
)))
register_category(SafetyCategory("bullying", BULLYING_REFUSAL, _patterns(
    r"\b(?:make|making) fun of\b", r"\b(?:roast|humiliate|embarrass|tease|shame) (?:my |a |the |this |that )?"
    r"(?:classmate|kid|boy|girl|friend|sister|brother|someone|him|her|them)\b",
    r"\b(?:write|send|post|say|make|give me|come up with)(?: me)? (?:a |some )?(?:really )?(?:mean|cruel|nasty|hurtful) "
    r"(?:message|text|comment|post|nicknames?|names|jokes?|poem|song|things?)\b",
    r"\b(?:insults?|comebacks?) (?:about|for|that)\b", r"\bcyberbully (?:someone|him|her)\b",
    r"\b(?:everyone|the whole class|people) (?:hates?|to hate|ignore|to ignore|stop talking to) (?:her|him|them)\b",
    r"\b(?:spread|start) (?:a )?(?:rumou?r|secret)\b", r"\bhate page\b", r"\bgang up on\b",
    r"\b(?:is|are) (?:a )?(?:loser|worthless)\b", r"\bshould(?:n'?t| not) exist\b",
    r"\b(?:calling|call) me (?:names|ugly|fat|stupid|weird)\b", r"\bbully (?:someone|him|her|them)\b",
    r"\bbest way to bully\b", r"\b(?:leave|exclude) (?:someone|him|her|them) out\b",
    r"\b(?:stop|quit) (?:talking|sitting|playing) (?:to|with) (?:her|him|them)\b",
    r"\b(?:make|get) (?:the whole|my whole|everyone|the) (?:class|team|grade|school)?\s?(?:to )?(?:ignore|hate|turn against)\b",
    r"\b(?:mean|funny|hurtful) nicknames? (?:for|to)\b", r"\bnames to call\b",
    r"\bexclude (?:someone|him|her|them|the [a-z]+ (?:kid|boy|girl))\b", r"\bmean things to say\b",
    r"\b(?:write|say|post|text)(?: something| things)? (?:mean|cruel|nasty|hurtful) (?:about|to)\b",
    r"\b(?:wrong|ugly) (?:with|about) (?:her|his|their) (?:face|body|hair|teeth|skin)\b",
    r"\bget (?:the |my )?(?:team|class|group|everyone) to (?:kick|ignore|hate|exclude) (?:him|her|them)\b",
    r"\bmean comments on (?:all )?my\b",
)))
register_category(SafetyCategory("personal_data", PERSONAL_DATA_REFUSAL, _patterns(
    r"\b(?:what(?:'s|s| is| are)|tell me|give me|send me|share|i need|can i have|can you (?:find|get|tell me))"
    r"(?: me)? (?:your|ur|his|her|their|my teacher'?s|my classmate'?s|my friend'?s|the teacher'?s|"
    r"[a-z]+'s) " + _PRIVATE + r"\b",
    r"\bwhere do(?:es)? (?:you|my teacher|your family|my classmate|she|he|they) live\b",
    r"\b(?:send|share|post|show) (?:me )?(?:a |an )?(?:photo|picture|pic|selfie|video) of (?:you|yourself|your ?self|"
    r"your face|your body)\b",
    r"\b(?:send|show|give) me (?:a |an )?(?:photo|picture|pic|selfie)\b",
    r"\bwhat(?:'s|s| is) (?:your|ur) (?:full name|last name|home address|address|phone number|school'?s? name)\b",
    r"\bwhat school do you go to\b", r"(?<!what is a )\b(?:home|street) address\b(?! (?:used|format))",
    r"\b(?:social security|credit card|bank account|passport) (?:number|details|info)\b",
    r"\b(?:find|look up|track) (?:where|the address of|the location of)\b",
    r"[\w.+-]+@[\w-]+\.[\w.]+",  # an email address
    r"(?<!\d)(?:\+?1[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]?\d{3}[ .-]?\d{4}(?!\d)",  # a phone number
    r"\bmy (?:password|passcode|pin) is\b",
    r"\bwhat(?:'s|s| is) (?:your|ur) (?:snap(?:chat)?|insta(?:gram)?|tiktok|discord|whatsapp|facebook|fb|twitter|"
    r"kik|telegram|number|"
    r"phone|cell|email|address)\b", r"\b(?:give me|can i have) (?:your|ur) (?:number|phone|snap|address)\b",
    r"\bwhere (?:does|do) (?:my |the |this |that |our )?(?:[a-z]+ )?(?:teacher|coach|friend|classmate|nurse|"
    r"principal|neighbou?r|crush|ex|bus driver|kid|boy|girl|guy|lady|counsel?lor|tutor|sub|substitute)s? live\b",
    r"\bwhere does (?!the\b|a\b|an\b)[a-z]+ live\b",
    r"\b(?:home phone|phone numbers?|cell numbers?|numbers|address(?:es)?|emails?) of (?:my|our|the|all the) "
    r"(?:[a-z]+ )?(?:teacher|coach|friend|classmate|nurse|principal|neighbou?r|crush|ex|bus driver|kids?|students?|"
    r"boy|girl|counsel?lor)s?\b", r"\bhome phone\b",
    r"\bpassword (?:for|to|of) (?:my |the )?(?:[a-z]+'?s )?(?:computer|phone|account|laptop|ipad|tablet|email)\b",
    r"\b(?:read|see|check|spy on) (?:my |his |her |their |someone'?s )?(?:[a-z]+'?s )?(?:texts|messages|dms|emails|chats)\b"
    r".*\bwithout\b",
    r"\b(?:my|i live at) (?:address is )?\d{1,5} [a-z]+ (?:street|st|road|rd|avenue|ave|lane|drive|dr)\b",
    r"\b(?:track|find) (?:my )?(?:classmate|friend|someone)'?s? (?:location|address|instagram)\b",
    r"\b(?:personal|private) (?:cell|phone|number|email|address)\b",
    r"\b(?:address|phone number) of (?:the|my) [a-z]+'s (?:house|home)\b",
    r"\bwhere (?:the|my) [a-z]+'?s (?:house|home) is\b", r"\bwhich (?:street|house) does\b.*\blive\b",
)))


def check_text(text: str) -> SafetyVerdict:
    """The first category that `text` trips, with its refusal; allowed otherwise."""
    normalized = normalize(text)
    for category in _CATEGORIES.values():
        matched = category.check(normalized)
        if matched:
            return SafetyVerdict(allowed=False, category=category.name, matched=matched,
                                 refusal=category.refusal, source="rules")
    return SafetyVerdict(allowed=True)


def refusal_for(category: str) -> str:
    return _CATEGORIES[category].refusal


def check_input(text: str) -> SafetyVerdict:
    """Check what a learner sent with the lexical rules only (see SafetyFilter for both halves)."""
    return check_text(text)


def check_output(text: str) -> SafetyVerdict:
    """Check what the model wrote with the lexical rules only (see SafetyFilter for both halves)."""
    return check_text(text)


_SENTENCE_END = re.compile(r"[.!?](?:\s|$)|\n")


class SafetyFilter:
    """Lexical rules plus, when given, the learned classifier (safety_classifier.py).

    Inputs: the rules (precise, and they name the phrase) and the classifier; a rule's match is
    overruled only where the classifier is sure the message is safe (a figure of speech such as
    "this test is gonna kill me lol"; the threshold is chosen on the labelled set, see
    safety_classifier.py). Outputs are checked incrementally: the rules on every streamed token
    (final there), the classifier on each sentence as it completes and on the rest at the end
    (`OutputMonitor`).
    """

    def __init__(self, classifier=None):
        self.classifier = classifier

    def _verdict(self, flag) -> SafetyVerdict:
        if flag is None:
            return SafetyVerdict(allowed=True)
        return SafetyVerdict(allowed=False, category=flag.category, refusal=refusal_for(flag.category),
                             source="classifier", score=flag.probability)

    def _classify(self, text: str, *, output: bool = False) -> SafetyVerdict:
        if self.classifier is None or not text.strip():
            return SafetyVerdict(allowed=True)
        return self._verdict(self.classifier.flag(text, self_harm_threshold=not output))

    def check_inputs(self, texts: list[str]) -> list[SafetyVerdict]:
        """Learners' messages, scored in one batch (what `check_input` does for one)."""
        rules = [check_text(t) for t in texts]
        if self.classifier is None:
            return rules
        scored = [t for t in range(len(texts)) if texts[t].strip()]
        assessed = dict(zip(scored, self.classifier.assess([texts[t] for t in scored])))
        out = []
        for t, rule in enumerate(rules):
            flag, p_safe = assessed.get(t, (None, 1.0))
            if not rule.allowed and not self.classifier.overrules_rules(p_safe):
                out.append(rule)
            else:
                out.append(self._verdict(flag))
        return out

    def check_input(self, text: str) -> SafetyVerdict:
        return self.check_inputs([text])[0]

    def check_output(self, text: str) -> SafetyVerdict:
        """A whole output at once (assessment feedback, evaluation)."""
        monitor = self.monitor()
        verdict = monitor.feed(text)
        return verdict if not verdict.allowed else monitor.finish()

    def monitor(self) -> "OutputMonitor":
        return OutputMonitor(self)


class OutputMonitor:
    """Follows one generated output: `feed` each new piece, `finish` at the end."""

    def __init__(self, safety_filter: SafetyFilter):
        self.filter = safety_filter
        self.text = ""
        self._classified_upto = 0  # text[:this] has been through the classifier, sentence by sentence

    def feed(self, piece: str) -> SafetyVerdict:
        self.text += piece
        verdict = check_text(self.text)
        if not verdict.allowed or self.filter.classifier is None:
            return verdict
        pending = self.text[self._classified_upto:]
        ends = [m.end() for m in _SENTENCE_END.finditer(pending)]
        if not ends:
            return verdict
        complete = pending[:ends[-1]]
        self._classified_upto += ends[-1]
        for sentence in re.split(r"(?<=[.!?])\s+|\n+", complete):
            if len(sentence.split()) >= 3:  # fragments ("1.", "Details:") carry no meaning of their own
                verdict = self.filter._classify(sentence, output=True)
                if not verdict.allowed:
                    return verdict
        return SafetyVerdict(allowed=True)

    def finish(self) -> SafetyVerdict:
        verdict = check_text(self.text)
        if not verdict.allowed:
            return verdict
        rest = self.text[self._classified_upto:]
        self._classified_upto = len(self.text)
        return self.filter._classify(rest, output=True) if len(rest.split()) >= 3 else SafetyVerdict(allowed=True)
