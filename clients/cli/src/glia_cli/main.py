"""glia: chat with Glia, list conversations and watch their cards from a terminal."""

from __future__ import annotations

import os
import sys
from collections.abc import Generator
from contextlib import closing
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.markup import escape

from glia_cli import render
from glia_cli.api import ApiError, GliaClient
from glia_cli.config import (
    ConfigError,
    Profile,
    config_path,
    describe_token,
    forget_token,
    load_profile,
    save_profile,
)
from glia_cli.streams import (
    CardSnapshot,
    ProtocolError,
    StreamLost,
    TurnEvent,
    TurnStream,
    read_all_cards,
    watch_cards,
)

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="glia",
    help="A terminal client for Glia: chat with streaming replies that survive dropped "
    "connections, list conversations, and watch their cards live.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

JsonOption = Annotated[
    bool, typer.Option("--json", help="Machine-readable output (JSON; NDJSON for streams).")
]
ConversationOption = Annotated[
    str | None, typer.Option("--conversation", "-c", help="The conversation id.")
]


@dataclass
class Session:
    """What every command needs: where the APIs are and the token to use."""

    chat_url: str
    cards_url: str
    token: str | None
    token_source: str  # "GLIA_TOKEN", the config file, or "" when there is none

    def client(self) -> GliaClient:
        if not self.token:
            raise typer.BadParameter(
                "no token: run `glia login` or set GLIA_TOKEN", param_hint="token"
            )
        return GliaClient(self.token, self.chat_url, self.cards_url)


def _session(ctx: typer.Context) -> Session:
    session = ctx.obj
    assert isinstance(session, Session)
    return session


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            envvar="GLIA_URL",
            help="Base URL of both APIs, when one ingress serves them "
            "(e.g. https://glia.example.com).",
        ),
    ] = None,
    chat_url: Annotated[
        str | None,
        typer.Option("--chat-url", envvar="GLIA_CHAT_URL", help="Chat API base URL."),
    ] = None,
    cards_url: Annotated[
        str | None,
        typer.Option("--cards-url", envvar="GLIA_CARDS_URL", help="Card query API base URL."),
    ] = None,
) -> None:
    try:
        profile = load_profile()
    except ConfigError as exc:
        _exit(str(exc))
    env_token = os.environ.get("GLIA_TOKEN", "").strip()
    ctx.obj = Session(
        chat_url=(chat_url or url or profile.chat_url).rstrip("/"),
        cards_url=(cards_url or url or profile.cards_url).rstrip("/"),
        token=env_token or profile.token,
        token_source="GLIA_TOKEN" if env_token else (str(config_path()) if profile.token else ""),
    )


def _exit(message: str, code: int = EXIT_FAILED) -> NoReturn:
    render.fail(message)
    raise typer.Exit(code)


@app.command()
def login(
    ctx: typer.Context,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help="The bearer token. Default: read from stdin when it is piped "
            "(`glia-token alice | glia login`), else asked for.",
        ),
    ] = None,
) -> None:
    """Check a token against the chat API and store it (with the API addresses)."""
    session = _session(ctx)
    if token is None:
        if not sys.stdin.isatty():
            token = sys.stdin.read().strip()
        else:
            token = typer.prompt("Token", hide_input=True).strip()
    if not token:
        _exit("no token given")
    with GliaClient(token, session.chat_url, session.cards_url) as client:
        try:
            client.list_conversations(limit=1)
        except ApiError as exc:
            if exc.status == 401:
                _exit(f"the chat API at {session.chat_url} refused this token: {exc.detail}")
            raise
    path = save_profile(Profile(token, session.chat_url, session.cards_url))
    render.note(f"logged in as {describe_token(token)}; saved to {path}", style="green")
    if session.token_source == "GLIA_TOKEN":
        render.note("GLIA_TOKEN is set in this environment and is used instead while it is")


@app.command()
def logout() -> None:
    """Forget the stored token."""
    if forget_token():
        render.note(f"token removed from {config_path()}")
    else:
        render.note("no token was stored")


