// The applicant's interview page: welcome and consent, microphone check, then the live
// interview over the protocol of docs/protocol.md — voice over WebRTC when it connects within
// a few seconds, otherwise 16-bit PCM over the WebSocket — with captions, controls, a typed
// answer, and transparent reconnection to the same question after a drop.

import { Microphone, SpeechPlayer, encodeWav, levelToMeter } from "./audio.js";

const BUDGET_S = 25 * 60;
const WEBRTC_TIMEOUT_MS = 5000;
const PING_EVERY_MS = 10000;
const SILENT_SOCKET_MS = 30000;
const TEST_SECONDS = 5;
const MAX_BUFFERED_BYTES = 2 * 1024 * 1024;
const MAX_FINAL_CAPTIONS = 40;

const config = readConfig();
const token = decodeURIComponent(location.pathname.replace(/\/+$/, "").split("/").pop() || "");
const linkPath = `/v1/interview-links/${encodeURIComponent(token)}`;
const startedKey = `nextmark.interview.${token}.started`;

const $ = (id) => document.getElementById(id);

const state = {
  mic: null,
  player: null,
  ws: null,
  pc: null,
  transport: null, // "webrtc" | "pcm" | "text"
  webrtcFailed: false,
  webrtcConnected: false,
  remoteDescriptionSet: false,
  pendingCandidates: [],
  completed: false,
  stopped: false,
  reconnectAttempt: 0,
  droppedAt: null,
  timers: {},
  speech: null, // question audio arriving on the socket
  questionSerial: 0,
  lastMessageAt: 0,
  pingNonce: 0,
  stopPcm: null,
  partial: null,
  testAudioUrl: null,
  wakeLock: null,
};

function readConfig() {
  try {
    return JSON.parse($("nextmark-config").textContent);
  } catch {
    return {};
  }
}

// ---------------------------------------------------------------------------------------
// Steps

function show(step) {
  for (const section of document.querySelectorAll("section[data-step]")) {
    section.hidden = section.dataset.step !== step;
  }
  document.body.dataset.step = step;
  const heading = document.querySelector(`section[data-step="${step}"] h1`);
  if (heading) heading.focus();
}

