//! Parse, don't validate: request values deserialize straight into types that can only hold
//! acceptable values (trimmed, bounded, well-formed), so a handler never sees a bad email or a
//! 10 MB name, and the deserializer's error names the offending field.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Checks free text: trimmed length in characters within `min..=max`, no control characters
/// (line breaks and tabs allowed only when `multiline`).
fn check_text(raw: String, min: usize, max: usize, multiline: bool) -> Result<String, String> {
    let text = raw.trim();
    let len = text.chars().count();
    if len < min {
        return Err(if min == 1 {
            "must not be empty".to_string()
        } else {
            format!("must be at least {min} characters")
        });
    }
    if len > max {
        return Err(format!("must be at most {max} characters"));
    }
    if let Some(c) = text
        .chars()
        .find(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\t' | '\r')))
    {
        return Err(format!(
            "contains a control character (U+{:04X})",
            u32::from(c)
        ));
    }
    Ok(text.to_string())
}

macro_rules! bounded_text {
    ($(#[$doc:meta])* $name:ident, $min:expr, $max:expr, multiline = $multiline:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(raw: String) -> Result<Self, String> {
                check_text(raw, $min, $max, $multiline).map(Self)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl $name {
            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

bounded_text!(
    /// A person's name: 1–200 characters, one line.
    PersonName, 1, 200, multiline = false
);
bounded_text!(
    /// A short label (role name, task or document title): 1–200 characters, one line.
    Title, 1, 200, multiline = false
);
bounded_text!(
    /// A paragraph (credentials, experience, instructions, feedback): 1–5000 characters.
    Paragraph, 1, 5000, multiline = true
);
bounded_text!(
    /// A reviewer's reason for a score override: 3–2000 characters.
    Reason, 3, 2000, multiline = true
);
bounded_text!(
    /// Long written work (a case-study answer, a task's output): 1–100 000 characters.
    LongText, 1, 100_000, multiline = true
);
bounded_text!(
    /// A legal document's text: 1–200 000 characters.
    DocumentBody, 1, 200_000, multiline = true
);

/// An email address, trimmed and lower-cased; one `@`, a dotted domain, at most 254 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl TryFrom<String> for Email {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        let email = raw.trim().to_lowercase();
        let bad = || "must be an email address like name@example.org".to_string();
        if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = email.split_once('@').ok_or_else(bad)?;
        if local.is_empty()
            || local.len() > 64
            || domain.contains('@')
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
        {
            return Err(bad());
        }
        Ok(Self(email))
    }
}

impl From<Email> for String {
    fn from(value: Email) -> String {
        value.0
    }
}

impl Email {
    /// The normalized address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An ISO 3166-1 alpha-2 country code, upper-cased (`DE`, `US`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
pub struct CountryCode(String);

impl TryFrom<String> for CountryCode {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        let code = raw.trim().to_ascii_uppercase();
        if code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(code))
        } else {
            Err("must be a two-letter ISO 3166-1 country code such as DE or US".into())
        }
    }
}

impl From<CountryCode> for String {
    fn from(value: CountryCode) -> String {
        value.0
    }
}

impl CountryCode {
    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A discipline id in rubric-id form (`medicine`, `software-engineering`); whether a rubric by
/// that id exists is checked against the loaded rubrics.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
pub struct DisciplineId(String);

impl TryFrom<String> for DisciplineId {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(raw))
        } else {
            Err("must be a discipline id: lower-case letters, digits and '-'".into())
        }
    }
}

impl From<DisciplineId> for String {
    fn from(value: DisciplineId) -> String {
        value.0
    }
}

impl DisciplineId {
    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A new staff password: 12–256 characters, taken exactly as typed; never printed.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(try_from = "String")]
pub struct NewPassword(String);

impl TryFrom<String> for NewPassword {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        match raw.chars().count() {
            0..=11 => Err("must be at least 12 characters".into()),
            257.. => Err("must be at most 256 characters".into()),
            _ => Ok(Self(raw)),
        }
    }
}

impl NewPassword {
    /// The password, for hashing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword([redacted])")
    }
}

/// A SHA-256 digest as 64 lower-case hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256Hex(String);

impl TryFrom<String> for Sha256Hex {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        let hex = raw.trim().to_ascii_lowercase();
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(hex))
        } else {
            Err("must be a SHA-256 digest: 64 hex characters".into())
        }
    }
}

impl From<Sha256Hex> for String {
    fn from(value: Sha256Hex) -> String {
        value.0
    }
}

impl Sha256Hex {
    /// The digest.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An ISO 4217 currency code (`USD`, `EUR`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
pub struct Currency(String);

impl TryFrom<String> for Currency {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        if raw.len() == 3 && raw.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(raw))
        } else {
            Err("must be a three-letter upper-case ISO 4217 code such as USD".into())
        }
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> String {
        value.0
    }
}

