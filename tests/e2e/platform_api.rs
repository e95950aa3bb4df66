//! The API surface: the OpenAPI document lists exactly the routes (checked against this file's
//! route table, and every documented operation is served), and an authorization matrix over
//! every route and role: anonymous callers get 401, applicants 403 on reviewer and admin routes,
//! reviewers 403 on admin routes, staff 403 on applicant routes, and applicant A never sees
//! applicant B's records (404).

use std::collections::BTreeSet;

use nextmark_server::platform::store::Principal;
use reqwest::Method;
use serde_json::json;
use time::Duration;

use crate::platform::{Reply, TestApp, platform_test};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Anyone.
    Public,
    /// Anyone holding the interview link token (in the path).
    Link,
    /// Any signed-in caller.
    Session,
    /// Signed-in applicants (their own records).
    Applicant,
    /// Reviewers and admins.
    Reviewer,
    /// Admins.
    Admin,
}

use Access::*;

/// Every route of the platform API, written out by hand: the OpenAPI document must match it.
const ROUTES: &[(&str, &str, Access)] = &[
    ("GET", "/healthz", Public),
    ("GET", "/openapi.json", Public),
    ("POST", "/v1/applicants", Public),
    ("POST", "/v1/auth/magic-link", Public),
    ("POST", "/v1/auth/magic-link/verify", Public),
    ("POST", "/v1/auth/login", Public),
    ("POST", "/v1/auth/logout", Session),
    ("GET", "/v1/interview-links/{token}", Link),
    ("GET", "/v1/me", Applicant),
    ("GET", "/v1/me/export", Applicant),
    ("GET", "/v1/me/attempts", Applicant),
    ("POST", "/v1/me/attempts", Applicant),
    ("GET", "/v1/me/attempts/{attempt_id}", Applicant),
    ("GET", "/v1/me/attempts/{attempt_id}/case-study", Applicant),
    ("POST", "/v1/me/attempts/{attempt_id}/case-study", Applicant),
    ("GET", "/v1/me/agreements", Applicant),
    ("POST", "/v1/me/agreements", Applicant),
    ("GET", "/v1/me/tasks", Applicant),
    ("POST", "/v1/me/tasks/{task_id}/take", Applicant),
    ("POST", "/v1/me/tasks/{task_id}/submit", Applicant),
    ("GET", "/v1/me/payouts", Applicant),
    ("GET", "/v1/review/queue", Reviewer),
    ("GET", "/v1/review/overdue", Reviewer),
    ("GET", "/v1/review/attempts/{attempt_id}", Reviewer),
    (
        "GET",
        "/v1/review/attempts/{attempt_id}/report.html",
        Reviewer,
    ),
    (
        "POST",
        "/v1/review/attempts/{attempt_id}/overrides",
        Reviewer,
    ),
    (
        "POST",
        "/v1/review/attempts/{attempt_id}/decision",
        Reviewer,
    ),
    (
        "POST",
        "/v1/review/attempts/{attempt_id}/revoke-link",
        Reviewer,
    ),
    ("GET", "/v1/review/recordings/{recording_id}", Reviewer),
    ("GET", "/v1/admin/staff", Admin),
    ("POST", "/v1/admin/staff", Admin),
    ("GET", "/v1/admin/applicants", Admin),
    ("GET", "/v1/admin/documents", Admin),
    ("POST", "/v1/admin/documents", Admin),
    ("GET", "/v1/admin/roles", Admin),
    ("POST", "/v1/admin/roles", Admin),
    ("POST", "/v1/admin/roles/{role_id}/members", Admin),
    ("GET", "/v1/admin/roles/{role_id}/export", Admin),
    ("GET", "/v1/admin/tasks", Admin),
    ("POST", "/v1/admin/tasks", Admin),
    ("POST", "/v1/admin/tasks/{task_id}/review", Admin),
    ("GET", "/v1/admin/audit", Admin),
    ("POST", "/v1/admin/recordings/purge", Admin),
    // Last: it erases the caller.
    ("DELETE", "/v1/me", Applicant),
];

platform_test!(
    openapi_document_matches_the_routes,
    authorization_matrix_over_every_route_and_role,
    applicants_cannot_reach_each_others_records,
    sessions_and_links_are_checked,
);

