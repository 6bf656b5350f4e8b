// The Glia web client: sign in with a token, pick or start a conversation, chat with
// streaming replies, and watch the conversation's cards change live.

import { Api, ApiError, StreamLost, backoffMs, followTurn, sleep, RECONNECT } from "./api.js";
import { parseEventStream } from "./sse.js";

const TOKEN_KEY = "glia.token";
const $ = (id) => document.getElementById(id);

const state = {
  api: null,
  cardQueryUrl: "",
  nextCursor: null,
  conversation: null, // {id, title} of the open conversation, or null for a new one
  turn: null, // {controller, conversationId, messageId} while a reply streams
  opening: null, // the promise of a conversation being loaded
  cardsWatch: null, // AbortController of the card events stream
};

// ---------------------------------------------------------------- small helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("data-")) node.setAttribute(name, value);
    else node[name] = value;
  }
  node.append(...children);
  return node;
}

function formatTime(value) {
  if (!value) return "";
  const date = new Date(value);
  const sameDay = date.toDateString() === new Date().toDateString();
  return sameDay
    ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : date.toLocaleDateString([], { month: "short", day: "numeric" });
}

function announce(text) {
  $("chat-status").textContent = text;
}

function describeError(err) {
  if (err instanceof ApiError && err.retryAfterS !== null) {
    return `${err.message} Try again in ${err.retryAfterS} s.`;
  }
  if (err instanceof ApiError) return `${err.message} (${err.status})`;
  if (err instanceof StreamLost) return `The reply could not be resumed: ${err.message}.`;
  return "Glia could not be reached. Check your connection and try again.";
}

function isAbort(err) {
  return err?.name === "AbortError";
}

// ---------------------------------------------------------------- signing in

async function signIn(token, { remembered = false } = {}) {
  const api = new Api(token, state.cardQueryUrl);
  try {
    const page = await api.listConversations();
    state.api = api;
    sessionStorage.setItem(TOKEN_KEY, token);
    showApp(token);
    renderConversationList(page, { replace: true });
    const fromHash = new URLSearchParams(location.hash.slice(1)).get("c");
    if (fromHash) await openConversation(fromHash);
    else startNewConversation();
  } catch (err) {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignIn();
    const problem =
      err instanceof ApiError && err.status === 401
        ? remembered
          ? "Your token has expired. Paste a new one."
          : "Glia refused this token. Check it and try again."
        : describeError(err);
    $("token-error").textContent = problem;
  }
}

function tokenSubject(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)).sub ?? null;
  } catch {
    return null;
  }
}

function showApp(token) {
  $("sign-in-view").hidden = true;
  $("app-view").hidden = false;
  const subject = tokenSubject(token);
  $("who").textContent = subject ? `Signed in as ${subject}` : "Signed in";
  $("who").hidden = false;
  $("sign-out").hidden = false;
  $("token").value = "";
}

function showSignIn() {
  $("app-view").hidden = true;
  $("sign-in-view").hidden = false;
  $("who").hidden = true;
  $("sign-out").hidden = true;
  $("token").focus();
}

function signOut() {
  stopFollowing();
  stopWatchingCards();
  sessionStorage.removeItem(TOKEN_KEY);
  state.api = null;
  state.conversation = null;
  history.replaceState(null, "", location.pathname);
  $("conversation-list").replaceChildren();
  $("messages").replaceChildren();
  $("token-error").textContent = "";
  showSignIn();
}

// ---------------------------------------------------------------- conversations

function renderConversationList(page, { replace }) {
  const list = $("conversation-list");
  if (replace) list.replaceChildren();
  for (const conversation of page.items) {
    list.append(conversationItem(conversation));
  }
  state.nextCursor = page.next_cursor;
  $("more-conversations").hidden = !state.nextCursor;
  markCurrentConversation();
}

function conversationItem(conversation) {
  const button = el(
    "button",
    { type: "button", class: "conversation", "data-id": conversation.id },
    el("span", { class: "title" }, conversation.title || "Untitled"),
    el("time", { class: "when", dateTime: conversation.updated_at }, formatTime(conversation.updated_at)),
  );
  button.addEventListener("click", () => openConversation(conversation.id));
  return el("li", {}, button);
}

function markCurrentConversation() {
  for (const button of document.querySelectorAll(".conversation")) {
    if (button.dataset.id === state.conversation?.id) button.setAttribute("aria-current", "true");
    else button.removeAttribute("aria-current");
  }
}

async function refreshConversationList() {
  try {
    renderConversationList(await state.api.listConversations(), { replace: true });
  } catch {
    // the list is only a convenience; the chat goes on
  }
}

function startNewConversation() {
  stopFollowing();
  stopWatchingCards();
  state.conversation = null;
  history.replaceState(null, "", location.pathname);
  $("chat-heading").textContent = "New conversation";
  $("messages").replaceChildren();
  renderCards({ items: [], extraction: null }, "Send a message to start; its cards appear here.");
  announce("");
  markCurrentConversation();
  $("message").focus();
}

