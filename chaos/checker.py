"""The checker: the history against what the system holds once it has quiesced.

Pure functions over plain data (the history's dicts and a :class:`Snapshot` of the
database, the broker and the card API), so each invariant is unit-tested on small
hand-made histories. Each invariant yields a :class:`Verdict` with a figure and, when it
fails, the evidence: history lines and rows.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

KEY_RE = re.compile(r"\[([A-Za-z0-9._-]+)\]$")
EVIDENCE = 8  # lines of evidence kept per invariant
# Error codes by which a stream says its outcome is unknown to it (the settle's commit
# may have happened): the stored state may then be anything terminal.
AMBIGUOUS_CODES = frozenset({"storage_unavailable", "turn_ended"})


def source_hash(messages: list[tuple[str, str, str]]) -> str:
    """CONTRACT §6: SHA-256 of ``[[id, role, content], ...]`` as compact JSON."""
    payload = [[mid, role, content] for mid, role, content in messages]
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Snapshot:
    """The system's state after quiescence. Rows are dicts with string ids."""

    conversations: dict[str, str] = field(default_factory=dict)  # id -> user_id
    messages: list[dict[str, Any]] = field(default_factory=list)  # in seq order
    turns: list[dict[str, Any]] = field(default_factory=list)
    cards: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)  # conversation -> state
    outbox: list[dict[str, Any]] = field(default_factory=list)  # conversation_id, user_id, sent
    queues: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (ready, unacked)
    dlq: list[str] = field(default_factory=list)  # bodies drained from the DLQ
    api_fresh: dict[str, dict[str, Any]] = field(default_factory=dict)  # conv -> card API view
    api_seen: dict[str, list[str]] = field(default_factory=dict)  # user -> conversation ids


@dataclass
class Verdict:
    name: str
    ok: bool
    figure: str
    evidence: list[str] = field(default_factory=list)


@dataclass
class Report:
    verdicts: list[Verdict]
    operations: int
    lost: int
    duplicated: int
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.verdicts)


def _short(entry: dict[str, Any]) -> str:
    slim = {k: entry[k] for k in ("i", "proc", "op", "t0", "t1", "outcome") if k in entry}
    args = {k: v for k, v in entry.get("args", {}).items() if k != "base_text"}
    res = dict(entry.get("result", {}))
    if isinstance(res.get("text"), str) and len(res["text"]) > 40:
        res["text"] = res["text"][:40] + "..."
    return json.dumps({**slim, "args": args, "result": res}, ensure_ascii=False)


class _Index:
    """The history, arranged for the checks."""

    def __init__(self, history: list[dict[str, Any]]) -> None:
        self.ops = [h for h in history if h["proc"] != "nemesis"]
        self.turns: dict[str, list[dict[str, Any]]] = defaultdict(list)  # key -> attempts
        self.deleted: set[str] = set()  # a delete was attempted (any outcome)
        self.deleted_ok: set[str] = set()
        self.owner: dict[str, str] = {}  # conversation -> user, from creates
        self.poison: dict[str, str] = {}  # body -> outcome
        for h in self.ops:
            op, args, res = h["op"], h["args"], h["result"]
            user = h["proc"].rsplit("-", 1)[0]
            if op in ("send", "resume"):
                self.turns[args["key"]].append(h)
            elif op == "delete":
                self.deleted.add(args["conv"])
                if h["outcome"] == "ok":
                    self.deleted_ok.add(args["conv"])
            elif op == "create" and res.get("id"):
                self.owner[res["id"]] = user
            elif op == "probe" and args.get("what") == "delete":
                self.deleted.add(args["id"])
            elif op == "poison":
                self.poison[args["body"]] = h["outcome"]

    def user(self, h: dict[str, Any]) -> str:
        return str(h["proc"]).rsplit("-", 1)[0]


def check(history: list[dict[str, Any]], snap: Snapshot) -> Report:
    ix = _Index(history)
    lost: list[str] = []
    dups: list[str] = []
    verdicts = [
        _acknowledged(ix, snap, lost),
        _idempotency(ix, snap, dups),
        _terminal(ix, snap),
        _error_means_not_complete(ix, snap),
        _protocol(ix),
        _convergence(snap),
        _runs(snap, dups),
        _deleted(ix, snap),
        _outbox_and_queues(ix, snap),
        _isolation(ix, snap),
    ]
    return Report(
        verdicts,
        operations=len(ix.ops),
        lost=len(lost),
        duplicated=len(dups),
        notes=_ambiguous(ix, snap),
    )


