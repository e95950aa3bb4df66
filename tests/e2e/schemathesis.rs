//! The API against its own OpenAPI document, fuzzed by schemathesis (PyPI, installed by
//! `scripts/setup.sh`): valid, invalid, missing and unexpected fields on every operation, as an
//! admin; no response may be a server error. On SQLite and PostgreSQL.

use std::process::Command;

use crate::platform::{TestApp, platform_test};

/// Runs schemathesis on the operations `filters` select, as the holder of `token`; panics
/// with its report on any server error.
async fn fuzz_operations(app: &TestApp, token: &str, filters: &[&str], seed: u64) {
    let venv = nextmark_server::models::nextmark_home().join("schemathesis-venv");
    let cli = venv.join("bin").join("schemathesis");
    assert!(
        cli.exists(),
        "{} is missing: scripts/setup.sh (make test) installs it",
        cli.display()
    );
    let report = tempfile::tempdir().expect("tempdir");
    let mut command = Command::new(&cli);
    command
        .arg("run")
        .arg(format!("{}/openapi.json", app.address))
        .args(["--checks", "not_a_server_error"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "25", "--seed", &seed.to_string()])
        // One worker: its Python AST handling is not thread-safe on 3.11.
        .args(["--workers", "1", "--request-timeout", "20"])
        .args(["--suppress-health-check", "all"])
        .args(["--generation-database", "none", "--no-color"])
        .args(filters)
        .arg("--header")
        .arg(format!("Authorization: Bearer {token}"))
        .arg("--report-dir")
        .arg(report.path())
        // Its caches go to the working directory: keep them out of the checkout.
        .current_dir(report.path());
    let output = tokio::task::spawn_blocking(move || command.output().expect("run schemathesis"))
        .await
        .expect("schemathesis task");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found server errors (or could not run):\n{stdout}\n{stderr}"
    );
    // It really ran: cases were generated and passed.
    assert!(stdout.contains(" passed"), "{stdout}");
}

async fn no_generated_request_gets_a_server_error(app: TestApp) {
    // Every operation as an admin (logging out would end the run's own session).
    fuzz_operations(
        &app,
        &app.admin,
        &["--exclude-path", "/v1/auth/logout"],
        20_261_127,
    )
    .await;
    // The applicant's own routes as an applicant (erasure would end the session).
    let (_, applicant) = app
        .applicant("Fuzz Applicant", "fuzz.applicant@nextmark.test", &["law"])
        .await;
    fuzz_operations(
        &app,
        &applicant,
        &["--include-tag", "applicant", "--exclude-path", "/v1/me"],
        20_261_128,
    )
    .await;
}

platform_test!(no_generated_request_gets_a_server_error);
