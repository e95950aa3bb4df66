//! The web pages served by the binary: the applicant's interview page at the interview link and
//! the reviewer console, embedded at build time (no CDN at run time), plus the microphone check
//! the interview page calls before the interview starts.

mod assets;
pub mod mic_check;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::live::LiveShared;

pub use assets::Asset;

/// The page routes, merged into the live server's router.
///
/// | route | what |
/// |---|---|
/// | `GET /interview/{token}` | the applicant's interview page (the `join_url`) |
/// | `GET /review` | the reviewer console |
/// | `GET /assets/{name}` | the pages' CSS and JavaScript modules |
/// | `POST /v1/interview-links/{token}/mic-check` | a test recording's quality verdict |
pub fn routes() -> Router<Arc<LiveShared>> {
    Router::new()
        .route("/interview/{token}", get(interview_page))
        .route("/review", get(review_page))
        .route("/assets/{name}", get(asset))
        .route(
            "/v1/interview-links/{token}/mic-check",
            post(mic_check::mic_check).layer(DefaultBodyLimit::max(mic_check::MAX_BODY_BYTES)),
        )
}

/// Headers every page carries: no caching (the interview URL holds the link's secret, the
/// console holds reviewer data), no referrer (the token must not leak to other sites), and a
/// content security policy that allows only this origin's scripts.
fn page_headers(csp: &'static str, permissions: &'static str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    headers.insert(
        axum::http::HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static(permissions),
    );
    headers
}

/// The interview page's policy: scripts, styles and the audio worklet from this origin, the
/// interview socket, recorded test audio as blob URLs.
const INTERVIEW_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; media-src 'self' blob: mediastream:; connect-src 'self'; \
    worker-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's policy: as above, plus inline styles for the engine's standalone report page
/// shown in a sandboxed frame (it inherits this policy).
const REVIEW_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; media-src 'self' blob:; connect-src 'self'; frame-src 'self'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /interview/{token}`: the applicant's page. The token is read by the page from its own
/// URL; the page itself is the same for every link, with the deployment's ICE servers filled in.
async fn interview_page(
    State(live): State<Arc<LiveShared>>,
    Path(_token): Path<String>,
) -> Response {
    let html = Asset::InterviewHtml
        .text()
        .replace("{{CONFIG}}", &client_config(&live));
    (
        page_headers(
            INTERVIEW_CSP,
            "microphone=(self), camera=(), geolocation=()",
        ),
        html,
    )
        .into_response()
}

/// `GET /review`: the reviewer console.
async fn review_page() -> Response {
    (
        page_headers(REVIEW_CSP, "microphone=(), camera=(), geolocation=()"),
        Asset::ReviewHtml.text(),
    )
        .into_response()
}

/// `GET /assets/{name}`.
async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match Asset::by_name(&name) {
        Some(asset) => asset.response(&headers),
        None => crate::platform::ApiError::not_found("asset").into_response(),
    }
}

/// What the interview page needs from the configuration, as JSON safe to place inside a
/// `<script type="application/json">` element.
fn client_config(live: &LiveShared) -> String {
    let ice: Vec<serde_json::Value> = live
        .settings
        .ice_servers
        .iter()
        .map(|s| {
            let mut server = serde_json::json!({ "urls": s.urls });
            if let Some(user) = &s.username {
                server["username"] = user.clone().into();
            }
            if let Some(credential) = &s.credential {
                server["credential"] = credential.clone().into();
            }
            server
        })
        .collect();
    let config = serde_json::json!({
        "iceServers": ice,
        "resumeWindowSecs": live.settings.resume_window_secs,
    });
    // `<` escaped so that no `</script>` can end the element early.
    config.to_string().replace('<', "\\u003c")
}
