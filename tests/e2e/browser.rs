//! The web pages in a real browser: headless Chromium (Debian's `chromium`, installed by
//! `scripts/setup.sh`) driven over the DevTools protocol, with a WAV file as its fake
//! microphone. The applicant page takes the interview over real WebRTC (and over WebSocket
//! audio when WebRTC cannot connect); the reviewer console signs in, opens a report, plays the
//! recording from a transcript line, overrides a score and decides. Screenshots go to
//! `$NEXTMARK_TEST_ARTIFACTS` or `target/test-artifacts/browser/`.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use nextmark_engine::rubric::Rubric;
use nextmark_server::platform::DEMO_REVIEWER_EMAIL;
use nextmark_server::platform::store::{Principal, StaffRole};
use nextmark_server::tts::{Espeak, EspeakConfig, SpeechEngine};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::root;
use crate::live::{LiveApp, WsClient, answer_for, spawn_live};
use crate::platform::TestApp;

/// The browser tests share the machine's two cores with the whisper pool; one at a time keeps
/// the fake microphone's timeline (it starts when the page opens the microphone) predictable.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Where the fake microphone says the consent, seconds after the page opened the microphone.
/// The page must show the first question before this (it is said over the question: the
/// server's barge-in turns it into the answer either way).
const CONSENT_AT_S: f64 = 14.0;

// ---------------------------------------------------------------------------------------------
// Chromium over the DevTools protocol

/// The Chromium binary: `$NEXTMARK_CHROMIUM`, else `chromium` or `chromium-browser` on PATH.
/// Missing is a failure with the fix, never a silent skip.
fn chromium_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NEXTMARK_CHROMIUM") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "chromium is not installed, so the web pages cannot be tested in a real browser: run \
         `make setup` (scripts/setup.sh installs it) or `apt-get install -y chromium`, or set \
         NEXTMARK_CHROMIUM to a Chromium binary"
    );
}

/// Screenshots and other artifacts of this run.
fn artifacts_dir() -> PathBuf {
    let dir = std::env::var_os("NEXTMARK_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // target/<profile>/deps/e2e-… → target/test-artifacts/browser
            let exe = std::env::current_exe().expect("current exe");
            exe.ancestors()
                .nth(3)
                .expect("target dir")
                .join("test-artifacts")
                .join("browser")
        });
    std::fs::create_dir_all(&dir).expect("create the artifacts folder");
    dir
}

type CdpSink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;

/// A DevTools protocol connection: JSON-RPC over the browser's WebSocket, with flattened
/// sessions for pages. Console messages and exceptions are kept for failure reports.
struct Cdp {
    sink: tokio::sync::Mutex<CdpSink>,
    next_id: AtomicU64,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>,
    console: Arc<Mutex<VecDeque<String>>>,
}

impl Cdp {
    async fn connect(url: &str) -> Cdp {
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect to the DevTools WebSocket");
        let (sink, mut stream) = socket.split();
        let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>> = Arc::default();
        let console: Arc<Mutex<VecDeque<String>>> = Arc::default();
        let (routes, log) = (pending.clone(), console.clone());
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Ok(value) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                if let Some(id) = value["id"].as_u64() {
                    if let Some(reply) = routes.lock().expect("routes").remove(&id) {
                        let _ = reply.send(value);
                    }
                } else if let Some(line) = console_line(&value) {
                    let mut log = log.lock().expect("console");
                    if log.len() == 200 {
                        log.pop_front();
                    }
                    log.push_back(line);
                }
            }
        });
        Cdp {
            sink: tokio::sync::Mutex::new(sink),
            next_id: AtomicU64::new(1),
            pending,
            console,
        }
    }

    /// Sends a command (to a page when `session` is given) and returns its result.
    async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = session.into();
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending").insert(id, tx);
        self.sink
            .lock()
            .await
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("send a DevTools command");
        let reply = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .unwrap_or_else(|_| panic!("no answer to {method} within 30 s"))
            .expect("the DevTools connection closed");
        if let Some(error) = reply.get("error") {
            panic!("{method} failed: {error}");
        }
        reply["result"].clone()
    }

    fn console_tail(&self) -> String {
        let log = self.console.lock().expect("console");
        log.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// A console message or uncaught exception as one line.
fn console_line(event: &Value) -> Option<String> {
    let params = &event["params"];
    match event["method"].as_str()? {
        "Runtime.consoleAPICalled" => {
            let args: Vec<String> = params["args"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|v| {
                            v.get("value")
                                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                                .or_else(|| v["description"].as_str().map(str::to_string))
                                .unwrap_or_default()
                        })
                        .collect()
                })
                .unwrap_or_default();
            Some(format!(
                "console.{}: {}",
                params["type"].as_str().unwrap_or("log"),
                args.join(" ")
            ))
        }
        "Runtime.exceptionThrown" => Some(format!(
            "exception: {}",
            params["exceptionDetails"]["exception"]["description"]
                .as_str()
                .or(params["exceptionDetails"]["text"].as_str())
                .unwrap_or("?")
        )),
        "Log.entryAdded" => Some(format!(
            "log.{}: {} {}",
            params["entry"]["level"].as_str().unwrap_or("?"),
            params["entry"]["text"].as_str().unwrap_or(""),
            params["entry"]["url"].as_str().unwrap_or("")
        )),
        _ => None,
    }
}

