//! The optional LLM grader against a real HTTP endpoint: a small axum server on port 0 that
//! speaks the OpenAI chat-completions protocol, checks the shape of every request (model,
//! messages, strict `json_schema` response format, bearer key) and answers as told — a valid
//! grading, a slow reply, an HTTP error, a refusal, or a malformed reply. The grader must use
//! the endpoint's scores only when the reply is valid and fall back to the deterministic score,
//! saying why, in every other case.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use nextmark_engine::rubric::{Dimension, Item, Rubric};
use nextmark_engine::scoring::{AnswerScore, score_answer};
use nextmark_server::grader::{GradeOutcome, GradeSource, LlmGrader, LlmGraderConfig, Secret};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::helpers::root;

/// The model the grader asks for.
const MODEL: &str = "grader-test-model";
/// The model the endpoint says answered (a dated snapshot, as real endpoints report).
const SERVED_MODEL: &str = "grader-test-model-2026-01-01";
/// The bearer key the endpoint expects.
const KEY: &str = "sk-test-0123456789abcdef";
/// A good, specific answer to `med-cardiac-arrest`.
const ANSWER: &str = "First I check for a response and breathing, then I call for help and put \
out a cardiac arrest call to get the arrest team. I start CPR at thirty to two, pushing five to \
six centimetres deep at a hundred to one twenty per minute. When the defibrillator arrives I \
attach the pads and check the rhythm; if it is VF I deliver a shock and continue CPR for two \
minutes, then give adrenaline one milligram every three to five minutes.";

/// What the fake endpoint does with each request.
#[derive(Debug, Clone)]
enum Behaviour {
    /// A `chat.completion` whose message content is this text.
    Content(String),
    /// A `chat.completion` whose message is a refusal.
    Refuse(String),
    /// Sleeps this long, then answers with this content.
    Slow(Duration, String),
    /// This HTTP status with an OpenAI-style error body carrying this message.
    Status(u16, String),
}

/// The endpoint's state: its behaviour, what it expects, what it saw.
#[derive(Debug)]
struct Endpoint {
    behaviour: Behaviour,
    /// Texts the system message must contain (the item's prompt, descriptors, concepts, flags).
    system_must_contain: Vec<String>,
    /// Every request body received.
    requests: Mutex<Vec<Value>>,
    /// Every way a request deviated from the protocol.
    problems: Mutex<Vec<String>>,
}

/// A running fake endpoint; stops when dropped.
struct FakeLlm {
    /// The base URL to configure (`http://127.0.0.1:PORT/v1`).
    base_url: String,
    endpoint: Arc<Endpoint>,
    server: JoinHandle<()>,
}

impl FakeLlm {
    fn requests(&self) -> Vec<Value> {
        self.endpoint.requests.lock().expect("lock").clone()
    }