async function openConversation(id) {
  // A message sent while the conversation loads waits for it (see send).
  const opening = loadConversation(id);
  state.opening = opening;
  try {
    return await opening;
  } finally {
    if (state.opening === opening) state.opening = null;
  }
}

async function loadConversation(id) {
  stopFollowing();
  stopWatchingCards();
  let conversation;
  try {
    conversation = await state.api.getConversation(id);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return signOut();
    announce(err instanceof ApiError && err.status === 404 ? "That conversation was not found." : describeError(err));
    return startNewConversation();
  }
  state.conversation = { id: conversation.id, title: conversation.title };
  history.replaceState(null, "", `#c=${conversation.id}`);
  $("chat-heading").textContent = conversation.title || "Untitled conversation";
  const list = $("messages");
  list.replaceChildren();
  for (const message of conversation.messages) list.append(messageItem(message));
  list.lastElementChild?.scrollIntoView({ block: "end" });
  announce("");
  markCurrentConversation();
  watchCards(conversation.id);
  // A reply still being written (e.g. the page was reloaded mid-turn): follow it live,
  // from its first event, so its text is shown exactly once.
  const last = conversation.messages.at(-1);
  if (last?.role === "assistant" && last.status === "streaming") {
    const item = list.lastElementChild;
    item.querySelector(".text").textContent = "";
    follow({ conversationId: conversation.id, messageId: last.id, item });
  }
}

// ---------------------------------------------------------------- messages and turns

const ROLE_NAMES = { user: "You", assistant: "Assistant" };
const STATUS_NOTES = {
  streaming: "writing…",
  failed: "failed",
  incomplete: "stopped before the end",
};

function messageItem({ id = "", role, content = "", status = "complete" }) {
  const item = el(
    "li",
    { class: `message ${role}`, "data-role": role, "data-status": status, "data-id": id },
    el("span", { class: "speaker" }, ROLE_NAMES[role] ?? role),
    el("div", { class: "text" }, content),
    el("span", { class: "note" }, STATUS_NOTES[status] ?? ""),
  );
  item.setAttribute("aria-busy", String(status === "streaming"));
  return item;
}

function setStatus(item, status, note = STATUS_NOTES[status] ?? "") {
  item.dataset.status = status;
  item.setAttribute("aria-busy", String(status === "streaming"));
  item.querySelector(".note").textContent = note;
}

function setStreaming(active) {
  $("stop").hidden = !active;
  $("send").disabled = active;
}

function stopFollowing() {
  // Stops following the reply in this page; the turn itself goes on at the server.
  state.turn?.controller.abort();
  state.turn = null;
  setStreaming(false);
}

async function follow({ conversationId, content = null, messageId = null, item }) {
  const controller = new AbortController();
  const turn = { controller, conversationId, messageId };
  state.turn = turn;
  setStreaming(true);
  const text = item.querySelector(".text");
  try {
    const end = await followTurn({
      api: state.api,
      conversationId,
      content,
      messageId,
      signal: controller.signal,
      onEvent(event) {
        if (event.name === "start") {
          turn.messageId = event.data.assistant_message_id;
          item.dataset.id = turn.messageId;
          announce("");
        } else if (event.name === "delta") {
          text.append(event.data.text);
          if (text.textContent) item.scrollIntoView({ block: "end" });
        }
      },
      onReconnect({ delayMs, attempt, maxAttempts }) {
        announce(`Connection lost. Reconnecting (attempt ${attempt} of ${maxAttempts})…`);
        setStatus(item, "streaming", `reconnecting in ${Math.ceil(delayMs / 1000)} s…`);
      },
    });
    if (end.name === "done") {
      setStatus(item, "complete");
      announce("Reply finished.");
    } else if (end.data.code === "cancelled") {
      setStatus(item, "incomplete", "stopped");
      announce("Reply stopped.");
    } else {
      setStatus(item, "failed", end.data.message);
      announce(`The reply failed: ${end.data.message}`);
    }
  } catch (err) {
    if (isAbort(err)) return;
    if (content !== null && !turn.messageId) {
      // Refused before it started (e.g. too many turns): nothing was stored. Take the
      // message back into the box to send again later.
      item.previousElementSibling?.remove();
      item.remove();
      $("message").value = content;
    } else {
      setStatus(item, "failed", "not finished here");
    }
    announce(describeError(err));
  } finally {
    if (state.turn === turn) {
      state.turn = null;
      setStreaming(false);
    }
  }
  if (state.conversation?.id === conversationId) {
    loadCards(conversationId); // the new messages make the cards pending
    refreshConversationList();
  }
}

