// On-call dashboard: reads GET /v1/alerts/stream (SSE over fetch, so the bearer token travels in
// the Authorization header, never in the URL) and acknowledges with POST /v1/alerts/{id}/ack.
// Plain ES modules: no framework, no build step.
import { readEventStream } from "./sse.js";
import { $, render, setConnection, showAuthError, showNotice, tick } from "./view.js";

const TOKEN_KEY = "notifier.accessToken"; // sessionStorage: this tab only, gone when it closes
const TOKEN_SHAPE = /^[A-Za-z0-9\-._~+/]+=*$/; // RFC 6750 b64token
const UNRESOLVED = new Set(["open", "acknowledged"]);
const MAX_BACKOFF_MS = 30000;

const state = {
  alerts: new Map(), // alert_id -> summary, unresolved alerts only
  versions: new Map(), // alert_id -> updated_at (ms) of the newest state applied, tombstones too
  patients: new Set(), // every patient seen since the page connected
  rows: new Map(), // alert_id -> <tr>
  pendingAcks: new Set(),
  memoryToken: null, // fallback when sessionStorage is refused
  clockOffsetMs: 0,
  retryMs: 2000,
  backoffMs: 0,
  abort: null,
  reconnectTimer: null,
};

// ---- token (sessionStorage only, never localStorage or a URL) ----------------------------------

function currentToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || state.memoryToken;
  } catch {
    return state.memoryToken;
  }
}

function setToken(token) {
  state.memoryToken = token;
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage refused (privacy mode): the token lives only until the page reloads
  }
  const signedIn = Boolean(token);
  $("token-form").hidden = signedIn;
  $("token-help").hidden = signedIn;
  $("sign-out").hidden = !signedIn;
}

function onTokenSubmit(event) {
  event.preventDefault(); // never submitted (the CSP forbids it too): no token in a URL or a log
  const input = $("token-input");
  const token = input.value.trim().replace(/^Bearer\s+/i, "");
  input.value = "";
  if (!TOKEN_SHAPE.test(token)) {
    showAuthError("That does not look like an access token. Paste the token itself.");
    return;
  }
  showAuthError("");
  setToken(token);
  state.backoffMs = 0;
  connect();
}

function forgetToken() {
  setToken(null);
  stopStream();
  setConnection("idle", "Not connected");
}

// ---- the live stream ---------------------------------------------------------------------------

async function connect() {
  stopStream();
  const token = currentToken();
  if (!token) return setConnection("idle", "Not connected");
  const abort = new AbortController();
  state.abort = abort;
  setConnection("connecting", "Connecting…");
  let healthy = false; // a stream that delivered its snapshot was fine, whatever ended it
  try {
    const res = await fetch("/v1/alerts/stream", {
      headers: { Authorization: `Bearer ${token}`, Accept: "text/event-stream" },
      cache: "no-store",
      signal: abort.signal,
    });
    if (res.status === 401 || res.status === 403) return authFailed(res.status, "read");
    if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
    noteServerClock(res.headers.get("date"));
    await readEventStream(res.body, {
      onEvent: (type, data) => (healthy = onStreamEvent(type, data) || healthy),
      onRetry: (ms) => (state.retryMs = ms),
      aborted: () => abort.signal.aborted,
    });
  } catch {
    // network error, or aborted: both handled below
  }
  if (!abort.signal.aborted) scheduleReconnect(healthy);
  return undefined;
}

// Apply one message; true for a snapshot.
function onStreamEvent(type, data) {
  let payload;
  try {
    payload = JSON.parse(data);
  } catch {
    return false;
  }
  if (type === "snapshot") applySnapshot(payload.alerts || []);
  else if (type === "alert") upsert(payload);
  return type === "snapshot";
}

function stopStream() {
  if (state.abort) state.abort.abort();
  state.abort = null;
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = null;
}

