"""The deterministic rule-based extractor, used whenever the LLM path fails.

`extract_cards` is a pure function of the messages: no randomness, no clock, no locale,
no dependence on hash/set iteration order. It never raises on any text and runs in time
linear in the text it examines (at most `MAX_SCAN_CHARS_PER_MESSAGE` characters of each
message and `MAX_SCAN_CHARS_TOTAL` overall; the summary still counts every message).

Output: ``[]`` for no messages, otherwise one ``summary`` card followed by the rule cards
(task, decision, question, fact) in message order, deduplicated by kind + normalized
title. The rules are English; other languages yield only the summary.

The summary is extractive: its title is the first sentence (of at least three words when
there is one) of the first user message with text, else of the first assistant message,
else "Conversation summary"; its body is that sentence plus the message counts and the
counts of the cards found; its sources are all the message ids.

Text inside fenced code blocks (```` ``` ```` / ``~~~``) and Markdown table rows is never
turned into cards. Each non-code line is a unit of its own (chat messages use line breaks
as separators) and is split into sentences at ``.``, ``!``, ``?`` or ``…`` followed by
whitespace, so URLs, decimals and ``a?b`` do not split. Each sentence gets at most one
kind, tried in this order:

* task: an unchecked Markdown checkbox item (``- [ ] ...``), or a sentence containing
  ``TODO``/``to-do``, "action item", "we need to", "remember to"/"don't forget to",
  "let's ..." (but not "let's see/say"), starting with "please" (but not "please note",
  "please let me know", "please feel free"), "should ... by <time>" ("by Friday",
  "by tomorrow", "by end of", "by 5pm", ...); and, in user messages only, "I will"/"I'll"
  (from the assistant these are conversational filler such as "I'll explain").
* question (checked before decisions and tasks other than checkboxes): a sentence of at
  least two words ending with ``?`` (closing quotes/brackets allowed), from either role.
* decision: "we decided", "decided to", "decision:", "let's go with", "we will/we'll go
  with", "agreed", "we will use"/"we'll use".
* fact (at most `MAX_FACTS`, conservative): a declarative sentence of 3 to 40 words, at
  least two of them with letters, that contains a digit (outside URLs), "my name is",
  "deadline", "budget", "due on/by" or a month name (user messages; from the assistant
  only the keyword forms, not bare digits). When fewer than `MAX_FACTS` of those exist,
  short hedge-free "... is/are ..." statements from the user fill the remaining slots.

Per-kind caps (`MAX_TASKS`, `MAX_DECISIONS`, `MAX_QUESTIONS`, `MAX_FACTS`) keep the
total, summary included, within MAX_CARDS; the earliest cards of each kind win. A card
repeated in several messages is kept once, with all those messages as its sources.

Titles are single-line (whitespace collapsed, control characters removed), non-empty,
at most MAX_TITLE_CHARS (cut on a word boundary with "…"); bodies hold the whole
sentence, at most MAX_BODY_CHARS. NUL (which PostgreSQL text cannot store), other
control characters and lone surrogates never appear in titles or bodies.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from glia_extractor.extraction.types import (
    MAX_BODY_CHARS,
    MAX_CARDS,
    MAX_TITLE_CHARS,
    CardDraft,
    CardKind,
    SourceMessage,
)

MAX_SCAN_CHARS_PER_MESSAGE = 20_000
MAX_SCAN_CHARS_TOTAL = 400_000

MAX_TASKS = 15
MAX_DECISIONS = 10
MAX_QUESTIONS = 15
MAX_FACTS = 5
assert 1 + MAX_TASKS + MAX_DECISIONS + MAX_QUESTIONS + MAX_FACTS <= MAX_CARDS

SUMMARY_TITLE_CHARS = 80
SUMMARY_SENTENCE_CHARS = 500
DEFAULT_SUMMARY_TITLE = "Conversation summary"
ELLIPSIS = "…"

# --- text cleaning -------------------------------------------------------------------

# Control characters (Cc, NUL included: PostgreSQL text cannot store it) and lone
# surrogates (not encodable as UTF-8) become spaces; tab, newline, carriage return and the
# Unicode line separators are whitespace, collapsed by str.split() anyway.
_UNSAFE_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def _clean_line(text: str) -> str:
    """One line: unsafe characters removed, all whitespace runs collapsed to one space."""
    return " ".join(_UNSAFE_CHARS.sub(" ", text).split())


def _truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, on a word boundary when reasonable."""
    if len(text) <= limit:
        return text
    cut = text[: limit - len(ELLIPSIS)]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip() + ELLIPSIS