    fn assert_requests_well_formed(&self) {
        let problems = self.endpoint.problems.lock().expect("lock");
        assert!(problems.is_empty(), "malformed requests: {problems:#?}");
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Starts the endpoint on 127.0.0.1, port 0.
async fn spawn_llm(item: &Item, behaviour: Behaviour) -> FakeLlm {
    let mut system_must_contain = vec![item.prompt.clone(), item.levels[4].clone()];
    system_must_contain.extend(item.concepts.iter().map(|c| c.term.clone()));
    system_must_contain.extend(item.red_flags.iter().map(|r| r.claim.clone()));
    let endpoint = Arc::new(Endpoint {
        behaviour,
        system_must_contain,
        requests: Mutex::new(Vec::new()),
        problems: Mutex::new(Vec::new()),
    });
    let app = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .with_state(endpoint.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("fake LLM server");
    });
    FakeLlm {
        base_url: format!("http://{addr}/v1"),
        endpoint,
        server,
    }
}

/// `POST /v1/chat/completions`.
async fn chat_completions(
    State(endpoint): State<Arc<Endpoint>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let problems = check_request(&endpoint, &headers, &body);
    endpoint.problems.lock().expect("lock").extend(problems);
    endpoint.requests.lock().expect("lock").push(body);
    match &endpoint.behaviour {
        Behaviour::Content(content) => Json(completion(Some(content), None)).into_response(),
        Behaviour::Refuse(refusal) => Json(completion(None, Some(refusal))).into_response(),
        Behaviour::Slow(delay, content) => {
            tokio::time::sleep(*delay).await;
            Json(completion(Some(content), None)).into_response()
        }
        Behaviour::Status(status, message) => (
            StatusCode::from_u16(*status).expect("status"),
            Json(json!({
                "error": { "message": message, "type": "server_error", "param": null, "code": null }
            })),
        )
            .into_response(),
    }
}

/// A `chat.completion` object as the OpenAI API returns it.
fn completion(content: Option<&str>, refusal: Option<&str>) -> Value {
    json!({
        "id": "chatcmpl-nextmark-test",
        "object": "chat.completion",
        "created": 1_767_225_600,
        "model": SERVED_MODEL,
        "system_fingerprint": "fp_test",
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": content, "refusal": refusal },
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": { "prompt_tokens": 812, "completion_tokens": 96, "total_tokens": 908 }
    })
}

/// Every way the request deviates from what the grader must send.
fn check_request(endpoint: &Endpoint, headers: &HeaderMap, body: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut need = |ok: bool, what: &str| {
        if !ok {
            problems.push(what.to_string());
        }
    };
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    need(auth == Some(&format!("Bearer {KEY}")), "bearer key");
    need(body["model"] == MODEL, "model");
    need(
        body.get("stream").is_none_or(|s| s == false),
        "no streaming",
    );
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    need(messages.len() == 2, "two messages");
    let system = messages.first().cloned().unwrap_or_default();
    need(
        system["role"] == "system",
        "first message is the system message",
    );
    let system_text = system["content"].as_str().unwrap_or_default();
    for text in &endpoint.system_must_contain {
        need(
            system_text.contains(text.as_str()),
            &format!("system message contains {text:?}"),
        );
    }
    need(
        system_text.contains("Do not infer or mention emotion"),
        "system message forbids trait inference",
    );
    let user = messages.get(1).cloned().unwrap_or_default();
    need(user["role"] == "user", "second message is the user message");
    need(
        user["content"].as_str().is_some_and(|c| c.contains(ANSWER)),
        "user message carries the answer",
    );
    let format = &body["response_format"];
    need(
        format["type"] == "json_schema",
        "response_format json_schema",
    );
    let spec = &format["json_schema"];
    need(
        spec["name"].as_str().is_some_and(|n| !n.is_empty()),
        "schema name",
    );
    need(spec["strict"] == true, "strict schema");
    let schema = &spec["schema"];
    need(schema["type"] == "object", "schema is an object");
    need(
        schema["additionalProperties"] == false,
        "no extra top-level keys",
    );
    need(
        schema["required"] == json!(["knowledge", "reasoning", "clarity", "rationale"]),
        "all four keys required",
    );
    need(
        schema["properties"]["rationale"]["type"] == "string",
        "rationale is a string",
    );
    for key in ["knowledge", "reasoning", "clarity"] {
        let d = &schema["properties"][key];
        need(d["required"] == json!(["score", "evidence"]), key);
        need(d["additionalProperties"] == false, key);
        need(d["properties"]["score"]["type"] == "integer", key);
        need(
            d["properties"]["score"]["enum"] == json!([0, 1, 2, 3, 4]),
            key,
        );
        need(d["properties"]["evidence"]["type"] == "array", key);
        need(
            d["properties"]["evidence"]["items"]["type"] == "string",
            key,
        );
    }
    problems
}

/// The grading reply JSON.
fn reply(scores: [i64; 3], evidence: [&[&str]; 3], rationale: &str) -> String {
    json!({
        "knowledge": { "score": scores[0], "evidence": evidence[0] },
        "reasoning": { "score": scores[1], "evidence": evidence[1] },
        "clarity": { "score": scores[2], "evidence": evidence[2] },
        "rationale": rationale
    })
    .to_string()
}

/// The real `med-cardiac-arrest` item from the committed medicine rubric.
fn item() -> Item {
    let rubric = Rubric::load(&root().join("rubrics/medicine.toml")).expect("medicine rubric");
    rubric
        .item("med-cardiac-arrest")
        .expect("med-cardiac-arrest")
        .clone()
}

fn grader(llm: &FakeLlm, timeout: Duration) -> LlmGrader {
    let mut config = LlmGraderConfig::new(llm.base_url.clone(), MODEL, Secret::new(KEY));
    config.timeout = timeout;
    LlmGrader::new(config).expect("valid grader config")
}

/// Grades [`ANSWER`] against an endpoint with this behaviour.
async fn grade_with(
    behaviour: Behaviour,
    timeout: Duration,
) -> (FakeLlm, AnswerScore, GradeOutcome) {
    let item = item();
    let deterministic = score_answer(&item, ANSWER, None);
    let llm = spawn_llm(&item, behaviour).await;
    let outcome = grader(&llm, timeout)
        .grade(&item, ANSWER, &deterministic)
        .await;
    (llm, deterministic, outcome)
}

fn fallback_reason(outcome: &GradeOutcome) -> &str {
    match &outcome.source {
        GradeSource::Fallback { reason } => reason,
        other => panic!("expected a fallback, got {other}"),
    }
}

fn assert_fell_back(outcome: &GradeOutcome, deterministic: &AnswerScore, reason_part: &str) {
    let reason = fallback_reason(outcome);
    assert!(
        reason.contains(reason_part),
        "reason {reason:?} should mention {reason_part:?}"
    );
    assert_eq!(
        &outcome.score, deterministic,
        "a fallback is the deterministic score"
    );
    assert_eq!(outcome.rationale, None);
}

#[tokio::test]
async fn valid_grading_uses_the_endpoints_scores_and_verified_quotes() {
    let content = reply(
        [4, 1, 3],
        [
            &[
                "put out a cardiac arrest call",
                "start  cpr at Thirty to two",
            ],
            &["if it is VF I deliver a shock"],
            &["First I check for a response and breathing"],
        ],
        "Names the key steps of advanced life support in order.",
    );
    let (llm, deterministic, outcome) =
        grade_with(Behaviour::Content(content), Duration::from_secs(10)).await;
    llm.assert_requests_well_formed();
    assert_eq!(llm.requests().len(), 1);
    assert_eq!(
        outcome.source,
        GradeSource::Llm {
            model: SERVED_MODEL.into()
        }
    );
    let score = &outcome.score;
    let scores = Dimension::ALL.map(|d| score.dimension(d).score);
    let raws = Dimension::ALL.map(|d| score.dimension(d).raw);
    assert_eq!(scores, [4, 1, 3]);
    assert_eq!(raws, [4.0, 1.0, 3.0]);
    assert!((score.overall_raw - (0.4 * 4.0 + 0.4 * 1.0 + 0.2 * 3.0)).abs() < 1e-9);
    assert!(!score.unclear);
    let quotes = |d: Dimension| -> Vec<&str> {
        score
            .dimension(d)
            .evidence
            .iter()
            .map(|e| e.text.as_str())
            .collect()
    };
    // Quotes come back verbatim from the answer, whatever case and spacing the model used.
    assert_eq!(
        quotes(Dimension::Knowledge),
        [
            "put out a cardiac arrest call",
            "start CPR at thirty to two"
        ]
    );
    assert_eq!(
        quotes(Dimension::Reasoning),
        ["if it is VF I deliver a shock"]
    );
    assert_eq!(
        quotes(Dimension::Clarity),
        ["First I check for a response and breathing"]
    );
    for d in &score.dimensions {
        for e in &d.evidence {
            let (a, b) = e.span.expect("quotes carry spans");
            assert_eq!(&ANSWER[a..b], e.text);
        }
    }
    assert_eq!(outcome.dropped_quotes, 0);
    assert_eq!(
        outcome.rationale.as_deref(),
        Some("Names the key steps of advanced life support in order.")
    );
    // What the deterministic scorer found about concepts and flags stays.
    assert_eq!(score.concepts_found, deterministic.concepts_found);
    assert_eq!(score.concepts_missing, deterministic.concepts_missing);
    assert_eq!(score.red_flags, deterministic.red_flags);
    // The outcome serializes with its source for the report.
    let wire = serde_json::to_value(&outcome).expect("serializes");
    assert_eq!(
        wire["source"],
        json!({ "kind": "llm", "model": SERVED_MODEL })
    );
}

#[tokio::test]
async fn quotes_not_in_the_answer_are_dropped() {
    let content = reply(
        [3, 3, 3],
        [
            &[
                "give amiodarone 300 mg after the third shock",
                "I start CPR at thirty to two",
                "arrest te",
            ],
            &["I would reassess airway and breathing"],
            &["then give adrenaline one milligram"],
        ],
        "Good.",
    );
    let (llm, _, outcome) = grade_with(Behaviour::Content(content), Duration::from_secs(10)).await;
    llm.assert_requests_well_formed();
    assert!(outcome.source.is_llm(), "{}", outcome.source);
    assert_eq!(outcome.dropped_quotes, 3);
    let texts = |d: Dimension| -> Vec<String> {
        outcome
            .score
            .dimension(d)
            .evidence
            .iter()
            .map(|e| e.text.clone())
            .collect()
    };
    assert_eq!(
        texts(Dimension::Knowledge),
        ["I start CPR at thirty to two"]
    );
    assert!(texts(Dimension::Reasoning).is_empty());
    assert_eq!(
        texts(Dimension::Clarity),
        ["then give adrenaline one milligram"]
    );
}

#[tokio::test]
async fn slow_endpoint_falls_back_on_timeout() {
    let content = reply([4, 4, 4], [&[], &[], &[]], "Too late.");
    let started = Instant::now();
    let (llm, deterministic, outcome) = grade_with(
        Behaviour::Slow(Duration::from_secs(5), content),
        Duration::from_millis(300),
    )
    .await;
    let elapsed = started.elapsed();
    assert_fell_back(&outcome, &deterministic, "timeout");
    assert!(
        fallback_reason(&outcome).starts_with("timeout"),
        "{}",
        outcome.source
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "the grader waited {elapsed:?}"
    );
    assert_eq!(llm.requests().len(), 1, "the request reached the endpoint");
    llm.assert_requests_well_formed();
}

#[tokio::test]
async fn server_error_falls_back() {
    let (llm, deterministic, outcome) = grade_with(
        Behaviour::Status(500, "the model is overloaded".into()),
        Duration::from_secs(10),
    )
    .await;
    assert_fell_back(&outcome, &deterministic, "500");
    assert!(fallback_reason(&outcome).contains("the model is overloaded"));
    assert!(!llm.requests().is_empty());
    llm.assert_requests_well_formed();
}

#[tokio::test]
async fn refusal_falls_back() {
    let (llm, deterministic, outcome) = grade_with(
        Behaviour::Refuse("I can't help with grading this.".into()),
        Duration::from_secs(10),
    )
    .await;
    assert_fell_back(&outcome, &deterministic, "refusal");
    llm.assert_requests_well_formed();
}

#[tokio::test]
async fn malformed_replies_fall_back() {
    let missing_clarity = json!({
        "knowledge": { "score": 3, "evidence": [] },
        "reasoning": { "score": 3, "evidence": [] },
        "rationale": "No clarity."
    })
    .to_string();
    let cases = [
        (
            "prose",
            "The answer deserves a 3 out of 4.".to_string(),
            "invalid reply",
        ),
        ("missing key", missing_clarity, "invalid reply"),
        (
            "fractional score",
            reply([3, 3, 3], [&[], &[], &[]], "x").replace("\"score\":3}", "\"score\":2.5}"),
            "invalid reply",
        ),
        (
            "score above 4",
            reply([7, 3, 3], [&[], &[], &[]], "x"),
            "out of range: knowledge score 7",
        ),
        (
            "negative score",
            reply([3, 3, -1], [&[], &[], &[]], "x"),
            "out of range: clarity score -1",
        ),
    ];
    for (name, content, reason_part) in cases {
        let (llm, deterministic, outcome) =
            grade_with(Behaviour::Content(content), Duration::from_secs(10)).await;
        llm.assert_requests_well_formed();
        let reason = fallback_reason(&outcome);
        assert!(
            reason.contains(reason_part),
            "{name}: reason {reason:?} should mention {reason_part:?}"
        );
        assert_eq!(outcome.score, deterministic, "{name}");
    }
}

#[tokio::test]
async fn the_key_never_appears_in_a_fallback_reason() {
    let (llm, deterministic, outcome) = grade_with(
        Behaviour::Status(401, format!("Incorrect API key provided: {KEY}.")),
        Duration::from_secs(10),
    )
    .await;
    assert_fell_back(&outcome, &deterministic, "401");
    let reason = fallback_reason(&outcome);
    assert!(!reason.contains(KEY), "{reason}");
    assert!(reason.contains("***"), "{reason}");
    assert!(!format!("{:?}", grader(&llm, Duration::from_secs(1))).contains(KEY));
    let report = serde_json::to_string(&outcome).expect("serializes");
    assert!(!report.contains(KEY));
}

#[tokio::test]
async fn unreachable_endpoint_falls_back() {
    // A port that was just free: nothing listens on it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let item = item();
    let deterministic = score_answer(&item, ANSWER, None);
    let mut config = LlmGraderConfig::new(format!("http://127.0.0.1:{port}/v1"), MODEL, KEY);
    config.timeout = Duration::from_secs(10);
    let outcome = LlmGrader::new(config)
        .expect("config")
        .grade(&item, ANSWER, &deterministic)
        .await;
    assert_fell_back(&outcome, &deterministic, "request failed");
}

#[tokio::test]
async fn empty_answer_falls_back_without_a_request() {
    let item = item();
    let deterministic = score_answer(&item, "  ", None);
    let llm = spawn_llm(&item, Behaviour::Content("{}".into())).await;
    let outcome = grader(&llm, Duration::from_secs(10))
        .grade(&item, "  ", &deterministic)
        .await;
    assert_fell_back(&outcome, &deterministic, "empty answer");
    assert!(llm.requests().is_empty());
}

/// Runs `nextmark interview` (text answers) with the LLM grader at `base_url`; returns the
/// JSON report.
async fn interview_report_with_llm(base_url: String, timeout_s: &str) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("report.json");
    let out_arg = out.display().to_string();
    let rubrics = root().join("rubrics").display().to_string();
    let timeout_s = timeout_s.to_string();
    let status = tokio::task::spawn_blocking(move || {
        let mut args = vec![
            "interview".to_string(),
            "--discipline".into(),
            "medicine".into(),
            "--rubrics".into(),
            rubrics,
            "--json".into(),
            out_arg,
            "--llm-base-url".into(),
            base_url,
            "--llm-model".into(),
            MODEL.into(),
            "--llm-timeout-s".into(),
            timeout_s,
            "Yes".into(),
            "I work in emergency medicine.".into(),
        ];
        args.extend(std::iter::repeat_n(ANSWER.to_string(), 8));
        std::process::Command::new(crate::helpers::nextmark_bin())
            .args(&args)
            .env("NEXTMARK_LLM_API_KEY", KEY)
            .output()
            .expect("run nextmark")
    })
    .await
    .expect("join");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(&out).expect("report")).expect("report JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_says_which_grader_scored_each_answer() {
    let content = reply(
        [4, 3, 3],
        [
            &["start CPR at thirty to two"],
            &["if it is VF I deliver a shock"],
            &["First I check for a response"],
        ],
        "Clear and complete.",
    );
    let llm = spawn_llm(&item(), Behaviour::Content(content)).await;
    let report = interview_report_with_llm(llm.base_url.clone(), "10").await;
    assert_eq!(report["grader"], format!("LLM grader ({MODEL})"));
    let items = report["items"].as_array().expect("items");
    assert!(!items.is_empty());
    for it in items {
        assert_eq!(
            it["graded_by"],
            format!("LLM grader ({SERVED_MODEL})"),
            "{it}"
        );
        assert_eq!(
            it["scores"],
            json!([4, 3, 3]),
            "the LLM's scores are in the report"
        );
    }
    assert_eq!(
        llm.requests().len(),
        items.len(),
        "one grading request per answered item"
    );

    // The endpoint gone: every answer falls back, and the report says so and why.
    let gone = llm.base_url.clone();
    drop(llm);
    let report = interview_report_with_llm(gone, "2").await;
    let n = report["items"].as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(
        report["grader"],
        format!("LLM grader ({MODEL}) with deterministic fallback on {n} of {n} answers")
    );
    for it in report["items"].as_array().expect("items") {
        let by = it["graded_by"].as_str().expect("graded_by");
        assert!(
            by.starts_with("deterministic scorer (LLM grader unavailable:"),
            "{by}"
        );
    }
}