function scheduleReconnect(healthy) {
  const base = healthy ? state.retryMs : Math.max(state.backoffMs * 2, state.retryMs);
  state.backoffMs = Math.min(base, MAX_BACKOFF_MS);
  const delay = Math.round(state.backoffMs * (0.8 + Math.random() * 0.4)); // jitter
  setConnection("reconnecting", `Disconnected: reconnecting in ${Math.ceil(delay / 1000)} s…`);
  state.reconnectTimer = setTimeout(connect, delay);
}

function authFailed(status, action) {
  stopStream();
  if (status === 401) {
    setToken(null);
    showAuthError("Your access token has expired or is invalid. Paste a new one to continue.");
  } else if (action === "read") {
    setToken(null);
    showAuthError("Insufficient scope: this token lacks alerts:read, so it cannot show alerts.");
  }
  setConnection("stopped", status === 401 ? "Stopped: token expired" : "Stopped: access denied");
}

function noteServerClock(dateHeader) {
  const server = Date.parse(dateHeader || "");
  if (Number.isNaN(server)) return;
  const offset = server - Date.now();
  state.clockOffsetMs = Math.abs(offset) > 2000 ? offset : 0; // the header has 1 s resolution
}

// ---- alert state -------------------------------------------------------------------------------

function applySnapshot(alerts) {
  state.alerts.clear();
  for (const alert of alerts) {
    state.versions.set(alert.alert_id, Date.parse(alert.updated_at) || 0);
    state.patients.add(alert.patient_id);
    if (UNRESOLVED.has(alert.status)) state.alerts.set(alert.alert_id, alert);
  }
  state.backoffMs = 0;
  setConnection("live", "Live");
  render(state);
}

// Apply one alert's whole state unless a newer one was already applied (events may repeat).
function upsert(alert) {
  if (!alert || typeof alert.alert_id !== "string") return;
  const at = Date.parse(alert.updated_at) || 0;
  if (at < (state.versions.get(alert.alert_id) ?? -Infinity)) return;
  state.versions.set(alert.alert_id, at);
  state.patients.add(alert.patient_id);
  if (UNRESOLVED.has(alert.status)) state.alerts.set(alert.alert_id, alert);
  else state.alerts.delete(alert.alert_id);
  render(state);
}

// ---- acknowledging -----------------------------------------------------------------------------

async function acknowledge(alertId) {
  const token = currentToken();
  if (!token) return showNotice("Paste an access token before acknowledging.");
  state.pendingAcks.add(alertId);
  render(state);
  try {
    const res = await fetch(`/v1/alerts/${encodeURIComponent(alertId)}/ack`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: JSON.stringify({ via: "dashboard" }), // recorded in the timeline and shown by the page
      cache: "no-store",
    });
    await onAckAnswer(res);
  } catch {
    showNotice("Acknowledging failed: the notifier cannot be reached. Try again.");
  } finally {
    state.pendingAcks.delete(alertId);
    render(state);
  }
  return undefined;
}

async function onAckAnswer(res) {
  if (res.ok) {
    showNotice("");
    upsert(await res.json()); // the stream brings the same state; whichever comes first shows
  } else if (res.status === 401) {
    authFailed(401, "ack");
  } else if (res.status === 403) {
    showNotice("Insufficient scope: this token lacks alerts:ack, so it cannot acknowledge.");
  } else if (res.status === 404) {
    showNotice("That alert no longer exists.");
  } else if (res.status === 409) {
    showNotice("That alert is already resolved.");
  } else {
    showNotice(`Acknowledging failed (HTTP ${res.status}). Try again.`);
  }
}

// ---- start -------------------------------------------------------------------------------------

$("token-form").addEventListener("submit", onTokenSubmit);
$("sign-out").addEventListener("click", forgetToken);
$("alerts-body").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-testid='ack-button']");
  if (button && !button.disabled) acknowledge(button.dataset.alertId);
});
setInterval(() => tick(state), 1000);
setToken(currentToken());
render(state);
connect();
