// The reviewer console: sign in, the queue with time left to each deadline, and an attempt's
// report with its recording (clicking a transcript line seeks the audio), score overrides and
// the decision. Talks to the platform API (docs/api.md) with a bearer token kept in
// sessionStorage; everything shown is set as text, never parsed as HTML.

const TOKEN_KEY = "nextmark.review.session";
const $ = (id) => document.getElementById(id);

let session = loadSession();
let queueCursor = null;
let queueLoadedAt = 0;
let current = null; // the attempt on screen
const blobUrls = [];

class ApiFailure extends Error {
  constructor(status, body) {
    super(body?.error?.message || `the server answered ${status}`);
    this.status = status;
    this.code = body?.error?.code || "";
    this.field = body?.error?.field || null;
  }
}

function loadSession() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(TOKEN_KEY) || "null");
    if (saved && saved.token && Date.parse(saved.expires_at) > Date.now()) return saved;
  } catch {
    // A damaged entry is the same as none.
  }
  sessionStorage.removeItem(TOKEN_KEY);
  return null;
}

function idempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Calls the API; JSON in and out. A 401 signs out. */
async function api(path, { method = "GET", body, idempotent = false, raw = false } = {}) {
  const headers = { accept: raw ? "*/*" : "application/json" };
  if (session) headers.authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  if (idempotent) headers["idempotency-key"] = idempotencyKey();
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401 && path !== "/v1/auth/login") {
    signedOut("Your session has ended. Please sign in again.");
  }
  if (!response.ok) {
    const error = await response.json().catch(() => null);
    throw new ApiFailure(response.status, error);
  }
  if (raw) return response;
  return response.status === 204 ? null : response.json();
}

function notice(text, kind = "") {
  const element = $("notice");
  element.className = kind;
  element.textContent = text;
}

function el(tag, text, className) {
  const element = document.createElement(tag);
  if (text !== undefined && text !== null) element.textContent = String(text);
  if (className) element.className = className;
  return element;
}

function showView(view) {
  for (const section of document.querySelectorAll("section[data-view]")) {
    section.hidden = section.dataset.view !== view;
  }
  document.body.dataset.view = view;
  const heading = document.querySelector(`section[data-view="${view}"] h1`);
  if (heading) heading.focus();
}

// Time