async function fetchLink() {
  const response = await fetch(linkPath, { headers: { accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  return { ok: response.ok, status: response.status, body };
}

function unavailable(message) {
  $("unavailable-reason").textContent = message;
  show("unavailable");
}

async function init() {
  if (!token) {
    unavailable("The link is incomplete. Open the link from your email again.");
    return;
  }
  let link;
  try {
    link = await fetchLink();
  } catch {
    unavailable("We could not reach the server. Check your connection and reload the page.");
    return;
  }
  if (!link.ok) {
    const message = link.body?.error?.message;
    if (link.status === 410) {
      unavailable("This interview link has expired. " + (message ? `(${message})` : ""));
    } else if (link.status === 404) {
      unavailable("We do not know this interview link. Check that you copied all of it.");
    } else {
      unavailable(message || `The server answered ${link.status}. Please try again later.`);
    }
    return;
  }
  const name = link.body.discipline_name || link.body.discipline || "";
  $("discipline").textContent = name ? `Interview: ${name}` : "";
  if (link.body.status === "completed") {
    finished(null, true);
    return;
  }
  $("welcome-resume").hidden = link.body.status !== "live";
  show("welcome");
}

// Welcome and consent

$("consent-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const box = $("consent");
  if (!box.checked) {
    $("consent-error").hidden = false;
    box.setAttribute("aria-invalid", "true");
    box.focus();
    return;
  }
  $("consent-error").hidden = true;
  box.removeAttribute("aria-invalid");
  show("mic");
});

// Microphone check

function micErrorText(error) {
  switch (error && error.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Microphone access was blocked. Allow it for this site (the microphone or lock icon " +
        "in the address bar), then press the button again. You can also continue with typed answers.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone was found. Connect one and press the button again, or continue with " +
        "typed answers.";
    case "NotReadableError":
      return "The microphone is in use by another program. Close it and try again.";
    default:
      return `The microphone could not be opened (${error && error.message ? error.message : error}).`;
  }
}

$("mic-on").addEventListener("click", async () => {
  const button = $("mic-on");
  const errorBox = $("mic-error");
  errorBox.hidden = true;
  button.disabled = true;
  try {
    state.mic = await Microphone.open({ headphones: $("headphones").checked });
    await state.mic.resume();
  } catch (error) {
    button.disabled = false;
    errorBox.textContent = micErrorText(error);
    errorBox.hidden = false;
    $("start-typed").hidden = false;
    return;
  }
  button.hidden = true;
  $("mic-ready").hidden = false;
  $("start").disabled = false;
  state.mic.onLevel((rms) => {
    const value = levelToMeter(rms);
    $("mic-level").value = value;
    $("live-level").value = value;
  });
  state.mic.track.addEventListener("ended", () => {
    errorBox.textContent = "The microphone was disconnected. Reconnect it and reload the page.";
    errorBox.hidden = false;
  });
  $("mic-test").focus();
});

$("headphones").addEventListener("change", () => {
  if (state.mic) state.mic.setHeadphones($("headphones").checked);
});

$("mic-test").addEventListener("click", async () => {
  const button = $("mic-test");
  const status = $("mic-test-status");
  const problems = $("mic-test-problems");
  const playback = $("mic-playback");
  button.disabled = true;
  problems.replaceChildren();
  status.className = "";
  status.dataset.verdict = "recording";
  let left = TEST_SECONDS;
  status.textContent = `Recording… speak now (${left} s)`;
  const countdown = setInterval(() => {
    left -= 1;
    if (left > 0) status.textContent = `Recording… speak now (${left} s)`;
  }, 1000);
  const samples = await state.mic.record(TEST_SECONDS);
  clearInterval(countdown);
  status.textContent = "Checking the sound…";
  const wav = encodeWav(samples, state.mic.sampleRate);
  if (state.testAudioUrl) URL.revokeObjectURL(state.testAudioUrl);
  state.testAudioUrl = URL.createObjectURL(wav);
  playback.src = state.testAudioUrl;
  playback.hidden = false;
  try {
    const response = await fetch(`${linkPath}/mic-check`, {
      method: "POST",
      headers: { "content-type": "audio/wav", accept: "application/json" },
      body: wav,
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      status.className = "error";
      status.dataset.verdict = "error";
      status.textContent = body?.error?.message || `The check failed (${response.status}).`;
    } else {
      status.className = body.verdict === "good" ? "ok" : "warn";
      status.dataset.verdict = body.verdict;
      status.textContent = `${body.summary} Listen to your recording below.`;
      for (const problem of body.problems || []) {
        const item = document.createElement("li");
        item.textContent = problem.message;
        problems.append(item);
      }
    }
  } catch {
    status.className = "error";
    status.dataset.verdict = "error";
    status.textContent = "We could not check the sound (no connection). You can still start.";
  }
  button.textContent = "Record again";
  button.disabled = false;
  playback.play().catch(() => {});
});

$("start").addEventListener("click", () => begin());
$("start-typed").addEventListener("click", () => begin());

// ---------------------------------------------------------------------------------------
// The interview

function begin() {
  $("mic-playback").pause();
  $("live-meter").hidden = !state.mic;
  state.player = new SpeechPlayer(state.mic ? state.mic.context : undefined);
  show("interview");
  keepScreenOn();
  startClock();
  connect();
}

function send(message) {
  const ws = state.ws;
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
}

function setConnection(text, transport) {
  const element = $("connection");
  element.textContent = text;
  if (transport !== undefined) element.dataset.transport = transport || "";
}

function transportLabel(transport) {
  switch (transport) {
    case "webrtc":
      return "voice over WebRTC";
    case "pcm":
      return "voice over WebSocket";
    default:
      return "typed answers";
  }
}

function setIndicator(kind) {
  const indicator = $("indicator");
  indicator.dataset.state = kind;
  indicator.textContent = {
    idle: "Getting ready",
    speaking: "The interviewer is speaking",
    listening: "Listening — answer when you are ready",
    thinking: "Thinking about your answer…",
    reconnecting: "Reconnecting…",
  }[kind] || kind;
}

function connect() {
  clearTimers();
  const transport = !state.mic
    ? "text"
    : !state.webrtcFailed && "RTCPeerConnection" in window
      ? "webrtc"
      : "pcm";
  state.transport = transport;
  const url = new URL(`${linkPath}/live`, location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  state.ws = ws;
  state.speech = null;
  setConnection(state.reconnectAttempt > 0 ? "Reconnecting…" : "Connecting…", null);
  ws.addEventListener("open", () => {
    if (ws !== state.ws) return;
    state.lastMessageAt = Date.now();
    send(helloFor(transport));
    if (transport === "webrtc") {
      startWebrtc(ws).catch((error) => fallBack(`offer failed: ${error}`));
    } else if (transport === "pcm") {
      state.stopPcm = state.mic.onPcm((buffer) => {
        if (ws !== state.ws || ws.readyState !== WebSocket.OPEN) return;
        // A socket that cannot keep up drops audio rather than growing without bound.
        if (ws.bufferedAmount < MAX_BUFFERED_BYTES) ws.send(buffer);
      });
    }
    state.timers.ping = setInterval(() => {
      if (ws !== state.ws) return;
      if (Date.now() - state.lastMessageAt > SILENT_SOCKET_MS) {
        dropped("the connection went quiet");
        return;
      }
      send({ type: "ping", nonce: ++state.pingNonce });
    }, PING_EVERY_MS);
  });
  ws.addEventListener("message", (event) => {
    if (ws !== state.ws) return;
    state.lastMessageAt = Date.now();
    if (typeof event.data === "string") {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      onEvent(message);
    } else {
      onSpeechBytes(new Uint8Array(event.data));
    }
  });
  ws.addEventListener("close", () => {
    if (ws !== state.ws) return;
    dropped("the socket closed");
  });
}

function helloFor(transport) {
  const hello = { type: "hello", protocol: 1 };
  if (transport === "webrtc") {
    hello.audio = { encoding: "webrtc" };
  } else if (transport === "pcm") {
    const rate = state.mic.sampleRate;
    hello.audio = { encoding: "pcm_s16le", sample_rate: rate, channels: 1 };
    hello.speech = { sample_rate: rate };
  } else {
    hello.audio = { encoding: "pcm_s16le", sample_rate: 16000, channels: 1 };
    hello.speech = { sample_rate: state.player.context.sampleRate };
  }
  return hello;
}

async function startWebrtc(ws) {
  const pc = new RTCPeerConnection({ iceServers: config.iceServers || [] });
  state.pc = pc;
  state.webrtcConnected = false;
  state.remoteDescriptionSet = false;
  state.pendingCandidates = [];
  pc.addTrack(state.mic.track, state.mic.stream);
  pc.addEventListener("track", (event) => {
    const audio = $("remote-audio");
    audio.srcObject = event.streams[0] || new MediaStream([event.track]);
    audio.play().catch(() => {});
  });
  pc.addEventListener("icecandidate", (event) => {
    if (event.candidate && ws === state.ws) {
      send({ type: "candidate", candidate: event.candidate.toJSON() });
    }
  });
  pc.addEventListener("connectionstatechange", () => {
    if (pc !== state.pc) return;
    const now = pc.connectionState;
    if (now === "connected") {
      clearTimeout(state.timers.fallback);
      clearTimeout(state.timers.rtcLost);
      state.webrtcConnected = true;
      setConnection(`Connected · ${transportLabel("webrtc")}`, "webrtc");
    } else if (now === "failed") {
      if (state.webrtcConnected) dropped("the call failed");
      else fallBack("the call failed");
    } else if (now === "disconnected" && state.webrtcConnected) {
      // Often a brief network change: give it a moment to recover.
      clearTimeout(state.timers.rtcLost);
      state.timers.rtcLost = setTimeout(() => {
        if (pc === state.pc && pc.connectionState !== "connected") dropped("the call was lost");
      }, 4000);
    }
  });
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  send({ type: "offer", sdp: pc.localDescription.sdp });
  state.timers.fallback = setTimeout(() => {
    if (pc === state.pc && pc.connectionState !== "connected") {
      fallBack(`no call after ${WEBRTC_TIMEOUT_MS / 1000} s`);
    }
  }, WEBRTC_TIMEOUT_MS);
}

async function onAnswer(sdp) {
  const pc = state.pc;
  if (!pc) return;
  try {
    await pc.setRemoteDescription({ type: "answer", sdp });
    state.remoteDescriptionSet = true;
    // Candidates that came before the answer was applied.
    for (const candidate of state.pendingCandidates.splice(0)) {
      await pc.addIceCandidate(candidate).catch(() => {});
    }
  } catch (error) {
    fallBack(`answer refused: ${error}`);
  }
}

function onRemoteCandidate(candidate) {
  const pc = state.pc;
  if (!pc || !candidate) return;
  if (state.remoteDescriptionSet) pc.addIceCandidate(candidate).catch(() => {});
  else state.pendingCandidates.push(candidate);
}

/** WebRTC did not connect: continue on the same link with the audio on the socket. */
function fallBack(why) {
  if (state.transport !== "webrtc" || state.completed || state.stopped) return;
  console.info(`WebRTC unavailable (${why}); sending audio over the WebSocket instead`);
  state.webrtcFailed = true;
  const ws = state.ws;
  state.ws = null;
  teardown();
  if (ws) ws.close(1000, "switching to socket audio");
  connect();
}

function teardown() {
  clearTimers();
  if (state.stopPcm) {
    state.stopPcm();
    state.stopPcm = null;
  }
  if (state.pc) {
    state.pc.close();
    state.pc = null;
  }
  state.webrtcConnected = false;
  if (state.player) state.player.stop();
  state.speech = null;
}

function clearTimers() {
  clearInterval(state.timers.ping);
  clearTimeout(state.timers.fallback);
  clearTimeout(state.timers.rtcLost);
  clearTimeout(state.timers.reconnect);
  state.timers.ping = state.timers.fallback = state.timers.rtcLost = state.timers.reconnect = null;
}

/** The connection dropped: reconnect with the same link; the server continues at the current
 * question. Backs off up to 10 s, and gives up after the server's resume window. */
function dropped(why) {
  const ws = state.ws;
  state.ws = null;
  teardown();
  if (ws && ws.readyState <= WebSocket.OPEN) ws.close(4000, "reconnecting");
  if (state.completed || state.stopped) return;
  console.info(`connection lost (${why}); reconnecting`);
  state.droppedAt = state.droppedAt || Date.now();
  setConnection("Connection lost — reconnecting…", null);
  setIndicator("reconnecting");
  const windowMs = (config.resumeWindowSecs || 120) * 1000;
  if (Date.now() - state.droppedAt > windowMs) {
    state.stopped = true;
    setConnection("We could not reconnect. Reload the page to try again.", null);
    return;
  }
  const delay = Math.min(10000, 500 * 2 ** state.reconnectAttempt);
  state.reconnectAttempt += 1;
  state.timers.reconnect = setTimeout(async () => {
    try {
      const link = await fetchLink();
      if (link.ok && link.body.status === "completed") {
        finished(null, true);
        return;
      }
      if (!link.ok && (link.status === 404 || link.status === 410)) {
        state.stopped = true;
        unavailable(link.body?.error?.message || "This interview link can no longer be used.");
        return;
      }
    } catch {
      // Offline: try the socket anyway on the next round.
    }
    connect();
  }, delay);
}

function onEvent(message) {
  switch (message.type) {
    case "ready":
      state.reconnectAttempt = 0;
      state.droppedAt = null;
      // The 25-minute budget counts from the start; a resumed interview keeps its start.
      if (!message.resumed || !sessionStorage.getItem(startedKey)) {
        sessionStorage.setItem(startedKey, String(Date.now()));
      }
      if (state.transport === "webrtc") {
        setConnection("Connecting the call…", null);
      } else {
        setConnection(`Connected · ${transportLabel(state.transport)}`, state.transport);
      }
      setIndicator("idle");
      if (message.resumed) addNote("Welcome back — continuing where you left off.");
      break;
    case "question":
      onQuestion(message);
      break;
    case "state":
      setIndicator(message.state);
      break;
    case "transcript":
      onCaption(message);
      break;
    case "stop_audio":
      state.player.stop();
      break;
    case "completed":
      finished(message.report_url, false);
      break;
    case "answer":
      onAnswer(message.sdp);
      break;
    case "candidate":
      onRemoteCandidate(message.candidate);
      break;
    case "error":
      onServerError(message);
      break;
    default:
      break;
  }
}

function onQuestion(message) {
  state.questionSerial += 1;
  $("progress").textContent = String(message.index);
  const question = $("question");
  question.textContent = message.text;
  question.dataset.id = message.id;
  question.dataset.index = String(message.index);
  question.dataset.again = String(Boolean(message.again));
  setPartial("");
  state.player.stop();
  if (message.audio && message.audio.bytes > 0) {
    state.speech = {
      serial: state.questionSerial,
      rate: message.audio.sample_rate,
      bytes: new Uint8Array(message.audio.bytes),
      received: 0,
    };
  } else {
    state.speech = null;
  }
}

function onSpeechBytes(chunk) {
  const speech = state.speech;
  if (!speech) return;
  const room = speech.bytes.length - speech.received;
  speech.bytes.set(chunk.subarray(0, room), speech.received);
  speech.received += Math.min(room, chunk.length);
  if (speech.received < speech.bytes.length) return;
  state.speech = null;
  state.player.play(speech.bytes, speech.rate).then((complete) => {
    // Listening starts when the question has been heard, not at the server's estimate.
    if (complete && speech.serial === state.questionSerial) send({ type: "playback_ended" });
  });
}

function onCaption(message) {
  if (message.final) {
    setPartial("");
    if (!message.text || !message.text.trim()) return;
    const line = document.createElement("p");
    line.className = "final";
    line.textContent = message.text.trim();
    $("captions").append(line);
    trimCaptions();
  } else {
    setPartial(message.text || "");
  }
}

/** The partial caption is shown but kept out of the live region's announcements: screen
 * readers announce each final once instead of every revision. */
function setPartial(text) {
  const captions = $("captions");
  if (!text) {
    if (state.partial) state.partial.remove();
    state.partial = null;
    return;
  }
  if (!state.partial) {
    state.partial = document.createElement("p");
    state.partial.className = "partial";
    state.partial.setAttribute("aria-hidden", "true");
  }
  state.partial.textContent = text;
  captions.append(state.partial);
  captions.scrollTop = captions.scrollHeight;
}

function addNote(text) {
  const note = document.createElement("p");
  note.className = "muted small";
  note.textContent = text;
  $("captions").append(note);
  trimCaptions();
}

function trimCaptions() {
  const captions = $("captions");
  const lines = captions.querySelectorAll("p:not(.partial)");
  for (let i = 0; i < lines.length - MAX_FINAL_CAPTIONS; i++) lines[i].remove();
  if (state.partial) captions.append(state.partial);
  captions.scrollTop = captions.scrollHeight;
}

function onServerError(message) {
  if (!message.fatal) {
    switch (message.code) {
      case "webrtc_failed":
      case "bad_offer":
      case "unexpected_offer":
        if (!state.webrtcConnected) fallBack(message.message);
        break;
      case "bad_text":
        $("typed-error").textContent = message.message;
        $("typed-error").hidden = false;
        break;
      case "storage":
        addNote("Your last answer could not be saved yet; please repeat it in a moment.");
        break;
      default:
        console.warn("server:", message.code, message.message);
    }
    return;
  }
  switch (message.code) {
    case "replaced":
      state.stopped = true;
      teardown();
      setConnection("This interview was opened in another window or tab. Continue there, or reload this page to continue here.", null);
      setIndicator("idle");
      break;
    case "moved":
      // The interview went on from another window or device (through another server).
      state.stopped = true;
      teardown();
      setConnection("This interview continued in another window or on another device. Continue there, or reload this page to continue here.", null);
      setIndicator("idle");
      break;
    case "server_busy":
      addNote("The server is busy right now; we will keep trying.");
      break;
    case "live_elsewhere":
      addNote("This interview is still open in another window or on another device; we will keep trying.");
      break;
    case "server_shutdown":
    case "shutting_down":
      addNote("The server is restarting; we will reconnect you in a moment.");
      break;
    default:
      console.warn("server (fatal):", message.code, message.message);
  }
  // The server closes the socket after a fatal error; `dropped` reconnects unless stopped.
}

function finished(reportUrl, already) {
  state.completed = true;
  const ws = state.ws;
  state.ws = null;
  teardown();
  if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000, "completed");
  if (state.mic) state.mic.stream.getTracks().forEach((t) => t.stop());
  stopClock();
  releaseScreen();
  if (reportUrl && reportUrl.includes("/v1/interview-links/")) {
    // A demo interview's report is public to the link holder.
    $("report-link").href = `${reportUrl}.html`;
    $("ended-report").hidden = false;
  }
  if (already) {
    document.querySelector('section[data-step="ended"] h1').textContent = "This interview is complete";
  }
  show("ended");
}

// Controls

$("done").addEventListener("click", () => {
  send({ type: "done" });
  flash($("done"));
});

$("repeat").addEventListener("click", () => {
  send({ type: "repeat" });
  flash($("repeat"));
});

/** Ignores a second press for a moment (double clicks). */
function flash(button) {
  button.disabled = true;
  setTimeout(() => {
    button.disabled = false;
  }, 800);
}

// While the applicant types, the server holds the turn open (it would otherwise end a silent
// answer after a while). At most one message every two seconds.
let lastTypingSent = 0;
$("typed-text").addEventListener("input", () => {
  const now = Date.now();
  if (now - lastTypingSent > 2000 && state.ws && state.ws.readyState === WebSocket.OPEN) {
    lastTypingSent = now;
    send({ type: "typing" });
  }
});

$("typed-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const box = $("typed-text");
  const error = $("typed-error");
  const text = box.value.trim();
  if (!text) {
    error.textContent = "Type your answer first.";
    error.hidden = false;
    box.focus();
    return;
  }
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) {
    error.textContent = "Not connected right now; your text is kept. Send it again in a moment.";
    error.hidden = false;
    return;
  }
  error.hidden = true;
  send({ type: "text", text });
  box.value = "";
  const line = document.createElement("p");
  line.className = "final typed";
  line.textContent = `You (typed): ${text}`;
  $("captions").append(line);
  trimCaptions();
});

// Time remaining (25 minutes from the start of the interview, kept across reloads)

function startClock() {
  const tick = () => {
    const started = Number(sessionStorage.getItem(startedKey)) || Date.now();
    const left = Math.max(0, BUDGET_S - Math.floor((Date.now() - started) / 1000));
    const minutes = Math.floor(left / 60);
    const seconds = String(left % 60).padStart(2, "0");
    $("time-left").textContent = `${minutes}:${seconds}`;
  };
  tick();
  state.timers.clock = setInterval(tick, 1000);
}

function stopClock() {
  clearInterval(state.timers.clock);
}

async function keepScreenOn() {
  try {
    if ("wakeLock" in navigator) state.wakeLock = await navigator.wakeLock.request("screen");
  } catch {
    // Not allowed here (battery saver, an old browser): the interview works without it.
  }
}

function releaseScreen() {
  if (state.wakeLock) state.wakeLock.release().catch(() => {});
  state.wakeLock = null;
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && state.ws && !state.wakeLock) keepScreenOn();
});

// For automated browser tests and support sessions: what the page is doing, and a way to
// simulate a dropped network connection.
window.nextmarkInterview = Object.freeze({
  get transport() {
    return state.transport;
  },
  get connected() {
    return Boolean(state.ws && state.ws.readyState === WebSocket.OPEN);
  },
  drop() {
    if (state.ws) state.ws.close(4001, "simulated drop");
  },
});

init();
