// Rendering: DOM nodes built with textContent only (the CSP forbids HTML sinks), so nothing from
// the feed is ever parsed as markup. Severity is always written out, never shown by colour alone.

const SEVERITY_RANK = { red: 0, yellow: 1, green: 2 };
const VIA = { slack: "Slack", dashboard: "dashboard", api: "API" };
// one <td> per column; a column may hold several named parts (data-testid), one per line
const COLUMNS = [
  ["severity"], ["patient"], ["title"], ["value", "threshold"],
  ["age"], ["level"], ["acked-by", "acked-via"], ["action"],
];

export const $ = (id) => document.getElementById(id);

export function rank(severity) {
  return SEVERITY_RANK[severity] ?? 3;
}

// Most severe first, then oldest first.
export function compareAlerts(a, b) {
  const bySeverity = rank(a.severity) - rank(b.severity);
  if (bySeverity !== 0) return bySeverity;
  return (Date.parse(a.opened_at) || 0) - (Date.parse(b.opened_at) || 0);
}

// Bring the table, the counts and the patient panel in line with `state`, keeping row nodes
// (and so a focused button) in place when their order did not change.
export function render(state) {
  const body = $("alerts-body");
  for (const [id, row] of state.rows) {
    if (!state.alerts.has(id)) {
      row.remove();
      state.rows.delete(id);
    }
  }
  const sorted = [...state.alerts.values()].sort(compareAlerts);
  sorted.forEach((alert, index) => {
    let row = state.rows.get(alert.alert_id);
    if (!row) {
      row = createRow(alert.alert_id);
      state.rows.set(alert.alert_id, row);
    }
    fillRow(row, alert, state.pendingAcks.has(alert.alert_id));
    if (body.children[index] !== row) body.insertBefore(row, body.children[index] || null);
  });
  $("alert-count").textContent = String(sorted.length);
  $("no-alerts").hidden = sorted.length > 0;
  const unacked = sorted.filter((a) => a.status === "open").length;
  document.title = unacked ? `(${unacked}) Live alerts · Notifier` : "Live alerts · Notifier";
  renderPatients(state);
  tick(state);
}

function createRow(alertId) {
  const row = document.createElement("tr");
  row.dataset.testid = "alert-row";
  row.dataset.alertId = alertId;
  for (const names of COLUMNS) {
    const cell = document.createElement("td");
    if (names.length === 1) {
      cell.dataset.testid = names[0];
    } else {
      for (const name of names) {
        const line = document.createElement("span");
        line.className = `line ${name}`;
        line.dataset.testid = name;
        cell.append(line);
      }
    }
    row.append(cell);
  }
  return row;
}

function part(row, name) {
  return row.querySelector(`[data-testid="${name}"]`);
}

function fillRow(row, alert, pending) {
  row.dataset.severity = alert.severity;
  row.dataset.status = alert.status;
  row.className = `sev-${rank(alert.severity) < 3 ? alert.severity : "unknown"} status-${alert.status}`;
  setBadge(part(row, "severity"), alert.severity);
  setText(part(row, "patient"), alert.patient_id);
  setText(part(row, "title"), alert.title);
  setText(part(row, "value"), alert.value_text);
  setText(part(row, "threshold"), alert.threshold ? `limit ${alert.threshold}` : "");
  part(row, "age").dataset.openedAt = alert.opened_at;
  setText(part(row, "level"), alert.level > 0 ? `Level ${alert.level}` : "Not escalated");
  setText(part(row, "acked-by"), alert.acknowledged_by || "—");
  const via = VIA[alert.acknowledged_via];
  setText(part(row, "acked-via"), alert.acknowledged_by && via ? ` (via ${via})` : "");
  fillAction(part(row, "action"), alert, pending);
}

function fillAction(cell, alert, pending) {
  if (alert.status !== "open" || alert.acknowledged_by) {
    if (cell.textContent !== "—") cell.replaceChildren("—");
    return;
  }
  let button = cell.querySelector("button");
  if (!button) {
    button = document.createElement("button");
    button.type = "button";
    button.className = "ack";
    button.dataset.testid = "ack-button";
    button.dataset.alertId = alert.alert_id;
    cell.replaceChildren(button);
  }
  button.disabled = pending;
  setText(button, pending ? "Acknowledging…" : "Acknowledge");
  button.setAttribute(
    "aria-label",
    `Acknowledge ${alert.severity} ${alert.title} alert for patient ${alert.patient_id}`,
  );
}

// Worst unresolved severity per patient seen since the page connected; green when none.
function renderPatients(state) {
  const worst = new Map([...state.patients].map((id) => [id, { severity: null, count: 0, open: 0 }]));
  for (const alert of state.alerts.values()) {
    const entry = worst.get(alert.patient_id);
    entry.count += 1;
    if (alert.status === "open") entry.open += 1;
    if (entry.severity === null || rank(alert.severity) < rank(entry.severity)) {
      entry.severity = alert.severity;
    }
  }
  const severityOf = (entry) => rank(entry.severity ?? "green");
  const items = [...worst.entries()].sort(
    ([idA, a], [idB, b]) => severityOf(a) - severityOf(b) || idA.localeCompare(idB),
  );
  $("patients").replaceChildren(...items.map(([id, entry]) => patientItem(id, entry)));
  $("no-patients").hidden = items.length > 0;
}

function patientItem(patientId, entry) {
  const severity = entry.severity ?? "green";
  const item = document.createElement("li");
  item.dataset.testid = "patient";
  item.dataset.patientId = patientId;
  item.dataset.severity = severity;
  item.className = `patient sev-${rank(severity) < 3 ? severity : "unknown"}`;
  const badge = document.createElement("span");
  setBadge(badge, severity);
  const name = document.createElement("span");
  name.className = "patient-id";
  name.textContent = patientId;
  const detail = document.createElement("span");
  detail.className = "detail";
  detail.textContent = entry.count
    ? `${entry.count} unresolved, ${entry.open} unacknowledged`
    : "No open alerts";
  item.append(badge, name, detail);
  return item;
}

function setBadge(element, severity) {
  const known = rank(severity) < 3;
  const badge = document.createElement("span");
  badge.className = `badge sev-${known ? severity : "unknown"}`;
  badge.textContent = known ? severity.toUpperCase() : String(severity ?? "?");
  element.replaceChildren(badge);
}

export function setText(element, text) {
  const value = text == null ? "—" : String(text);
  if (element.textContent !== value) element.textContent = value;
}

// Refresh every age cell; called each second and after every render.
export function tick(state) {
  const now = Date.now() + state.clockOffsetMs;
  for (const row of state.rows.values()) {
    const cell = part(row, "age");
    const opened = Date.parse(cell.dataset.openedAt || "");
    setText(cell, Number.isNaN(opened) ? "—" : formatAge(Math.max(0, now - opened)));
  }
}

export function formatAge(ms) {
  const s = Math.floor(ms / 1000);
  const pad = (n) => String(n).padStart(2, "0");
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${pad(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${pad(Math.floor(s / 60) % 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor(s / 3600) % 24} h`;
}

export function setConnection(kind, text) {
  document.body.dataset.connection = kind;
  setText($("connection"), text);
}

export function showAuthError(text) {
  const element = $("auth-error");
  element.textContent = text;
  element.hidden = !text;
}

export function showNotice(text) {
  const element = $("notice");
  element.textContent = text;
  element.hidden = !text;
}
