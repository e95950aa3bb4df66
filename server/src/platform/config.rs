//! Platform configuration, layered: built-in defaults, then a TOML file, then `NEXTMARK_*`
//! environment variables. Secrets are wrapped in [`Secret`] so they never print.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// A value that must not appear in logs or `Debug` output (keys, passwords).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Everything the platform API needs to start.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlatformConfig {
    /// Where platform data lives: `sqlite://PATH` (created on first start, WAL) or
    /// `postgres://...`. The same migrations run on both.
    pub database_url: String,
    /// Maximum pooled database connections.
    pub max_connections: u32,
    /// The externally visible base URL, used to build interview and sign-in links.
    pub public_url: String,
    /// The folder with one rubric TOML per discipline (disciplines and case studies come from it).
    pub rubrics_dir: PathBuf,
    /// Key for signing magic links and deriving pseudonymous contributor ids. When unset, one is
    /// generated on first start and kept in the database, so ids stay stable across restarts.
    pub secret: Option<Secret>,
    /// Days an interview recording is kept before the purge job deletes it.
    pub recordings_retention_days: u32,
    /// How long an applicant session (after a magic link) lasts, hours.
    pub applicant_session_hours: u32,
    /// How long a reviewer or admin session lasts, hours.
    pub staff_session_hours: u32,
    /// How long a magic sign-in link stays valid, minutes.
    pub magic_link_minutes: u32,
    /// Seconds between runs of the maintenance job (recording purge, expired sessions).
    pub maintenance_interval_secs: u64,
    /// Take the client IP (recorded with agreement acceptances) from `X-Forwarded-For`; only
    /// behind a proxy that sets it.
    pub trust_forwarded_for: bool,
    /// Wrong passwords a staff account, and invalid links a client address, may try in an hour
    /// before every try is refused with 429 until the oldest failure is an hour old.
    pub failed_attempts_per_hour: u32,
    /// Origins (`https://host[:port]`) whose pages may call the API from a browser (CORS). Empty:
    /// same-origin only.
    pub cors_origins: Vec<String>,
    /// An admin account to create at start-up if missing (with `admin_password`).
    pub admin_email: Option<String>,
    /// The password for `admin_email`.
    pub admin_password: Option<Secret>,
    /// The live interview server (`[live]` table, `NEXTMARK_LIVE_*` variables).
    pub live: crate::live::config::LiveSettings,
    /// Object storage for recordings and reports (`[storage]` table, `NEXTMARK_STORAGE_*`).
    pub storage: super::objects::StorageSettings,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        let db = crate::models::nextmark_home().join("nextmark.db");
        Self {
            database_url: format!("sqlite://{}", db.display()),
            max_connections: 10,
            public_url: "http://127.0.0.1:8080".into(),
            rubrics_dir: PathBuf::from("rubrics"),
            secret: None,
            recordings_retention_days: 30,
            applicant_session_hours: 24,
            staff_session_hours: 12,
            magic_link_minutes: 15,
            maintenance_interval_secs: 3600,
            trust_forwarded_for: false,
            failed_attempts_per_hour: 100,
            cors_origins: Vec::new(),
            admin_email: None,
            admin_password: None,
            live: Default::default(),
            storage: Default::default(),
        }
    }
}

