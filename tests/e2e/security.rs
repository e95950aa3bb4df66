//! Access-control promises of `docs/reliability.md` on the platform API, each on SQLite and
//! PostgreSQL: staff accounts lock after 100 wrong passwords in an hour, a client address is
//! refused after 100 invalid links in an hour, every response carries the security headers,
//! and no cross-origin caller is granted access.

use nextmark_server::platform::store::{AttemptScope, StaffRole};
use reqwest::Method;
use serde_json::json;
use time::Duration;

use crate::platform::{TestApp, platform_test};

/// The hourly allowance of failed attempts the issue sets.
const LIMIT: usize = 100;

async fn login(app: &TestApp, email: &str, password: &str) -> crate::platform::Reply {
    app.post(
        "/v1/auth/login",
        None,
        json!({"email": email, "password": password}),
    )
    .await
}

async fn a_staff_account_locks_after_100_wrong_passwords_in_an_hour(app: TestApp) {
    let email = "locked.reviewer@nextmark.test";
    let password = "correct horse battery staple 42";
    app.state
        .ensure_staff(
            email,
            "Locked Reviewer",
            StaffRole::Reviewer,
            Some(password),
        )
        .await
        .expect("staff account");
    // 98 failures earlier this hour (straight into the store: argon2 makes each HTTP try
    // slow), then the last two over HTTP: wrong passwords still get 401, never a lockout yet.
    for minutes_ago in (1..=(LIMIT - 2) as i64).rev() {
        app.state
            .store
            .record_failed_attempt(AttemptScope::Login, email, app.now() - 30 * minutes_ago)
            .await
            .expect("record");
    }
    for _ in 0..2 {
        let wrong = login(&app, email, "wrong password").await;
        assert_eq!(wrong.status, 401, "{}", wrong.text);
        assert_eq!(wrong.code(), "invalid_credentials");
    }
    // The 101st try is refused even with the right password, and says when to come back:
    // when the oldest failure (98 × 30 s ago) leaves the hour.
    let locked = login(&app, email, password).await;
    assert_eq!(locked.status, 429, "{}", locked.text);
    assert_eq!(locked.code(), "too_many_attempts");
    let retry: i64 = locked.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert_eq!(retry, 3600 - 98 * 30);
    // The address is counted case-blind; other accounts are untouched.
    let upper = login(&app, &email.to_uppercase(), password).await;
    assert_eq!(upper.status, 429, "{}", upper.text);
    let (other, other_password) = app
        .state
        .ensure_staff(
            "other.reviewer@nextmark.test",
            "Other",
            StaffRole::Reviewer,
            None,
        )
        .await
        .expect("other staff");
    assert_eq!(login(&app, &other, &other_password).await.status, 200);
    // Once the oldest failures are an hour old, the right password works again.
    app.advance(Duration::seconds(retry));
    let back = login(&app, email, password).await;
    assert_eq!(back.status, 200, "{}", back.text);
}

async fn a_client_is_refused_after_100_invalid_links_in_an_hour(app: TestApp) {
    let (_, applicant) = app
        .applicant("Link Tester", "link.tester@nextmark.test", &["law"])
        .await;
    let attempt = app
        .post(
            "/v1/me/attempts",
            Some(&applicant),
            json!({"discipline": "law"}),
        )
        .await;
    assert_eq!(attempt.status, 201, "{}", attempt.text);
    let good = attempt.body["interview"]["link_token"]
        .as_str()
        .expect("link token")
        .to_string();
    // A valid link opens.
    assert_eq!(
        app.get(&format!("/v1/interview-links/{good}"), None)
            .await
            .status,
        200
    );
    // Guessing: interview links and sign-in links count together, per client address.
    for n in 0..LIMIT {
        let reply = if n % 2 == 0 {
            app.get(&format!("/v1/interview-links/guess-{n:04}"), None)
                .await
        } else {
            app.post(
                "/v1/auth/magic-link/verify",
                None,
                json!({"token": format!("guess-{n:04}")}),
            )
            .await
        };
        assert!(
            [401, 404].contains(&reply.status),
            "guess {n}: {}",
            reply.text
        );
    }
    // Now even the valid link is refused from this address, with a clear message.
    let refused = app.get(&format!("/v1/interview-links/{good}"), None).await;
    assert_eq!(refused.status, 429, "{}", refused.text);
    assert_eq!(refused.code(), "too_many_attempts");
    assert!(refused.headers.contains_key("retry-after"));
    let verify = app
        .post("/v1/auth/magic-link/verify", None, json!({"token": "x"}))
        .await;
    assert_eq!(verify.status, 429, "{}", verify.text);
    // An hour later the address is welcome again.
    app.advance(Duration::seconds(3601));
    assert_eq!(
        app.get(&format!("/v1/interview-links/{good}"), None)
            .await
            .status,
        200
    );
}

