//! The applicant FAQ as pure functions of time: how long links and case studies last, when
//! results are due, when a failed applicant may reapply, how long access lasts, and on which
//! Friday a contractor is paid. No I/O, no clock reads: "now" is an argument.

use serde::{Deserialize, Serialize};
use time::{Date, Duration, Weekday};
use utoipa::ToSchema;

use super::error::StoreError;

/// The voice-interview link is valid for 7 days from issue.
pub const INTERVIEW_LINK_VALID: Duration = Duration::days(7);
/// An interview started before its link expired may still commit answers and finish this long
/// after expiry (a 25-minute interview opened at the last minute is not cut off).
pub const INTERVIEW_FINISH_GRACE: Duration = Duration::hours(2);
/// The case study must be submitted within 72 hours of receipt.
pub const CASE_STUDY_WINDOW: Duration = Duration::hours(72);
/// Reviewers owe a result within 48 hours after both parts are submitted.
pub const RESULTS_DUE_AFTER: Duration = Duration::hours(48);
/// After a fail, a new attempt in that discipline is possible 30 days after the result.
pub const REAPPLY_AFTER_FAIL: Duration = Duration::days(30);
/// Access stays active 90 days after the last accepted task (or the pass, if later).
pub const ACCESS_WINDOW: Duration = Duration::days(90);
/// Minimum days between a task submission and the Friday it is paid on.
pub const PAYOUT_MIN_DAYS: i64 = 7;

/// A screening decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Screened in: may accept agreements and be matched to roles.
    Pass,
    /// Not this time: may reapply after 30 days.
    Fail,
}

impl Outcome {
    /// Storage form.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
        }
    }

    /// From storage form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pass" => Some(Outcome::Pass),
            "fail" => Some(Outcome::Fail),
            _ => None,
        }
    }
}

/// The named feedback categories applicants are told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackCategory {
    /// Answers were hard to follow.
    CommunicationClarity,
    /// Answers lacked detail or precision.
    InsufficientDetail,
    /// The recording had technical problems (noise, drop-outs, no audio).
    TechnicalIssues,
}

/// Where a screening attempt stands at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptStatus {
    /// Interview and/or case study still to do, within their windows.
    InProgress,
    /// Both parts submitted; a reviewer owes a result.
    AwaitingReview,
    /// Decided: pass.
    Passed,
    /// Decided: fail.
    Failed,
    /// A window closed before the parts were submitted; a new attempt may start at once.
    Expired,
}

/// The stored facts an attempt's status is computed from (unix seconds).
#[derive(Debug, Clone, Default)]
pub struct AttemptFacts {
    /// When the interview link expires.
    pub interview_expires_at: i64,
    /// When the interview was completed.
    pub interview_completed_at: Option<i64>,
    /// When the case study was received.
    pub case_study_issued_at: Option<i64>,
    /// When the case study is due.
    pub case_study_due_at: Option<i64>,
    /// When the case study was submitted.
    pub case_study_submitted_at: Option<i64>,
    /// When both parts were in.
    pub ready_at: Option<i64>,
    /// The decision, if any.
    pub outcome: Option<Outcome>,
}

/// The status of an attempt at `now`.
///
/// Expiry: the interview must be completed by link expiry plus [`INTERVIEW_FINISH_GRACE`]; the
/// case study must be received (opened) while the interview link is valid and submitted within
/// [`CASE_STUDY_WINDOW`] of receipt.
pub fn attempt_status(f: &AttemptFacts, now: i64) -> AttemptStatus {
    match f.outcome {
        Some(Outcome::Pass) => return AttemptStatus::Passed,
        Some(Outcome::Fail) => return AttemptStatus::Failed,
        None => {}
    }
    if f.ready_at.is_some() {
        return AttemptStatus::AwaitingReview;
    }
    let interview_lapsed = f.interview_completed_at.is_none()
        && now >= f.interview_expires_at + INTERVIEW_FINISH_GRACE.whole_seconds();
    let case_never_received = f.case_study_issued_at.is_none() && now >= f.interview_expires_at;
    let case_lapsed =
        f.case_study_submitted_at.is_none() && f.case_study_due_at.is_some_and(|due| now >= due);
    if interview_lapsed || case_never_received || case_lapsed {
        AttemptStatus::Expired
    } else {
        AttemptStatus::InProgress
    }
}

