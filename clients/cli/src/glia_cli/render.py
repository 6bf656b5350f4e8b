"""How the CLI shows things: Rich for people, one JSON document (or line) for scripts."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from glia_cli.streams import CardSnapshot, Reconnect, TurnEvent

out = Console(highlight=False, emoji=False)
err = Console(stderr=True, highlight=False, emoji=False)


def print_json(value: Any) -> None:
    """One compact JSON document per line on stdout (NDJSON when repeated)."""
    out.file.write(json.dumps(value, ensure_ascii=False) + "\n")
    out.file.flush()


def note(message: str, style: str = "dim") -> None:
    """A remark for the person at the terminal, on stderr so stdout stays the content."""
    err.print(f"[{style}]{escape(message)}[/]")


def fail(message: str) -> None:
    err.print(f"[bold red]glia:[/] {escape(message)}")


def when(value: str | None) -> str:
    if not value:
        return "-"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def conversations_table(items: list[dict[str, Any]]) -> Table:
    table = Table(title=None, show_lines=False, header_style="bold")
    table.add_column("id", no_wrap=True)
    table.add_column("title")
    table.add_column("updated", no_wrap=True)
    for c in items:
        table.add_row(
            c["id"], c.get("title") or Text("(untitled)", style="dim"), when(c["updated_at"])
        )
    return table


ROLE_LABEL = {"user": "[bold cyan]you[/]", "assistant": "[bold magenta]assistant[/]"}


def show_message(message: dict[str, Any]) -> None:
    label = ROLE_LABEL.get(message["role"], message["role"])
    status = message.get("status", "complete")
    suffix = "" if status == "complete" else f" [dim]({status})[/]"
    out.print(f"{label}{suffix}")
    out.print(message["content"] or Text("(no text)", style="dim"), markup=False)
    out.print()


FRESHNESS = {
    "current": ("green", "current: derived from the latest messages"),
    "pending": ("yellow", "pending: newer messages are being turned into cards"),
    "none": ("dim", "none: the conversation has no messages yet"),
}


def freshness_line(extraction: dict[str, Any] | None) -> Text | None:
    if extraction is None:
        return None
    style, meaning = FRESHNESS.get(extraction["state"], ("", extraction["state"]))
    line = Text("cards: ", style="bold")
    line.append(meaning, style=style)
    if extraction.get("derived_at"):
        line.append(f" (derived {when(extraction['derived_at'])})", style="dim")
    return line


def cards_view(cards: list[dict[str, Any]], extraction: dict[str, Any] | None) -> None:
    line = freshness_line(extraction)
    if line is not None:
        out.print(line)
    if not cards:
        out.print(Text("no cards", style="dim"))
        return
    table = Table(show_lines=True, header_style="bold")
    table.add_column("kind", no_wrap=True)
    table.add_column("title")
    table.add_column("body")
    for card in cards:
        table.add_row(card["kind"], card["title"], card["body"])
    out.print(table)


def snapshot_view(snapshot: CardSnapshot) -> None:
    heading = {"subscribed": "cards", "reconnected": "cards (reconnected)"}.get(
        snapshot.reason, "cards updated"
    )
    out.rule(f"{heading} at {datetime.now().strftime('%H:%M:%S')}", style="dim")
    cards_view(snapshot.cards, snapshot.extraction)


def reconnect_note(r: Reconnect) -> None:
    note(
        f"{r.reason}: reconnecting in {r.delay_s:.1f} s (attempt {r.attempt} of {r.max_attempts})",
        style="yellow",
    )


class TurnView:
    """Shows one turn as it streams: the text as it arrives, then how it ended."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self._open_line = False

    def show(self, event: TurnEvent) -> None:
        if self.as_json:
            print_json(event.to_json())
            return
        if event.name == "start":
            out.print(ROLE_LABEL["assistant"])
        elif event.name == "delta":
            # Written as is (no markup, no wrapping): the reply is the server's text.
            out.file.write(event.data["text"])
            out.file.flush()
            self._open_line = True
        elif event.name == "done":
            self._end_line()
            if event.data.get("finish_reason") == "length":
                note("(the reply was cut at the model's length limit)")
        elif event.name == "error":
            self._end_line()
            if event.data.get("code") == "cancelled":
                note("[cancelled]", style="yellow")
            else:
                message = event.data.get("message", "the turn failed")
                note(f"[error {event.data.get('code')}: {message}]", style="red")
        if event.terminal:
            out.print()

    def _end_line(self) -> None:
        if self._open_line:
            out.file.write("\n")
            out.file.flush()
            self._open_line = False
