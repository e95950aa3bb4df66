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

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::{Extension, Router, middleware};
use tower_http::trace::TraceLayer;
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
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
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