impl PlatformConfig {
    /// Defaults, then `file` (if given), then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        let config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                Self::from_toml(&text)
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => Self::default(),
        };
        config.with_env(std::env::vars())
    }

    /// Defaults overlaid with a TOML document (unknown keys are errors).
    pub fn from_toml(text: &str) -> Result<Self> {
        Ok(toml::from_str(text)?)
    }

    /// Overlays `NEXTMARK_*` variables from `vars` (the process environment in production, a
    /// list in tests). Unrelated variables are ignored; a malformed number is an error.
    pub fn with_env(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Result<Self> {
        for (name, value) in vars {
            let Some(key) = name.strip_prefix("NEXTMARK_") else {
                continue;
            };
            match key {
                "DATABASE_URL" => self.database_url = value,
                "MAX_CONNECTIONS" => self.max_connections = parse_num(&name, &value)?,
                "PUBLIC_URL" => self.public_url = value,
                "RUBRICS_DIR" => self.rubrics_dir = PathBuf::from(value),
                "SECRET" => self.secret = Some(Secret::new(value)),
                "RECORDINGS_RETENTION_DAYS" => {
                    self.recordings_retention_days = parse_num(&name, &value)?
                }
                "APPLICANT_SESSION_HOURS" => {
                    self.applicant_session_hours = parse_num(&name, &value)?
                }
                "STAFF_SESSION_HOURS" => self.staff_session_hours = parse_num(&name, &value)?,
                "MAGIC_LINK_MINUTES" => self.magic_link_minutes = parse_num(&name, &value)?,
                "MAINTENANCE_INTERVAL_SECS" => {
                    self.maintenance_interval_secs = parse_num(&name, &value)?
                }
                "TRUST_FORWARDED_FOR" => {
                    self.trust_forwarded_for = matches!(value.as_str(), "1" | "true" | "yes")
                }
                "FAILED_ATTEMPTS_PER_HOUR" => {
                    self.failed_attempts_per_hour = parse_num(&name, &value)?
                }
                "CORS_ORIGINS" => {
                    self.cors_origins = value
                        .split(',')
                        .map(str::trim)
                        .filter(|o| !o.is_empty())
                        .map(str::to_string)
                        .collect()
                }
                "ADMIN_EMAIL" => self.admin_email = Some(value),
                "ADMIN_PASSWORD" => self.admin_password = Some(Secret::new(value)),
                other => {
                    if let Some(live_key) = other.strip_prefix("LIVE_") {
                        self.live.apply_env(live_key, &name, &value)?;
                    } else if let Some(storage_key) = other.strip_prefix("STORAGE_") {
                        self.storage.apply_env(storage_key, &value);
                    }
                }
            }
        }
        self.check()?;
        Ok(self)
    }

    /// Rejects values that cannot work, naming the setting.
    pub fn check(&self) -> Result<()> {
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            bail!("database_url must start with sqlite:, postgres:// or postgresql://");
        }
        if self.max_connections == 0 {
            bail!("max_connections must be at least 1");
        }
        if !(self.public_url.starts_with("http://") || self.public_url.starts_with("https://")) {
            bail!("public_url must be an http(s) URL");
        }
        if self.secret.as_ref().is_some_and(|s| s.expose().len() < 32) {
            bail!("secret must be at least 32 characters");
        }
        if self.admin_email.is_some() != self.admin_password.is_some() {
            bail!("admin_email and admin_password must be set together");
        }
        for origin in &self.cors_origins {
            let ok = (origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin
                    .trim_end_matches('/')
                    .contains(|c: char| c == '*' || c.is_whitespace())
                && origin.parse::<axum::http::HeaderValue>().is_ok();
            if !ok {
                bail!("cors_origins: {origin:?} is not an origin like https://example.com");
            }
        }
        for (name, value) in [
            ("failed_attempts_per_hour", self.failed_attempts_per_hour),
            ("applicant_session_hours", self.applicant_session_hours),
            ("staff_session_hours", self.staff_session_hours),
            ("magic_link_minutes", self.magic_link_minutes),
        ] {
            if value == 0 {
                bail!("{name} must be at least 1");
            }
        }
        self.storage.check()?;
        self.live.check()
    }
}