@app.command()
def conversations(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=100, help="Conversations per page.")] = 20,
    all_pages: Annotated[bool, typer.Option("--all", help="Follow every page.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Your conversations, most recently updated first."""
    with _session(ctx).client() as client:
        page = client.list_conversations(limit)
        items = list(page["items"])
        while all_pages and page.get("next_cursor"):
            page = client.list_conversations(limit, page["next_cursor"])
            items.extend(page["items"])
    next_cursor = None if all_pages else page.get("next_cursor")
    if as_json:
        render.print_json({"items": items, "next_cursor": next_cursor})
        return
    if not items:
        render.note("no conversations yet: start one with `glia chat`")
        return
    render.out.print(render.conversations_table(items))
    if next_cursor:
        render.note("more conversations: use --all")


@app.command()
def show(
    ctx: typer.Context,
    conversation_id: Annotated[str, typer.Argument(help="The conversation id.")],
    as_json: JsonOption = False,
) -> None:
    """One conversation with its messages."""
    with _session(ctx).client() as client:
        conversation = client.read_conversation(conversation_id)
    if as_json:
        render.print_json(conversation)
        return
    render.out.print(f"[bold]{escape(conversation.get('title') or '(untitled)')}[/]")
    render.out.print(f"[dim]{conversation['id']}[/]\n")
    for message in conversation["messages"]:
        render.show_message(message)


def _play(
    client: GliaClient,
    turn: TurnStream,
    events: Generator[TurnEvent, None, None],
    view: render.TurnView,
) -> TurnEvent | None:
    """Show a turn to its end. Ctrl-C cancels it through the API and shows how it ends."""
    try:
        with closing(events):
            for event in events:
                view.show(event)
        return turn.terminal
    except KeyboardInterrupt:
        pass
    if turn.terminal is not None:
        return turn.terminal
    if turn.message_id is None:
        render.note("interrupted before the reply started; it may still be answered")
        raise KeyboardInterrupt
    render.note("cancelling the reply...", style="yellow")
    try:
        client.cancel_turn(turn.conversation_id, turn.message_id)
    except ApiError as exc:
        if exc.status != 409:  # 409: the turn had ended already; its end is shown below
            raise
    # The rest of the turn: the text produced before the cancel took effect, then its end.
    tail = turn.attach(turn.message_id, turn.last_event_id)
    with closing(tail):
        for event in tail:
            view.show(event)
    return turn.terminal


def _exit_code(terminal: TurnEvent | None) -> int:
    if terminal is None or terminal.name == "done":
        return 0
    return EXIT_INTERRUPTED if terminal.data.get("code") == "cancelled" else EXIT_FAILED


def _new_turn(client: GliaClient, conversation_id: str) -> TurnStream:
    return TurnStream(client, conversation_id, on_reconnect=render.reconnect_note)


def _title_from(message: str) -> str:
    first_line = message.strip().splitlines()[0] if message.strip() else ""
    return first_line if len(first_line) <= 80 else first_line[:79] + "…"


def _resume_running_turn(
    client: GliaClient, conversation: dict[str, Any], view: render.TurnView
) -> None:
    """Follow the conversation's reply that is still streaming, if there is one."""
    messages = conversation.get("messages", [])
    if messages and messages[-1]["role"] == "assistant" and messages[-1]["status"] == "streaming":
        render.note("a reply is still streaming; following it")
        turn = _new_turn(client, conversation["id"])
        _play(client, turn, turn.attach(messages[-1]["id"]), view)


@app.command()
def chat(
    ctx: typer.Context,
    conversation_id: ConversationOption = None,
    title: Annotated[
        str | None, typer.Option(help="Title of a new conversation (default: the first message).")
    ] = None,
    message: Annotated[
        str | None,
        typer.Option("--message", "-m", help="Send this one message, show the reply and exit."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Chat: each line you type is sent and the reply streams in as it is written.

    Ctrl-C while a reply streams cancels it; Ctrl-D (or /quit) ends the chat. A dropped
    connection is resumed where it stopped. Lines piped on stdin are sent one by one.
    """
    view = render.TurnView(as_json)
    with _session(ctx).client() as client:
        conversation: dict[str, Any] | None = None
        if conversation_id is not None:
            conversation = client.read_conversation(conversation_id)

        def ensure_conversation(first_message: str) -> str:
            nonlocal conversation
            if conversation is None:
                conversation = client.create_conversation(title or _title_from(first_message))
                if not as_json:
                    render.note(f"conversation {conversation['id']}")
            return str(conversation["id"])

        if message is not None:
            turn = _new_turn(client, ensure_conversation(message))
            try:
                terminal = _play(client, turn, turn.send(message), view)
            except KeyboardInterrupt:
                raise typer.Exit(EXIT_INTERRUPTED) from None
            raise typer.Exit(_exit_code(terminal))

        interactive = sys.stdin.isatty()
        if conversation is not None and not as_json:
            render.out.print(f"[bold]{escape(conversation.get('title') or '(untitled)')}[/]")
            for old in conversation["messages"][-6:]:
                render.show_message(old)
        if conversation is not None:
            _resume_running_turn(client, conversation, view)
        if interactive:
            render.note("Enter sends; Ctrl-C cancels a streaming reply; Ctrl-D or /quit ends.")
        while True:
            try:
                line = render.out.input("[bold cyan]you>[/] ") if interactive else input()
            except (EOFError, KeyboardInterrupt):
                if interactive:
                    render.out.print()
                return
            text = line.strip()
            if not text:
                continue
            if text in ("/quit", "/exit"):
                return
            turn = _new_turn(client, ensure_conversation(text))
            try:
                _play(client, turn, turn.send(text), view)
            except KeyboardInterrupt:
                render.note("stopped following the reply")
            except (ApiError, StreamLost) as exc:
                if isinstance(exc, ApiError) and exc.status == 401:
                    raise
                # One turn went wrong; the chat goes on.
                render.fail(_describe_failure(exc))


@app.command()
def cards(
    ctx: typer.Context,
    conversation_id: ConversationOption = None,
    kind: Annotated[
        str | None,
        typer.Option(help="Only this kind: summary, fact, task, decision or question."),
    ] = None,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch", "-w", help="Keep showing the cards as they change (needs --conversation)."
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Cards derived from your conversations, with their freshness."""
    with _session(ctx).client() as client:
        if not watch:
            items, extraction = read_all_cards(client, conversation_id, kind)
            if as_json:
                render.print_json({"items": items, "extraction": extraction})
            else:
                render.cards_view(items, extraction)
            return
        if conversation_id is None:
            raise typer.BadParameter("--watch needs --conversation", param_hint="--watch")
        snapshots = watch_cards(
            client, conversation_id, kind=kind, on_reconnect=render.reconnect_note
        )
        try:
            with closing(snapshots):
                for snapshot in snapshots:
                    _show_snapshot(snapshot, as_json)
        except KeyboardInterrupt:
            return
        except ApiError as exc:
            if exc.status == 404:
                _exit("the conversation is gone (deleted?)")
            raise


def _show_snapshot(snapshot: CardSnapshot, as_json: bool) -> None:
    if as_json:
        render.print_json(snapshot.to_json())
    else:
        render.snapshot_view(snapshot)


def _describe_failure(exc: Exception) -> str:
    if isinstance(exc, ApiError):
        hint = ""
        if exc.status == 401:
            hint = " (run `glia login`, or check GLIA_TOKEN)"
        elif exc.retry_after_s is not None:
            hint = f" (try again in {exc.retry_after_s:.0f} s)"
        return f"{exc.detail}{hint} [{exc.status}]"
    if isinstance(exc, httpx.TransportError):
        return f"cannot reach Glia ({type(exc).__name__}: {exc or 'no details'})"
    return str(exc)


def run() -> None:
    """The console script: every failure a user can meet becomes one clear line."""
    try:
        app()
    except (ApiError, httpx.TransportError, StreamLost, ProtocolError, ConfigError) as exc:
        render.fail(_describe_failure(exc))
        sys.exit(EXIT_FAILED)