function duration(seconds) {
  const s = Math.abs(Math.round(seconds));
  const days = Math.floor(s / 86400);
  const hours = Math.floor((s % 86400) / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  if (days > 0) return `${days} d ${hours} h`;
  if (hours > 0) return `${hours} h ${minutes} min`;
  return `${minutes} min`;
}

function timeLeft(seconds) {
  return seconds >= 0 ? `${duration(seconds)} left` : `overdue by ${duration(seconds)}`;
}

function when(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return Number.isNaN(date.getTime())
    ? iso
    : date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

// Sign in and out

function signedIn() {
  $("who").textContent = `Signed in as ${session.role}`;
  $("who").hidden = false;
  $("sign-out").hidden = false;
}

function signedOut(message) {
  session = null;
  sessionStorage.removeItem(TOKEN_KEY);
  $("who").hidden = true;
  $("sign-out").hidden = true;
  releaseBlobs();
  if (message) notice(message, "warn");
  showView("login");
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = $("login-error");
  const email = $("email").value.trim();
  const password = $("password").value;
  if (!email || !password) {
    error.textContent = "Enter your email and password.";
    error.hidden = false;
    return;
  }
  $("login-submit").disabled = true;
  try {
    const result = await api("/v1/auth/login", { method: "POST", body: { email, password } });
    if (result.role === "applicant") throw new ApiFailure(403, null);
    session = { token: result.token, expires_at: result.expires_at, role: result.role };
    sessionStorage.setItem(TOKEN_KEY, JSON.stringify(session));
    error.hidden = true;
    $("password").value = "";
    notice("");
    signedIn();
    route();
  } catch (failure) {
    error.textContent =
      failure.status === 401 ? "Wrong email or password." : `Could not sign in: ${failure.message}`;
    error.hidden = false;
  } finally {
    $("login-submit").disabled = false;
  }
});

$("sign-out").addEventListener("click", async () => {
  try {
    await api("/v1/auth/logout", { method: "POST" });
  } catch {
    // Signed out locally either way.
  }
  signedOut("You are signed out.");
});

// Queue

async function loadQueue(more = false) {
  const rows = $("queue-rows");
  if (!more) {
    rows.replaceChildren();
    queueCursor = null;
  }
  const path = `/v1/review/queue?limit=50${more && queueCursor ? `&cursor=${encodeURIComponent(queueCursor)}` : ""}`;
  let page;
  try {
    page = await api(path);
  } catch (failure) {
    if (failure.status !== 401) notice(`Could not load the queue: ${failure.message}`, "error");
    return;
  }
  queueLoadedAt = Date.now();
  for (const item of page.items) rows.append(queueRow(item));
  queueCursor = page.next_cursor;
  $("more").hidden = !queueCursor;
  const count = rows.children.length;
  $("queue-table").hidden = count === 0;
  $("queue-empty").hidden = count !== 0;
  $("queue-caption").textContent = `${count} screening${count === 1 ? "" : "s"} waiting`;
}

function queueRow(item) {
  const row = el("tr");
  row.dataset.attempt = item.attempt_id;
  row.dataset.secondsLeft = String(item.seconds_left);
  if (item.overdue) row.className = "overdue";
  row.append(
    el("td", item.applicant_name),
    el("td", item.discipline),
    el("td", item.number),
    el("td", when(item.results_due_at), "due"),
    el("td", timeLeft(item.seconds_left), "left due"),
  );
  const open = el("a", "Open report");
  open.href = `#/attempts/${encodeURIComponent(item.attempt_id)}`;
  open.setAttribute("aria-label", `Open the report of ${item.applicant_name}`);
  const cell = el("td");
  cell.append(open);
  row.append(cell);
  return row;
}

/** Counts the time left down between refreshes. */
setInterval(() => {
  if (document.body.dataset.view !== "queue") return;
  const elapsed = (Date.now() - queueLoadedAt) / 1000;
  for (const row of $("queue-rows").children) {
    const left = Number(row.dataset.secondsLeft) - elapsed;
    row.querySelector("td.left").textContent = timeLeft(left);
    row.classList.toggle("overdue", left < 0);
  }
}, 30000);

$("refresh").addEventListener("click", () => loadQueue());
$("more").addEventListener("click", () => loadQueue(true));

// One attempt

function releaseBlobs() {
  for (const url of blobUrls.splice(0)) URL.revokeObjectURL(url);
}

async function loadAttempt(id) {
  releaseBlobs();
  showView("attempt");
  $("attempt-title").textContent = "Loading the report…";
  let report;
  try {
    report = await api(`/v1/review/attempts/${encodeURIComponent(id)}`);
  } catch (failure) {
    $("attempt-title").textContent = "This report could not be opened";
    if (failure.status !== 401) notice(failure.message, "error");
    return;
  }
  current = report;
  renderAttempt(report);
  loadRecordings(report);
  loadFullReport(id);
}

function renderAttempt(report) {
  const engine = report.interview.report;
  $("attempt-title").textContent = `${report.applicant.name} — ${engine?.discipline_name || report.discipline}`;
  $("attempt-title").focus();
  const due = report.results_due_at ? Date.parse(report.results_due_at) : NaN;
  const meta = [
    `Attempt ${report.number}`,
    `status: ${report.status.replaceAll("_", " ")}`,
    report.results_due_at ? `results due ${when(report.results_due_at)}` : null,
    Number.isNaN(due) || report.result ? null : timeLeft((due - Date.now()) / 1000),
  ].filter(Boolean);
  $("attempt-meta").textContent = meta.join(" · ");
  const applicant = $("applicant");
  applicant.replaceChildren(
    fact("Country", report.applicant.country),
    fact("Experience", `${report.applicant.years_experience} years — ${report.applicant.experience}`),
    fact("Credentials", report.applicant.credentials),
  );
  renderSummary(engine);
  renderTranscript(report);
  renderItems(engine);
  $("case-title").textContent = report.case_study.title || "–";
  $("case-prompt").textContent = report.case_study.prompt || "";
  $("case-answer").textContent = report.case_study.answer || "(not submitted)";
  renderOverrides(report);
  renderDecision(report);
}

function fact(label, value) {
  const box = el("div");
  box.append(el("h3", label), el("p", value || "–"));
  return box;
}

function renderSummary(engine) {
  const card = $("summary-card");
  card.hidden = !engine;
  if (!engine) return;
  const verdict = $("verdict");
  verdict.replaceChildren(
    el("strong", engine.verdict.replaceAll("_", " ").toUpperCase(), `verdict ${engine.verdict}`),
    document.createTextNode(` · overall ${Number(engine.overall_score).toFixed(2)} / 4`),
  );
  $("reasons").replaceChildren(...(engine.reasons || []).map((r) => el("li", r)));
  const table = $("dimensions");
  table.replaceChildren();
  const head = el("tr");
  head.append(el("th", "Dimension"), el("th", "Score (0–4)"), el("th", "Ability ± SE"));
  table.append(head);
  for (const d of engine.dimensions || []) {
    const row = el("tr");
    row.append(
      el("td", d.label),
      el("td", Number(d.score).toFixed(2)),
      el("td", `${Number(d.theta).toFixed(2)} ± ${Number(d.se).toFixed(2)}`),
    );
    table.append(row);
  }
  const flags = [];
  if (engine.typed_answers) flags.push("Some answers were typed (accommodation).");
  for (const flag of engine.audio_flags || []) flags.push(`Recording: ${String(flag).replaceAll("_", " ")}.`);
  $("flags").textContent = flags.join(" ");
}

function renderTranscript(report) {
  const list = $("transcript");
  list.replaceChildren();
  const lines = report.interview.report?.transcript;
  if (Array.isArray(lines) && lines.length > 0) {
    for (const line of lines) {
      const item = el("li");
      const t = Number(line.asked_at_s);
      if (Number.isFinite(t)) {
        const seek = el("button", `▶ ${clock(t)}`, "seek");
        seek.type = "button";
        seek.dataset.t = String(t);
        seek.setAttribute("aria-label", `Play from ${clock(t)}`);
        seek.addEventListener("click", () => seekTo(t));
        item.append(seek);
      }
      item.append(el("span", line.question, "q"));
      const answer = el("p", line.answer || "(no answer)");
      if (line.typed) answer.append(el("span", "typed", "badge"));
      item.append(answer);
      list.append(item);
    }
    $("transcript-hint").hidden = false;
    return;
  }
  // Without the engine's report: the committed answers, without times.
  for (const answer of report.interview.answers) {
    const item = el("li");
    item.append(el("span", answer.item_id, "q"), el("p", answer.text));
    list.append(item);
  }
  $("transcript-hint").hidden = true;
}

/** Moves every recording track to `seconds` and plays them together. */
function seekTo(seconds) {
  const players = [...document.querySelectorAll("#recordings audio")];
  if (players.length === 0) {
    notice("No recording to play.", "warn");
    return;
  }
  for (const player of players) {
    const end = Number.isFinite(player.duration) ? player.duration : Infinity;
    player.currentTime = Math.min(seconds, end);
    player.play().catch(() => {});
  }
}

async function loadRecordings(report) {
  const box = $("recordings");
  box.replaceChildren();
  const recordings = report.interview.recordings || [];
  $("recordings-empty").hidden = recordings.length > 0;
  let n = 0;
  for (const recording of recordings) {
    n += 1;
    const figure = el("figure");
    const caption = el("figcaption", `Track ${n}`, "small muted");
    const player = el("audio");
    player.controls = true;
    player.preload = "metadata";
    player.setAttribute("aria-label", `Recording track ${n}`);
    figure.append(caption, player);
    box.append(figure);
    try {
      // The recording needs the bearer token, which an <audio src> cannot send: fetch it and
      // play it from a blob URL.
      const response = await api(recording.url, { raw: true });
      const url = URL.createObjectURL(await response.blob());
      blobUrls.push(url);
      player.src = url;
      player.dataset.recording = recording.id;
    } catch (failure) {
      caption.textContent = `Track ${n}: could not be loaded (${failure.message})`;
    }
  }
}

async function loadFullReport(id) {
  const frame = $("report-frame");
  frame.srcdoc = "";
  try {
    const response = await api(`/v1/review/attempts/${encodeURIComponent(id)}/report.html`, {
      raw: true,
    });
    // Shown in a sandboxed frame: no scripts run, and it cannot reach this page.
    frame.srcdoc = await response.text();
  } catch {
    frame.srcdoc = "<p>The full report could not be loaded.</p>";
  }
}

function renderItems(engine) {
  const card = $("items-card");
  card.hidden = !engine;
  if (!engine) return;
  const table = $("items");
  table.replaceChildren();
  const head = el("tr");
  head.append(
    el("th", "Question"),
    el("th", "Knowledge"),
    el("th", "Reasoning"),
    el("th", "Clarity"),
    el("th", "Concepts"),
  );
  table.append(head);
  for (const item of engine.items || []) {
    const row = el("tr");
    const question = el("td");
    question.append(el("strong", item.competency), el("p", item.question, "small"));
    const concepts = el("td", "", "small");
    concepts.append(
      el("p", `Named: ${(item.concepts_found || []).join(", ") || "none"}`),
      el("p", `Missing: ${(item.concepts_missing || []).join(", ") || "none"}`),
    );
    if ((item.red_flags || []).length > 0) {
      concepts.append(el("p", `Red flags: ${item.red_flags.join(", ")}`, "error"));
    }
    const [k, r, c] = item.scores || [];
    row.append(question, el("td", k), el("td", r), el("td", c), concepts);
    table.append(row);
  }
}

function renderOverrides(report) {
  const list = $("overrides");
  list.replaceChildren(...report.overrides.map(overrideLine));
  if (report.overrides.length === 0) list.append(el("li", "No overrides yet.", "muted none"));
  const select = $("override-answer");
  select.replaceChildren();
  const whole = el("option", "Whole interview");
  whole.value = "";
  select.append(whole);
  for (const answer of report.interview.answers) {
    const snippet = answer.text.length > 60 ? `${answer.text.slice(0, 60)}…` : answer.text;
    const option = el("option", `#${answer.seq} ${answer.item_id}: ${snippet}`);
    option.value = String(answer.seq);
    select.append(option);
  }
  $("override-error").hidden = true;
}

function overrideLine(o) {
  const target = o.answer_seq === null || o.answer_seq === undefined ? "whole interview" : `answer #${o.answer_seq}`;
  return el("li", `${target}, ${o.dimension} → ${Number(o.score).toFixed(2)}: ${o.reason} (${when(o.created_at)})`, "override");
}

$("override-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!current) return;
  const error = $("override-error");
  const score = Number($("override-score").value);
  const reason = $("override-reason").value.trim();
  const problems = [];
  if ($("override-score").value === "" || !(score >= 0 && score <= 4)) problems.push("a score between 0 and 4");
  if (reason.length < 3) problems.push("a reason of at least 3 characters");
  if (problems.length > 0) {
    error.textContent = `Please give ${problems.join(" and ")}.`;
    error.hidden = false;
    return;
  }
  const body = { dimension: $("override-dimension").value, score, reason };
  const seq = $("override-answer").value;
  if (seq !== "") body.answer_seq = Number(seq);
  $("override-submit").disabled = true;
  try {
    const saved = await api(`/v1/review/attempts/${encodeURIComponent(current.attempt_id)}/overrides`, {
      method: "POST",
      body,
      idempotent: true,
    });
    current.overrides.push(saved);
    const list = $("overrides");
    list.querySelector(".none")?.remove();
    list.append(overrideLine(saved));
    $("override-reason").value = "";
    $("override-score").value = "";
    error.hidden = true;
    notice("Override saved.", "ok");
  } catch (failure) {
    error.textContent = failure.message;
    error.hidden = false;
  } finally {
    $("override-submit").disabled = false;
  }
});

