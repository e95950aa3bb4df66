//! Object storage for recordings and reports, through the `object_store` crate: a local
//! folder by default, any S3-compatible store by configuration, so that every instance of a
//! deployment reads what any other wrote.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use serde::Deserialize;

use super::config::Secret;

/// Where recordings and reports are kept (the `[storage]` table, `NEXTMARK_STORAGE_*`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    /// `file:///absolute/folder` (the default: NEXTMARK_HOME/objects) or `s3://bucket[/prefix]`.
    pub url: String,
    /// The S3 endpoint, for stores other than AWS (`http://127.0.0.1:9000`); AWS when unset.
    pub s3_endpoint: Option<String>,
    /// The S3 region.
    pub s3_region: String,
    /// The S3 access key id (with `s3_secret_access_key`).
    pub s3_access_key_id: Option<String>,
    /// The S3 secret access key.
    pub s3_secret_access_key: Option<Secret>,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            url: format!(
                "file://{}",
                crate::models::nextmark_home().join("objects").display()
            ),
            s3_endpoint: None,
            s3_region: "us-east-1".into(),
            s3_access_key_id: None,
            s3_secret_access_key: None,
        }
    }
}

impl StorageSettings {
    /// Applies one `NEXTMARK_STORAGE_*` variable (`key` without the prefix); `false` if unknown.
    pub fn apply_env(&mut self, key: &str, value: &str) -> bool {
        match key {
            "URL" => self.url = value.into(),
            "S3_ENDPOINT" => self.s3_endpoint = Some(value.into()),
            "S3_REGION" => self.s3_region = value.into(),
            "S3_ACCESS_KEY_ID" => self.s3_access_key_id = Some(value.into()),
            "S3_SECRET_ACCESS_KEY" => self.s3_secret_access_key = Some(Secret::new(value)),
            _ => return false,
        }
        true
    }

    /// Rejects settings that cannot work, naming the setting.
    pub fn check(&self) -> Result<()> {
        if let Some(path) = self.url.strip_prefix("file://") {
            if !path.starts_with('/') {
                bail!(
                    "storage.url {:?}: a file:// URL needs an absolute folder",
                    self.url
                );
            }
        } else if let Some(rest) = self.url.strip_prefix("s3://") {
            if rest.split('/').next().unwrap_or("").is_empty() {
                bail!("storage.url {:?}: s3:// needs a bucket name", self.url);
            }
            if self.s3_access_key_id.is_some() != self.s3_secret_access_key.is_some() {
                bail!("storage.s3_access_key_id and storage.s3_secret_access_key go together");
            }
        } else {
            bail!(
                "storage.url {:?} must start with file:// or s3://",
                self.url
            );
        }
        Ok(())
    }
}

/// Why an object could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// No object under that key.
    #[error("no object {0}")]
    NotFound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// The configured object store, with the key prefix of this deployment.
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    /// The URL it was built from, for messages (no credentials in it).
    url: String,
    /// Key prefix inside the bucket (`s3://bucket/prefix`), without slashes at either end.
    prefix: String,
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objects").field("url", &self.url).finish()
    }
}

