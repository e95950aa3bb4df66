//! Storage behaviour on both databases: WAL on SQLite, the interview repository the live server
//! uses, recording retention, applicant export and erasure, idempotency keys, validation errors,
//! pagination, document versions and the payout schedule.

use std::collections::BTreeSet;

use nextmark_server::platform::StoreError;
use nextmark_server::platform::store::{Backend, LeaseRenewal, LeaseTry};
use reqwest::Method;
use serde_json::json;
use time::Duration;
use time::macros::datetime;

use crate::platform::{Db, TestApp, platform_test};

platform_test!(
    database_is_migrated_and_sqlite_uses_wal,
    interview_repository_for_the_live_server,
    recordings_are_purged_after_retention,
    applicant_can_export_and_erase_their_data,
    idempotency_keys_make_creates_safe_to_retry,
    validation_errors_name_the_field,
    pagination_walks_every_page,
    new_document_versions_need_new_acceptance,
    payouts_are_every_friday_after_seven_days,
    interview_leases_go_to_one_instance_at_a_time,
);

async fn database_is_migrated_and_sqlite_uses_wal(app: TestApp) {
    let health = app.get("/healthz", None).await;
    assert_eq!(health.status, 200, "{}", health.text);
    assert_eq!(health.body["database"], "ok");
    let mode = app
        .state
        .store
        .sqlite_journal_mode()
        .await
        .expect("journal mode");
    match app.db {
        Db::Sqlite => {
            assert_eq!(app.state.store.backend(), Backend::Sqlite);
            assert_eq!(mode.as_deref(), Some("wal"));
        }
        Db::Postgres => {
            assert_eq!(app.state.store.backend(), Backend::Postgres);
            assert_eq!(mode, None);
        }
    }
}