impl Currency {
    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! bounded_int {
    ($(#[$doc:meta])* $name:ident, $min:expr, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
        #[serde(try_from = "i64", into = "i64")]
        pub struct $name(i64);

        impl TryFrom<i64> for $name {
            type Error = String;
            fn try_from(raw: i64) -> Result<Self, String> {
                if ($min..=$max).contains(&raw) {
                    Ok(Self(raw))
                } else {
                    Err(format!("must be between {} and {}", $min, $max))
                }
            }
        }

        impl From<$name> for i64 {
            fn from(value: $name) -> i64 {
                value.0
            }
        }

        impl $name {
            /// The value.
            pub fn get(self) -> i64 {
                self.0
            }
        }
    };
}

bounded_int!(
    /// Estimated task length: 20–60 minutes.
    TaskMinutes, 20, 60
);
bounded_int!(
    /// Minutes a contractor spent on a task: 1–600.
    MinutesSpent, 1, 600
);
bounded_int!(
    /// Years of professional experience: 0–70.
    YearsExperience, 0, 70
);
bounded_int!(
    /// Hourly pay in minor currency units (cents): 1–1 000 000.
    HourlyRateCents, 1, 1_000_000
);

/// A score on the rubric's 0–4 scale, kept as hundredths so both databases store it exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(try_from = "f64")]
#[schema(value_type = f64)]
pub struct Score(i64);

impl TryFrom<f64> for Score {
    type Error = String;
    fn try_from(raw: f64) -> Result<Self, String> {
        if raw.is_finite() && (0.0..=4.0).contains(&raw) {
            // In range 0..=400 after rounding, so the cast is exact.
            Ok(Self((raw * 100.0).round() as i64))
        } else {
            Err("must be a score between 0 and 4".into())
        }
    }
}

impl Score {
    /// Hundredths of a point (0–400).
    pub fn centi(self) -> i64 {
        self.0
    }
}

/// A statement the applicant must affirm: only `true` is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Affirmed;

impl utoipa::PartialSchema for Affirmed {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::Type::Boolean)
                .enum_values(Some([true]))
                .description(Some("Must be true."))
                .build(),
        ))
    }
}

impl ToSchema for Affirmed {}

impl<'de> Deserialize<'de> for Affirmed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if bool::deserialize(d)? {
            Ok(Affirmed)
        } else {
            Err(serde::de::Error::custom(
                "must be true: this attestation is required to apply",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: for<'de> Deserialize<'de>>(json: &str) -> Result<T, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn emails_are_normalized_and_checked() {
        let e: Email = parse("\"  Ada@Example.ORG \"").expect("valid");
        assert_eq!(e.as_str(), "ada@example.org");
        for bad in [
            "\"\"",
            "\"ada\"",
            "\"ada@\"",
            "\"@example.org\"",
            "\"a b@example.org\"",
            "\"ada@example\"",
            "\"ada@@example.org\"",
        ] {
            assert!(parse::<Email>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn text_is_trimmed_and_bounded() {
        let n: PersonName = parse("\"  Ada Lovelace \"").expect("valid");
        assert_eq!(n.as_str(), "Ada Lovelace");
        assert!(parse::<PersonName>("\"   \"").is_err());
        assert!(parse::<PersonName>("\"a\\nb\"").is_err(), "one line");
        assert!(
            parse::<Paragraph>("\"a\\nb\"").is_ok(),
            "paragraphs may break"
        );
        let long = format!("\"{}\"", "x".repeat(201));
        assert!(
            parse::<PersonName>(&long)
                .expect_err("too long")
                .contains("at most 200")
        );
    }

    #[test]
    fn codes_and_numbers() {
        assert_eq!(
            parse::<CountryCode>("\"de\"").expect("valid").as_str(),
            "DE"
        );
        assert!(parse::<CountryCode>("\"DEU\"").is_err());
        assert!(parse::<DisciplineId>("\"Medicine\"").is_err());
        assert!(parse::<TaskMinutes>("19").is_err());
        assert_eq!(parse::<TaskMinutes>("60").expect("valid").get(), 60);
        assert_eq!(parse::<Score>("3.25").expect("valid").centi(), 325);
        assert!(parse::<Score>("4.5").is_err());
        assert!(parse::<Affirmed>("false").is_err());
        assert!(parse::<Affirmed>("true").is_ok());
        assert!(parse::<Sha256Hex>("\"abc\"").is_err());
        assert!(parse::<NewPassword>("\"short\"").is_err());
        assert!(
            !format!(
                "{:?}",
                parse::<NewPassword>("\"long enough password\"").expect("ok")
            )
            .contains("long")
        );
    }
}