def _errors_stored_complete(ix: _Index, snap: Snapshot) -> list[tuple[str, str, dict[str, Any]]]:
    """(key, code, attempt) of streams that ended in ``error`` whose reply is stored
    complete."""
    status = {m["id"]: m["status"] for m in snap.messages}
    found = []
    for key, attempts in ix.turns.items():
        for h in attempts:
            mid = _mid(h)
            if h["result"].get("terminal") == "error" and mid and status.get(mid) == "complete":
                found.append((key, str((h["result"].get("error") or {}).get("code")), h))
                break
    return found


def _ambiguous(ix: _Index, snap: Snapshot) -> list[str]:
    """Not a broken promise, but worth a look: the client was told the outcome is unknown
    (a commit whose acknowledgement was lost) and the reply is stored complete."""
    return [
        f"key {key}: stream ended with error {code!r}, stored complete"
        for key, code, _ in _errors_stored_complete(ix, snap)
        if code in AMBIGUOUS_CODES
    ]


def _error_means_not_complete(ix: _Index, snap: Snapshot) -> Verdict:
    """CONTRACT §4: ``complete`` before ``done``, ``failed`` or ``incomplete`` before
    ``error``: a stream that ended in error (other than an unknown outcome) is not
    stored complete."""
    wrong = [
        (key, code, h)
        for key, code, h in _errors_stored_complete(ix, snap)
        if code not in AMBIGUOUS_CODES
    ]
    ended = sum(1 for a in ix.turns.values() for h in a if h["result"].get("terminal") == "error")
    return Verdict(
        "a stream that ended in error is not stored complete",
        not wrong,
        f"{ended} streams ended in error, {len(wrong)} of them stored complete",
        [f"key {key}: error {code!r} but stored complete: {_short(h)}" for key, code, h in wrong][
            :EVIDENCE
        ],
    )


# ---------------------------------------------------------------------- turns


def _ack_text(h: dict[str, Any]) -> str:
    base = h["args"].get("base_text", "") if h["op"] == "resume" else ""
    return str(base) + str(h["result"].get("text", ""))


def _mid(h: dict[str, Any]) -> str | None:
    start = h["result"].get("start")
    if start:
        return str(start["assistant_message_id"])
    return str(h["args"]["mid"]) if h["op"] == "resume" else None


def _acknowledged(ix: _Index, snap: Snapshot, lost: list[str]) -> Verdict:
    """A turn acknowledged with ``done`` is stored complete with exactly the streamed text
    (and its user message with the sent text), and every later read of its conversation
    shows it so; unless its conversation was deleted."""
    messages = {m["id"]: m for m in snap.messages}
    acked = deleted = 0
    evidence: list[str] = []
    done_at: dict[str, tuple[float, str, str]] = {}  # assistant id -> (t1, conv, digest)
    for key, attempts in ix.turns.items():
        content = next((a["args"]["content"] for a in attempts if "content" in a["args"]), None)
        user_mid = next(
            (a["result"]["start"]["user_message_id"] for a in attempts if a["result"].get("start")),
            None,
        )
        for h in attempts:
            if h["result"].get("terminal") != "done":
                continue
            acked += 1
            conv, mid, text = h["args"]["conv"], _mid(h), _ack_text(h)
            if conv in ix.deleted:
                deleted += 1
                continue
            assert mid is not None
            done_at.setdefault(mid, (h["t1"], conv, digest(text)))
            row = messages.get(mid)
            problem = None
            if row is None:
                problem = "assistant message missing"
            elif row["status"] != "complete":
                problem = f"assistant message stored {row['status']}"
            elif row["content"] != text:
                problem = f"stored text differs ({len(row['content'])} vs {len(text)} chars)"
            else:
                urow = messages.get(str(user_mid)) if user_mid else None
                if urow is None:
                    problem = "user message missing"
                elif content is not None and urow["content"] != content:
                    problem = "user message differs"
            if problem:
                lost.append(key)
                evidence.append(f"key {key}: {problem}: {_short(h)}")
    # Reads after an acknowledgement see the acknowledged reply.
    stale = 0
    for h in ix.ops:
        if h["op"] != "get_conv" or h["result"].get("status") != 200:
            continue
        seen = {m[0]: m for m in h["result"].get("messages", [])}
        conv = h["args"]["conv"]
        for mid, (t1, c, dg) in done_at.items():
            if c != conv or h["t0"] <= t1:
                continue
            m = seen.get(mid)
            if m is None and h["result"].get("partial"):
                continue
            if m is None or m[2] != "complete" or m[3] != dg:
                stale += 1
                if len(evidence) < EVIDENCE * 2:
                    evidence.append(f"read after done misses {mid}: {_short(h)}")
    ok = not lost and not stale
    figure = (
        f"{acked} turns acknowledged with done ({deleted} in conversations deleted since): "
        f"lost {len(lost)}, reads after done that missed them {stale}"
    )
    return Verdict("acknowledged turns are durable", ok, figure, evidence[: EVIDENCE * 2])