async fn interview_repository_for_the_live_server(app: TestApp) {
    let store = &app.state.store;
    let now = app.now();
    let demo = store
        .create_interview(None, "medicine", now)
        .await
        .expect("demo interview");
    let interview = store
        .get_interview_by_token(&demo.link_token, now)
        .await
        .expect("by token");
    assert_eq!(interview.id, demo.interview.id);
    assert_eq!(interview.attempt_id, None);
    assert_eq!(interview.expires_at, now + 7 * 86_400);
    let id = interview.id.clone();
    let live = store.start_interview(&id, now).await.expect("start");
    assert_eq!(format!("{:?}", live.status), "Live");
    store
        .record_item_asked(&id, "med-a", now)
        .await
        .expect("asked");
    store
        .record_item_asked(&id, "med-a", now)
        .await
        .expect("asked twice is fine");
    let scores = json!({"knowledge": 3});
    store
        .commit_answer(&id, 0, "med-a", "first answer", &scores, now)
        .await
        .expect("commit");
    store
        .commit_answer(&id, 0, "med-a", "first answer", &scores, now)
        .await
        .expect("a repeated commit after a resume is a no-op");
    let conflict = store
        .commit_answer(&id, 0, "med-a", "different text", &scores, now)
        .await
        .expect_err("conflict");
    assert!(matches!(
        conflict,
        StoreError::Conflict {
            code: "answer_exists",
            ..
        }
    ));
    store
        .commit_answer(&id, 1, "med-b", "second answer", &json!({}), now)
        .await
        .expect("commit");
    let answers = store.answers(&id).await.expect("answers");
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[1].text, "second answer");
    assert_eq!(answers[0].scores, scores);
    let done = store
        .complete_interview(&id, &json!({"overall": 3.1}), now)
        .await
        .expect("complete");
    assert_eq!(done.report, Some(json!({"overall": 3.1})));
    assert!(matches!(
        store.complete_interview(&id, &json!({}), now).await,
        Err(StoreError::Conflict {
            code: "interview_completed",
            ..
        })
    ));
    assert!(matches!(
        store
            .commit_answer(&id, 2, "x", "late", &json!({}), now)
            .await,
        Err(StoreError::Conflict { .. })
    ));

    // A live interview may finish within the grace period after its link expires.
    let other = store
        .create_interview(None, "law", now)
        .await
        .expect("interview");
    let other_id = other.interview.id.clone();
    store.start_interview(&other_id, now).await.expect("start");
    app.advance(Duration::days(7) + Duration::hours(1));
    store
        .commit_answer(
            &other_id,
            0,
            "law-a",
            "still talking",
            &json!({}),
            app.now(),
        )
        .await
        .expect("within grace");
    assert!(
        store
            .get_interview_by_token(&demo.link_token, app.now())
            .await
            .is_ok(),
        "a completed interview's link still shows it"
    );
    app.advance(Duration::hours(1));
    assert!(matches!(
        store
            .commit_answer(&other_id, 1, "law-b", "too late", &json!({}), app.now())
            .await,
        Err(StoreError::Expired {
            code: "link_expired",
            ..
        })
    ));
    assert!(matches!(
        store.get_interview_by_token("nope", app.now()).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn recordings_are_purged_after_retention(app: TestApp) {
    let store = &app.state.store;
    let dir = tempfile::tempdir().expect("temp dir");
    let interview = store
        .create_interview(None, "medicine", app.now())
        .await
        .expect("interview");
    let old = dir.path().join("old.wav");
    let young = dir.path().join("young.wav");
    std::fs::write(&old, b"old").expect("write");
    std::fs::write(&young, b"young").expect("write");
    store
        .add_recording(
            &interview.interview.id,
            &old.display().to_string(),
            app.now(),
        )
        .await
        .expect("add");
    app.advance(Duration::days(20));
    store
        .add_recording(
            &interview.interview.id,
            &young.display().to_string(),
            app.now(),
        )
        .await
        .expect("add");
    // The missing file of a third recording does not stop the purge.
    store
        .add_recording(
            &interview.interview.id,
            "/nonexistent/gone.wav",
            app.now() - 40 * 86_400,
        )
        .await
        .expect("add");
    app.advance(Duration::days(10) + Duration::seconds(1));
    let purge = app
        .post("/v1/admin/recordings/purge", Some(&app.admin), json!({}))
        .await;
    assert_eq!(purge.status, 200, "{}", purge.text);
    assert_eq!(purge.body["rows"], 2, "{}", purge.text);
    assert_eq!(purge.body["files"], 1);
    assert!(!old.exists(), "older than 30 days: deleted");
    assert!(young.exists(), "younger: kept");
    let left = store
        .recordings_for_interview(&interview.interview.id)
        .await
        .expect("list");
    assert_eq!(left.len(), 1);
    app.advance(Duration::days(21));
    nextmark_server::platform::maintenance_once(&app.state)
        .await
        .expect("maintenance");
    assert!(!young.exists(), "the periodic job purges too");
}

async fn applicant_can_export_and_erase_their_data(app: TestApp) {
    let (id, me) = app
        .applicant("Eve Example", "eve@example.org", &["medicine"])
        .await;
    let attempt = app
        .post(
            "/v1/me/attempts",
            Some(&me),
            json!({"discipline": "medicine"}),
        )
        .await;
    let attempt_id = attempt.str("id");
    app.complete_interview(&attempt.body, 2).await;
    let path = format!("/v1/me/attempts/{attempt_id}/case-study");
    app.get(&path, Some(&me)).await;
    app.post(
        &path,
        Some(&me),
        json!({"answer": "My private case answer"}),
    )
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let recording = dir.path().join("eve.wav");
    std::fs::write(&recording, b"audio").expect("write");
    app.state
        .store
        .add_recording(
            attempt.body["interview"]["id"].as_str().expect("id"),
            &recording.display().to_string(),
            app.now(),
        )
        .await
        .expect("recording");

    let export = app.get("/v1/me/export", Some(&me)).await;
    assert_eq!(export.status, 200, "{}", export.text);
    assert_eq!(export.body["applicant"]["email"], "eve@example.org");
    assert_eq!(
        export.body["attempts"][0]["case_study_answer"],
        "My private case answer"
    );
    assert_eq!(
        export.body["attempts"][0]["answers"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert!(export.body["applicant"]["attested_adult_at"].is_string());

    let erased = app.delete("/v1/me", Some(&me)).await;
    assert_eq!(erased.status, 200, "{}", erased.text);
    assert_eq!(erased.body["files"], 1);
    assert!(!recording.exists());
    assert_eq!(app.get("/v1/me", Some(&me)).await.status, 401, "signed out");
    let mails = app.mailer.messages().len();
    app.post(
        "/v1/auth/magic-link",
        None,
        json!({"email": "eve@example.org"}),
    )
    .await;
    assert_eq!(
        app.mailer.messages().len(),
        mails,
        "no link for an erased applicant"
    );
    let applicants = app.get("/v1/admin/applicants", Some(&app.admin)).await;
    assert!(!applicants.text.contains("eve@example.org"));
    let queue = app.get("/v1/review/queue", Some(&app.reviewer)).await;
    assert!(
        !queue.text.contains(&attempt_id),
        "erased applicants leave the queue"
    );
    let answers = app
        .state
        .store
        .answers(attempt.body["interview"]["id"].as_str().expect("id"))
        .await
        .expect("answers");
    assert!(answers.is_empty());
    let row = app.state.store.attempt(&attempt_id).await.expect("attempt");
    assert_eq!(row.case_study_text, None);
    assert!(app.state.store.applicant(&id).await.is_err());
    // The email can be used again.
    let again = app
        .post(
            "/v1/applicants",
            None,
            TestApp::application("Eve", "eve@example.org", &["medicine"]),
        )
        .await;
    assert_eq!(again.status, 201, "{}", again.text);
}

async fn idempotency_keys_make_creates_safe_to_retry(app: TestApp) {
    let body = TestApp::application("Ida", "ida@example.org", &["law"]);
    let key = [("Idempotency-Key", "apply-ida-1")];
    let first = app
        .send(Method::POST, "/v1/applicants", None, Some(&body), &key)
        .await;
    assert_eq!(first.status, 201, "{}", first.text);
    let retry = app
        .send(Method::POST, "/v1/applicants", None, Some(&body), &key)
        .await;
    assert_eq!(retry.status, 201, "{}", retry.text);
    assert_eq!(retry.body["id"], first.body["id"]);
    assert_eq!(
        retry
            .headers
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let without_key = app.post("/v1/applicants", None, body.clone()).await;
    assert_eq!(
        (without_key.status, without_key.code()),
        (409, "email_taken")
    );
    let other = TestApp::application("Ida", "ida2@example.org", &["law"]);
    let reused = app
        .send(Method::POST, "/v1/applicants", None, Some(&other), &key)
        .await;
    assert_eq!(
        (reused.status, reused.code()),
        (422, "idempotency_key_reused"),
        "{}",
        reused.text
    );
    let bad = app
        .send(
            Method::POST,
            "/v1/applicants",
            None,
            Some(&other),
            &[("Idempotency-Key", "has spaces")],
        )
        .await;
    assert_eq!((bad.status, bad.field()), (400, "Idempotency-Key"));
    // A failed request does not burn its key.
    let invalid =
        json!({"discipline": "nope", "name": "x", "hourly_rate_cents": 1, "currency": "USD"});
    let role_key = [("Idempotency-Key", "role-1")];
    let failed = app
        .send(
            Method::POST,
            "/v1/admin/roles",
            Some(&app.admin),
            Some(&invalid),
            &role_key,
        )
        .await;
    assert_eq!(failed.status, 422);
    let role = json!({"discipline": "law", "name": "Contracts", "hourly_rate_cents": 8000, "currency": "USD"});
    for _ in 0..3 {
        let created = app
            .send(
                Method::POST,
                "/v1/admin/roles",
                Some(&app.admin),
                Some(&role),
                &role_key,
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
    }
    let roles = app.get("/v1/admin/roles", Some(&app.admin)).await;
    assert_eq!(
        roles.body["items"].as_array().map(Vec::len),
        Some(1),
        "created once"
    );
}

async fn validation_errors_name_the_field(app: TestApp) {
    let mut body = TestApp::application("Val", "val@example.org", &["medicine"]);
    body["favourite_colour"] = json!("blue");
    let unknown = app.post("/v1/applicants", None, body).await;
    assert_eq!(
        (unknown.status, unknown.code(), unknown.field()),
        (422, "unknown_field", "favourite_colour"),
        "{}",
        unknown.text
    );
    let cases = [
        ("email", json!("not-an-email"), "email"),
        ("country", json!("Germany"), "country"),
        ("disciplines", json!(["astrology"]), "disciplines[0]"),
        ("disciplines", json!([]), "disciplines"),
        ("disciplines", json!(["law", "law"]), "disciplines[1]"),
        ("years_experience", json!(-1), "years_experience"),
        ("name", json!("x".repeat(201)), "name"),
        (
            "attestations",
            json!({"adult": false, "contractor_eligible": true}),
            "attestations.adult",
        ),
        (
            "attestations",
            json!({"adult": true}),
            "attestations.contractor_eligible",
        ),
    ];
    for (key, value, field) in cases {
        let mut body = TestApp::application("Val", "val@example.org", &["medicine"]);
        body[key] = value.clone();
        let reply = app.post("/v1/applicants", None, body).await;
        assert_eq!(reply.status, 422, "{key}={value}: {}", reply.text);
        assert_eq!(reply.field(), field, "{key}={value}: {}", reply.text);
        assert!(
            !reply.body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .is_empty()
        );
    }
    let malformed = app
        .send(
            Method::POST,
            "/v1/applicants",
            None,
            None,
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(malformed.status, 400, "{}", malformed.text);
    let not_json = app
        .client
        .post(format!("{}/v1/applicants", app.address))
        .body("name=x")
        .send()
        .await
        .expect("send");
    assert_eq!(not_json.status().as_u16(), 415);
    let huge = json!({"answer": "x".repeat(2 * 1024 * 1024)});
    let (_, me) = app.applicant("Val", "val@example.org", &["medicine"]).await;
    let too_big = app
        .post("/v1/me/attempts/att_x/case-study", Some(&me), huge)
        .await;
    assert_eq!(too_big.status, 413, "{}", too_big.text);
    let query = app
        .get("/v1/me/attempts?limit=5&sort=desc", Some(&me))
        .await;
    assert_eq!(
        (query.status, query.code()),
        (422, "invalid_query"),
        "{}",
        query.text
    );
    let limit = app.get("/v1/me/attempts?limit=0", Some(&me)).await;
    assert_eq!((limit.status, limit.field()), (422, "limit"));
    let not_applied = app
        .post("/v1/me/attempts", Some(&me), json!({"discipline": "law"}))
        .await;
    assert_eq!(
        (not_applied.status, not_applied.field()),
        (422, "discipline")
    );
    let task = app
        .post(
            "/v1/admin/tasks",
            Some(&app.admin),
            json!({"role_id": "rol_x", "title": "T", "instructions": "I", "estimated_minutes": 90}),
        )
        .await;
    assert_eq!((task.status, task.field()), (422, "estimated_minutes"));
    let fail = app
        .post(
            "/v1/review/attempts/att_x/decision",
            Some(&app.reviewer),
            json!({"outcome": "fail", "feedback": {"categories": []}}),
        )
        .await;
    assert_eq!((fail.status, fail.field()), (422, "feedback.categories"));
    let category = app
        .post(
            "/v1/review/attempts/att_x/decision",
            Some(&app.reviewer),
            json!({"outcome": "fail", "feedback": {"categories": ["rudeness"]}}),
        )
        .await;
    assert_eq!(category.status, 422, "{}", category.text);
    assert_eq!(
        category.field(),
        "feedback.categories[0]",
        "{}",
        category.text
    );
}

async fn pagination_walks_every_page(app: TestApp) {
    let mut created = BTreeSet::new();
    for i in 0..5 {
        let role = app
            .post(
                "/v1/admin/roles",
                Some(&app.admin),
                json!({"discipline": "engineering", "name": format!("Role {i}"),
                       "hourly_rate_cents": 7000, "currency": "USD"}),
            )
            .await;
        assert_eq!(role.status, 201, "{}", role.text);
        created.insert(role.str("id"));
        if i % 2 == 0 {
            app.advance(Duration::seconds(1));
        }
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/admin/roles?limit=2&cursor={c}"),
            None => "/v1/admin/roles?limit=2".to_string(),
        };
        let page = app.get(&path, Some(&app.admin)).await;
        assert_eq!(page.status, 200, "{}", page.text);
        pages += 1;
        for item in page.body["items"].as_array().expect("items") {
            seen.push(item["id"].as_str().expect("id").to_string());
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 5);
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), created);
    let bad = app
        .get("/v1/admin/roles?cursor=bm90LWEtY3Vyc29y", Some(&app.admin))
        .await;
    assert_eq!((bad.status, bad.field()), (422, "cursor"));
}

async fn new_document_versions_need_new_acceptance(app: TestApp) {
    let (id, me) = app.passed_applicant("dora@example.org", "law").await;
    let refused = app
        .post(
            "/v1/me/agreements",
            Some(
                &app.applicant("Not Passed", "np@example.org", &["law"])
                    .await
                    .1,
            ),
            json!({"document_id": "doc_x", "sha256": "0".repeat(64)}),
        )
        .await;
    assert_eq!((refused.status, refused.code()), (403, "not_qualified"));
    app.publish("contractor_agreement", "Agreement v1").await;
    let nda_v1 = app.publish("nda", "NDA v1").await;
    app.accept_all(&me).await;
    assert_eq!(
        app.get("/v1/me", Some(&me)).await.body["missing_agreements"],
        json!([])
    );
    let nda_v2 = app.publish("nda", "NDA v2: now with more secrecy").await;
    assert_eq!(nda_v2["version"], 2);
    assert_ne!(nda_v2["sha256"], nda_v1["sha256"]);
    assert_eq!(
        app.get("/v1/me", Some(&me)).await.body["missing_agreements"],
        json!(["nda"])
    );
    let old = app
        .post(
            "/v1/me/agreements",
            Some(&me),
            json!({"document_id": nda_v1["id"], "sha256": nda_v1["sha256"]}),
        )
        .await;
    assert_eq!((old.status, old.code()), (409, "document_superseded"));
    let role = app.role_for(&id, "law", 10_000).await;
    let task = app
        .post(
            "/v1/admin/tasks",
            Some(&app.admin),
            json!({"role_id": role, "title": "T", "instructions": "I", "estimated_minutes": 20}),
        )
        .await;
    let blocked = app
        .post(
            &format!("/v1/me/tasks/{}/take", task.str("id")),
            Some(&me),
            json!({}),
        )
        .await;
    assert_eq!(
        (blocked.status, blocked.code()),
        (403, "agreements_required")
    );
    app.accept_all(&me).await;
    let taken = app
        .post(
            &format!("/v1/me/tasks/{}/take", task.str("id")),
            Some(&me),
            json!({}),
        )
        .await;
    assert_eq!(taken.status, 200, "{}", taken.text);
    let twice = app
        .post(
            &format!("/v1/me/tasks/{}/take", task.str("id")),
            Some(&me),
            json!({}),
        )
        .await;
    assert_eq!((twice.status, twice.code()), (409, "task_taken"));
    // Roles only in disciplines passed.
    let other = app
        .post(
            "/v1/admin/roles",
            Some(&app.admin),
            json!({"discipline": "medicine", "name": "Med", "hourly_rate_cents": 1, "currency": "USD"}),
        )
        .await;
    let mismatch = app
        .post(
            &format!("/v1/admin/roles/{}/members", other.str("id")),
            Some(&app.admin),
            json!({"applicant_id": id}),
        )
        .await;
    assert_eq!((mismatch.status, mismatch.code()), (409, "not_qualified"));
}

async fn payouts_are_every_friday_after_seven_days(app: TestApp) {
    let (id, me) = app.passed_applicant("paul@example.org", "finance").await;
    app.publish("contractor_agreement", "Agreement").await;
    app.publish("nda", "NDA").await;
    app.accept_all(&me).await;
    let role = app.role_for(&id, "finance", 6000).await;
    let empty = app.get("/v1/me/payouts", Some(&me)).await;
    assert_eq!(empty.body["first_payout_date"], json!(null));
    // Tuesday: paid Friday 10 days later.
    app.clock.set(datetime!(2025-01-07 10:00 UTC));
    let t1 = app.do_task(&role, &me, 45).await;
    // Saturday: no Friday 7-10 days later; paid 13 days later.
    app.clock.set(datetime!(2025-01-11 10:00 UTC));
    let t2 = app.do_task(&role, &me, 30).await;
    // Next Tuesday: the same Friday as Saturday's work.
    app.clock.set(datetime!(2025-01-14 10:00 UTC));
    let t3 = app.do_task(&role, &me, 60).await;
    let schedule = app.get("/v1/me/payouts", Some(&me)).await;
    assert_eq!(schedule.status, 200, "{}", schedule.text);
    assert_eq!(schedule.body["first_payout_date"], "2025-01-17");
    assert_eq!(schedule.body["next_payout_date"], "2025-01-17");
    let payouts = schedule.body["payouts"].as_array().expect("payouts");
    assert_eq!(payouts.len(), 2, "{}", schedule.text);
    assert_eq!(payouts[0]["date"], "2025-01-17");
    assert_eq!(payouts[0]["amount_cents"], 4500);
    assert_eq!(payouts[0]["task_ids"], json!([t1]));
    assert_eq!(payouts[1]["date"], "2025-01-24");
    assert_eq!(payouts[1]["amount_cents"], 9000);
    assert_eq!(payouts[1]["minutes"], 90);
    assert_eq!(payouts[1]["task_ids"], json!([t2, t3]));
    assert_eq!(payouts[0]["status"], "scheduled");
    // Rejected work is not paid.
    let rejected = app
        .post(
            &format!("/v1/admin/tasks/{t3}/review"),
            Some(&app.admin),
            json!({"review": "rejected"}),
        )
        .await;
    assert_eq!(rejected.status, 200, "{}", rejected.text);
    app.clock.set(datetime!(2025-01-17 12:00 UTC));
    let later = app.get("/v1/me/payouts", Some(&me)).await;
    assert_eq!(later.body["payouts"][0]["status"], "due");
    assert_eq!(later.body["payouts"][1]["amount_cents"], 3000);
    assert_eq!(later.body["next_payout_date"], "2025-01-17");
}

async fn interview_leases_go_to_one_instance_at_a_time(app: TestApp) {
    let store = &app.state.store;
    let id = store
        .create_interview(None, "law", app.now())
        .await
        .expect("interview")
        .interview
        .id;
    let t = 1_000_000;
    // Free: a takes it; a again renews it; b is told who holds it and for how long.
    assert_eq!(
        store.try_lease(&id, "a", t, 10_000).await.expect("try"),
        LeaseTry::Acquired
    );
    assert_eq!(
        store.try_lease(&id, "a", t + 1, 10_000).await.expect("try"),
        LeaseTry::Acquired,
        "the holder takes its own lease again (a restarted instance)"
    );
    assert_eq!(
        store
            .try_lease(&id, "b", t + 2_000, 10_000)
            .await
            .expect("try"),
        LeaseTry::HeldBy {
            owner: "a".into(),
            expires_in_ms: 8_001
        }
    );
    // b asks for it; a's renewal says so.
    store.want_lease(&id, "b").await.expect("want");
    store
        .want_lease(&id, "a")
        .await
        .expect("the holder asking itself is a no-op");
    assert_eq!(
        store
            .renew_lease(&id, "a", t + 3_000, 10_000)
            .await
            .expect("renew"),
        LeaseRenewal::Held {
            wanted_by: Some("b".into())
        }
    );
    // A release with an expiry the holder no longer wrote leaves the lease alone.
    store.release_lease(&id, "a", t + 1).await.expect("release");
    assert!(matches!(
        store
            .try_lease(&id, "b", t + 4_000, 10_000)
            .await
            .expect("try"),
        LeaseTry::HeldBy { .. }
    ));
    // Released as last written: b takes it at once, and the wish is cleared.
    store
        .release_lease(&id, "a", t + 13_000)
        .await
        .expect("release");
    assert_eq!(
        store
            .try_lease(&id, "b", t + 5_000, 10_000)
            .await
            .expect("try"),
        LeaseTry::Acquired
    );
    assert_eq!(
        store
            .renew_lease(&id, "b", t + 6_000, 10_000)
            .await
            .expect("renew"),
        LeaseRenewal::Held { wanted_by: None }
    );
    // a, never renewing again, has lost it; once b's lapses, a may take it back.
    assert_eq!(
        store
            .renew_lease(&id, "a", t + 6_000, 10_000)
            .await
            .expect("renew"),
        LeaseRenewal::Lost
    );
    assert!(matches!(
        store
            .try_lease(&id, "a", t + 15_999, 10_000)
            .await
            .expect("try"),
        LeaseTry::HeldBy { .. }
    ));
    assert_eq!(
        store
            .try_lease(&id, "a", t + 16_001, 10_000)
            .await
            .expect("try"),
        LeaseTry::Acquired,
        "a lapsed lease goes to whoever asks"
    );
    assert_eq!(
        store
            .renew_lease(&id, "b", t + 16_002, 10_000)
            .await
            .expect("renew"),
        LeaseRenewal::Lost
    );
}
