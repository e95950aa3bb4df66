//! The web pages served by the binary: the applicant's interview page at the interview link and
//! the reviewer console, embedded at build time (no CDN at run time).

use std::sync::Arc;

use axum::Router;

use crate::live::LiveShared;

/// The page routes, merged into the live server's router.
pub fn routes() -> Router<Arc<LiveShared>> {
    Router::new()
}
