// Server-Sent Events over fetch(): EventSource cannot send an Authorization header, so the page
// reads the response body itself. Parsing follows the HTML standard's event-stream interpretation.

export class SseParser {
  constructor(onEvent, onRetry) {
    this.onEvent = onEvent; // (type, data) per dispatched message
    this.onRetry = onRetry; // (milliseconds) per valid retry: field
    this.buffer = "";
    this.type = "";
    this.data = [];
  }

  push(chunk) {
    this.buffer += chunk;
    const breaks = /\r\n|\r|\n/g;
    let start = 0;
    let match;
    while ((match = breaks.exec(this.buffer)) !== null) {
      if (match[0] === "\r" && breaks.lastIndex === this.buffer.length) break; // maybe half a CRLF
      this.line(this.buffer.slice(start, match.index));
      start = breaks.lastIndex;
    }
    this.buffer = this.buffer.slice(start);
  }

  line(text) {
    if (text === "") return this.dispatch();
    if (text.startsWith(":")) return undefined; // a comment, e.g. the keepalive
    const colon = text.indexOf(":");
    const field = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.type = value;
    else if (field === "data") this.data.push(value);
    else if (field === "retry" && /^\d+$/.test(value)) this.onRetry(Number(value));
    return undefined;
  }

  dispatch() {
    if (this.data.length > 0) this.onEvent(this.type || "message", this.data.join("\n"));
    this.type = "";
    this.data = [];
  }
}

// Read a text/event-stream body until it ends or `aborted()` says stop.
export async function readEventStream(body, { onEvent, onRetry, aborted }) {
  const parser = new SseParser(onEvent, onRetry);
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done || aborted()) return;
    parser.push(value);
  }
}