async fn openapi_document_matches_the_routes(app: TestApp) {
    let doc = app.get("/openapi.json", None).await;
    assert_eq!(doc.status, 200, "{}", doc.text);
    assert!(
        doc.body["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "OpenAPI 3: {}",
        doc.body["openapi"]
    );
    let mut documented = BTreeSet::new();
    for (path, item) in doc.body["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let method = method.to_uppercase();
            let access = ROUTES
                .iter()
                .find(|(m, p, _)| *m == method && p == path)
                .map(|r| r.2)
                .unwrap_or_else(|| {
                    panic!("{method} {path} is documented but not in the route table")
                });
            let secured = operation["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            assert_eq!(
                secured,
                !matches!(access, Public | Link),
                "{method} {path}: security in the document matches who may call it"
            );
            for param in path.split('{').skip(1) {
                let name = param.split('}').next().expect("param");
                let declared = operation["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["name"] == name && p["in"] == "path"));
                assert!(declared, "{method} {path} declares path parameter {name}");
            }
            documented.insert((method, path.clone()));
        }
    }
    let table: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, table, "the document lists exactly the routes");
    // Every documented operation is served by the router (no 404 from routing, no 405).
    for (method, path) in &documented {
        let concrete = path.replace('{', "x").replace('}', "");
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let reply = app.send(method.clone(), &concrete, None, None, &[]).await;
        assert_ne!(reply.code(), "route_not_found", "{method} {path} is routed");
        assert_ne!(reply.status, 405, "{method} {path} accepts {method}");
    }
    let missing = app.get("/v1/nope", None).await;
    assert_eq!((missing.status, missing.code()), (404, "route_not_found"));
    let wrong = app.send(Method::PUT, "/v1/me", None, None, &[]).await;
    assert_eq!((wrong.status, wrong.code()), (405, "method_not_allowed"));
}

/// Ids the matrix fills path parameters with.
struct Fixture {
    applicant_a: String,
    applicant_b: String,
    attempt_a: String,
    link_token_a: String,
    task: String,
    role: String,
    recording: String,
}

async fn fixture(app: &TestApp) -> Fixture {
    let (applicant_a, token_a) = app.applicant("Ann", "ann@example.org", &["medicine"]).await;
    let (applicant_b, token_b) = app.applicant("Ben", "ben@example.org", &["medicine"]).await;
    let attempt = app
        .post(
            "/v1/me/attempts",
            Some(&token_a),
            json!({"discipline": "medicine"}),
        )
        .await;
    assert_eq!(attempt.status, 201, "{}", attempt.text);
    let attempt_a = attempt.str("id");
    app.complete_interview(&attempt.body, 2).await;
    let received = app
        .get(
            &format!("/v1/me/attempts/{attempt_a}/case-study"),
            Some(&token_a),
        )
        .await;
    assert_eq!(received.status, 200, "{}", received.text);
    let b_attempt = app
        .post(
            "/v1/me/attempts",
            Some(&token_b),
            json!({"discipline": "medicine"}),
        )
        .await;
    assert_eq!(b_attempt.status, 201, "{}", b_attempt.text);
    let role = app
        .post(
            "/v1/admin/roles",
            Some(&app.admin),
            json!({"discipline": "medicine", "name": "Matrix role", "hourly_rate_cents": 5000, "currency": "EUR"}),
        )
        .await;
    assert_eq!(role.status, 201, "{}", role.text);
    let task = app
        .post(
            "/v1/admin/tasks",
            Some(&app.admin),
            json!({"role_id": role.str("id"), "title": "T", "instructions": "Do it", "estimated_minutes": 30}),
        )
        .await;
    assert_eq!(task.status, 201, "{}", task.text);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("answer.wav");
    std::fs::write(&path, b"RIFF....WAVE").expect("write recording");
    let recording = app
        .state
        .store
        .add_recording(
            attempt.body["interview"]["id"]
                .as_str()
                .expect("interview id"),
            &path.display().to_string(),
            app.now(),
        )
        .await
        .expect("recording");
    std::mem::forget(dir);
    Fixture {
        applicant_a,
        applicant_b,
        attempt_a,
        link_token_a: attempt.body["interview"]["link_token"]
            .as_str()
            .expect("token")
            .to_string(),
        task: task.str("id"),
        role: role.str("id"),
        recording: recording.id,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    ApplicantA,
    ApplicantB,
    Reviewer,
    Admin,
}

async fn token_for(app: &TestApp, who: Who, f: &Fixture) -> Option<String> {
    let staff = |email: &'static str| async move {
        let (s, _) = app
            .state
            .store
            .staff_by_email(email)
            .await
            .expect("lookup")
            .expect("staff exists");
        Principal::Staff {
            id: s.id,
            role: s.role,
        }
    };
    let principal = match who {
        Who::Anonymous => return None,
        Who::ApplicantA => Principal::Applicant {
            id: f.applicant_a.clone(),
        },
        Who::ApplicantB => Principal::Applicant {
            id: f.applicant_b.clone(),
        },
        Who::Reviewer => staff(nextmark_server::platform::DEMO_REVIEWER_EMAIL).await,
        Who::Admin => staff(nextmark_server::platform::DEMO_ADMIN_EMAIL).await,
    };
    Some(app.session_for(&principal).await)
}