def _idempotency(ix: _Index, snap: Snapshot, dups: list[str]) -> Verdict:
    """One Idempotency-Key, one user message (and one turn), however often it was sent."""
    evidence: list[str] = []
    per_key: Counter[str] = Counter()
    for m in snap.messages:
        if m["role"] == "user":
            found = KEY_RE.search(m["content"])
            if found:
                per_key[found.group(1)] += 1
    for key, n in per_key.items():
        if n > 1:
            dups.append(key)
            evidence.append(f"key {key}: {n} user messages stored")
    turn_keys = Counter(
        (t["user_id"], t["idempotency_key"]) for t in snap.turns if t["idempotency_key"]
    )
    for (user, key), n in turn_keys.items():
        if n > 1:
            dups.append(key)
            evidence.append(f"key {key} of {user}: {n} turns stored")
    retried = 0
    for key, attempts in ix.turns.items():
        if len(attempts) > 1:
            retried += 1
        starts = {
            (a["result"]["start"]["user_message_id"], a["result"]["start"]["assistant_message_id"])
            for a in attempts
            if a["result"].get("start")
        }
        if len(starts) > 1:
            dups.append(key)
            evidence.append(f"key {key}: {len(starts)} different turns started: {sorted(starts)}")
        texts = {_ack_text(a) for a in attempts if a["result"].get("terminal") == "done"}
        if len(texts) > 1:
            dups.append(key)
            evidence.append(f"key {key}: done with {len(texts)} different texts")
    figure = (
        f"{len(ix.turns)} keys sent, {retried} of them more than once: duplicated {len(set(dups))}"
    )
    return Verdict("no message stored twice for one Idempotency-Key", not dups, figure, evidence)


def _terminal(ix: _Index, snap: Snapshot) -> Verdict:
    statuses = Counter(m["status"] for m in snap.messages if m["role"] == "assistant")
    streaming = [m for m in snap.messages if m["status"] == "streaming"]
    bad_user = [m for m in snap.messages if m["role"] == "user" and m["status"] != "complete"]
    evidence = [f"message {m['id']} of {m['conversation_id']} left streaming" for m in streaming]
    evidence += [f"user message {m['id']} stored {m['status']}" for m in bad_user]
    figure = "assistant messages: " + ", ".join(f"{s} {n}" for s, n in sorted(statuses.items()))
    return Verdict(
        "every assistant message is terminal (none left streaming)",
        not streaming and not bad_user,
        figure,
        evidence[:EVIDENCE],
    )


def _protocol(ix: _Index) -> Verdict:
    bad = [h for h in ix.ops if h["result"].get("protocol")]
    streams = sum(1 for h in ix.ops if h["op"] in ("send", "resume") and h["result"].get("ids"))
    below = sum(1 for h in ix.ops if h["result"].get("below") is not None)
    return Verdict(
        "every stream follows the SSE protocol",
        not bad,
        f"{streams} streams read, {len(bad)} broke the protocol; {below} ended with an error "
        "at or below the last id seen (text past it not kept, or interrupted)",
        [f"{h['result']['protocol']}: {_short(h)}" for h in bad[:EVIDENCE]],
    )


# ---------------------------------------------------------------------- extraction


