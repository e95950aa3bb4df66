//! Tokens, hashes and keys: random ids and bearer tokens (256-bit, base64url), SHA-256 digests
//! for stored tokens and documents, HMAC-signed magic links, pseudonymous contributor ids, and
//! argon2id password hashes.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

/// `n` bytes from the thread-local CSPRNG (ChaCha, seeded from the OS).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    rand::rng().fill_bytes(&mut buf);
    buf
}

/// A bearer token: 256 random bits, base64url without padding (43 characters).
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// A new record id: a short type prefix and 128 random bits in hex, e.g. `att_3f…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", hex(&random_bytes::<16>()))
}

/// SHA-256 of `data`, lower-case hex (64 characters).
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// The server's secret key and what is derived from it.
#[derive(Clone)]
pub struct Keys {
    /// The raw key; never printed.
    secret: Vec<u8>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys([redacted])")
    }
}

/// The verified content of a magic link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MagicClaims {
    /// Who the link signs in.
    pub applicant_id: String,
    /// Unix seconds after which it is refused.
    pub expires_at: i64,
    /// Single-use nonce (its hash is stored when issued and marked when used).
    pub nonce: String,
}

impl Keys {
    /// Keys from secret material (at least 32 bytes recommended).
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        Self {
            secret: secret.as_ref().to_vec(),
        }
    }

    /// HMAC-SHA256 with domain separation by `purpose`.
    fn mac(&self, purpose: &str, data: &[u8]) -> HmacSha256 {
        // Any key length is valid for HMAC, so this cannot fail.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| <HmacSha256 as KeyInit>::new(&Default::default()));
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(data);
        mac
    }

    /// The pseudonymous contributor id used in exports: stable per applicant, not reversible
    /// without the secret, and unrelated to any other id the applicant has.
    pub fn contributor_id(&self, applicant_id: &str) -> String {
        let tag = self
            .mac("contributor", applicant_id.as_bytes())
            .finalize()
            .into_bytes();
        format!("c_{}", hex(&tag[..16]))
    }

    /// The interview link token for an interview: derived, so the owner can be shown the link
    /// again, but unguessable without the secret. Only its hash is stored.
    pub fn interview_link_token(&self, interview_id: &str) -> String {
        let tag = self
            .mac("interview-link", interview_id.as_bytes())
            .finalize()
            .into_bytes();
        URL_SAFE_NO_PAD.encode(tag)
    }

    /// A signed magic link token for `applicant_id`, valid until `expires_at`.
    pub fn sign_magic_link(&self, applicant_id: &str, expires_at: i64, nonce: &str) -> String {
        let payload = format!("{applicant_id}.{expires_at}.{nonce}");
        let tag = self
            .mac("magic-link", payload.as_bytes())
            .finalize()
            .into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload.as_bytes()),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// Checks a magic link's signature (constant time) and returns its claims; expiry and
    /// single use are checked by the caller against the clock and the database.
    pub fn verify_magic_link(&self, token: &str) -> Option<MagicClaims> {
        let (payload_b64, tag_b64) = token.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload_b64).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag_b64).ok()?;
        self.mac("magic-link", &payload).verify_slice(&tag).ok()?;
        let payload = String::from_utf8(payload).ok()?;
        let mut parts = payload.splitn(3, '.');
        let applicant_id = parts.next()?.to_string();
        let expires_at = parts.next()?.parse().ok()?;
        let nonce = parts.next()?.to_string();
        Some(MagicClaims {
            applicant_id,
            expires_at,
            nonce,
        })
    }
}

/// An argon2id PHC hash of a password (random salt, default parameters).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
}

/// Whether `password` matches a stored PHC hash; a malformed hash never matches.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A valid argon2id hash of a random password, verified against when a login names an unknown
/// account so that the response time does not reveal which emails exist.
pub fn decoy_password_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&random_token()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bit_base64url_and_unique() {
        let a = random_token();
        let b = random_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(new_id("app").len(), 4 + 32);
    }

    #[test]
    fn sha256_matches_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn magic_links_verify_and_reject_tampering() {
        let keys = Keys::new("k".repeat(32));
        let token = keys.sign_magic_link("app_1", 1_700_000_000, "nonce");
        let claims = keys.verify_magic_link(&token).expect("valid");
        assert_eq!(claims.applicant_id, "app_1");
        assert_eq!(claims.expires_at, 1_700_000_000);
        let other = Keys::new("x".repeat(32));
        assert!(other.verify_magic_link(&token).is_none(), "other key");
        let (payload, tag) = token.split_once('.').expect("dot");
        let forged_payload = URL_SAFE_NO_PAD.encode(b"app_2.1700000000.nonce");
        assert!(
            keys.verify_magic_link(&format!("{forged_payload}.{tag}"))
                .is_none()
        );
        assert!(keys.verify_magic_link(payload).is_none());
        assert!(keys.verify_magic_link("").is_none());
    }

    #[test]
    fn contributor_ids_are_stable_and_keyed() {
        let keys = Keys::new("k".repeat(32));
        assert_eq!(keys.contributor_id("app_1"), keys.contributor_id("app_1"));
        assert_ne!(keys.contributor_id("app_1"), keys.contributor_id("app_2"));
        assert_ne!(
            keys.contributor_id("app_1"),
            Keys::new("x".repeat(32)).contributor_id("app_1")
        );
        assert!(!keys.contributor_id("app_1").contains("app_1"));
    }

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("correct horse battery").expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("wrong", &hash));
        assert!(!verify_password("x", "not a hash"));
    }
}