fn allowed(access: Access, who: Who) -> bool {
    match access {
        Public | Link => true,
        Session => who != Who::Anonymous,
        Applicant => matches!(who, Who::ApplicantA | Who::ApplicantB),
        Reviewer => matches!(who, Who::Reviewer | Who::Admin),
        Admin => who == Who::Admin,
    }
}

async fn authorization_matrix_over_every_route_and_role(app: TestApp) {
    let f = fixture(&app).await;
    let callers = [
        Who::Anonymous,
        Who::Reviewer,
        Who::Admin,
        Who::ApplicantB,
        Who::ApplicantA,
    ];
    let mut checked = 0;
    for (method, template, access) in ROUTES {
        let path = template
            .replace("{attempt_id}", &f.attempt_a)
            .replace("{task_id}", &f.task)
            .replace("{role_id}", &f.role)
            .replace("{recording_id}", &f.recording)
            .replace("{token}", &f.link_token_a);
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        for who in callers {
            let token = token_for(&app, who, &f).await;
            let body = (method == Method::POST).then(|| json!({}));
            let reply: Reply = app
                .send(method.clone(), &path, token.as_deref(), body.as_ref(), &[])
                .await;
            let label = format!(
                "{who:?} {method} {template} -> {} {}",
                reply.status, reply.text
            );
            assert!(reply.status < 500, "{label}");
            assert_ne!(reply.code(), "route_not_found", "{label}");
            assert_ne!(reply.status, 405, "{label}");
            let role_refused = reply.status == 403 && reply.code() == "forbidden";
            if allowed(*access, who) {
                assert_ne!(reply.status, 401, "{label}");
                assert!(!role_refused, "{label}");
            } else if who == Who::Anonymous {
                assert_eq!(reply.status, 401, "{label}");
                assert_eq!(reply.code(), "unauthenticated", "{label}");
            } else {
                assert!(role_refused, "{label}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, ROUTES.len() * callers.len());
}

async fn applicants_cannot_reach_each_others_records(app: TestApp) {
    let f = fixture(&app).await;
    let b = token_for(&app, Who::ApplicantB, &f).await;
    let b = b.as_deref();
    let a_attempt = format!("/v1/me/attempts/{}", f.attempt_a);
    for reply in [
        app.get(&a_attempt, b).await,
        app.get(&format!("{a_attempt}/case-study"), b).await,
        app.post(
            &format!("{a_attempt}/case-study"),
            b,
            json!({"answer": "mine now"}),
        )
        .await,
        app.post(&format!("/v1/me/tasks/{}/take", f.task), b, json!({}))
            .await,
        app.post(
            &format!("/v1/me/tasks/{}/submit", f.task),
            b,
            json!({"output": "x", "minutes_spent": 10}),
        )
        .await,
    ] {
        assert_eq!(reply.status, 404, "{}", reply.text);
    }
    let listed = app.get("/v1/me/attempts", b).await;
    assert!(!listed.text.contains(&f.attempt_a), "{}", listed.text);
    let export = app.get("/v1/me/export", b).await;
    assert!(!export.text.contains(&f.attempt_a));
    assert!(!export.text.contains("Ann"));
    // Reviewers do see it.
    let report = app
        .get(
            &format!("/v1/review/attempts/{}", f.attempt_a),
            Some(&app.reviewer),
        )
        .await;
    assert_eq!(report.status, 200, "{}", report.text);
    let audio = app
        .get(
            &format!("/v1/review/recordings/{}", f.recording),
            Some(&app.reviewer),
        )
        .await;
    assert_eq!(audio.status, 200);
    assert_eq!(
        audio
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("audio/wav")
    );
}

async fn sessions_and_links_are_checked(app: TestApp) {
    for header in [
        "Bearer not-a-session",
        "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
        "Bearer ",
    ] {
        let reply = app
            .send(
                Method::GET,
                "/v1/me",
                None,
                None,
                &[("authorization", header)],
            )
            .await;
        assert_eq!(reply.status, 401, "{header}: {}", reply.text);
    }
    let (id, token) = app.applicant("Dee", "dee@example.org", &["law"]).await;
    let principal = Principal::Applicant { id };
    let short = app
        .state
        .store
        .create_session(&principal, 60, app.now())
        .await
        .expect("session")
        .0;
    assert_eq!(app.get("/v1/me", Some(&short)).await.status, 200);
    app.advance(Duration::seconds(60));
    assert_eq!(
        app.get("/v1/me", Some(&short)).await.status,
        401,
        "expired session"
    );
    let out = app.post("/v1/auth/logout", Some(&token), json!({})).await;
    assert_eq!(out.status, 204);
    assert_eq!(
        app.get("/v1/me", Some(&token)).await.status,
        401,
        "signed out"
    );

    // Magic links: single use, 15 minutes, signed.
    app.post(
        "/v1/auth/magic-link",
        None,
        json!({"email": "dee@example.org"}),
    )
    .await;
    let link = app.mailer.last_link_to("dee@example.org").expect("link");
    let magic = link.split("token=").nth(1).expect("token").to_string();
    let first = app
        .post("/v1/auth/magic-link/verify", None, json!({"token": magic}))
        .await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.body["role"], "applicant");
    let reuse = app
        .post("/v1/auth/magic-link/verify", None, json!({"token": magic}))
        .await;
    assert_eq!((reuse.status, reuse.code()), (401, "link_used"));
    let (payload, _) = magic.split_once('.').expect("signed token");
    let forged = app
        .post(
            "/v1/auth/magic-link/verify",
            None,
            json!({"token": format!("{payload}.AAAA")}),
        )
        .await;
    assert_eq!((forged.status, forged.code()), (401, "invalid_link"));
    app.post(
        "/v1/auth/magic-link",
        None,
        json!({"email": "dee@example.org"}),
    )
    .await;
    let link = app.mailer.last_link_to("dee@example.org").expect("link");
    app.advance(Duration::minutes(15));
    let late = app
        .post(
            "/v1/auth/magic-link/verify",
            None,
            json!({"token": link.split("token=").nth(1).expect("token")}),
        )
        .await;
    assert_eq!((late.status, late.code()), (401, "link_expired"));
    let unknown = app
        .post(
            "/v1/auth/magic-link",
            None,
            json!({"email": "nobody@example.org"}),
        )
        .await;
    assert_eq!(unknown.status, 202, "no account enumeration");
    assert!(app.mailer.last_link_to("nobody@example.org").is_none());

    // Staff passwords.
    let wrong = app
        .post(
            "/v1/auth/login",
            None,
            json!({"email": nextmark_server::platform::DEMO_REVIEWER_EMAIL, "password": "wrong password"}),
        )
        .await;
    assert_eq!((wrong.status, wrong.code()), (401, "invalid_credentials"));
    let nobody = app
        .post(
            "/v1/auth/login",
            None,
            json!({"email": "x@example.org", "password": "whatever"}),
        )
        .await;
    assert_eq!((nobody.status, nobody.code()), (401, "invalid_credentials"));
    let created = app
        .post(
            "/v1/admin/staff",
            Some(&app.admin),
            json!({"email": "rev2@example.org", "name": "Rev Two", "role": "reviewer",
                   "password": "a long enough password"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let login = app
        .post(
            "/v1/auth/login",
            None,
            json!({"email": "REV2@example.org", "password": "a long enough password"}),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.text);
    assert_eq!(login.body["role"], "reviewer");
    let reviewer = login.str("token");
    assert_eq!(
        app.get("/v1/review/queue", Some(&reviewer)).await.status,
        200
    );
    assert_eq!(
        app.get("/v1/admin/staff", Some(&reviewer)).await.status,
        403
    );
}
