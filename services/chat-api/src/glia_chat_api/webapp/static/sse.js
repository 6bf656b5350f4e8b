// A text/event-stream parser for fetch() bodies (EventSource cannot send an
// Authorization header). It follows the WHATWG "event stream interpretation":
// lines end with CRLF, LF or CR; a blank line dispatches the event; ":" starts a comment.
// It yields {type: "event", event, data, id}, {type: "comment", text} and
// {type: "retry", ms}. An event cut off by the end of the body is dropped, never yielded.

export async function* parseEventStream(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = "";
  let data = [];
  let id = null;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      let text = buffer + value;
      // A CR at the very end may be the first half of a CRLF: decide with the next chunk.
      const heldCR = text.endsWith("\r");
      if (heldCR) text = text.slice(0, -1);
      const lines = text.split(/\r\n|\r|\n/);
      buffer = lines.pop() + (heldCR ? "\r" : "");
      for (const line of lines) {
        if (line === "") {
          if (data.length || event || id !== null) {
            yield { type: "event", event: event || "message", data: data.join("\n"), id };
          }
          event = "";
          data = [];
          id = null;
          continue;
        }
        if (line.startsWith(":")) {
          yield { type: "comment", text: line.slice(1).trim() };
          continue;
        }
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let fieldValue = colon < 0 ? "" : line.slice(colon + 1);
        if (fieldValue.startsWith(" ")) fieldValue = fieldValue.slice(1);
        if (field === "event") event = fieldValue;
        else if (field === "data") data.push(fieldValue);
        else if (field === "id" && !fieldValue.includes("\0")) id = fieldValue;
        else if (field === "retry" && /^\d+$/.test(fieldValue)) {
          yield { type: "retry", ms: Number(fieldValue) };
        }
      }
    }
  } finally {
    // Left early (or failed): close the connection instead of leaving it open.
    reader.cancel().catch(() => {});
  }
}