fn parse_num<T: std::str::FromStr>(name: &str, value: &str) -> Result<T> {
    value
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{name}={value:?} is not a valid number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn layers_apply_in_order_defaults_file_env() {
        let from_file = PlatformConfig::from_toml(
            "database_url = \"postgres://db/x\"\nrecordings_retention_days = 7\n",
        )
        .expect("toml");
        assert_eq!(from_file.recordings_retention_days, 7);
        assert_eq!(from_file.staff_session_hours, 12, "default kept");
        let layered = from_file
            .with_env(vars(&[
                ("NEXTMARK_RECORDINGS_RETENTION_DAYS", "3"),
                ("NEXTMARK_SECRET", "0123456789abcdef0123456789abcdef"),
                ("PATH", "/bin"),
            ]))
            .expect("env");
        assert_eq!(layered.database_url, "postgres://db/x");
        assert_eq!(layered.recordings_retention_days, 3);
        assert!(layered.secret.is_some());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(PlatformConfig::from_toml("databse_url = \"x\"").is_err());
        let bad = PlatformConfig::default().with_env(vars(&[("NEXTMARK_MAX_CONNECTIONS", "ten")]));
        let message = format!("{:#}", bad.expect_err("must fail"));
        assert!(message.contains("NEXTMARK_MAX_CONNECTIONS"), "{message}");
        assert!(
            PlatformConfig::default()
                .with_env(vars(&[("NEXTMARK_DATABASE_URL", "mysql://x")]))
                .is_err()
        );
    }

    #[test]
    fn scale_out_settings_come_from_the_environment_and_are_checked() {
        let config = PlatformConfig::default()
            .with_env(vars(&[
                ("NEXTMARK_STORAGE_URL", "s3://bucket/prefix"),
                ("NEXTMARK_STORAGE_S3_ENDPOINT", "http://127.0.0.1:9000"),
                ("NEXTMARK_STORAGE_S3_ACCESS_KEY_ID", "id"),
                ("NEXTMARK_STORAGE_S3_SECRET_ACCESS_KEY", "secret"),
                ("NEXTMARK_LIVE_STT", "openai"),
                ("NEXTMARK_LIVE_STT_BASE_URL", "http://gpu:8000/v1"),
                ("NEXTMARK_LIVE_STT_FALLBACK", "false"),
                ("NEXTMARK_LIVE_INSTANCE_ID", "a"),
                ("NEXTMARK_LIVE_LEASE_SECS", "5"),
                ("NEXTMARK_LIVE_ASR_BOOST_IDLE_FINALS", "true"),
                ("NEXTMARK_LIVE_VOCABULARY_PROMPT", "item"),
            ]))
            .expect("valid");
        assert!(config.live.asr_boost_idle_finals);
        assert_eq!(
            config.live.vocabulary_prompt,
            crate::live::config::VocabularyPrompt::Item
        );
        let item_first = PlatformConfig::default()
            .with_env(vars(&[("NEXTMARK_LIVE_VOCABULARY_PROMPT", "item_first")]))
            .expect("valid");
        assert_eq!(
            item_first.live.vocabulary_prompt,
            crate::live::config::VocabularyPrompt::ItemFirst
        );
        assert!(!PlatformConfig::default().live.asr_boost_idle_finals);
        assert_eq!(
            PlatformConfig::default().live.vocabulary_prompt,
            crate::live::config::VocabularyPrompt::ItemFirst
        );
        assert_eq!(config.storage.url, "s3://bucket/prefix");
        assert_eq!(config.live.stt, crate::live::config::SttBackend::Openai);
        assert!(!config.live.stt_fallback);
        assert_eq!(config.live.instance_id.as_deref(), Some("a"));
        assert_eq!(config.live.lease_secs, 5);
        for (bad, says) in [
            (
                vec![("NEXTMARK_STORAGE_URL", "ftp://x")],
                "file:// or s3://",
            ),
            (
                vec![("NEXTMARK_LIVE_STT", "whisper")],
                "expected local or openai",
            ),
            (
                vec![("NEXTMARK_LIVE_STT", "openai")],
                "needs live.stt_base_url",
            ),
            (
                vec![("NEXTMARK_LIVE_STT_FALLBACK", "maybe")],
                "expected true or false",
            ),
            (
                vec![("NEXTMARK_LIVE_VOCABULARY_PROMPT", "all")],
                "expected glossary, item, item_first or none",
            ),
            (
                vec![("NEXTMARK_LIVE_ASR_BOOST_IDLE_FINALS", "2")],
                "NEXTMARK_LIVE_ASR_BOOST_IDLE_FINALS=\"2\": expected true or false",
            ),
            (
                vec![("NEXTMARK_LIVE_LEASE_SECS", "1")],
                "lease_secs must be at least 2",
            ),
            (vec![("NEXTMARK_LIVE_INSTANCE_ID", " ")], "instance_id"),
        ] {
            let err = PlatformConfig::default()
                .with_env(vars(&bad))
                .expect_err("refused");
            assert!(format!("{err:#}").contains(says), "{bad:?}: {err:#}");
        }
    }

    #[test]
    fn secrets_never_print() {
        let config = PlatformConfig {
            secret: Some(Secret::new("super-secret-value-that-is-long-enough")),
            ..PlatformConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("super-secret"), "{shown}");
        assert!(shown.contains("redacted"));
    }
}
