"""The rule-based extractor: deterministic, total, bounded, and useful on real text."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from glia_extractor.extraction.rules import (
    MAX_DECISIONS,
    MAX_FACTS,
    MAX_QUESTIONS,
    MAX_TASKS,
    extract_cards,
)
from glia_extractor.extraction.types import (
    CARD_KINDS,
    MAX_BODY_CHARS,
    MAX_CARDS,
    MAX_TITLE_CHARS,
    CardDraft,
    SourceMessage,
)


def _id(n: int) -> uuid.UUID:
    return uuid.UUID(int=n)


def user(n: int, content: str) -> SourceMessage:
    return SourceMessage(_id(n), "user", content)


def assistant(n: int, content: str) -> SourceMessage:
    return SourceMessage(_id(n), "assistant", content)


def check_invariants(messages: Sequence[SourceMessage], cards: list[CardDraft]) -> None:
    if not messages:
        assert cards == []
        return
    assert cards, "a non-empty conversation always has a summary"
    assert cards[0].kind == "summary"
    assert all(card.kind != "summary" for card in cards[1:])
    assert set(cards[0].source_message_ids) == {m.id for m in messages}
    assert len(cards) <= MAX_CARDS
    input_ids = {m.id for m in messages}
    seen: set[tuple[str, str]] = set()
    for card in cards:
        assert card.kind in CARD_KINDS
        assert card.title.strip(), card
        assert len(card.title) <= MAX_TITLE_CHARS
        assert len(card.title.splitlines()) == 1
        assert card.title == " ".join(card.title.split())
        assert len(card.body) <= MAX_BODY_CHARS
        for text in (card.title, card.body):
            assert "\x00" not in text
            assert not any("\ud800" <= ch <= "\udfff" for ch in text)
            text.encode("utf-8")  # storable as PostgreSQL text
        assert card.source_message_ids
        assert set(card.source_message_ids) <= input_ids
        assert len(set(card.source_message_ids)) == len(card.source_message_ids)
        key = (card.kind, card.title.casefold())
        assert key not in seen, f"duplicate card {key}"
        seen.add(key)
    kinds = [card.kind for card in cards]
    assert kinds.count("task") <= MAX_TASKS
    assert kinds.count("decision") <= MAX_DECISIONS
    assert kinds.count("question") <= MAX_QUESTIONS
    assert kinds.count("fact") <= MAX_FACTS


# --- strategies --------------------------------------------------------------------------

# Every code point: st.characters() leaves out lone surrogates, so add them (and control
# characters, NUL included) explicitly.
any_char = st.one_of(st.characters(), st.characters(categories=["Cs", "Cc"]))
any_text = st.text(any_char, max_size=300)

# Text built from the fragments the rules care about, so the rule paths are exercised.
FRAGMENTS = [
    "TODO", "todo:", "- [ ] ", "* [x] ", "we need to", "I'll", "I will", "let's", "Let's see",
    "please ", "Please note", "action item", "remember to", "should", " by Friday",
    "we decided", "decided to", "Decision:", "let's go with", "agreed", "we'll use",
    "?", "??", ".", "!", "…", "...", " ", "  ", "\n", "\r\n", "\t", "\x00", "\x0b", "\u2028",
    "```", "```python\n", "~~~", "|", "| a | b |", "#", "## ", "> ", "1. ", "- ",
    "https://example.com/a?b=1", "www.x.org", "5000", "2025-01-31", "March 3", "budget",
    "deadline", "my name is", "is", "are", "The", "write the migration", "PostgreSQL",
    "שלום", "مرحبا", "🙂", "👩‍👩‍👧", "e\u0301", "\u200b", "\u202e", "\ufeff", "\ud800", '"', "'",
    "\u2019", ")", "]", "`",
]  # fmt: skip
fragment_text = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(any_char, max_size=8)), max_size=40
).map("".join)
message_text = st.one_of(any_text, fragment_text)

messages_strategy = st.lists(
    st.builds(
        SourceMessage,
        id=st.uuids(),
        role=st.sampled_from(["user", "assistant"]),
        content=message_text,
    ),
    max_size=8,
)


# --- properties --------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(messages_strategy)
def test_invariants_hold_for_any_messages(messages: list[SourceMessage]) -> None:
    check_invariants(messages, extract_cards(messages))


@settings(max_examples=200, deadline=None)
@given(messages_strategy)
def test_deterministic(messages: list[SourceMessage]) -> None:
    first = extract_cards(messages)
    assert extract_cards(messages) == first
    # An equal copy (new objects, new strings) gives equal cards.
    copy = [SourceMessage(uuid.UUID(str(m.id)), m.role, "".join(list(m.content))) for m in messages]
    assert extract_cards(copy) == first
    # The input is a Sequence: a tuple works the same as a list.
    assert extract_cards(tuple(messages)) == first


@settings(max_examples=200, deadline=None)
@given(st.text(any_char), st.sampled_from(["user", "assistant"]))
def test_never_fails_on_any_single_text(text: str, role: str) -> None:
    messages = [SourceMessage(_id(1), "user" if role == "user" else "assistant", text)]
    cards = extract_cards(messages)
    check_invariants(messages, cards)
    assert cards[0].source_message_ids == (_id(1),)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=200).map("".join))
def test_long_rule_heavy_text(text: str) -> None:
    messages = [user(1, text * 20), assistant(2, text)]
    check_invariants(messages, extract_cards(messages))


# --- examples ----------------------------------------------------------------------------


def by_kind(cards: list[CardDraft], kind: str) -> list[CardDraft]:
    return [card for card in cards if card.kind == kind]


def test_no_messages_no_cards() -> None:
    assert extract_cards([]) == []


def test_real_conversation() -> None:
    messages = [
        user(1, "Hi! We are moving the billing service to a new database.\n"
                "TODO: write the migration"),
        assistant(2, "Sounds good. We decided to use PostgreSQL."),
        user(3, "What is the deadline?"),
        user(4, "The budget is 5000 EUR."),
    ]  # fmt: skip
    cards = extract_cards(messages)
    check_invariants(messages, cards)

    summary = cards[0]
    assert summary.kind == "summary"
    assert summary.source_message_ids == (_id(1), _id(2), _id(3), _id(4))
    assert summary.title == "We are moving the billing service to a new database."
    assert "4 messages" in summary.body

    (task,) = by_kind(cards, "task")
    assert task.title == "Write the migration"
    assert task.source_message_ids == (_id(1),)

    (decision,) = by_kind(cards, "decision")
    assert decision.title == "We decided to use PostgreSQL"
    assert decision.body == "We decided to use PostgreSQL."
    assert decision.source_message_ids == (_id(2),)

    (question,) = by_kind(cards, "question")
    assert question.title == "What is the deadline?"
    assert question.source_message_ids == (_id(3),)

    budget = [card for card in by_kind(cards, "fact") if "5000 EUR" in card.title]
    assert len(budget) == 1
    assert budget[0].source_message_ids == (_id(4),)

    # Rule cards come in message order, after the summary.
    order = [card.title for card in cards[1:]]
    assert order.index("Write the migration") < order.index("We decided to use PostgreSQL")
    assert order.index("We decided to use PostgreSQL") < order.index("What is the deadline?")


def test_code_blocks_yield_no_cards() -> None:
    content = (
        "Here is the script:\n"
        "```python\n"
        "# TODO: remove this hack\n"
        "value = x if ready() else None  # is it ready?\n"
        "print('we decided to use 42?')\n"
        "```\n"
        "~~~\n"
        "let's go with the ugly version?\n"
        "~~~\n"
        "It runs fine.\n"
    )
    messages = [assistant(1, content)]
    cards = extract_cards(messages)
    check_invariants(messages, cards)
    assert [card.kind for card in cards] == ["summary"]
    text = " ".join(card.title + " " + card.body for card in cards)
    for inside in ("TODO", "hack", "ready?", "42", "ugly"):
        assert inside not in text


def test_unclosed_fence_hides_the_rest() -> None:
    messages = [user(1, "Look at this.\n```\nTODO: nothing here?\n")]
    assert [card.kind for card in extract_cards(messages)] == ["summary"]


def test_markdown_lists_checkboxes_headings_and_quotes() -> None:
    content = (
        "## Plan for the release\n"
        "- [ ] update the changelog\n"
        "- [x] tag the release\n"
        "> Please review the pull request.\n"
        "1. Decision: ship on Monday\n"
        "| TODO | is this a table? |\n"
        "|------|------|\n"
    )
    messages = [user(1, content)]
    cards = extract_cards(messages)
    check_invariants(messages, cards)
    tasks = [card.title for card in by_kind(cards, "task")]
    assert tasks == ["Update the changelog", "Please review the pull request"]
    assert [card.title for card in by_kind(cards, "decision")] == ["Ship on Monday"]
    assert by_kind(cards, "question") == []


def test_task_and_decision_patterns() -> None:
    messages = [
        user(1, "We need to rotate the keys. I'll call the vendor. Remember to back up. "
                "Action item: book the room. The report should be done by Friday."),
        assistant(2, "I'll explain how it works. Let's go with Redis. We'll use Celery. "
                     "Agreed on the naming."),
    ]  # fmt: skip
    cards = extract_cards(messages)
    check_invariants(messages, cards)
    assert [card.title for card in by_kind(cards, "task")] == [
        "We need to rotate the keys",
        "I'll call the vendor",
        "Remember to back up",
        "Book the room",
        "The report should be done by Friday",
    ]
    assert [card.title for card in by_kind(cards, "decision")] == [
        "Let's go with Redis",
        "We'll use Celery",
        "Agreed on the naming",
    ]
    # The assistant's "I'll explain" is conversation, not a task.
    assert all("explain" not in card.title for card in cards)


def test_questions_from_both_roles_urls_do_not_split() -> None:
    messages = [
        user(1, "Can you check https://example.com/page?id=5 for me? Thanks."),
        assistant(2, "Sure. Do you also want the logs?"),
    ]
    cards = extract_cards(messages)
    check_invariants(messages, cards)
    questions = by_kind(cards, "question")
    assert [(q.title, q.source_message_ids) for q in questions] == [
        ("Can you check https://example.com/page?id=5 for me?", (_id(1),)),
        ("Do you also want the logs?", (_id(2),)),
    ]


def test_duplicates_merge_their_sources() -> None:
    messages = [
        user(1, "TODO: write the migration"),
        assistant(2, "Okay."),
        user(3, "todo:   Write the migration."),
    ]
    cards = extract_cards(messages)
    check_invariants(messages, cards)
    (task,) = by_kind(cards, "task")
    assert task.title == "Write the migration"
    assert task.source_message_ids == (_id(1), _id(3))


def test_facts_are_conservative() -> None:
    sentences = [f"Server {n} has {n * 8} GB of memory." for n in range(1, 20)]
    messages = [user(1, " ".join(sentences)), assistant(2, "There are 3 options and 2 risks.")]
    cards = extract_cards(messages)
    check_invariants(messages, cards)
    facts = by_kind(cards, "fact")
    assert len(facts) == MAX_FACTS
    assert all(fact.source_message_ids == (_id(1),) for fact in facts)
    assert facts[0].title == "Server 1 has 8 GB of memory"


def test_my_name_and_deadline_facts() -> None:
    messages = [user(1, "My name is Ada Lovelace. The deadline is March 3.")]
    titles = [card.title for card in by_kind(extract_cards(messages), "fact")]
    assert titles == ["My name is Ada Lovelace", "The deadline is March 3"]


def test_long_title_is_cut_on_a_word_boundary() -> None:
    sentence = "TODO: " + " ".join(f"word{n}" for n in range(200)) + "."
    messages = [user(1, sentence)]
    cards = extract_cards(messages)
    check_invariants(messages, cards)
    (task,) = by_kind(cards, "task")
    assert len(task.title) <= MAX_TITLE_CHARS
    assert task.title.endswith("…")
    assert task.title[:-1].split()[-1].startswith("word")
    assert task.title[:-1].split()[-1] in sentence.split()
    assert task.body == sentence


def test_nul_and_control_characters_are_stripped() -> None:
    messages = [user(1, "TODO: fix\x00 the\x07 bug\x00"), assistant(2, "\x00\x00")]
    cards = extract_cards(messages)
    check_invariants(messages, cards)
    (task,) = by_kind(cards, "task")
    assert task.title == "Fix the bug"


def test_empty_and_whitespace_messages_still_get_a_summary() -> None:
    messages = [user(1, ""), assistant(2, "  \n\t "), user(3, "\x00")]
    cards = extract_cards(messages)
    check_invariants(messages, cards)
    assert len(cards) == 1
    assert cards[0].title == "Conversation summary"
    assert "3 messages" in cards[0].body


def test_many_rule_hits_respect_max_cards() -> None:
    lines = []
    for n in range(200):
        lines += [f"TODO: task {n}", f"We decided to use tool {n}.", f"Is option {n} good?"]
        lines.append(f"Machine {n} has {n} cores.")
    messages = [user(1, "\n".join(lines))]
    cards = extract_cards(messages)
    check_invariants(messages, cards)
    assert len(cards) <= MAX_CARDS
    kinds = [card.kind for card in cards]
    assert kinds.count("task") == MAX_TASKS
    assert kinds.count("decision") == MAX_DECISIONS
    assert kinds.count("question") == MAX_QUESTIONS
    assert kinds.count("fact") == MAX_FACTS


def test_two_megabyte_message_returns_a_summary() -> None:
    big = ("We need to test this. Is it fast? " + "x" * 1000 + "\n") * 2000
    assert len(big) > 2_000_000
    messages = [user(1, big), assistant(2, "y" * 2_000_000), user(3, "The end is near.")]
    cards = extract_cards(messages)
    check_invariants(messages, cards)
    assert cards[0].kind == "summary"
    assert "3 messages" in cards[0].body


def test_pathological_punctuation_and_whitespace() -> None:
    for content in ("." * 300_000 + "x", "?" * 300_000, " \n" * 300_000, "a?" * 300_000,
                    "should " * 100_000 + "by", "TODO" * 100_000, "`" * 300_000):  # fmt: skip
        messages = [user(1, content)]
        check_invariants(messages, extract_cards(messages))


def test_other_languages_yield_at_least_a_summary() -> None:
    messages = [
        user(1, "会議は明日の午後です。"),
        assistant(2, "مرحبا بالعالم"),
        user(3, "שלום 👋"),
    ]
    cards = extract_cards(messages)
    check_invariants(messages, cards)
    assert cards[0].kind == "summary"
    assert cards[0].title == "会議は明日の午後です。"
