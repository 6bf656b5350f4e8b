// Glia's two HTTP APIs as the web client uses them, and a chat turn that survives
// dropped connections (resumed from the events route with Last-Event-ID).

import { parseEventStream } from "./sse.js";

export class ApiError extends Error {
  constructor(status, detail, code, retryAfterS = null) {
    super(detail);
    this.status = status;
    this.code = code;
    this.retryAfterS = retryAfterS; // from Retry-After (429, 503)
  }

  get retryable() {
    return this.status === 408 || this.status === 429 || this.status >= 500;
  }
}

export class StreamLost extends Error {}

class Interrupted extends Error {}

async function problem(response) {
  let detail = response.statusText || `HTTP ${response.status}`;
  let code = null;
  try {
    const body = await response.json();
    detail = body.detail || body.title || detail;
    code = body.code || null;
  } catch {
    // not a problem document: keep the status text
  }
  const retryAfter = response.headers.get("Retry-After");
  const retryAfterS = /^\d+$/.test(retryAfter ?? "") ? Number(retryAfter) : null;
  return new ApiError(response.status, detail, code, retryAfterS);
}

export class Api {
  constructor(token, cardQueryUrl) {
    this.token = token;
    this.chatBase = ""; // the page's own origin
    this.cardsBase = cardQueryUrl || "";
  }

  async request(url, { method = "GET", body, headers = {}, signal } = {}) {
    const init = {
      method,
      signal,
      cache: "no-store",
      headers: { Authorization: `Bearer ${this.token}`, ...headers },
    };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
    const response = await fetch(url, init);
    if (!response.ok) throw await problem(response);
    return response;
  }

  async json(url, options) {
    const response = await this.request(url, options);
    return response.status === 204 ? null : response.json();
  }

  listConversations(cursor) {
    const query = new URLSearchParams({ limit: "50" });
    if (cursor) query.set("cursor", cursor);
    return this.json(`${this.chatBase}/v1/conversations?${query}`);
  }

  createConversation(title) {
    return this.json(`${this.chatBase}/v1/conversations`, { method: "POST", body: { title } });
  }

  // The conversation with all of its messages (they come in pages).
  async getConversation(id) {
    const url = `${this.chatBase}/v1/conversations/${encodeURIComponent(id)}`;
    const conversation = await this.json(`${url}?limit=1000`);
    while (conversation.next_cursor) {
      const query = new URLSearchParams({ limit: "1000", cursor: conversation.next_cursor });
      const page = await this.json(`${url}?${query}`);
      conversation.messages.push(...page.messages);
      conversation.next_cursor = page.next_cursor;
    }
    return conversation;
  }

  listCards(conversationId, signal) {
    const query = new URLSearchParams({ conversation_id: conversationId, limit: "100" });
    return this.json(`${this.cardsBase}/v1/cards?${query}`, { signal });
  }

  cancelTurn(conversationId, messageId) {
    return this.request(this.turnUrl(conversationId, messageId, "cancel"), { method: "POST" });
  }

  turnUrl(conversationId, messageId, what) {
    const c = encodeURIComponent(conversationId);
    const m = encodeURIComponent(messageId);
    return `${this.chatBase}/v1/conversations/${c}/messages/${m}/${what}`;
  }

  postMessage(conversationId, content, idempotencyKey, signal) {
    const c = encodeURIComponent(conversationId);
    return this.request(`${this.chatBase}/v1/conversations/${c}/messages`, {
      method: "POST",
      body: { content },
      headers: { Accept: "text/event-stream", "Idempotency-Key": idempotencyKey },
      signal,
    });
  }

  turnEvents(conversationId, messageId, lastEventId, signal) {
    const headers = { Accept: "text/event-stream" };
    if (lastEventId !== null) headers["Last-Event-ID"] = String(lastEventId);
    return this.request(this.turnUrl(conversationId, messageId, "events"), { headers, signal });
  }