async fn every_response_carries_security_headers_and_no_cross_origin_grant(app: TestApp) {
    let replies = [
        app.get("/healthz", None).await,
        app.get("/v1/me", None).await,
        app.get("/v1/review/queue", Some(&app.reviewer)).await,
        app.get("/v1/no/such/route", None).await,
        app.post("/v1/auth/login", None, json!({"email": 1})).await,
    ];
    for reply in &replies {
        let header = |name: &str| {
            reply
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert_eq!(
            header("x-content-type-options"),
            "nosniff",
            "{}",
            reply.text
        );
        assert_eq!(header("x-frame-options"), "DENY");
        assert_eq!(header("referrer-policy"), "no-referrer");
        assert_eq!(header("cache-control"), "no-store");
        assert_eq!(header("cross-origin-opener-policy"), "same-origin");
        assert!(header("access-control-allow-origin").is_empty());
    }
    // A preflight from another site is not granted (no origins are configured).
    let preflight = app
        .send(
            Method::OPTIONS,
            "/v1/review/queue",
            None,
            None,
            &[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "authorization"),
            ],
        )
        .await;
    assert!(preflight.status >= 400, "{}", preflight.status);
    assert!(
        !preflight
            .headers
            .contains_key("access-control-allow-origin")
    );
    // A cross-site request with the reviewer's token still gets no CORS grant, so a browser
    // would not let the other site read it.
    let cross = app
        .send(
            Method::GET,
            "/v1/review/queue",
            Some(&app.reviewer),
            None,
            &[("origin", "https://evil.example")],
        )
        .await;
    assert!(!cross.headers.contains_key("access-control-allow-origin"));
}

async fn a_reviewer_revokes_an_interview_link(app: TestApp) {
    let (_, applicant) = app
        .applicant("Revoked Link", "revoked.link@nextmark.test", &["law"])
        .await;
    let attempt = app
        .post(
            "/v1/me/attempts",
            Some(&applicant),
            json!({"discipline": "law"}),
        )
        .await;
    assert_eq!(attempt.status, 201, "{}", attempt.text);
    let attempt_id = attempt.str("id");
    let link = attempt.body["interview"]["link_token"]
        .as_str()
        .expect("link token")
        .to_string();
    let path = format!("/v1/review/attempts/{attempt_id}/revoke-link");
    // Applicants cannot revoke, not even their own link.
    let refused = app.post(&path, Some(&applicant), json!({})).await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert_eq!(
        app.get(&format!("/v1/interview-links/{link}"), None)
            .await
            .status,
        200
    );
    let revoked = app.post(&path, Some(&app.reviewer), json!({})).await;
    assert_eq!(revoked.status, 204, "{}", revoked.text);
    let gone = app.get(&format!("/v1/interview-links/{link}"), None).await;
    assert_eq!(gone.status, 410, "{}", gone.text);
    assert_eq!(gone.code(), "link_revoked");
    // Idempotent, and audited once.
    assert_eq!(
        app.post(&path, Some(&app.reviewer), json!({})).await.status,
        204
    );
    let audit = app.get("/v1/admin/audit", Some(&app.admin)).await;
    let entries = audit.body["items"].as_array().expect("audit items");
    let revocations = entries
        .iter()
        .filter(|e| e["action"] == "interview.link_revoked")
        .count();
    assert_eq!(revocations, 1, "{}", audit.text);
    // An unknown attempt is a 404, not a silent success.
    let unknown = app
        .post(
            "/v1/review/attempts/att_unknown/revoke-link",
            Some(&app.reviewer),
            json!({}),
        )
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
}

/// Instances started together on one database each ensure the same staff account: neither
/// fails on the other's insert (the failover bench's two `serve --demo` did, now and then).
async fn instances_ensuring_one_staff_account_at_once_both_succeed(app: TestApp) {
    // A new account each round: only the first insert of an email can race.
    for round in 0..8 {
        let email = format!("twice.admin.{round}@nextmark.test");
        let (a, b) = tokio::join!(
            app.state
                .ensure_staff(&email, "Twice", StaffRole::Admin, Some("first password 1")),
            app.state
                .ensure_staff(&email, "Twice", StaffRole::Admin, Some("second password 2")),
        );
        a.unwrap_or_else(|e| panic!("round {round}, first: {e:#}"));
        b.unwrap_or_else(|e| panic!("round {round}, second: {e:#}"));
        let logins = [
            login(&app, &email, "first password 1").await.status,
            login(&app, &email, "second password 2").await.status,
        ];
        assert!(logins.contains(&200), "round {round}: {logins:?}");
    }
}

platform_test!(
    instances_ensuring_one_staff_account_at_once_both_succeed,
    a_reviewer_revokes_an_interview_link,
    a_staff_account_locks_after_100_wrong_passwords_in_an_hour,
    a_client_is_refused_after_100_invalid_links_in_an_hour,
    every_response_carries_security_headers_and_no_cross_origin_grant,
);