def live_sources(snap: Snapshot) -> dict[str, str | None]:
    """Each live conversation's expected source hash (None: no complete message)."""
    complete: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for m in snap.messages:  # in seq order
        if m["status"] == "complete":
            complete[m["conversation_id"]].append((m["id"], m["role"], m["content"]))
    return {c: (source_hash(complete[c]) if complete.get(c) else None) for c in snap.conversations}


def _convergence(snap: Snapshot) -> Verdict:
    """Every live conversation's cards (and the card API's freshness) come from exactly its
    current messages."""
    evidence: list[str] = []
    cards_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for card in snap.cards:
        cards_of[card["conversation_id"]].append(card)
    current = 0
    sources = live_sources(snap)
    for conv, expected in sources.items():
        state = snap.states.get(conv)
        api = snap.api_fresh.get(conv)
        problems = []
        if expected is None:
            if cards_of.get(conv):
                problems.append("cards without complete messages")
        else:
            if state is None or state["source_hash"] != expected:
                problems.append(f"state {state and state['source_hash'][:12]} != {expected[:12]}")
            stale = [c for c in cards_of.get(conv, []) if c["source_hash"] != expected]
            if stale:
                problems.append(f"{len(stale)} cards from another source")
        if api is not None:
            want_state = "none" if expected is None else "current"
            if api.get("state") != want_state or (expected and api.get("source_hash") != expected):
                problems.append(f"card API says {api.get('state')} {api.get('source_hash')}")
            db_ids = sorted(c["id"] for c in cards_of.get(conv, []))
            if sorted(api.get("card_ids", [])) != db_ids:
                problems.append("card API lists other cards than the database holds")
        elif expected is not None:
            problems.append("card API not read")
        if problems:
            evidence.append(f"conversation {conv}: " + "; ".join(problems))
        elif expected is not None:
            current += 1
    figure = f"{len(sources)} live conversations, {current} with current cards, {len(evidence)} not"
    return Verdict(
        "every live conversation converges to current cards",
        not evidence,
        figure,
        evidence[:EVIDENCE],
    )


def _runs(snap: Snapshot, dups: list[str]) -> Verdict:
    """One succeeded run per (conversation, source), none left running; the cards come
    from the run that succeeded for the current source."""
    evidence: list[str] = []
    succeeded: Counter[tuple[str, str]] = Counter()
    running = 0
    for r in snap.runs:
        if r["status"] == "running":
            running += 1
            evidence.append(f"run {r['id']} of {r['conversation_id']} left running")
        if r["status"] == "succeeded" and not r["replay"]:
            succeeded[(r["conversation_id"], r["source_hash"])] += 1
    for (conv, src), n in succeeded.items():
        if n > 1:
            dups.append(f"run:{conv}:{src}")
            evidence.append(f"conversation {conv}: {n} succeeded runs for source {src[:12]}")
    sources = live_sources(snap)
    for conv, expected in sources.items():
        if expected is not None and succeeded.get((conv, expected), 0) == 0:
            evidence.append(f"conversation {conv}: no succeeded run for its current source")
    statuses = Counter(r["status"] for r in snap.runs)
    figure = (
        f"runs: {', '.join(f'{s} {n}' for s, n in sorted(statuses.items()))}; "
        f"{len(succeeded)} sources extracted, {sum(1 for n in succeeded.values() if n > 1)} twice"
    )
    return Verdict(
        "exactly one succeeded run per source, none left running",
        not evidence,
        figure,
        evidence[:EVIDENCE],
    )


def _deleted(ix: _Index, snap: Snapshot) -> Verdict:
    evidence = [
        f"conversation {c} deleted (204) but still stored"
        for c in ix.deleted_ok
        if c in snap.conversations
    ]
    tables = {"message": snap.messages, "card": snap.cards, "run": snap.runs, "turn": snap.turns}
    for name, rows in tables.items():
        orphans = [r for r in rows if r["conversation_id"] not in snap.conversations]
        evidence += [
            f"{name} {r['id']} of missing conversation {r['conversation_id']}" for r in orphans
        ]
    orphans_state = [c for c in snap.states if c not in snap.conversations]
    evidence += [f"extraction state of missing conversation {c}" for c in orphans_state]
    figure = f"{len(ix.deleted_ok)} conversations deleted, {len(evidence)} leftovers"
    return Verdict(
        "nothing of a deleted conversation remains", not evidence, figure, evidence[:EVIDENCE]
    )