  cardEvents(conversationId, signal) {
    const query = new URLSearchParams({ conversation_id: conversationId });
    return this.request(`${this.cardsBase}/v1/cards/events?${query}`, {
      headers: { Accept: "text/event-stream" },
      signal,
    });
  }
}

export const RECONNECT = { maxAttempts: 8, initialDelayMs: 500, maxDelayMs: 15000 };

export function backoffMs(attempt, serverRetryMs, policy = RECONNECT) {
  const base = serverRetryMs ?? policy.initialDelayMs;
  return Math.min(policy.maxDelayMs, base * 2 ** (attempt - 1));
}

export function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}

const TURN_EVENTS = new Set(["start", "delta", "done", "error"]);

// Follows one turn to its terminal event and returns it. With `content`, starts the turn
// (its Idempotency-Key makes repeating the request safe until `start` arrives); with
// `messageId`, attaches to a running or finished turn after `lastEventId` (null: all).
// Each event reaches onEvent once, in order, however often the connection drops.
export async function followTurn({
  api,
  conversationId,
  content = null,
  messageId = null,
  lastEventId = null,
  signal,
  onEvent,
  onReconnect = () => {},
}) {
  const key = crypto.randomUUID();
  const turn = { messageId, lastEventId };
  let serverRetryMs = null;
  let failures = 0;
  for (;;) {
    let reason;
    let retryAfterMs = 0;
    try {
      const response = turn.messageId
        ? await api.turnEvents(conversationId, turn.messageId, turn.lastEventId, signal)
        : await api.postMessage(conversationId, content, key, signal);
      for await (const item of parseEventStream(response.body)) {
        if (item.type === "retry") serverRetryMs = item.ms;
        if (item.type !== "event" || !TURN_EVENTS.has(item.event)) continue;
        const event = { name: item.event, id: Number(item.id), data: JSON.parse(item.data) };
        const terminal = event.name === "done" || event.name === "error";
        const seen = turn.lastEventId !== null && event.id <= turn.lastEventId;
        // A retryable error repeating an id already shown ends this stream, not the turn
        // (e.g. the stream reached its maximum lifetime): resume it.
        if (seen && event.name === "error" && event.data.retryable) {
          throw new Interrupted(event.data.message || event.data.code);
        }
        // Already shown (a replay overlapping what we have): skip. A terminal event is
        // always taken: it ends the turn and carries no text.
        if (seen && !terminal) continue;
        if (event.name === "start") turn.messageId = event.data.assistant_message_id;
        turn.lastEventId = Math.max(event.id, turn.lastEventId ?? 0);
        failures = 0;
        onEvent(event, turn);
        if (terminal) return event;
      }
      reason = "the stream ended before the turn did";
    } catch (err) {
      if (signal?.aborted) throw err;
      if (err instanceof ApiError) {
        const starting = !turn.messageId;
        // A 429 refuses a new turn: the user decides when to try again. A 409 before
        // `start`: the first request is still running; its outcome is replayed after.
        if (starting && err.status === 429) throw err;
        if (!err.retryable && !(starting && err.status === 409)) throw err;
        reason = `the server answered ${err.status}`;
        retryAfterMs = (err.retryAfterS ?? 0) * 1000;
      } else if (err instanceof Interrupted) {
        reason = err.message;
      } else if (err instanceof SyntaxError) {
        throw err; // not Glia's protocol: retrying will not help
      } else {
        reason = "the connection dropped";
      }
    }
    failures += 1;
    if (failures > RECONNECT.maxAttempts) {
      throw new StreamLost(`${reason}; gave up after ${RECONNECT.maxAttempts} attempts`);
    }
    const delayMs = Math.max(backoffMs(failures, serverRetryMs), retryAfterMs);
    onReconnect({ attempt: failures, maxAttempts: RECONNECT.maxAttempts, delayMs, reason, turn });
    await sleep(delayMs, signal);
  }
}
