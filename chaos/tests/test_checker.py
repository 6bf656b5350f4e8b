"""The checker on small hand-made histories: each invariant passes on a faithful system
and fails, with evidence, on the one thing broken."""

from __future__ import annotations

import hashlib
from typing import Any

from chaos.checker import Snapshot, check, digest, source_hash

CONV, OTHER = "c0000000-0000-0000-0000-000000000001", "c0000000-0000-0000-0000-000000000002"
UMSG, AMSG = "u0000000-0000-0000-0000-000000000001", "a0000000-0000-0000-0000-000000000001"
CONTENT, REPLY = "We decided to launch in May. [alice-0-1-abcd]", "Noted."


def op(
    i: int,
    proc: str,
    name: str,
    outcome: str,
    args: dict[str, Any],
    result: dict[str, Any],
    t0: float = 0.0,
) -> dict[str, Any]:
    return {
        "i": i,
        "proc": proc,
        "op": name,
        "t0": t0,
        "t1": t0 + 1,
        "outcome": outcome,
        "args": args,
        "result": result,
    }


def start() -> dict[str, str]:
    return {"conversation_id": CONV, "user_message_id": UMSG, "assistant_message_id": AMSG}


def faithful() -> tuple[list[dict[str, Any]], Snapshot]:
    history = [
        op(0, "alice-0", "create", "ok", {}, {"status": 201, "id": CONV}),
        op(1, "bob-0", "create", "ok", {}, {"status": 201, "id": OTHER}),
        op(
            2,
            "alice-0",
            "send",
            "unknown",
            {"conv": CONV, "key": "alice-0-1-abcd", "content": CONTENT, "attempt": 1},
            {
                "status": 200,
                "start": start(),
                "ids": [0, 2, 3],
                "text": "No",
                "terminal": None,
                "dropped": "client",
            },
            t0=1,
        ),
        op(
            3,
            "alice-0",
            "send",
            "ok",
            {"conv": CONV, "key": "alice-0-1-abcd", "content": CONTENT, "attempt": 2},
            {
                "status": 200,
                "start": start(),
                "ids": [0, 3, 4],
                "text": REPLY,
                "terminal": "done",
                "done_mid": AMSG,
            },
            t0=3,
        ),
        op(
            4,
            "alice-1",
            "get_conv",
            "ok",
            {"conv": CONV},
            {
                "status": 200,
                "id": CONV,
                "messages": [
                    [UMSG, "user", "complete", digest(CONTENT)],
                    [AMSG, "assistant", "complete", digest(REPLY)],
                ],
            },
            t0=5,
        ),
        op(
            5,
            "bob-0",
            "probe",
            "error",
            {"what": "get", "id": CONV, "owner": "alice"},
            {"status": 404},
        ),
        op(6, "poisoner", "poison", "ok", {"body": "not json"}, {}),
        op(7, "nemesis", "kill", "ok", {"target": "chat-0"}, {}),
    ]
    messages = [
        {
            "id": UMSG,
            "conversation_id": CONV,
            "user_id": "alice",
            "role": "user",
            "content": CONTENT,
            "status": "complete",
        },
        {
            "id": AMSG,
            "conversation_id": CONV,
            "user_id": "alice",
            "role": "assistant",
            "content": REPLY,
            "status": "complete",
        },
    ]
    h = source_hash([(UMSG, "user", CONTENT), (AMSG, "assistant", REPLY)])
    snap = Snapshot(
        conversations={CONV: "alice", OTHER: "bob"},
        messages=messages,
        turns=[
            {
                "id": "t1",
                "conversation_id": CONV,
                "user_id": "alice",
                "idempotency_key": "alice-0-1-abcd",
            }
        ],
        cards=[
            {
                "id": "k1",
                "conversation_id": CONV,
                "user_id": "alice",
                "source_hash": h,
                "source_message_ids": [UMSG],
            }
        ],
        runs=[
            {
                "id": "r0",
                "conversation_id": CONV,
                "user_id": "alice",
                "status": "failed",
                "source_hash": h,
                "replay": False,
                "request_id": "x",
            },
            {
                "id": "r1",
                "conversation_id": CONV,
                "user_id": "alice",
                "status": "succeeded",
                "source_hash": h,
                "replay": False,
                "request_id": "x",
            },
        ],
        states={CONV: {"user_id": "alice", "source_hash": h, "run_id": "r1"}},
        outbox=[{"id": 1, "conversation_id": CONV, "user_id": "alice", "sent": True}],
        queues={"glia.extraction": (0, 0), "glia.extraction.dlq": (1, 0)},
        dlq=["not json"],
        api_fresh={
            CONV: {"state": "current", "source_hash": h, "card_ids": ["k1"]},
            OTHER: {"state": "none", "source_hash": None, "card_ids": []},
        },
        api_seen={"alice": [CONV], "bob": [OTHER]},
    )
    return history, snap


def failing(history: list[dict[str, Any]], snap: Snapshot) -> dict[str, list[str]]:
    report = check(history, snap)
    return {v.name: v.evidence for v in report.verdicts if not v.ok}


def test_the_source_hash_is_the_contracts() -> None:
    one = '[["00000000-0000-0000-0000-000000000001","user","hi"]]'
    assert (
        source_hash([("00000000-0000-0000-0000-000000000001", "user", "hi")])
        == hashlib.sha256(one.encode()).hexdigest()
    )
    assert source_hash([]) == hashlib.sha256(b"[]").hexdigest()