/// One past attempt in a discipline, as far as starting a new one is concerned.
#[derive(Debug, Clone)]
pub struct PastAttempt {
    /// Its status now.
    pub status: AttemptStatus,
    /// When it was decided.
    pub decided_at: Option<i64>,
}

/// Whether a new attempt in a discipline may start now. `access_until` is the end of the
/// applicant's access window (if they ever passed).
pub fn may_start_attempt(
    history: &[PastAttempt],
    access_until: Option<i64>,
    now: i64,
) -> Result<(), StoreError> {
    if history.iter().any(|a| {
        matches!(
            a.status,
            AttemptStatus::InProgress | AttemptStatus::AwaitingReview
        )
    }) {
        return Err(StoreError::conflict(
            "attempt_open",
            "an attempt in this discipline is still open; finish it or let it expire first",
        ));
    }
    let last_decided = history
        .iter()
        .filter(|a| a.decided_at.is_some())
        .max_by_key(|a| a.decided_at);
    match last_decided {
        Some(PastAttempt {
            status: AttemptStatus::Failed,
            decided_at: Some(at),
        }) => {
            let allowed = at + REAPPLY_AFTER_FAIL.whole_seconds();
            if now < allowed {
                return Err(StoreError::conflict(
                    "reapply_too_soon",
                    format!(
                        "you can reapply in this discipline 30 days after the result, from {}",
                        super::clock::rfc3339(allowed)
                    ),
                ));
            }
        }
        Some(PastAttempt {
            status: AttemptStatus::Passed,
            ..
        }) => {
            if let Some(until) = access_until.filter(|u| now < *u) {
                return Err(StoreError::conflict(
                    "already_qualified",
                    format!(
                        "you passed screening in this discipline and your access is active until {}",
                        super::clock::rfc3339(until)
                    ),
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// The end of the access window: [`ACCESS_WINDOW`] after the later of the last pass and the last
/// accepted task; `None` if the applicant never passed.
pub fn access_until(last_pass_at: Option<i64>, last_accepted_task_at: Option<i64>) -> Option<i64> {
    let anchor = last_pass_at?.max(last_accepted_task_at.unwrap_or(i64::MIN));
    Some(anchor + ACCESS_WINDOW.whole_seconds())
}

/// The Friday on which work submitted on `submitted` (a UTC date) is paid.
///
/// Rule: the first Friday at least [`PAYOUT_MIN_DAYS`] (7) days after the submission date. For
/// work submitted Tuesday to Friday this is 7–10 days later, as the FAQ says. For Saturday,
/// Sunday and Monday no Friday falls 7–10 days later; the rule then picks the later Friday (13,
/// 12, 11 days) rather than paying before the 7-day processing time. A contractor's first payout
/// is this date for their first submission; later work is paid on later Fridays by the same rule.
pub fn payout_date(submitted: Date) -> Date {
    let earliest = submitted + Duration::days(PAYOUT_MIN_DAYS);
    let ahead = (i64::from(Weekday::Friday.number_days_from_monday())
        - i64::from(earliest.weekday().number_days_from_monday()))
    .rem_euclid(7);
    earliest + Duration::days(ahead)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn payout_date_for_every_weekday() {
        // 2025-01-06 is a Monday.
        let cases = [
            (
                date!(2025 - 01 - 06),
                Weekday::Monday,
                date!(2025 - 01 - 17),
                11,
            ),
            (
                date!(2025 - 01 - 07),
                Weekday::Tuesday,
                date!(2025 - 01 - 17),
                10,
            ),
            (
                date!(2025 - 01 - 08),
                Weekday::Wednesday,
                date!(2025 - 01 - 17),
                9,
            ),
            (
                date!(2025 - 01 - 09),
                Weekday::Thursday,
                date!(2025 - 01 - 17),
                8,
            ),
            (
                date!(2025 - 01 - 10),
                Weekday::Friday,
                date!(2025 - 01 - 17),
                7,
            ),
            (
                date!(2025 - 01 - 11),
                Weekday::Saturday,
                date!(2025 - 01 - 24),
                13,
            ),
            (
                date!(2025 - 01 - 12),
                Weekday::Sunday,
                date!(2025 - 01 - 24),
                12,
            ),
        ];
        for (submitted, weekday, expected, days) in cases {
            assert_eq!(submitted.weekday(), weekday);
            let paid = payout_date(submitted);
            assert_eq!(paid, expected, "submitted {weekday}");
            assert_eq!(paid.weekday(), Weekday::Friday);
            assert_eq!((paid - submitted).whole_days(), days, "submitted {weekday}");
            assert!((7..=13).contains(&days));
            if matches!(
                weekday,
                Weekday::Tuesday | Weekday::Wednesday | Weekday::Thursday | Weekday::Friday
            ) {
                assert!((7..=10).contains(&days), "FAQ window holds for {weekday}");
            }
        }
    }

    #[test]
    fn payout_date_across_month_and_year_ends() {
        assert_eq!(payout_date(date!(2024 - 12 - 27)), date!(2025 - 01 - 03));
        assert_eq!(payout_date(date!(2024 - 02 - 22)), date!(2024 - 03 - 01));
    }

    const DAY: i64 = 86_400;

    fn facts() -> AttemptFacts {
        AttemptFacts {
            interview_expires_at: 7 * DAY,
            ..AttemptFacts::default()
        }
    }

    #[test]
    fn attempt_expires_when_a_window_closes() {
        let f = facts();
        assert_eq!(attempt_status(&f, 0), AttemptStatus::InProgress);
        assert_eq!(
            attempt_status(&f, 7 * DAY),
            AttemptStatus::Expired,
            "case study never received"
        );
        let mut f = facts();
        f.case_study_issued_at = Some(DAY);
        f.case_study_due_at = Some(4 * DAY);
        f.case_study_submitted_at = Some(2 * DAY);
        assert_eq!(
            attempt_status(&f, 7 * DAY),
            AttemptStatus::InProgress,
            "grace for the interview"
        );
        assert_eq!(
            attempt_status(&f, 7 * DAY + 2 * 3600),
            AttemptStatus::Expired
        );
        let mut f = facts();
        f.case_study_issued_at = Some(DAY);
        f.case_study_due_at = Some(4 * DAY);
        assert_eq!(attempt_status(&f, 4 * DAY - 1), AttemptStatus::InProgress);
        assert_eq!(attempt_status(&f, 4 * DAY), AttemptStatus::Expired);
        f.ready_at = Some(3 * DAY);
        assert_eq!(attempt_status(&f, 30 * DAY), AttemptStatus::AwaitingReview);
        f.outcome = Some(Outcome::Fail);
        assert_eq!(attempt_status(&f, 30 * DAY), AttemptStatus::Failed);
    }

    #[test]
    fn reapply_waits_30_days_after_a_fail() {
        let failed = [PastAttempt {
            status: AttemptStatus::Failed,
            decided_at: Some(10 * DAY),
        }];
        let err = may_start_attempt(&failed, None, 39 * DAY).expect_err("too soon");
        assert!(matches!(
            err,
            StoreError::Conflict {
                code: "reapply_too_soon",
                ..
            }
        ));
        assert!(may_start_attempt(&failed, None, 40 * DAY).is_ok());
    }

    #[test]
    fn open_or_qualified_attempts_block_a_new_one() {
        let open = [PastAttempt {
            status: AttemptStatus::AwaitingReview,
            decided_at: None,
        }];
        assert!(may_start_attempt(&open, None, 0).is_err());
        let expired = [PastAttempt {
            status: AttemptStatus::Expired,
            decided_at: None,
        }];
        assert!(may_start_attempt(&expired, None, 0).is_ok());
        let passed = [PastAttempt {
            status: AttemptStatus::Passed,
            decided_at: Some(0),
        }];
        let until = access_until(Some(0), None);
        assert_eq!(until, Some(90 * DAY));
        assert!(may_start_attempt(&passed, until, 89 * DAY).is_err());
        assert!(
            may_start_attempt(&passed, until, 90 * DAY).is_ok(),
            "lapsed: rescreen"
        );
    }

    #[test]
    fn access_runs_90_days_from_the_later_of_pass_and_last_accepted_task() {
        assert_eq!(access_until(None, Some(5)), None);
        assert_eq!(access_until(Some(DAY), Some(50 * DAY)), Some(140 * DAY));
        assert_eq!(
            access_until(Some(60 * DAY), Some(50 * DAY)),
            Some(150 * DAY)
        );
    }
}