/// A headless Chromium process with its own profile.
struct Chromium {
    child: tokio::process::Child,
    cdp: Arc<Cdp>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    _profile: tempfile::TempDir,
}

/// The size a page is shown at.
#[derive(Clone, Copy)]
enum Viewport {
    /// A phone in portrait (the applicant's page must work there).
    Phone,
    /// A laptop screen.
    Desktop,
}

impl Chromium {
    /// Starts Chromium with `microphone` (a 16-bit WAV played once) as its fake microphone
    /// and any `extra` flags, and connects to it.
    async fn launch(microphone: &Path, extra: &[&str]) -> Chromium {
        let binary = chromium_binary();
        let profile = tempfile::tempdir().expect("profile dir");
        let mic = microphone
            .canonicalize()
            .expect("the fake microphone WAV exists");
        let mut command = tokio::process::Command::new(&binary);
        command
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-extensions",
                "--disable-sync",
                "--disable-background-timer-throttling",
                "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows",
                "--remote-debugging-port=0",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                "--autoplay-policy=no-user-gesture-required",
            ])
            .arg(format!(
                "--use-file-for-fake-audio-capture={}%noloop",
                mic.display()
            ))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let stderr = child.stderr.take().expect("chromium stderr");
        let mut lines = BufReader::new(stderr).lines();
        let tail: Arc<Mutex<VecDeque<String>>> = Arc::default();
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match tokio::time::timeout(left, lines.next_line()).await {
                Ok(Ok(Some(line))) => line,
                Ok(_) => panic!(
                    "chromium exited before it listened for DevTools: {}",
                    tail.lock()
                        .expect("tail")
                        .iter()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
                Err(_) => panic!("chromium did not print its DevTools URL within 30 s"),
            };
            if let Some(at) = line.find("ws://") {
                break line[at..].trim().to_string();
            }
            tail.lock().expect("tail").push_back(line);
        };
        // Keep draining stderr (a full pipe would stall the browser); keep the last lines.
        let kept = tail.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut kept = kept.lock().expect("tail");
                if kept.len() == 100 {
                    kept.pop_front();
                }
                kept.push_back(line);
            }
        });
        let cdp = Arc::new(Cdp::connect(&url).await);
        Chromium {
            child,
            cdp,
            stderr: tail,
            _profile: profile,
        }
    }

    /// Opens a new tab at `viewport` size.
    async fn page(&self, viewport: Viewport) -> Page {
        let target = self
            .cdp
            .call(None, "Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let target_id = target["targetId"].as_str().expect("targetId");
        let attached = self
            .cdp
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await;
        let session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        let page = Page {
            cdp: self.cdp.clone(),
            session,
            stderr: self.stderr.clone(),
        };
        // A tab in the background is not painted: screenshots would be blank.
        for domain in [
            "Page.enable",
            "Runtime.enable",
            "Log.enable",
            "Page.bringToFront",
        ] {
            page.cdp.call(Some(&page.session), domain, json!({})).await;
        }
        let (width, height, mobile) = match viewport {
            Viewport::Phone => (412, 915, true),
            Viewport::Desktop => (1280, 900, false),
        };
        page.cdp
            .call(
                Some(&page.session),
                "Emulation.setDeviceMetricsOverride",
                json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile }),
            )
            .await;
        page
    }

    /// Closes the browser (the interview socket drops, as when a tab is closed).
    async fn close(mut self) {
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            self.cdp.call(None, "Browser.close", json!({})),
        )
        .await;
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// One tab.
struct Page {
    cdp: Arc<Cdp>,
    session: String,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

impl Page {
    async fn call(&self, method: &str, params: Value) -> Value {
        self.cdp.call(Some(&self.session), method, params).await
    }

    /// Navigates and waits for the load to finish.
    async fn goto(&self, url: &str) {
        self.call("Page.navigate", json!({ "url": url })).await;
        self.wait_for(
            &format!(
                "location.href === {} && document.readyState === 'complete'",
                json!(url)
            ),
            Duration::from_secs(20),
            "the page to load",
        )
        .await;
    }

    /// Evaluates `expression` in the page as a user action (awaiting a promise) and returns
    /// its value.
    async fn eval(&self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({
                    "expression": expression,
                    "returnByValue": true,
                    "awaitPromise": true,
                    "userGesture": true,
                }),
            )
            .await;
        if let Some(details) = result.get("exceptionDetails") {
            panic!(
                "evaluating {expression:?} threw: {}\n{}",
                details["exception"]["description"]
                    .as_str()
                    .unwrap_or_else(|| details["text"].as_str().unwrap_or("?")),
                self.diagnostics().await
            );
        }
        result["result"]["value"].clone()
    }