def _outbox_and_queues(ix: _Index, snap: Snapshot) -> Verdict:
    evidence: list[str] = []
    unsent = [o for o in snap.outbox if not o["sent"]]
    if unsent:
        evidence.append(f"{len(unsent)} outbox rows unsent")
    ready, unacked = snap.queues.get("glia.extraction", (0, 0))
    if ready or unacked:
        evidence.append(f"glia.extraction holds {ready} ready, {unacked} unacknowledged")
    poisoned = set(ix.poison)
    confirmed = {b for b in poisoned if ix.poison[b] == "ok"}
    unexpected = [b for b in snap.dlq if b not in poisoned]
    missing = confirmed - set(snap.dlq)
    evidence += [f"dead-lettered but never poisoned: {b[:120]}" for b in unexpected[:EVIDENCE]]
    evidence += [f"poisoned (confirmed) but not dead-lettered: {b[:120]}" for b in sorted(missing)]
    figure = (
        f"outbox unsent {len(unsent)}; queue {ready}+{unacked}; DLQ {len(snap.dlq)} "
        f"({len(confirmed)} poisoned and confirmed, {len(unexpected)} unexpected)"
    )
    return Verdict("outbox empty, DLQ holds only the poison", not evidence, figure, evidence)


# ---------------------------------------------------------------------- isolation


def _isolation(ix: _Index, snap: Snapshot) -> Verdict:
    """No row written for another user, none shown to another user."""
    evidence: list[str] = []
    owner = dict(ix.owner) | snap.conversations
    by_message = {m["id"]: m for m in snap.messages}
    rows = {
        "message": snap.messages,
        "turn": snap.turns,
        "card": snap.cards,
        "run": snap.runs,
        "outbox row": snap.outbox,
    }
    for name, table in rows.items():
        for r in table:
            want = snap.conversations.get(r["conversation_id"])
            if want is not None and r["user_id"] != want:
                evidence.append(
                    f"{name} {r.get('id')} of {want}'s conversation written for {r['user_id']}"
                )
    for conv, state in snap.states.items():
        want = snap.conversations.get(conv)
        if want is not None and state["user_id"] != want:
            evidence.append(
                f"extraction state of {want}'s conversation {conv} for {state['user_id']}"
            )
    for card in snap.cards:
        for src in card.get("source_message_ids", []):
            m = by_message.get(src)
            if m is not None and m["conversation_id"] != card["conversation_id"]:
                evidence.append(f"card {card['id']} cites message {src} of another conversation")
    for r in snap.runs:
        if str(r.get("request_id") or "").startswith("forged-"):
            evidence.append(f"run {r['id']} written for a forged request {r['request_id']}")
    for m in snap.messages:
        if m["role"] == "user" and m["content"].startswith("intruder probe-"):
            evidence.append(f"a probe wrote message {m['id']} into another user's conversation")
    probes = [h for h in ix.ops if h["op"] == "probe"]
    for h in probes:
        status = h["result"].get("status")
        if isinstance(status, int) and status < 400:
            evidence.append(f"probe answered {status}: {_short(h)}")
    unverified = 0
    for h in ix.ops:
        user = ix.user(h)
        res = h["result"]
        seen: list[str] = []
        if h["op"] == "list_convs":
            seen = list(res.get("ids", []))
        elif h["op"] in ("read_cards", "list_cards"):
            seen = [c[1] for c in res.get("cards", [])]
        elif h["op"] == "get_conv" and res.get("id"):
            seen = [res["id"]]
        for conv in seen:
            who = owner.get(conv)
            if who is None:
                unverified += 1
            elif who != user:
                evidence.append(f"{user} was shown {who}'s conversation {conv}: {_short(h)}")
    for user, convs in snap.api_seen.items():
        for conv in convs:
            who = owner.get(conv)
            if who is not None and who != user:
                evidence.append(f"final listing: {user} sees {who}'s conversation {conv}")
    answered = [h for h in probes if isinstance(h["result"].get("status"), int)]
    not_found = sum(1 for h in answered if h["result"]["status"] == 404)
    figure = (
        f"{len(probes)} probes of other users' resources, {not_found} of {len(answered)} "
        f"answers 404; {len(evidence)} leaks ({unverified} listed ids of unknown owner)"
    )
    return Verdict(
        "no row visible to or written for another user", not evidence, figure, evidence[:EVIDENCE]
    )
