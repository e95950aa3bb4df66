//! The `/v1` HTTP API: one list of routes that yields both the axum router and the OpenAPI 3
//! document (each handler's `#[utoipa::path]` is its route registration), plus the layers every
//! request passes through (tracing, body limit, idempotency keys) and JSON 404/405 fallbacks.

pub mod admin;
pub mod applicant;
pub mod extract;
pub mod idempotency;
pub mod public;
pub mod review;
pub mod views;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::{Extension, Router, middleware};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::config::PlatformConfig;
use super::error::{ApiError, ErrorBody, ErrorDetail};

/// The document's fixed parts; paths are added from the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Nextmark platform API",
        version = "1.0.0",
        description = "The applicant journey from application to payout: screening attempts \
                       (voice interview + case study), review, agreements, roles, tasks, payouts."
    ),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody, ErrorDetail)),
    tags(
        (name = "system", description = "Health and this document (no session)"),
        (name = "public", description = "Apply and sign in (no session)"),
        (name = "session", description = "Any signed-in caller"),
        (name = "interview", description = "The interview link token is the credential"),
        (name = "applicant", description = "The signed-in applicant's own records"),
        (name = "review", description = "Reviewers and admins"),
        (name = "admin", description = "Admins only")
    )
)]
pub struct ApiDoc;

/// Declares the bearer-token security scheme the operations refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("opaque session token")
                    .build(),
            ),
        );
    }
}

/// Every platform route, each registered together with its OpenAPI operation.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(public::healthz))
        .routes(routes!(public::openapi_json))
        .routes(routes!(public::apply))
        .routes(routes!(public::request_magic_link))
        .routes(routes!(public::verify_magic_link))
        .routes(routes!(public::login))
        .routes(routes!(public::logout))
        .routes(routes!(public::open_interview_link))
        .routes(routes!(applicant::me, applicant::erase))
        .routes(routes!(applicant::export))
        .routes(routes!(applicant::list_attempts, applicant::start_attempt))
        .routes(routes!(applicant::get_attempt))
        .routes(routes!(
            applicant::get_case_study,
            applicant::submit_case_study
        ))
        .routes(routes!(applicant::agreements, applicant::accept_agreement))
        .routes(routes!(applicant::list_tasks))
        .routes(routes!(applicant::take_task))
        .routes(routes!(applicant::submit_task))
        .routes(routes!(applicant::payouts))
        .routes(routes!(review::queue))
        .routes(routes!(review::overdue))
        .routes(routes!(review::report))
        .routes(routes!(review::report_html))
        .routes(routes!(review::add_override))
        .routes(routes!(review::decide))
        .routes(routes!(review::revoke_link))
        .routes(routes!(review::recording))
        .routes(routes!(admin::list_staff, admin::create_staff))
        .routes(routes!(admin::list_applicants))
        .routes(routes!(admin::list_documents, admin::publish_document))
        .routes(routes!(admin::list_roles, admin::create_role))
        .routes(routes!(admin::match_role))
        .routes(routes!(admin::export_role))
        .routes(routes!(admin::list_tasks, admin::create_task))
        .routes(routes!(admin::review_task))
        .routes(routes!(admin::audit_log))
        .routes(routes!(admin::purge_recordings))
}

/// The OpenAPI document of [`api`].
pub fn openapi() -> OpenApiDoc {
    api().split_for_parts().1
}

async fn route_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "route_not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept this method",
    )
}

/// The platform router with its state, layers and JSON fallbacks. More routes (without their
/// own fallback) can be merged into it.
pub fn router(state: AppState) -> Router {
    let (router, doc) = api().split_for_parts();
    let json = doc
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    router
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            idempotency::layer,
        ))
        .layer(Extension(public::OpenApiJson(Arc::new(json))))
        .layer(DefaultBodyLimit::max(idempotency::BODY_LIMIT))
        .with_state(state)
}

/// Security headers on every response (API, pages, sockets' refusals) where the route set none:
/// no MIME sniffing, no framing, no referrer, no caching, an isolated browsing context, HSTS
/// when served over HTTPS; and the CORS policy: same-origin only unless `cors_origins` lists
/// the origins whose pages may call the API (bearer tokens, never cookies, so a cross-site
/// form cannot act for anyone: no CSRF tokens are needed).
pub fn harden(router: Router, config: &PlatformConfig) -> Router {
    let default = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
    };
    // Request spans name the route template, never the path: paths hold link tokens.
    let traced = TraceLayer::new_for_http().make_span_with(|request: &Request<Body>| {
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or("(no route)", MatchedPath::as_str);
        tracing::debug_span!("request", method = %request.method(), route)
    });
    let mut router = router
        .layer(traced)
        .layer(default(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(default(header::X_FRAME_OPTIONS, "DENY"))
        .layer(default(header::REFERRER_POLICY, "no-referrer"))
        .layer(default(header::CACHE_CONTROL, "no-store"))
        .layer(default(
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ));
    if config.public_url.starts_with("https://") {
        router = router.layer(default(
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        ));
    }
    let origins: Vec<HeaderValue> = config
        .cors_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok())
        .collect();
    if !origins.is_empty() {
        router = router.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([
                    Method::GET,
                    Method::POST,
                    Method::PUT,
                    Method::PATCH,
                    Method::DELETE,
                ])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    HeaderName::from_static("idempotency-key"),
                ])
                .max_age(std::time::Duration::from_secs(600)),
        );
    }
    router
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    fn hardened(public_url: &str, origins: &[&str]) -> Router {
        let config = PlatformConfig {
            public_url: public_url.into(),
            cors_origins: origins.iter().map(|o| o.to_string()).collect(),
            ..PlatformConfig::default()
        };
        harden(
            Router::new().route("/v1/x", get(|| async { "ok" })),
            &config,
        )
    }

    fn preflight(origin: &str) -> Request<Body> {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/v1/x")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
            .body(Body::empty())
            .expect("request")
    }

    #[tokio::test]
    async fn only_configured_origins_are_granted_cross_origin_access() {
        let router = hardened("https://api.nextmark.test", &["https://app.nextmark.test"]);
        let granted = router
            .clone()
            .oneshot(preflight("https://app.nextmark.test"))
            .await
            .expect("response");
        assert_eq!(
            granted.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.nextmark.test"
        );
        let refused = router
            .clone()
            .oneshot(preflight("https://evil.test"))
            .await
            .expect("response");
        assert!(
            !refused
                .headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        );
        // Served over HTTPS: HSTS on every response.
        let plain = router
            .oneshot(Request::get("/v1/x").body(Body::empty()).expect("request"))
            .await
            .expect("response");
        assert!(
            plain.headers()[header::STRICT_TRANSPORT_SECURITY]
                .to_str()
                .expect("ascii")
                .starts_with("max-age=")
        );
    }

    #[tokio::test]
    async fn without_origins_no_one_is_granted_and_plain_http_gets_no_hsts() {
        let router = hardened("http://127.0.0.1:8080", &[]);
        let refused = router
            .clone()
            .oneshot(preflight("https://app.nextmark.test"))
            .await
            .expect("response");
        assert!(
            !refused
                .headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        );
        let plain = router
            .oneshot(Request::get("/v1/x").body(Body::empty()).expect("request"))
            .await
            .expect("response");
        assert!(
            !plain
                .headers()
                .contains_key(header::STRICT_TRANSPORT_SECURITY)
        );
        assert_eq!(plain.headers()[header::X_FRAME_OPTIONS], "DENY");
    }
}