    /// Polls `expression` until it is truthy; fails with a screenshot and the page's state.
    async fn wait_for(&self, expression: &str, within: Duration, what: &str) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let value = self.eval(expression).await;
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() >= deadline {
                let shot = self.screenshot(&format!("timeout-{}", slug(what))).await;
                panic!(
                    "waited {within:?} for {what} ({expression}); screenshot {}\n{}",
                    shot.display(),
                    self.diagnostics().await
                );
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Clicks the element `selector` with the mouse, as a person would: it must exist, be
    /// enabled, be shown, and be the element under the pointer at its centre.
    async fn click(&self, selector: &str) {
        let at = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({s}); \
                   if (!e) throw new Error('no element ' + {s}); \
                   if (e.disabled) throw new Error({s} + ' is disabled'); \
                   e.scrollIntoView({{block: 'center', inline: 'center'}}); \
                   if (!e.checkVisibility()) throw new Error({s} + ' is not visible'); \
                   const r = e.getBoundingClientRect(); \
                   const x = r.left + r.width / 2, y = r.top + r.height / 2; \
                   const hit = document.elementFromPoint(x, y); \
                   if (!hit || !(e.contains(hit) || hit.contains(e) || (e.labels && [...e.labels].some(l => l.contains(hit))))) \
                     throw new Error({s} + ' is covered by ' + (hit && hit.outerHTML.slice(0, 80))); \
                   return [x, y]; }})()",
                s = json!(selector)
            ))
            .await;
        let (x, y) = (at[0].as_f64().expect("x"), at[1].as_f64().expect("y"));
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "buttons": 1, "clickCount": 1 }),
            )
            .await;
        }
    }

    /// Types `value` into the text field `selector`, replacing what it held.
    async fn fill(&self, selector: &str, value: &str) {
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({s}); \
               if (!e) throw new Error('no element ' + {s}); \
               if (!e.checkVisibility()) throw new Error({s} + ' is not visible'); \
               e.focus(); e.select(); return true; }})()",
            s = json!(selector)
        ))
        .await;
        self.call("Input.insertText", json!({ "text": value }))
            .await;
    }

    /// Chooses `value` in the `<select>` `selector`.
    async fn choose(&self, selector: &str, value: &str) {
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({s}); \
               if (!e) throw new Error('no element ' + {s}); \
               e.value = {v}; if (e.value !== {v}) throw new Error('no option ' + {v}); \
               e.dispatchEvent(new Event('change', {{bubbles: true}})); return true; }})()",
            s = json!(selector),
            v = json!(value)
        ))
        .await;
    }

    /// The text of `selector` ("" when absent).
    async fn text(&self, selector: &str) -> String {
        self.eval(&format!(
            "(document.querySelector({}) || {{}}).textContent || ''",
            json!(selector)
        ))
        .await
        .as_str()
        .unwrap_or("")
        .to_string()
    }

    /// Saves a PNG of the whole page (up to 6000 px down) as `name.png` in the artifacts
    /// folder.
    async fn screenshot(&self, name: &str) -> PathBuf {
        let metrics = self.call("Page.getLayoutMetrics", json!({})).await;
        let size = &metrics["cssContentSize"];
        let viewport = &metrics["cssLayoutViewport"];
        let width = viewport["clientWidth"].as_f64().unwrap_or(1280.0);
        let height = size["height"].as_f64().unwrap_or(900.0).clamp(1.0, 6000.0);
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({
                    "format": "png",
                    "captureBeyondViewport": true,
                    "clip": { "x": 0, "y": 0, "width": width, "height": height, "scale": 1 },
                }),
            )
            .await;
        let data = base64_decode(shot["data"].as_str().expect("screenshot data"));
        let path = artifacts_dir().join(format!("{name}.png"));
        std::fs::write(&path, data).expect("write screenshot");
        path
    }

    /// What the page shows and said, for failure messages.
    async fn diagnostics(&self) -> String {
        let state = self
            .call(
                "Runtime.evaluate",
                json!({
                    "expression": "JSON.stringify({step: document.body && document.body.dataset.step, \
                        view: document.body && document.body.dataset.view, \
                        connection: (document.getElementById('connection') || {}).textContent, \
                        transport: window.nextmarkInterview && window.nextmarkInterview.transport, \
                        question: (document.getElementById('question') || {}).textContent, \
                        indicator: (document.getElementById('indicator') || {}).textContent, \
                        captions: (document.getElementById('captions') || {}).innerText, \
                        notice: (document.getElementById('notice') || {}).textContent})",
                    "returnByValue": true,
                }),
            )
            .await;
        let stderr = self
            .stderr
            .lock()
            .expect("stderr")
            .iter()
            .rev()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n");
        format!(
            "page: {}\nconsole:\n{}\nchromium stderr (last lines, newest first):\n{stderr}",
            state["result"]["value"].as_str().unwrap_or("?"),
            self.cdp.console_tail()
        )
    }
}