def _has_alnum(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


# --- turning a message into sentences --------------------------------------------------

_FENCE = re.compile(r"(`{3,}|~{3,})")
_HEADING = re.compile(r"#{1,6}(?:\s+|$)")
_QUOTE = re.compile(r"(?:>\s?)+")
_LIST_ITEM = re.compile(r"(?:[-*+•]|\d{1,9}[.)])\s+")
_CHECKBOX = re.compile(r"\[([ xX])\]\s*")
_RULE_LINE = re.compile(r"(?:[-*_=]\s*){3,}")
# Sentence ends: ., !, ? or … (optionally followed by closing quotes/brackets), then
# whitespace. Fixed-width lookbehinds, so each position is examined a constant time.
_CLOSERS = "\"'\u201d\u2019\u00bb)]"  # closing quotes and brackets after a sentence end
_END = "[.!?\u2026]"
_CLOSE = "[\"'\u201d\u2019\u00bb)\\]]"
_SENTENCE_BREAK = re.compile(f"(?:(?<={_END})|(?<={_END}{_CLOSE})|(?<={_END}{_CLOSE}{_CLOSE}))\\s+")


@dataclass(frozen=True, slots=True)
class _Sentence:
    text: str  # cleaned: single line, collapsed whitespace
    checkbox: bool  # an unchecked "- [ ]" list item: a task whatever it says


def _prose_lines(text: str) -> Iterator[tuple[str, bool]]:
    """The non-code lines of a Markdown-ish text, Markdown prefixes removed, with whether
    each is an unchecked checkbox item."""
    fence: str | None = None
    for raw in text.splitlines():
        stripped = raw.strip()
        fence_match = _FENCE.match(stripped)
        if fence is not None:
            # Inside a fenced block: only a fence of the same character, at least as long
            # and with nothing after it, closes it.
            if (
                fence_match is not None
                and fence_match.group(1)[0] == fence[0]
                and len(fence_match.group(1)) >= len(fence)
                and not stripped[fence_match.end() :].strip()
            ):
                fence = None
            continue
        if fence_match is not None:
            fence = fence_match.group(1)
            continue
        if not stripped or stripped.startswith("|") or _RULE_LINE.fullmatch(stripped):
            continue
        line = stripped
        quote = _QUOTE.match(line)
        if quote is not None:
            line = line[quote.end() :]
        heading = _HEADING.match(line)
        if heading is not None:
            line = line[heading.end() :].rstrip("#").rstrip()
        checkbox = False
        item = _LIST_ITEM.match(line)
        if item is not None:
            line = line[item.end() :]
            box = _CHECKBOX.match(line)
            if box is not None:
                checkbox = box.group(1) == " "
                line = line[box.end() :]
        elif line.startswith("[ ]") or line.startswith("[x]") or line.startswith("[X]"):
            checkbox = line[1] == " "
            line = line[3:]
        if line.strip():
            yield line, checkbox


def _sentences(text: str) -> Iterator[_Sentence]:
    for line, checkbox in _prose_lines(text):
        if checkbox:
            cleaned = _clean_line(line)
            if cleaned:
                yield _Sentence(cleaned, checkbox=True)
            continue
        for part in _SENTENCE_BREAK.split(line):
            cleaned = _clean_line(part)
            if cleaned:
                yield _Sentence(cleaned, checkbox=False)


# --- the rules -------------------------------------------------------------------------

_I = re.IGNORECASE
_DECISION = re.compile(
    r"\b(?:we (?:have )?decided|decided to|let's go with|let us go with"
    r"|we will go with|we'll go with|agreed|we will use|we'll use)\b"
    "|^decision\\b\\s*[:\\-\u2013\u2014]",
    _I,
)
_TASK = re.compile(
    r"\b(?:todo|to-do|action items?|we need to|we have to|remember to|don't forget to)\b"
    r"|\blet's (?!see\b|say\b)"
    r"|^please (?!note\b|let me know\b|feel free\b)",
    _I,
)
_FIRST_PERSON_TASK = re.compile(r"\b(?:i will|i'll|i am going to|i'm going to)\b", _I)
_SHOULD = re.compile(r"\bshould\b", _I)
_MONTHS = (
    r"january|february|march|april|may|june|july|august|september|october|november"
    r"|december|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
)
_BY_TIME = re.compile(
    r"\bby (?:(?:next |this |the end of |end of |the )?(?:monday|tuesday|wednesday"
    r"|thursday|friday|saturday|sunday|tomorrow|tonight|today|eod|eow|cob|noon|midnight"
    r"|week|month|quarter|year|sprint|weekend|morning|afternoon|evening)\b"
    r"|end of\b|the end\b|\d|(?:" + _MONTHS + r")\b)",
    _I,
)
_URL = re.compile(r"\b(?:https?|ftp)://\S+|\bwww\.\S+", _I)
_DIGIT = re.compile(r"\d")
_FACT_KEYWORD = re.compile(
    r"\b(?:my name is|our name is|deadline|budget|due (?:on|by|date)|(?:"
    + _MONTHS
    + r") \d{1,2}\b|\d{1,2} (?:"
    + _MONTHS
    + r")\b)",
    _I,
)
_IS_ARE = re.compile(r"\b(?:is|are)\b", _I)
_HEDGE = re.compile(
    r"\b(?:i think|i guess|maybe|perhaps|probably|might|not sure|i feel|i wonder|if)\b", _I
)
_TITLE_PREFIX = re.compile(
    "^(?:(?:todo|to-do|action items?|decision|fact|note)\\b\\s*[:\\-\u2013\u2014]?\\s*)+", _I
)
_TRAILING_PUNCT = " .,;:!\u2026-\u2013\u2014"


def _matchable(sentence: str) -> str:
    """The sentence as the rules see it: typographic apostrophes made plain."""
    return sentence.replace("\u2019", "'").replace("\u2018", "'")


def _is_question(text: str) -> bool:
    return text.rstrip(_CLOSERS).endswith("?") and len(text.split()) >= 2


def _is_task(text: str, role: str) -> bool:
    if _TASK.search(text) is not None:
        return True
    if role == "user" and _FIRST_PERSON_TASK.search(text) is not None:
        return True
    should = _SHOULD.search(text)
    return should is not None and _BY_TIME.search(text, should.end()) is not None


def _fact_strength(text: str, role: str) -> int:
    """2: a strong fact; 1: a weak one (used only to fill free slots); 0: not a fact."""
    words = text.split()
    if not 3 <= len(words) <= 40:
        return 0
    if sum(1 for w in words if any(ch.isalpha() for ch in w)) < 2:
        return 0
    if text.rstrip(_CLOSERS).endswith("?"):
        return 0
    if _FACT_KEYWORD.search(text) is not None:
        return 2
    if role != "user":
        return 0
    if _DIGIT.search(_URL.sub(" ", text)) is not None:
        return 2
    if len(words) <= 25 and _IS_ARE.search(text) is not None and _HEDGE.search(text) is None:
        return 1
    return 0


def _title(sentence: str, kind: CardKind) -> str:
    title = _TITLE_PREFIX.sub("", sentence) if kind in ("task", "decision", "fact") else sentence
    if kind != "question":
        title = title.rstrip(_TRAILING_PUNCT)
    title = title.strip()
    if not _has_alnum(title):
        title = sentence.strip()
    if title[:1].isascii() and title[:1].islower():
        title = title[0].upper() + title[1:]
    return _truncate(title, MAX_TITLE_CHARS)


def _normalized(title: str) -> str:
    return " ".join(title.casefold().split()).rstrip(_TRAILING_PUNCT + "?")


# --- assembling the cards --------------------------------------------------------------


@dataclass(slots=True)
class _Found:
    kind: CardKind
    title: str
    body: str
    sources: list[uuid.UUID]
    strength: int = 2


def _first_sentence(text: str) -> str:
    """The first sentence of at least three words (greetings like "Hi!" say little),
    else the first sentence, else the first line with any letter or digit."""
    fallback = ""
    for sentence in _sentences(text):
        if _has_alnum(sentence.text):
            if len(sentence.text.split()) >= 3:
                return sentence.text
            fallback = fallback or sentence.text
    if fallback:
        return fallback
    for line in text.splitlines():
        cleaned = _clean_line(line)
        if _has_alnum(cleaned):
            return cleaned
    return ""


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _summary(
    messages: Sequence[SourceMessage], scanned: Sequence[str], found: Sequence[_Found]
) -> CardDraft:
    first = ""
    for role in ("user", "assistant"):
        for message, text in zip(messages, scanned, strict=True):
            if message.role == role and text:
                first = _first_sentence(text)
                if first:
                    break
        if first:
            break
    users = sum(1 for m in messages if m.role == "user")
    overview = (
        f"{_plural(len(messages), 'message')} "
        f"({users} from the user, {len(messages) - users} from the assistant)."
    )
    counts = [
        _plural(sum(1 for f in found if f.kind == kind), label)
        for kind, label in (
            ("task", "task"),
            ("decision", "decision"),
            ("question", "question"),
            ("fact", "fact"),
        )
    ]
    overview += " Found " + ", ".join(counts) + "."
    title = _truncate(first, SUMMARY_TITLE_CHARS) if first else DEFAULT_SUMMARY_TITLE
    body = f"{_truncate(first, SUMMARY_SENTENCE_CHARS)}\n\n{overview}" if first else overview
    ids = tuple(dict.fromkeys(m.id for m in messages))
    return CardDraft("summary", title, _truncate(body, MAX_BODY_CHARS), ids)


def _classify(sentence: _Sentence, role: str) -> tuple[CardKind, int] | None:
    text = _matchable(sentence.text)
    if sentence.checkbox:
        return "task", 2
    if _is_question(text):
        return "question", 2
    if _DECISION.search(text) is not None:
        return "decision", 2
    if _is_task(text, role):
        return "task", 2
    strength = _fact_strength(text, role)
    if strength:
        return "fact", strength
    return None


def extract_cards(messages: Sequence[SourceMessage]) -> list[CardDraft]:
    """The cards the rules find in `messages` (see the module docstring): a summary first,
    then tasks, decisions, questions and facts in message order. ``[]`` for no messages."""
    if not messages:
        return []
    budget = MAX_SCAN_CHARS_TOTAL
    scanned: list[str] = []
    for message in messages:
        take = max(0, min(MAX_SCAN_CHARS_PER_MESSAGE, budget))
        text = message.content[:take]
        budget -= len(text)
        scanned.append(text)

    found: list[_Found] = []
    by_key: dict[tuple[str, str], _Found] = {}
    for message, text in zip(messages, scanned, strict=True):
        for sentence in _sentences(text):
            if not _has_alnum(sentence.text):
                continue
            classified = _classify(sentence, message.role)
            if classified is None:
                continue
            kind, strength = classified
            title = _title(sentence.text, kind)
            key = (kind, _normalized(title))
            if not title or not key[1]:
                continue
            existing = by_key.get(key)
            if existing is not None:
                if message.id not in existing.sources:
                    existing.sources.append(message.id)
                continue
            card = _Found(
                kind, title, _truncate(sentence.text, MAX_BODY_CHARS), [message.id], strength
            )
            by_key[key] = card
            found.append(card)

    caps: dict[CardKind, int] = {
        "task": MAX_TASKS,
        "decision": MAX_DECISIONS,
        "question": MAX_QUESTIONS,
    }
    kept: list[_Found] = []
    taken: dict[CardKind, int] = {}
    for card in found:
        if card.kind == "fact":
            continue
        if taken.get(card.kind, 0) < caps[card.kind]:
            taken[card.kind] = taken.get(card.kind, 0) + 1
            kept.append(card)
    facts = [f for f in found if f.kind == "fact" and f.strength == 2][:MAX_FACTS]
    facts += [f for f in found if f.kind == "fact" and f.strength == 1][: MAX_FACTS - len(facts)]
    chosen = {id(card) for card in [*kept, *facts]}
    ordered = [card for card in found if id(card) in chosen]

    cards = [_summary(messages, scanned, ordered)]
    cards.extend(
        CardDraft(card.kind, card.title, card.body, tuple(card.sources)) for card in ordered
    )
    return cards[:MAX_CARDS]
