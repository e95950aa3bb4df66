//! The applicant's whole journey over HTTP with a moving clock: apply → interview link →
//! interview completed → case study submitted → reviewer fails with feedback → reapply refused
//! before day 30, accepted after → pass → NDA and contractor agreement accepted → role matched →
//! task submitted → payout date → access lapses 90 days after the last accepted task. Plus the
//! expiry rules: interview link after 7 days, case study after 72 hours.

use serde_json::json;
use time::{Duration, Weekday};

use crate::platform::{TestApp, platform_test};

platform_test!(
    journey_from_application_to_payout,
    interview_link_expires_after_7_days,
    case_study_expires_72_hours_after_receipt,
);

async fn journey_from_application_to_payout(app: TestApp) {
    // Apply; the sign-in link arrives by mail.
    let (applicant_id, me) = app
        .applicant("Ada <Lovelace>", "ada@example.org", &["medicine"])
        .await;
    let profile = app.get("/v1/me", Some(&me)).await;
    assert_eq!(profile.status, 200, "{}", profile.text);
    assert_eq!(profile.body["access_active"], false);
    assert_eq!(profile.body["applicant"]["country"], "DE");

    // First attempt: interview link valid 7 days.
    let attempt = app
        .post(
            "/v1/me/attempts",
            Some(&me),
            json!({"discipline": "medicine"}),
        )
        .await;
    assert_eq!(attempt.status, 201, "{}", attempt.text);
    assert_eq!(attempt.body["status"], "in_progress");
    assert_eq!(attempt.body["number"], 1);
    assert_eq!(
        attempt.body["interview"]["expires_at"], "2025-01-13T09:00:00Z",
        "7 days from issue"
    );
    let attempt_id = attempt.str("id");
    let link_token = attempt.body["interview"]["link_token"]
        .as_str()
        .expect("token")
        .to_string();
    assert!(
        app.mailer
            .last_link_to("ada@example.org")
            .expect("interview link mailed")
            .ends_with(&link_token)
    );
    let link = app
        .get(&format!("/v1/interview-links/{link_token}"), None)
        .await;
    assert_eq!(link.status, 200, "{}", link.text);
    assert_eq!(link.body["status"], "pending");
    assert_eq!(link.body["discipline"], "medicine");

    // Interview completed (through the repository, as the live server will).
    app.advance(Duration::hours(2));
    let first_items = app.complete_interview(&attempt.body, 3).await;
    let link = app
        .get(&format!("/v1/interview-links/{link_token}"), None)
        .await;
    assert_eq!(link.body["status"], "completed");

    // Case study: received, then submitted within 72 hours.
    let case = app
        .get(
            &format!("/v1/me/attempts/{attempt_id}/case-study"),
            Some(&me),
        )
        .await;
    assert_eq!(case.status, 200, "{}", case.text);
    assert_eq!(case.body["received_at"], "2025-01-06T11:00:00Z");
    assert_eq!(case.body["due_at"], "2025-01-09T11:00:00Z");
    let first_case_study = case.str("id");
    app.advance(Duration::hours(20));
    let submitted = app
        .post(
            &format!("/v1/me/attempts/{attempt_id}/case-study"),
            Some(&me),
            json!({"answer": "My differential: ACS, PE, aortic dissection, ..."}),
        )
        .await;
    assert_eq!(submitted.status, 200, "{}", submitted.text);
    assert_eq!(submitted.body["status"], "awaiting_review");
    assert_eq!(submitted.body["results_due_at"], "2025-01-09T07:00:00Z");

    // Reviewer queue: oldest first, 48 hours left; overdue after that.
    let queue = app.get("/v1/review/queue", Some(&app.reviewer)).await;
    assert_eq!(queue.status, 200, "{}", queue.text);
    assert_eq!(queue.body["items"][0]["attempt_id"], attempt_id.as_str());
    assert_eq!(queue.body["items"][0]["seconds_left"], 48 * 3600);
    assert_eq!(queue.body["items"][0]["overdue"], false);
    let overdue = app.get("/v1/review/overdue", Some(&app.reviewer)).await;
    assert_eq!(overdue.body["items"].as_array().map(Vec::len), Some(0));
    app.advance(Duration::hours(49));
    let overdue = app.get("/v1/review/overdue", Some(&app.reviewer)).await;
    assert_eq!(overdue.body["items"][0]["attempt_id"], attempt_id.as_str());
    assert_eq!(overdue.body["items"][0]["seconds_left"], -3600);
    assert_eq!(overdue.body["items"][0]["overdue"], true);

    // The report (JSON and HTML), a score override, then a fail with feedback.
    let report = app
        .get(
            &format!("/v1/review/attempts/{attempt_id}"),
            Some(&app.reviewer),
        )
        .await;
    assert_eq!(report.status, 200, "{}", report.text);
    assert_eq!(
        report.body["interview"]["answers"].as_array().map(Vec::len),
        Some(3)
    );
    // The stored report is the interview engine's (versioned), built from the scored answers.
    assert_eq!(report.body["interview"]["report"]["version"], 1);
    assert_eq!(
        report.body["interview"]["report"]["items"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    assert_eq!(report.body["applicant"]["name"], "Ada <Lovelace>");
    let html = app
        .get(
            &format!("/v1/review/attempts/{attempt_id}/report.html"),
            Some(&app.reviewer),
        )
        .await;
    assert_eq!(html.status, 200);
    assert!(html.text.contains("Ada &lt;Lovelace&gt;"), "escaped name");
    assert!(!html.text.contains("<b>first</b>"), "answers are escaped");
    assert!(
        html.text.contains("<svg") && html.text.contains("Recommendation"),
        "the engine's report page"
    );
    let override_reply = app
        .post(
            &format!("/v1/review/attempts/{attempt_id}/overrides"),
            Some(&app.reviewer),
            json!({"answer_seq": 0, "dimension": "clarity", "score": 1.5,
                   "reason": "Long pauses and unclear structure in the recording"}),
        )
        .await;
    assert_eq!(override_reply.status, 201, "{}", override_reply.text);
    assert_eq!(override_reply.body["score"], 1.5);
    let fail = app
        .post(
            &format!("/v1/review/attempts/{attempt_id}/decision"),
            Some(&app.reviewer),
            json!({"outcome": "fail", "feedback": {
                "categories": ["communication_clarity", "insufficient_detail"],
                "text": "Structure answers: assessment, differential, plan."}}),
        )
        .await;
    assert_eq!(fail.status, 200, "{}", fail.text);
    let again = app
        .post(
            &format!("/v1/review/attempts/{attempt_id}/decision"),
            Some(&app.reviewer),
            json!({"outcome": "pass", "feedback": {"categories": []}}),
        )
        .await;
    assert_eq!(again.status, 409, "decided once: {}", again.text);
    assert_eq!(again.code(), "not_awaiting_review");
    let decided_at = app.now();

    // The applicant sees the result and the feedback.
    let mine = app
        .get(&format!("/v1/me/attempts/{attempt_id}"), Some(&me))
        .await;
    assert_eq!(mine.body["status"], "failed");
    assert_eq!(mine.body["result"]["outcome"], "fail");
    assert_eq!(
        mine.body["result"]["feedback_categories"],
        json!(["communication_clarity", "insufficient_detail"])
    );
    assert_eq!(
        mine.body["result"]["feedback_text"],
        "Structure answers: assessment, differential, plan."
    );
    assert_eq!(mine.body["result"]["reapply_from"], "2025-02-08T08:00:00Z");

    // The audit log has the override and the decision.
    let audit = app.get("/v1/admin/audit", Some(&app.admin)).await;
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"score.overridden"), "{actions:?}");
    assert!(actions.contains(&"screening.decided"), "{actions:?}");

    // Reapplying: refused until 30 days after the result, accepted from then on.
    app.advance(Duration::days(30) - Duration::seconds(1));
    let early = app
        .post(
            "/v1/me/attempts",
            Some(&me),
            json!({"discipline": "medicine"}),
        )
        .await;
    assert_eq!(early.status, 409, "{}", early.text);
    assert_eq!(early.code(), "reapply_too_soon");
    app.advance(Duration::seconds(1));
    assert_eq!(app.now(), decided_at + 30 * 86_400);
    let me = app.sign_in_again("ada@example.org").await;
    let second = app
        .post(
            "/v1/me/attempts",
            Some(&me),
            json!({"discipline": "medicine"}),
        )
        .await;
    assert_eq!(second.status, 201, "{}", second.text);
    assert_eq!(second.body["number"], 2);
    assert_ne!(
        second.body["case_study"]["id"], first_case_study,
        "each attempt gets a new case study"
    );
    let seen = app
        .state
        .store
        .items_seen_by_applicant(&applicant_id)
        .await
        .expect("items seen");
    let mut expected = first_items.clone();
    expected.sort();
    assert_eq!(seen, expected, "the items of the first attempt are known");
    let second_items = app.complete_interview(&second.body, 3).await;
    assert!(
        second_items.iter().all(|i| !first_items.contains(i)),
        "fresh items"
    );
    let second_id = second.str("id");
    let case = app
        .get(
            &format!("/v1/me/attempts/{second_id}/case-study"),
            Some(&me),
        )
        .await;
    assert_eq!(case.status, 200, "{}", case.text);
    let submitted = app
        .post(
            &format!("/v1/me/attempts/{second_id}/case-study"),
            Some(&me),
            json!({"answer": "A structured, complete answer."}),
        )
        .await;
    assert_eq!(
        submitted.body["status"], "awaiting_review",
        "{}",
        submitted.text
    );
    let pass = app
        .post(
            &format!("/v1/review/attempts/{second_id}/decision"),
            Some(&app.reviewer),
            json!({"outcome": "pass", "feedback": {"categories": [], "text": "Clear and thorough."}}),
        )
        .await;
    assert_eq!(pass.status, 200, "{}", pass.text);
    let profile = app.get("/v1/me", Some(&me)).await;
    assert_eq!(profile.body["passed_disciplines"], json!(["medicine"]));
    assert_eq!(profile.body["access_active"], true);
    assert_eq!(
        profile.body["missing_agreements"],
        json!(["contractor_agreement", "nda"])
    );

    // Admin: agreements, a role with hourly pay, the match, a task.
    let agreement = app
        .post(
            "/v1/admin/documents",
            Some(&app.admin),
            json!({"kind": "contractor_agreement", "title": "Independent Contractor Agreement",
                   "body": "1. You are an independent contractor. 2. ..."}),
        )
        .await;
    assert_eq!(agreement.status, 201, "{}", agreement.text);
    assert_eq!(agreement.body["version"], 1);
    let nda = app
        .post(
            "/v1/admin/documents",
            Some(&app.admin),
            json!({"kind": "nda", "title": "Non-Disclosure Agreement", "body": "Keep it secret."}),
        )
        .await;
    assert_eq!(nda.status, 201, "{}", nda.text);
    let role = app
        .post(
            "/v1/admin/roles",
            Some(&app.admin),
            json!({"discipline": "medicine", "name": "Clinical reasoning reviewer",
                   "hourly_rate_cents": 9000, "currency": "USD"}),
        )
        .await;
    assert_eq!(role.status, 201, "{}", role.text);
    let role_id = role.str("id");
    let matched = app
        .post(
            &format!("/v1/admin/roles/{role_id}/members"),
            Some(&app.admin),
            json!({"applicant_id": applicant_id}),
        )
        .await;
    assert_eq!(matched.status, 201, "{}", matched.text);
    let task = app
        .post(
            "/v1/admin/tasks",
            Some(&app.admin),
            json!({"role_id": role_id, "title": "Grade 10 triage answers",
                   "instructions": "Score each answer 0-4 with a reason.", "estimated_minutes": 45}),
        )
        .await;
    assert_eq!(task.status, 201, "{}", task.text);
    let task_id = task.str("id");

    // No task before both agreements are accepted (time, hash and IP recorded).
    let tasks = app.get("/v1/me/tasks", Some(&me)).await;
    assert_eq!(tasks.body["items"][0]["id"], task_id.as_str());
    assert_eq!(tasks.body["items"][0]["state"], "open");
    let refused = app
        .post(
            &format!("/v1/me/tasks/{task_id}/take"),
            Some(&me),
            json!({}),
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert_eq!(refused.code(), "agreements_required");
    let documents = app.get("/v1/me/agreements", Some(&me)).await;
    assert_eq!(documents.body["complete"], false);
    let wrong = app
        .post(
            "/v1/me/agreements",
            Some(&me),
            json!({"document_id": nda.str("id"), "sha256": "0".repeat(64)}),
        )
        .await;
    assert_eq!(wrong.status, 422, "{}", wrong.text);
    assert_eq!(wrong.field(), "sha256");
    for doc in documents.body["documents"].as_array().expect("documents") {
        let accepted = app
            .post(
                "/v1/me/agreements",
                Some(&me),
                json!({"document_id": doc["document"]["id"], "sha256": doc["document"]["sha256"]}),
            )
            .await;
        assert_eq!(accepted.status, 201, "{}", accepted.text);
        assert_eq!(accepted.body["ip"], "127.0.0.1");
        assert_eq!(accepted.body["sha256"], doc["document"]["sha256"]);
    }
    assert_eq!(
        app.get("/v1/me/agreements", Some(&me)).await.body["complete"],
        true
    );

    // Take and submit the task with the time spent; the payout date follows.
    let taken = app
        .post(
            &format!("/v1/me/tasks/{task_id}/take"),
            Some(&me),
            json!({}),
        )
        .await;
    assert_eq!(taken.status, 200, "{}", taken.text);
    assert_eq!(taken.body["state"], "taken");
    let submitted_at = app.clock_now();
    let done = app
        .post(
            &format!("/v1/me/tasks/{task_id}/submit"),
            Some(&me),
            json!({"output": "Scores: 3,2,4,...", "minutes_spent": 50}),
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert_eq!(done.body["state"], "submitted");
    let payouts = app.get("/v1/me/payouts", Some(&me)).await;
    assert_eq!(payouts.status, 200, "{}", payouts.text);
    let mut friday = submitted_at.date() + Duration::days(7);
    while friday.weekday() != Weekday::Friday {
        friday += Duration::days(1);
    }
    assert_eq!(payouts.body["first_payout_date"], friday.to_string());
    assert_eq!(
        payouts.body["payouts"][0]["amount_cents"], 7500,
        "50 min at $90/h"
    );
    assert_eq!(payouts.body["payouts"][0]["status"], "scheduled");
    let days = (friday - submitted_at.date()).whole_days();
    assert!((7..=13).contains(&days), "{days}");

    // Accepted work is exported without personal data and extends access 90 days.
    let reviewed = app
        .post(
            &format!("/v1/admin/tasks/{task_id}/review"),
            Some(&app.admin),
            json!({"review": "accepted"}),
        )
        .await;
    assert_eq!(reviewed.status, 200, "{}", reviewed.text);
    let export = app
        .get(
            &format!("/v1/admin/roles/{role_id}/export"),
            Some(&app.admin),
        )
        .await;
    assert_eq!(export.status, 200, "{}", export.text);
    let record = &export.body["items"][0];
    assert_eq!(record["task_id"], task_id.as_str());
    assert!(
        record["contributor"]
            .as_str()
            .is_some_and(|c| c.starts_with("c_"))
    );
    for personal in [applicant_id.as_str(), "Ada", "ada@example.org", "\"DE\""] {
        assert!(!export.text.contains(personal), "export leaks {personal}");
    }
    app.advance(Duration::days(90) - Duration::seconds(1));
    assert_eq!(
        app.get("/v1/me", Some(&app.fresh(&applicant_id).await))
            .await
            .body["access_active"],
        true
    );
    app.advance(Duration::seconds(1));
    let me = app.fresh(&applicant_id).await;
    let lapsed = app.get("/v1/me", Some(&me)).await;
    assert_eq!(lapsed.body["access_active"], false);
    let task2 = app
        .post(
            "/v1/admin/tasks",
            Some(&app.fresh_admin().await),
            json!({"role_id": role_id, "title": "Another", "instructions": "x", "estimated_minutes": 20}),
        )
        .await;
    let refused = app
        .post(
            &format!("/v1/me/tasks/{}/take", task2.str("id")),
            Some(&me),
            json!({}),
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert_eq!(refused.code(), "access_lapsed");
    let rescreen = app
        .post(
            "/v1/me/attempts",
            Some(&me),
            json!({"discipline": "medicine"}),
        )
        .await;
    assert_eq!(
        rescreen.status, 201,
        "a new screening is required and allowed: {}",
        rescreen.text
    );
}

async fn interview_link_expires_after_7_days(app: TestApp) {
    let (_, me) = app.applicant("Bo", "bo@example.org", &["law"]).await;
    let attempt = app
        .post("/v1/me/attempts", Some(&me), json!({"discipline": "law"}))
        .await;
    assert_eq!(attempt.status, 201, "{}", attempt.text);
    let token = attempt.body["interview"]["link_token"]
        .as_str()
        .expect("token")
        .to_string();
    let link = format!("/v1/interview-links/{token}");
    app.advance(Duration::days(7) - Duration::seconds(1));
    assert_eq!(app.get(&link, None).await.status, 200);
    app.advance(Duration::seconds(1));
    let expired = app.get(&link, None).await;
    assert_eq!(expired.status, 410, "{}", expired.text);
    assert_eq!(expired.code(), "link_expired");
    let interview_id = attempt.body["interview"]["id"].as_str().expect("id");
    let late = app
        .state
        .store
        .commit_answer(interview_id, 0, "x", "too late", &json!({}), app.now())
        .await;
    assert!(late.is_err(), "no answers after expiry");
    let me = app.sign_in_again("bo@example.org").await;
    let view = app
        .get(&format!("/v1/me/attempts/{}", attempt.str("id")), Some(&me))
        .await;
    assert_eq!(view.body["status"], "expired", "{}", view.text);
    assert_eq!(view.body["interview"]["state"], "expired");
    let unknown = app.get("/v1/interview-links/not-a-real-token", None).await;
    assert_eq!(unknown.status, 404);
    let again = app
        .post("/v1/me/attempts", Some(&me), json!({"discipline": "law"}))
        .await;
    assert_eq!(
        again.status, 201,
        "an expired attempt does not block: {}",
        again.text
    );
}

async fn case_study_expires_72_hours_after_receipt(app: TestApp) {
    let mut attempts = Vec::new();
    for email in ["on-time@example.org", "late@example.org"] {
        let (_, me) = app.applicant("Cy", email, &["finance"]).await;
        let attempt = app
            .post(
                "/v1/me/attempts",
                Some(&me),
                json!({"discipline": "finance"}),
            )
            .await;
        assert_eq!(attempt.status, 201, "{}", attempt.text);
        let id = attempt.str("id");
        let case = app
            .get(&format!("/v1/me/attempts/{id}/case-study"), Some(&me))
            .await;
        assert_eq!(case.status, 200, "{}", case.text);
        attempts.push((me, id));
    }
    let submit = |me: String, id: String| {
        let app = app.clone();
        async move {
            app.post(
                &format!("/v1/me/attempts/{id}/case-study"),
                Some(&me),
                json!({"answer": "DCF with three scenarios"}),
            )
            .await
        }
    };
    let before = app
        .post(
            &format!("/v1/me/attempts/{}/case-study", attempts[0].1),
            Some(&attempts[0].0),
            json!({}),
        )
        .await;
    assert_eq!(before.status, 422, "missing answer: {}", before.text);
    app.advance(Duration::hours(72) - Duration::seconds(1));
    let on_time = submit(attempts[0].0.clone(), attempts[0].1.clone()).await;
    assert_eq!(on_time.status, 200, "{}", on_time.text);
    app.advance(Duration::seconds(1));
    let late = submit(attempts[1].0.clone(), attempts[1].1.clone()).await;
    assert_eq!(late.status, 410, "{}", late.text);
    assert_eq!(late.code(), "case_study_expired");
    let view = app
        .get(
            &format!("/v1/me/attempts/{}", attempts[1].1),
            Some(&attempts[1].0),
        )
        .await;
    assert_eq!(view.body["status"], "expired");
}

impl TestApp {
    /// Signs in again by requesting a new magic link (sessions last 24 hours).
    pub async fn sign_in_again(&self, email: &str) -> String {
        let reply = self
            .post("/v1/auth/magic-link", None, json!({"email": email}))
            .await;
        assert_eq!(reply.status, 202, "{}", reply.text);
        self.sign_in(email).await
    }

    /// A fresh applicant session.
    pub async fn fresh(&self, applicant_id: &str) -> String {
        self.session_for(&nextmark_server::platform::store::Principal::Applicant {
            id: applicant_id.to_string(),
        })
        .await
    }

    /// A fresh admin session (the spawned one lasts 12 hours).
    pub async fn fresh_admin(&self) -> String {
        let (staff, _) = self
            .state
            .store
            .staff_by_email(nextmark_server::platform::DEMO_ADMIN_EMAIL)
            .await
            .expect("lookup")
            .expect("admin exists");
        self.session_for(&nextmark_server::platform::staff_principal(
            &staff.id, staff.role,
        ))
        .await
    }

    /// The server's current instant.
    pub fn clock_now(&self) -> time::OffsetDateTime {
        use nextmark_server::platform::Clock as _;
        self.clock.now()
    }
}