def test_a_faithful_system_passes_everything() -> None:
    history, snap = faithful()
    report = check(history, snap)
    assert report.ok, [(v.name, v.evidence) for v in report.verdicts if not v.ok]
    assert (report.operations, report.lost, report.duplicated) == (7, 0, 0)


def test_an_acknowledged_reply_stored_otherwise_is_lost() -> None:
    history, snap = faithful()
    snap.messages[1]["content"] = "Not"
    snap.states[CONV]["source_hash"] = snap.cards[0]["source_hash"] = "x"  # keep the rest quiet
    report = check(history, snap)
    assert report.lost == 1
    assert "stored text differs" in failing(history, snap)["acknowledged turns are durable"][0]


def test_a_missing_reply_is_lost_unless_its_conversation_was_deleted() -> None:
    history, snap = faithful()
    del snap.messages[1]
    assert check(history, snap).lost == 1
    history.append(op(9, "alice-1", "delete", "unknown", {"conv": CONV}, {}))
    assert check(history, snap).lost == 0


def test_a_read_after_done_must_see_the_reply() -> None:
    history, snap = faithful()
    history[4]["result"]["messages"][1][2] = "streaming"
    assert "read after done misses" in failing(history, snap)["acknowledged turns are durable"][0]


def test_one_key_twice_stored_is_a_duplicate() -> None:
    history, snap = faithful()
    snap.messages.append({**snap.messages[0], "id": "u2"})
    report = check(history, snap)
    assert report.duplicated == 1
    assert (
        "2 user messages"
        in failing(history, snap)["no message stored twice for one Idempotency-Key"][0]
    )


def test_a_retry_that_started_another_turn_is_a_duplicate() -> None:
    history, snap = faithful()
    history[3]["result"]["start"] = {**start(), "user_message_id": "u-other"}
    assert check(history, snap).duplicated == 1


def test_a_message_left_streaming_fails() -> None:
    history, snap = faithful()
    snap.messages.append({**snap.messages[1], "id": "a2", "status": "streaming", "content": ""})
    assert (
        "left streaming"
        in failing(history, snap)["every assistant message is terminal (none left streaming)"][0]
    )


def test_a_broken_stream_fails_the_protocol() -> None:
    history, snap = faithful()
    history[3]["result"]["protocol"] = ["id '5' where 4 was due"]
    assert "every stream follows the SSE protocol" in failing(history, snap)


def test_stale_cards_or_a_second_run_for_one_source_fail() -> None:
    history, snap = faithful()
    snap.states[CONV]["source_hash"] = "old"
    assert "every live conversation converges to current cards" in failing(history, snap)
    history, snap = faithful()
    snap.runs.append({**snap.runs[1], "id": "r2"})
    assert check(history, snap).duplicated == 1
    snap.runs.append({**snap.runs[1], "id": "r3", "status": "running"})
    assert any(
        "left running" in e
        for e in failing(history, snap)["exactly one succeeded run per source, none left running"]
    )


def test_leftovers_of_a_deleted_conversation_fail() -> None:
    history, snap = faithful()
    history.append(op(9, "bob-0", "delete", "ok", {"conv": OTHER}, {"status": 204}))
    snap.cards.append(
        {
            "id": "k9",
            "conversation_id": "gone",
            "user_id": "bob",
            "source_hash": "h",
            "source_message_ids": [],
        }
    )
    evidence = failing(history, snap)["nothing of a deleted conversation remains"]
    assert any("deleted (204) but still stored" in e for e in evidence)
    assert any("card k9 of missing conversation" in e for e in evidence)


def test_unsent_outbox_and_unexpected_dead_letters_fail() -> None:
    history, snap = faithful()
    snap.outbox[0]["sent"] = False
    snap.dlq = ['{"conversation_id": "x"}']
    evidence = failing(history, snap)["outbox empty, DLQ holds only the poison"]
    assert any("unsent" in e for e in evidence)
    assert any("never poisoned" in e for e in evidence)
    assert any("not dead-lettered" in e for e in evidence)


def test_rows_shown_to_or_written_for_another_user_fail() -> None:
    name = "no row visible to or written for another user"
    history, snap = faithful()
    history[5]["result"]["status"] = 200
    assert any("probe answered 200" in e for e in failing(history, snap)[name])
    history, snap = faithful()
    snap.cards[0]["user_id"] = "bob"
    assert any("written for bob" in e for e in failing(history, snap)[name])
    history, snap = faithful()
    history.append(op(9, "bob-1", "list_convs", "ok", {}, {"status": 200, "ids": [CONV]}))
    assert any("bob was shown alice's conversation" in e for e in failing(history, snap)[name])
    history, snap = faithful()
    snap.runs.append({**snap.runs[0], "id": "r9", "request_id": "forged-1-1"})
    assert any("forged request" in e for e in failing(history, snap)[name])


def test_an_error_stream_stored_complete_fails_unless_its_outcome_was_unknown() -> None:
    name = "a stream that ended in error is not stored complete"
    history, snap = faithful()
    history[3]["result"] |= {"terminal": "error", "error": {"code": "incomplete"}}
    assert "error 'incomplete' but stored complete" in failing(history, snap)[name][0]
    history[3]["result"]["error"]["code"] = "turn_ended"
    report = check(history, snap)
    assert name not in failing(history, snap) and len(report.notes) == 1