fn slug(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Standard base64 (screenshots arrive so).
fn base64_decode(text: &str) -> Vec<u8> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter_map(value) {
        acc = (acc << 6) | c;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The fake microphone

/// 16-bit mono PCM WAV (Chromium plays 24-bit files as silence).
fn write_wav(path: &Path, samples: &[f32], rate: u32) {
    let data: Vec<u8> = samples
        .iter()
        .flat_map(|s| ((s.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes())
        .collect();
    let mut out = Vec::with_capacity(44 + data.len());
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    std::fs::write(path, out).expect("write the fake microphone WAV");
}

/// The applicant's voice from the moment the page opens the microphone: a sentence for the
/// microphone test after 1 s, then the consent at [`CONSENT_AT_S`], then silence.
async fn fake_microphone(dir: &Path) -> PathBuf {
    const RATE: u32 = 48_000;
    // The voice the tiny test model transcribes most reliably after the browser's Opus.
    let speaker = Espeak::new(EspeakConfig {
        voice: "en-gb-scotland".into(),
        words_per_minute: 150,
        ..EspeakConfig::default()
    })
    .expect("espeak-ng");
    let say = |text: &'static str| {
        let speaker = &speaker;
        async move {
            let speech = speaker.synthesize(text).await.expect("espeak-ng speaks");
            speech.resampled(RATE).expect("resample").samples.to_vec()
        }
    };
    let mut samples = vec![0.0f32; RATE as usize];
    samples.extend(say("Testing my microphone. One, two, three.").await);
    let consent_at = (CONSENT_AT_S * f64::from(RATE)) as usize;
    assert!(samples.len() < consent_at, "the test sentence is too long");
    samples.resize(consent_at, 0.0);
    samples.extend(say("Yes, I agree to continue.").await);
    samples.extend(std::iter::repeat_n(0.0, 2 * RATE as usize));
    // A real microphone is never digitally silent: faint room noise (about -60 dBFS), or the
    // microphone check rightly reports the exact zeros between words as dropouts.
    let mut state = 0x2545_f491_u32;
    for s in &mut samples {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        *s += ((state >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.002;
    }
    let path = dir.join("fake-microphone.wav");
    write_wav(&path, &samples, RATE);
    path
}

// ---------------------------------------------------------------------------------------------
// Helpers for the interview page

const QUESTION_ID: &str = "(document.getElementById('question').dataset.id || '')";
const QUESTION_INDEX: &str = "Number(document.getElementById('question').dataset.index || 0)";
const FINAL_CAPTIONS: &str =
    "[...document.querySelectorAll('#captions p.final')].map(p => p.textContent).join(' ')";

/// Counts the partial captions the page shows, from now on.
async fn watch_partials(page: &Page) {
    page.eval(
        "(() => { window.__partials = []; const box = document.getElementById('captions'); \
           new MutationObserver(() => { const p = box.querySelector('.partial'); \
             if (p && p.textContent) window.__partials.push(p.textContent); }) \
           .observe(box, {childList: true, subtree: true, characterData: true}); return true; })()",
    )
    .await;
}

/// From the demo link to the microphone step with the microphone on (raw audio: headphones).
async fn open_microphone(page: &Page, join_url: &str) -> Instant {
    page.goto(join_url).await;
    page.wait_for(
        "document.body.dataset.step === 'welcome'",
        Duration::from_secs(15),
        "the welcome step",
    )
    .await;
    page.click("#consent").await;
    page.click("#consent-continue").await;
    page.wait_for(
        "document.body.dataset.step === 'mic'",
        Duration::from_secs(5),
        "the microphone step",
    )
    .await;
    page.click("#headphones").await;
    page.click("#mic-on").await;
    let opened = Instant::now();
    page.wait_for(
        "!document.getElementById('mic-ready').hidden",
        Duration::from_secs(10),
        "the microphone to open",
    )
    .await;
    opened
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applicant_takes_the_interview_in_chromium_over_webrtc() {
    let _one = ONE_BROWSER.lock().await;
    let started = Instant::now();
    let mut app = spawn_live(None, |_| {}).await;
    let demo = app.demo("medicine").await;
    let join_url = demo["join_url"].as_str().expect("join_url").to_string();
    let interview_id = demo["interview_id"].as_str().expect("id").to_string();
    let microphone = fake_microphone(app.dir.path()).await;
    let browser = Chromium::launch(&microphone, &[]).await;
    let page = browser.page(Viewport::Phone).await;

    // Welcome: what to expect, consent required before anything else.
    page.goto(&join_url).await;
    page.wait_for(
        "document.body.dataset.step === 'welcome'",
        Duration::from_secs(15),
        "the welcome step",
    )
    .await;
    let welcome = page.text("section[data-step='welcome']").await;
    assert!(welcome.contains("20–25 minutes"), "{welcome}");
    assert!(welcome.contains("recorded"), "{welcome}");
    assert!(page.text("#discipline").await.contains("Medicine"));
    page.screenshot("01-welcome").await;
    page.click("#consent-continue").await;
    page.wait_for(
        "!document.getElementById('consent-error').hidden && document.body.dataset.step === 'welcome'",
        Duration::from_secs(5),
        "the consent to be required",
    )
    .await;
    page.click("#consent").await;
    page.click("#consent-continue").await;
    page.wait_for(
        "document.body.dataset.step === 'mic'",
        Duration::from_secs(5),
        "the microphone step",
    )
    .await;

    // Microphone check: permission, level, a 5-second test judged by the server, playback.
    page.click("#headphones").await;
    page.click("#mic-on").await;
    let mic_opened = Instant::now();
    page.wait_for(
        "!document.getElementById('mic-ready').hidden",
        Duration::from_secs(10),
        "the microphone to open",
    )
    .await;
    page.click("#mic-test").await;
    let verdict = page
        .wait_for(
            "['good', 'problems', 'error'].includes(document.getElementById('mic-test-status').dataset.verdict) \
               && document.getElementById('mic-test-status').dataset.verdict",
            Duration::from_secs(20),
            "the microphone check verdict",
        )
        .await;
    assert_eq!(
        verdict,
        "good",
        "the fake microphone's test sentence was judged good: {} {}",
        page.text("#mic-test-status").await,
        page.text("#mic-test-problems").await
    );
    let playback = page
        .eval("document.getElementById('mic-playback').src")
        .await;
    assert!(
        playback.as_str().is_some_and(|s| s.starts_with("blob:")),
        "the test recording can be played back: {playback}"
    );
    page.screenshot("02-microphone-check").await;

    // The interview: first question shown, spoken over WebRTC.
    watch_partials(&page).await;
    page.click("#start").await;
    let intro = page
        .wait_for(
            &format!(
                "{QUESTION_ID} === 'intro' && document.getElementById('question').textContent"
            ),
            Duration::from_secs(20),
            "the first question",
        )
        .await;
    assert!(
        intro
            .as_str()
            .is_some_and(|t| t.starts_with("Hello, and welcome")),
        "{intro}"
    );
    let shown_after = mic_opened.elapsed().as_secs_f64();
    assert!(
        shown_after < CONSENT_AT_S - 1.0,
        "the first question came {shown_after:.1} s after the microphone opened, too late for \
         the fake microphone's consent at {CONSENT_AT_S} s"
    );
    page.wait_for(
        "document.getElementById('connection').dataset.transport === 'webrtc'",
        Duration::from_secs(5),
        "the WebRTC call",
    )
    .await;
    assert_eq!(
        page.eval("window.nextmarkInterview.transport").await,
        "webrtc"
    );
    assert_eq!(page.text("#progress").await, "1");
    page.screenshot("03-first-question").await;

    // Captions of the fake microphone's consent, heard through the call, then the next question.
    let heard = page
        .wait_for(
            &format!("/yes|agree|continu/i.test({FINAL_CAPTIONS}) && {FINAL_CAPTIONS}"),
            Duration::from_secs(45),
            "captions of the spoken consent",
        )
        .await;
    page.wait_for(
        &format!("{QUESTION_ID} === 'warmup'"),
        Duration::from_secs(40),
        "the second question",
    )
    .await;
    assert_eq!(page.text("#progress").await, "2");
    let partials = page.eval("window.__partials.length").await;
    page.screenshot("04-captions-and-next-question").await;

    // "Repeat the question" asks it again.
    page.click("#repeat").await;
    page.wait_for(
        &format!(
            "{QUESTION_ID} === 'warmup' && document.getElementById('question').dataset.again === 'true'"
        ),
        Duration::from_secs(15),
        "the repeated question",
    )
    .await;

    // A typed answer (the accommodation) moves on to the first rubric item.
    page.click("#typed summary").await;
    page.fill(
        "#typed-text",
        "I have worked in emergency medicine for twelve years in a large teaching hospital.",
    )
    .await;
    page.click("#typed-send").await;
    page.wait_for(
        &format!("{QUESTION_INDEX} === 3"),
        Duration::from_secs(20),
        "the question after the typed answer",
    )
    .await;
    let third = page.eval(QUESTION_ID).await;
    page.screenshot("05-after-typed-answer").await;

    // The network drops: the page reconnects by itself and the server asks the same question.
    page.eval("window.nextmarkInterview.drop()").await;
    page.wait_for(
        &format!(
            "{QUESTION_ID} === {third} && document.getElementById('question').dataset.again === 'true' \
               && window.nextmarkInterview.connected \
               && document.getElementById('connection').dataset.transport === 'webrtc' \
               && document.getElementById('captions').textContent.includes('Welcome back')"
        ),
        Duration::from_secs(25),
        "the page to reconnect and resume at the same question",
    )
    .await;
    page.screenshot("06-resumed-after-a-drop").await;

    // Typed answers to the end: the calm ending screen, with the demo report linked.
    let rubric = Rubric::load(&root().join("rubrics/medicine.toml")).expect("the medicine rubric");
    for _ in 0..12 {
        if page.eval("document.body.dataset.step").await == "ended" {
            break;
        }
        let id = page.eval(QUESTION_ID).await;
        let id = id.as_str().expect("question id").to_string();
        if id == "closing" {
            break;
        }
        let index = page.eval(QUESTION_INDEX).await;
        page.fill("#typed-text", &answer_for(&rubric, &id)).await;
        page.click("#typed-send").await;
        page.wait_for(
            &format!("document.body.dataset.step === 'ended' || {QUESTION_INDEX} > {index}"),
            Duration::from_secs(30),
            "the next question or the end",
        )
        .await;
    }
    page.wait_for(
        "document.body.dataset.step === 'ended'",
        Duration::from_secs(30),
        "the ending screen",
    )
    .await;
    assert!(
        page.text("section[data-step='ended'] h1")
            .await
            .contains("complete")
    );
    let report = page
        .eval("!document.getElementById('ended-report').hidden && document.getElementById('report-link').href")
        .await;
    let report = report
        .as_str()
        .expect("the demo report is linked")
        .to_string();
    assert!(report.ends_with("/report.html"), "{report}");
    assert_eq!(
        reqwest::get(&report).await.expect("report").status(),
        200,
        "{report}"
    );
    page.screenshot("07-ended").await;
    browser.close().await;

    // What the server stored: the spoken consent and the typed answer.
    let answers = app
        .state
        .store
        .answers(&interview_id)
        .await
        .expect("answers");
    let intro_answer = answers
        .iter()
        .find(|a| a.item_id == "intro")
        .unwrap_or_else(|| panic!("no consent committed: {answers:?}"));
    let said = intro_answer.text.to_lowercase();
    assert!(
        ["yes", "agree", "continu"].iter().any(|w| said.contains(w)),
        "{said}"
    );
    assert!(
        answers
            .iter()
            .any(|a| a.item_id == "warmup" && a.text.contains("years")),
        "{answers:?}"
    );
    app.stop().await;
    eprintln!(
        "browser interview: captions {heard}; {partials} partial captions seen; {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_interview_page_falls_back_to_websocket_audio_when_webrtc_cannot_connect() {
    let _one = ONE_BROWSER.lock().await;
    let mut app = spawn_live(None, |_| {}).await;
    let demo = app.demo("medicine").await;
    let join_url = demo["join_url"].as_str().expect("join_url").to_string();
    let microphone = fake_microphone(app.dir.path()).await;
    let browser = Chromium::launch(&microphone, &[]).await;
    let page = browser.page(Viewport::Phone).await;
    // As behind a firewall that lets no media through: every call may only use a TURN relay,
    // and there is none, so ICE never connects.
    page.call(
        "Page.addScriptToEvaluateOnNewDocument",
        json!({ "source": "(() => { const Native = window.RTCPeerConnection; \
            window.RTCPeerConnection = class extends Native { \
              constructor(config) { super({ ...(config || {}), iceTransportPolicy: 'relay' }); } }; })()" }),
    )
    .await;
    let opened = open_microphone(&page, &join_url).await;
    page.click("#start").await;
    page.wait_for(
        &format!("{QUESTION_ID} === 'intro'"),
        Duration::from_secs(20),
        "the first question over WebSocket audio",
    )
    .await;
    let shown_after = opened.elapsed().as_secs_f64();
    assert!(
        shown_after < CONSENT_AT_S - 1.0,
        "the first question came {shown_after:.1} s after the microphone opened"
    );
    assert_eq!(page.eval("window.nextmarkInterview.transport").await, "pcm");
    assert_eq!(
        page.eval("document.getElementById('connection').dataset.transport")
            .await,
        "pcm"
    );
    page.wait_for(
        &format!("/yes|agree|continu/i.test({FINAL_CAPTIONS})"),
        Duration::from_secs(45),
        "captions of the consent sent as PCM",
    )
    .await;
    page.wait_for(
        &format!("{QUESTION_ID} === 'warmup'"),
        Duration::from_secs(40),
        "the second question",
    )
    .await;
    page.screenshot("08-websocket-fallback").await;
    browser.close().await;
    app.stop().await;
}

/// Takes the interview at `ws_url` to its end with typed answers (the rubric's model answers),
/// streaming `silence` of "microphone" audio in real time before each one, so that the
/// recording and the transcript have a timeline.
async fn answer_by_typing(ws_url: &str, silence: Duration) {
    let rubric = Rubric::load(&root().join("rubrics/medicine.toml")).expect("the medicine rubric");
    let mut client = WsClient::connect(ws_url).await;
    client.hello_pcm(Some(Value::Null)).await;
    let mut event = client.expect("question", Duration::from_secs(15)).await;
    while event["type"] == "question" {
        let id = event["id"].as_str().expect("question id").to_string();
        if id == "closing" {
            client.expect("completed", Duration::from_secs(30)).await;
            return;
        }
        for _ in 0..silence.as_millis() / 100 {
            client.pcm(&[0.0; 1600]).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        client
            .json(json!({ "type": "text", "text": answer_for(&rubric, &id) }))
            .await;
        event = loop {
            let next = client
                .next(Duration::from_secs(30))
                .await
                .unwrap_or_else(|| panic!("no event after answering {id}: {:?}", client.seen));
            if next["type"] == "question" || next["type"] == "completed" {
                break next;
            }
        };
    }
}

/// A screening attempt ready for review: applied, interview answered by typing over the live
/// socket (with the microphone stream running as silence, so the recording has a timeline),
/// case study submitted. Returns the attempt id and the applicant's name.
async fn attempt_awaiting_review(app: &LiveApp) -> (String, String) {
    let http = reqwest::Client::new();
    let name = "Grace Example";
    let applied: Value = http
        .post(format!("{}/v1/applicants", app.address))
        .json(&TestApp::application(
            name,
            "grace@example.org",
            &["medicine"],
        ))
        .send()
        .await
        .expect("apply")
        .json()
        .await
        .expect("json");
    let applicant_id = applied["id"].as_str().expect("applicant id").to_string();
    let (token, _) = app
        .state
        .store
        .create_session(
            &Principal::Applicant { id: applicant_id },
            3600,
            app.state.now(),
        )
        .await
        .expect("session");
    let attempt: Value = http
        .post(format!("{}/v1/me/attempts", app.address))
        .bearer_auth(&token)
        .json(&json!({ "discipline": "medicine" }))
        .send()
        .await
        .expect("attempt")
        .json()
        .await
        .expect("json");
    let attempt_id = attempt["id"].as_str().expect("attempt id").to_string();
    let link = attempt["interview"]["link_token"]
        .as_str()
        .expect("link token");
    let ws_url = format!(
        "{}/v1/interview-links/{link}/live",
        app.address.replacen("http://", "ws://", 1)
    );
    answer_by_typing(&ws_url, Duration::from_secs(1)).await;
    let case_url = format!("{}/v1/me/attempts/{attempt_id}/case-study", app.address);
    let opened = http
        .get(&case_url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("case study");
    assert_eq!(opened.status(), 200);
    let submitted: Value = http
        .post(&case_url)
        .bearer_auth(&token)
        .json(&json!({ "answer": "Differential: ACS, PE, aortic dissection. ECG within ten minutes." }))
        .send()
        .await
        .expect("submit case study")
        .json()
        .await
        .expect("json");
    assert_eq!(submitted["status"], "awaiting_review", "{submitted}");
    (attempt_id, name.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_opens_a_report_in_chromium_plays_it_overrides_a_score_and_decides() {
    let mut app = spawn_live(None, |_| {}).await;
    let (attempt_id, applicant) = attempt_awaiting_review(&app).await;
    let (email, password) = app
        .state
        .ensure_staff(
            DEMO_REVIEWER_EMAIL,
            "Demo Reviewer",
            StaffRole::Reviewer,
            None,
        )
        .await
        .expect("demo reviewer");
    let scratch = tempfile::tempdir().expect("tempdir");
    let silence = scratch.path().join("silence.wav");
    write_wav(&silence, &[0.0; 4800], 48_000);
    let browser = Chromium::launch(&silence, &[]).await;
    let page = browser.page(Viewport::Desktop).await;

    // Sign in; the queue shows the screening with the time left to its deadline.
    page.goto(&format!("{}/review", app.address)).await;
    page.wait_for(
        "document.body.dataset.view === 'login'",
        Duration::from_secs(10),
        "the sign-in form",
    )
    .await;
    page.fill("#email", &email).await;
    page.fill("#password", "not the password").await;
    page.click("#login-submit").await;
    page.wait_for(
        "!document.getElementById('login-error').hidden",
        Duration::from_secs(10),
        "a wrong password to be refused",
    )
    .await;
    page.fill("#password", &password).await;
    page.click("#login-submit").await;
    let row = page
        .wait_for(
            &format!(
                "(document.querySelector('#queue-rows tr[data-attempt={}]') || {{}}).innerText",
                json!(attempt_id)
            ),
            Duration::from_secs(10),
            "the screening in the queue",
        )
        .await;
    let row = row.as_str().unwrap_or("");
    assert!(row.contains(&applicant) && row.contains("left"), "{row}");
    page.screenshot("10-review-queue").await;

    // The report: summary, transcript, both recording tracks loaded with the bearer token,
    // the engine's full report in a sandboxed frame.
    page.click(&format!("a[href='#/attempts/{attempt_id}']"))
        .await;
    page.wait_for(
        &format!(
            "document.body.dataset.view === 'attempt' && document.getElementById('attempt-title').textContent.includes({})",
            json!(applicant)
        ),
        Duration::from_secs(10),
        "the report",
    )
    .await;
    page.wait_for(
        "document.querySelectorAll('#transcript li').length >= 3 \
           && document.getElementById('verdict').textContent.length > 0",
        Duration::from_secs(10),
        "the transcript and summary",
    )
    .await;
    page.wait_for(
        "[...document.querySelectorAll('#recordings audio')].length === 2 && \
           [...document.querySelectorAll('#recordings audio')].every(a => a.src.startsWith('blob:') && a.readyState >= 1 && a.duration > 1)",
        Duration::from_secs(15),
        "the recordings to load",
    )
    .await;
    page.click("#full-report summary").await;
    page.wait_for(
        "document.getElementById('report-frame').srcdoc.includes('Recommendation')",
        Duration::from_secs(10),
        "the full engine report",
    )
    .await;
    page.screenshot("11-review-report").await;

    // Clicking a transcript line plays the recording from that moment.
    // (The transcript's times are the interview's clock, the recording's the audio received:
    // a line well inside the recording.)
    let t = page
        .eval(
            "(() => { const end = Math.min(...[...document.querySelectorAll('#recordings audio')].map(a => a.duration)); \
               return Math.max(...[...document.querySelectorAll('#transcript .seek')].map(b => Number(b.dataset.t)) \
                 .filter(t => t < end - 1.5)); })()",
        )
        .await
        .as_f64()
        .expect("transcript times");
    assert!(t > 1.0, "later questions were asked later: {t}");
    page.click(&format!("#transcript .seek[data-t='{t}']"))
        .await;
    let position = page
        .wait_for(
            &format!(
                "(() => {{ const a = document.querySelector('#recordings audio'); \
                   return Math.abs(a.currentTime - {t}) < 1.5 && !a.paused && a.currentTime; }})()"
            ),
            Duration::from_secs(10),
            "the recording to play from the transcript line",
        )
        .await;
    page.eval("document.querySelectorAll('#recordings audio').forEach(a => a.pause())")
        .await;

    // A score override with a reason, then the decision with feedback.
    page.eval("document.getElementById('override-answer').selectedIndex = 1")
        .await;
    page.choose("#override-dimension", "clarity").await;
    page.fill("#override-score", "1.5").await;
    page.fill("#override-reason", "Long pauses, unclear structure")
        .await;
    page.click("#override-submit").await;
    page.wait_for(
        "[...document.querySelectorAll('#overrides li.override')].some(li => li.textContent.includes('Long pauses'))",
        Duration::from_secs(10),
        "the override in the list",
    )
    .await;
    let overrides = app
        .state
        .store
        .overrides(&attempt_id)
        .await
        .expect("overrides");
    assert_eq!(overrides.len(), 1, "{overrides:?}");
    assert_eq!(overrides[0].dimension, "clarity");
    assert_eq!(overrides[0].score_centi, 150);
    assert!(overrides[0].answer_seq.is_some());

    page.click("#outcome-pass").await;
    page.fill("#feedback", "Clear and thorough.").await;
    page.click("#decision-submit").await;
    page.wait_for(
        "!document.getElementById('decision-done').hidden && document.getElementById('decision-done').textContent.includes('PASS')",
        Duration::from_secs(10),
        "the decision",
    )
    .await;
    page.screenshot("12-review-decided").await;
    let attempt = app.state.store.attempt(&attempt_id).await.expect("attempt");
    assert!(attempt.outcome.is_some(), "the decision was stored");
    browser.close().await;
    app.stop().await;
    eprintln!("review console: played from {t:.1} s (at {position})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_assets_and_the_microphone_check_answer_with_the_right_headers() {
    let mut app = spawn_live(None, |_| {}).await;
    let demo = app.demo("medicine").await;
    let join_url = demo["join_url"].as_str().expect("join_url").to_string();
    let token = join_url.rsplit('/').next().expect("token").to_string();
    let http = reqwest::Client::new();

    // The pages: HTML, never cached (the URL holds the link's secret), no referrer, a CSP.
    for url in [join_url.clone(), format!("{}/review", app.address)] {
        let page = http.get(&url).send().await.expect("page");
        assert_eq!(page.status(), 200, "{url}");
        let headers = page.headers();
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        let csp = headers["content-security-policy"].to_str().expect("csp");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        let html = page.text().await.expect("html");
        assert!(html.contains("/assets/app.css") && !html.contains("{{CONFIG}}"));
    }
    let page = http.get(&join_url).send().await.expect("page");
    let html = page.text().await.expect("html");
    assert!(
        html.contains(r#""iceServers":[]"#),
        "the page carries its configuration"
    );

    // Assets: their content type, a validator, and 304 when unchanged.
    for (name, kind) in [
        ("app.css", "text/css; charset=utf-8"),
        ("interview.js", "text/javascript; charset=utf-8"),
        ("review.js", "text/javascript; charset=utf-8"),
        ("audio.js", "text/javascript; charset=utf-8"),
        ("pcm-worklet.js", "text/javascript; charset=utf-8"),
    ] {
        let url = format!("{}/assets/{name}", app.address);
        let first = http.get(&url).send().await.expect("asset");
        assert_eq!(first.status(), 200, "{name}");
        assert_eq!(first.headers()["content-type"], kind, "{name}");
        assert_eq!(first.headers()["cache-control"], "no-cache", "{name}");
        let etag = first.headers()["etag"].clone();
        let again = http
            .get(&url)
            .header("if-none-match", etag)
            .send()
            .await
            .expect("asset");
        assert_eq!(again.status(), 304, "{name}");
    }
    let missing = http
        .get(format!("{}/assets/secret.toml", app.address))
        .send()
        .await
        .expect("asset");
    assert_eq!(missing.status(), 404);

    // The microphone check: a verdict for a WAV, clear errors otherwise.
    let check = format!("{}/v1/interview-links/{token}/mic-check", app.address);
    let scratch = tempfile::tempdir().expect("tempdir");
    let silent = scratch.path().join("silent.wav");
    write_wav(&silent, &[0.0; 48_000 * 2], 48_000);
    let verdict: Value = http
        .post(&check)
        .header("content-type", "audio/wav")
        .body(std::fs::read(&silent).expect("wav"))
        .send()
        .await
        .expect("mic check")
        .json()
        .await
        .expect("json");
    assert_eq!(verdict["verdict"], "problems", "{verdict}");
    assert_eq!(verdict["problems"][0]["flag"], "no_speech", "{verdict}");
    assert!((verdict["duration_s"].as_f64().expect("duration") - 2.0).abs() < 0.01);
    let refused = http
        .post(&check)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("mic check");
    assert_eq!(refused.status(), 415);
    let unknown = http
        .post(format!("{}/v1/interview-links/nope/mic-check", app.address))
        .header("content-type", "audio/wav")
        .body(std::fs::read(&silent).expect("wav"))
        .send()
        .await
        .expect("mic check");
    assert_eq!(unknown.status(), 404);
    let body: Value = unknown.json().await.expect("json");
    assert_eq!(body["error"]["code"], "not_found");

    // Once the interview is over, its link's check answers 409 like its socket.
    answer_by_typing(demo["ws_url"].as_str().expect("ws_url"), Duration::ZERO).await;
    let done = http
        .post(&check)
        .header("content-type", "audio/wav")
        .body(std::fs::read(&silent).expect("wav"))
        .send()
        .await
        .expect("mic check");
    assert_eq!(done.status(), 409);
    app.stop().await;
}