function renderDecision(report) {
  const done = $("decision-done");
  const form = $("decision-form");
  $("decision-error").hidden = true;
  if (report.result) {
    const r = report.result;
    const categories = r.feedback_categories.map((c) => c.replaceAll("_", " ")).join(", ");
    done.textContent = `Decided: ${r.outcome.toUpperCase()} on ${when(r.decided_at)}.` +
      (categories ? ` Categories: ${categories}.` : "") +
      (r.feedback_text ? ` Feedback: ${r.feedback_text}` : "");
    done.hidden = false;
    form.hidden = true;
    return;
  }
  done.hidden = true;
  form.hidden = report.status !== "awaiting_review";
  if (form.hidden) {
    done.textContent = "A decision can be recorded once the screening is awaiting review.";
    done.hidden = false;
  }
  // Start from the engine's drafted feedback, for the reviewer to edit.
  const drafts = report.interview.report?.feedback || [];
  for (const box of form.querySelectorAll('input[name="category"]')) {
    box.checked = drafts.some((d) => d.category === box.value);
  }
  $("feedback").value = drafts.map((d) => d.text).join("\n");
  for (const radio of form.querySelectorAll('input[name="outcome"]')) radio.checked = false;
}

$("decision-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!current) return;
  const error = $("decision-error");
  const outcome = document.querySelector('input[name="outcome"]:checked')?.value;
  const categories = [...document.querySelectorAll('input[name="category"]:checked')].map((b) => b.value);
  const text = $("feedback").value.trim();
  if (!outcome) {
    error.textContent = "Choose pass or fail.";
    error.hidden = false;
    return;
  }
  if (outcome === "fail" && categories.length === 0) {
    error.textContent = "A fail needs at least one feedback category.";
    error.hidden = false;
    return;
  }
  const feedback = { categories };
  if (text) feedback.text = text;
  $("decision-submit").disabled = true;
  try {
    const report = await api(`/v1/review/attempts/${encodeURIComponent(current.attempt_id)}/decision`, {
      method: "POST",
      body: { outcome, feedback },
      idempotent: true,
    });
    current = report;
    renderDecision(report);
    $("attempt-meta").textContent = `Attempt ${report.number} · status: ${report.status.replaceAll("_", " ")}`;
    notice(`Decision recorded: ${outcome}.`, "ok");
  } catch (failure) {
    error.textContent = failure.message;
    error.hidden = false;
  } finally {
    $("decision-submit").disabled = false;
  }
});

// Routing: #/queue, #/attempts/{id}

function route() {
  if (!session) {
    showView("login");
    return;
  }
  signedIn();
  const match = location.hash.match(/^#\/attempts\/([^/]+)$/);
  if (match) {
    loadAttempt(decodeURIComponent(match[1]));
  } else {
    current = null;
    releaseBlobs();
    showView("queue");
    loadQueue();
  }
}

window.addEventListener("hashchange", route);
route();
