//! The embedded page files: HTML, one stylesheet, JavaScript modules and the audio worklet,
//! compiled into the binary and served with their content type and a content-hash `ETag`
//! (`Cache-Control: no-cache`, so a browser revalidates and a new release is never mixed with
//! an old cached module).

use std::sync::LazyLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// One embedded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asset {
    /// The applicant's interview page (with a `{{CONFIG}}` placeholder).
    InterviewHtml,
    /// The reviewer console.
    ReviewHtml,
    /// The one stylesheet of both pages.
    Css,
    /// The interview page's module.
    InterviewJs,
    /// The reviewer console's module.
    ReviewJs,
    /// Microphone capture, level, WAV encoding and question playback, shared by the
    /// interview page's steps.
    AudioJs,
    /// The AudioWorklet processor that turns microphone audio into 16-bit PCM.
    WorkletJs,
}

/// Every asset served under `/assets/`.
const SERVED: [Asset; 5] = [
    Asset::Css,
    Asset::InterviewJs,
    Asset::ReviewJs,
    Asset::AudioJs,
    Asset::WorkletJs,
];

impl Asset {
    /// The file's text.
    pub fn text(self) -> &'static str {
        match self {
            Asset::InterviewHtml => include_str!("../../static/interview.html"),
            Asset::ReviewHtml => include_str!("../../static/review.html"),
            Asset::Css => include_str!("../../static/app.css"),
            Asset::InterviewJs => include_str!("../../static/interview.js"),
            Asset::ReviewJs => include_str!("../../static/review.js"),
            Asset::AudioJs => include_str!("../../static/audio.js"),
            Asset::WorkletJs => include_str!("../../static/pcm-worklet.js"),
        }
    }

    /// The name under `/assets/`.
    pub fn name(self) -> &'static str {
        match self {
            Asset::InterviewHtml => "interview.html",
            Asset::ReviewHtml => "review.html",
            Asset::Css => "app.css",
            Asset::InterviewJs => "interview.js",
            Asset::ReviewJs => "review.js",
            Asset::AudioJs => "audio.js",
            Asset::WorkletJs => "pcm-worklet.js",
        }
    }

    /// The `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Asset::InterviewHtml | Asset::ReviewHtml => "text/html; charset=utf-8",
            Asset::Css => "text/css; charset=utf-8",
            Asset::InterviewJs | Asset::ReviewJs | Asset::AudioJs | Asset::WorkletJs => {
                "text/javascript; charset=utf-8"
            }
        }
    }

    /// The asset served at `/assets/{name}`.
    pub fn by_name(name: &str) -> Option<Asset> {
        SERVED.into_iter().find(|a| a.name() == name)
    }

    /// A strong validator: the first 16 bytes of the SHA-256 of the content, quoted.
    pub fn etag(self) -> &'static str {
        static TAGS: LazyLock<Vec<(Asset, String)>> = LazyLock::new(|| {
            SERVED
                .into_iter()
                .map(|a| {
                    let hash = crate::platform::crypto::sha256_hex(a.text().as_bytes());
                    (a, format!("\"{}\"", &hash[..32]))
                })
                .collect()
        });
        TAGS.iter()
            .find(|(a, _)| *a == self)
            .map_or("\"\"", |(_, tag)| tag.as_str())
    }

    /// The response to a GET: `304 Not Modified` when the request's `If-None-Match` names
    /// the current version, the file otherwise.
    pub fn response(self, request: &HeaderMap) -> Response {
        let etag = self.etag();
        let fresh = request
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|tag| {
                let tag = tag.trim();
                tag == "*" || tag.trim_start_matches("W/") == etag
            });
        let mut headers = HeaderMap::new();
        headers.insert(header::ETAG, HeaderValue::from_static(etag));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if fresh {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type()),
        );
        (headers, self.text()).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_asset_is_found_by_name_with_a_distinct_etag() {
        let mut tags = Vec::new();
        for asset in SERVED {
            assert_eq!(Asset::by_name(asset.name()), Some(asset));
            assert!(!asset.text().is_empty(), "{} is empty", asset.name());
            assert_eq!(asset.etag().len(), 34, "{}", asset.etag());
            tags.push(asset.etag());
        }
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), SERVED.len());
        // The pages are not served as assets.
        assert_eq!(Asset::by_name("interview.html"), None);
        assert_eq!(Asset::by_name("../Cargo.toml"), None);
    }

    #[test]
    fn a_matching_if_none_match_gets_304_and_others_the_file() {
        let mut request = HeaderMap::new();
        let response = Asset::Css.response(&request);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/css; charset=utf-8"
        );
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-cache");
        request.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"old\", \"older\""),
        );
        assert_eq!(Asset::Css.response(&request).status(), StatusCode::OK);
        request.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"x\", W/{}", Asset::Css.etag())).expect("header"),
        );
        assert_eq!(
            Asset::Css.response(&request).status(),
            StatusCode::NOT_MODIFIED
        );
    }

    #[test]
    fn pages_and_modules_reference_only_served_assets() {
        let file_name = |part: &str| -> String {
            part.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                .collect()
        };
        let mut all = vec![Asset::InterviewHtml, Asset::ReviewHtml];
        all.extend(SERVED);
        for asset in all {
            let text = asset.text();
            let absolute = text.split("/assets/").skip(1);
            let imported = text.split("from \"./").skip(1);
            for part in absolute.chain(imported) {
                let name = file_name(part);
                assert!(
                    Asset::by_name(&name).is_some(),
                    "{} refers to {name}, which is not served",
                    asset.name()
                );
            }
        }
        assert!(Asset::InterviewHtml.text().contains("{{CONFIG}}"));
    }
}