impl Objects {
    /// Builds the store the settings name (no request is made; see [`Objects::check`]).
    pub fn open(settings: &StorageSettings) -> Result<Self> {
        settings.check()?;
        if let Some(folder) = settings.url.strip_prefix("file://") {
            std::fs::create_dir_all(folder)
                .with_context(|| format!("creating the object folder {folder}"))?;
            let store = LocalFileSystem::new_with_prefix(folder)
                .with_context(|| format!("opening the object folder {folder}"))?;
            return Ok(Self {
                store: Arc::new(store),
                url: settings.url.clone(),
                prefix: String::new(),
            });
        }
        let rest = settings.url.trim_start_matches("s3://");
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        // A wrong endpoint or a dead store should fail in seconds, not the crate's 3 minutes.
        let retry = RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(15),
            ..RetryConfig::default()
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(&settings.s3_region)
            .with_retry(retry);
        if let Some(endpoint) = &settings.s3_endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let (Some(id), Some(secret)) =
            (&settings.s3_access_key_id, &settings.s3_secret_access_key)
        {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret.expose());
        }
        let store = builder
            .build()
            .with_context(|| format!("configuring the object store {}", settings.url))?;
        Ok(Self {
            store: Arc::new(store),
            url: settings.url.clone(),
            prefix: prefix.trim_matches('/').to_string(),
        })
    }

    /// The URL of the store, for logs.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, key: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        }
    }

    /// Writes, reads back and deletes a probe object, so that a missing bucket or refused
    /// credentials stop the server at start-up with a message saying which, instead of losing
    /// the first recording.
    pub async fn check(&self) -> Result<()> {
        let key = format!("probes/{}.txt", crate::platform::crypto::new_id("probe"));
        let body = Bytes::from_static(b"nextmark start-up probe");
        let outcome = async {
            self.put(&key, body.clone()).await?;
            let read = self.get(&key).await.map_err(anyhow::Error::new)?;
            if read != body {
                bail!("the probe object read back differs from what was written");
            }
            self.delete(&key).await.map(drop)
        }
        .await;
        outcome.map_err(|e| {
            let text = format!("{e:#}");
            let why = if text.contains("NoSuchBucket") {
                "the bucket does not exist"
            } else if text.contains("InvalidAccessKeyId")
                || text.contains("SignatureDoesNotMatch")
                || text.contains("AccessDenied")
                || text.contains("403")
            {
                "the store refused the credentials (storage.s3_access_key_id / s3_secret_access_key)"
            } else {
                "the store could not be used"
            };
            anyhow::anyhow!("object storage {}: {why}: {text}", self.url)
        })
    }

    /// Stores `bytes` under `key` (atomically: readers see the old object or the new one).
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        self.store
            .put(&self.path(key), PutPayload::from(bytes))
            .await
            .with_context(|| format!("storing {key} in {}", self.url))?;
        Ok(())
    }

    /// Stores a local file under `key`.
    pub async fn put_file(&self, key: &str, file: &std::path::Path) -> Result<()> {
        let bytes = tokio::fs::read(file)
            .await
            .with_context(|| format!("reading {}", file.display()))?;
        self.put(key, Bytes::from(bytes)).await
    }

    /// Reads the object under `key`.
    pub async fn get(&self, key: &str) -> Result<Bytes, ObjectError> {
        match self.store.get(&self.path(key)).await {
            Ok(found) => found
                .bytes()
                .await
                .with_context(|| format!("reading {key} from {}", self.url))
                .map_err(ObjectError::Store),
            Err(object_store::Error::NotFound { .. }) => Err(ObjectError::NotFound(key.into())),
            Err(e) => Err(ObjectError::Store(
                anyhow::Error::new(e).context(format!("reading {key} from {}", self.url)),
            )),
        }
    }

    /// Reads a recording by its stored location: an object key, or an absolute file path
    /// (rows written before object storage, or kept locally when an upload failed).
    pub async fn read_location(&self, location: &str) -> Result<Bytes, ObjectError> {
        if !location.starts_with('/') {
            return self.get(location).await;
        }
        match tokio::fs::read(location).await {
            Ok(bytes) => Ok(Bytes::from(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(ObjectError::NotFound(location.into()))
            }
            Err(e) => Err(ObjectError::Store(
                anyhow::Error::new(e).context(format!("reading {location}")),
            )),
        }
    }

    /// Deletes a recording by its stored location (see [`Objects::read_location`]); `false`
    /// when it was already gone (as far as the store can tell: S3 deletes do not say).
    pub async fn delete_location(&self, location: &str) -> Result<bool> {
        if !location.starts_with('/') {
            return self.delete(location).await;
        }
        match tokio::fs::remove_file(location).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(anyhow::Error::new(e).context(format!("deleting {location}"))),
        }
    }

    /// Deletes the object under `key`; `false` when the store says there was none.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => {
                Err(anyhow::Error::new(e).context(format!("deleting {key} from {}", self.url)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_what_is_wrong() {
        let mut s = StorageSettings {
            url: "ftp://x".into(),
            ..StorageSettings::default()
        };
        assert!(format!("{:#}", s.check().unwrap_err()).contains("file:// or s3://"));
        s.url = "file://relative/dir".into();
        assert!(format!("{:#}", s.check().unwrap_err()).contains("absolute"));
        s.url = "s3:///prefix".into();
        assert!(format!("{:#}", s.check().unwrap_err()).contains("bucket"));
        s.url = "s3://bucket/p".into();
        s.s3_access_key_id = Some("id".into());
        assert!(format!("{:#}", s.check().unwrap_err()).contains("go together"));
    }

    #[tokio::test]
    async fn a_local_folder_round_trips_objects() {
        let dir = tempfile::tempdir().expect("tempdir");
        let objects = Objects::open(&StorageSettings {
            url: format!("file://{}", dir.path().display()),
            ..StorageSettings::default()
        })
        .expect("open");
        objects.check().await.expect("probe");
        objects
            .put("recordings/a/b.opus", Bytes::from_static(b"abc"))
            .await
            .expect("put");
        assert_eq!(
            objects.get("recordings/a/b.opus").await.expect("get"),
            Bytes::from_static(b"abc")
        );
        assert!(dir.path().join("recordings/a/b.opus").exists());
        assert!(objects.delete("recordings/a/b.opus").await.expect("delete"));
        assert!(!objects.delete("recordings/a/b.opus").await.expect("twice"));
        assert!(matches!(
            objects.get("recordings/a/b.opus").await,
            Err(ObjectError::NotFound(_))
        ));
    }
}