async function send(content) {
  if (state.opening) await state.opening;
  if (state.turn) {
    // The conversation just opened has a reply still being written: keep the text.
    $("message").value = content;
    announce("Wait for the reply to finish, or stop it, before sending.");
    return;
  }
  if (!state.conversation) {
    const title = content.split("\n")[0].slice(0, 80);
    try {
      const created = await state.api.createConversation(title);
      state.conversation = { id: created.id, title: created.title };
    } catch (err) {
      announce(describeError(err));
      return;
    }
    history.replaceState(null, "", `#c=${state.conversation.id}`);
    $("chat-heading").textContent = state.conversation.title || "Untitled conversation";
    watchCards(state.conversation.id);
    refreshConversationList();
  }
  const list = $("messages");
  list.append(messageItem({ role: "user", content }));
  const item = messageItem({ role: "assistant", status: "streaming" });
  list.append(item);
  item.scrollIntoView({ block: "end" });
  await follow({ conversationId: state.conversation.id, content, item });
}

async function stopReply() {
  const turn = state.turn;
  if (!turn?.messageId) return;
  announce("Stopping the reply…");
  try {
    await state.api.cancelTurn(turn.conversationId, turn.messageId);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 409)) announce(describeError(err));
  }
  // The stream itself ends with `error` code "cancelled".
}

// ---------------------------------------------------------------- cards

const KIND_NAMES = {
  summary: "Summary",
  fact: "Fact",
  task: "Task",
  decision: "Decision",
  question: "Question",
};
const FRESHNESS = {
  current: "Up to date with the latest messages",
  pending: "Updating from newer messages…",
  none: "No messages yet",
};

function renderCards(page, emptyText = "No cards yet.") {
  const extraction = page.extraction;
  const freshness = $("freshness");
  freshness.dataset.state = extraction?.state ?? "none";
  let line = extraction ? FRESHNESS[extraction.state] ?? extraction.state : emptyText;
  if (extraction?.derived_at) line += ` · derived ${formatTime(extraction.derived_at)}`;
  freshness.textContent = line;
  const list = $("card-list");
  list.replaceChildren(
    ...page.items.map((card) =>
      el(
        "li",
        { class: `card ${card.kind}`, "data-kind": card.kind },
        el("span", { class: "kind" }, KIND_NAMES[card.kind] ?? card.kind),
        el("h3", {}, card.title),
        el("p", {}, card.body),
      ),
    ),
  );
}

async function loadCards(conversationId, signal) {
  try {
    const page = await state.api.listCards(conversationId, signal);
    if (state.conversation?.id === conversationId) renderCards(page);
  } catch (err) {
    if (!isAbort(err) && err instanceof ApiError && err.status !== 404) {
      $("freshness").textContent = `Cards unavailable: ${err.message}`;
    }
  }
}

function stopWatchingCards() {
  state.cardsWatch?.abort();
  state.cardsWatch = null;
}

// Reads the cards once subscribed (the server's first bytes), then after every
// `cards.updated` event; reconnects with backoff when the stream drops.
async function watchCards(conversationId) {
  stopWatchingCards();
  const controller = new AbortController();
  state.cardsWatch = controller;
  const { signal } = controller;
  let failures = 0;
  let serverRetryMs = null;
  while (!signal.aborted) {
    let retryAfterMs = 0;
    try {
      const response = await state.api.cardEvents(conversationId, signal);
      let loaded = false;
      for await (const item of parseEventStream(response.body)) {
        failures = 0;
        if (item.type === "retry") serverRetryMs = item.ms;
        if (!loaded || (item.type === "event" && item.event === "cards.updated")) {
          loaded = true;
          await loadCards(conversationId, signal);
        }
      }
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ApiError && !err.retryable) return; // e.g. the conversation is gone
      retryAfterMs = (err.retryAfterS ?? 0) * 1000;
    }
    failures += 1;
    if (failures > RECONNECT.maxAttempts) {
      $("freshness").textContent = "Live card updates stopped. Reopen the conversation to retry.";
      return;
    }
    try {
      // The stream also ends by its maximum lifetime (a "reconnect" event): come back.
      await sleep(Math.max(backoffMs(failures, serverRetryMs), retryAfterMs), signal);
    } catch {
      return;
    }
  }
}

// ---------------------------------------------------------------- wiring

function wire() {
  $("sign-in").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    $("token-error").textContent = token ? "" : "Paste a token first.";
    if (token) signIn(token);
  });
  $("sign-out").addEventListener("click", signOut);
  $("new-conversation").addEventListener("click", startNewConversation);
  $("more-conversations").addEventListener("click", async () => {
    try {
      renderConversationList(await state.api.listConversations(state.nextCursor), { replace: false });
    } catch (err) {
      announce(describeError(err));
    }
  });
  $("compose").addEventListener("submit", (event) => {
    event.preventDefault();
    const box = $("message");
    const content = box.value.trim();
    if (!content || state.turn) return;
    box.value = "";
    send(content);
  });
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("compose").requestSubmit();
    } else if (event.key === "Escape" && state.turn) {
      event.preventDefault();
      stopReply();
    }
  });
  $("stop").addEventListener("click", stopReply);
}

async function main() {
  wire();
  try {
    const config = await (await fetch("config.json", { cache: "no-store" })).json();
    state.cardQueryUrl = (config.card_query_url || "").replace(/\/$/, "");
  } catch {
    state.cardQueryUrl = "";
  }
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) await signIn(token, { remembered: true });
  else showSignIn();
}

main();
