//! Time as an injected dependency: the platform never reads the system clock directly, so tests
//! can move time forward (7-day interview links, 72-hour case studies, 30-day reapply waits,
//! 90-day access windows, Friday payouts) without sleeping.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use time::{Duration, OffsetDateTime};

/// A source of "now". Implementations must be cheap and thread-safe.
pub trait Clock: Send + Sync + 'static {
    /// The current instant, UTC.
    fn now(&self) -> OffsetDateTime;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that only moves when told to; shared between a test and the server it drives.
#[derive(Clone)]
pub struct ManualClock {
    /// The current instant; behind a mutex so clones share it.
    now: Arc<Mutex<OffsetDateTime>>,
}

impl ManualClock {
    /// A clock stopped at `start` (sub-second precision is dropped: storage keeps seconds).
    pub fn new(start: OffsetDateTime) -> Self {
        let start = start.replace_nanosecond(0).unwrap_or(start);
        Self {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Sets the current instant.
    pub fn set(&self, to: OffsetDateTime) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = to;
    }

    /// Moves the clock forward (or back, with a negative duration).
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ManualClock").field(&self.now()).finish()
    }
}

/// Unix seconds, the storage representation of every instant.
pub fn to_unix(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

/// The instant for stored unix seconds (out-of-range values clamp to the epoch).
pub fn from_unix(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// RFC 3339 text for stored unix seconds, the wire format of every instant.
pub fn rfc3339(secs: i64) -> String {
    from_unix(secs)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| secs.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_it() {
        let clock = ManualClock::new(datetime!(2025-01-06 09:00:00.5 UTC));
        let other = clock.clone();
        assert_eq!(clock.now(), datetime!(2025-01-06 09:00 UTC));
        other.advance(Duration::days(7));
        assert_eq!(clock.now(), datetime!(2025-01-13 09:00 UTC));
        clock.set(datetime!(2030-01-01 00:00 UTC));
        assert_eq!(other.now(), datetime!(2030-01-01 00:00 UTC));
    }

    #[test]
    fn unix_round_trip_and_rfc3339() {
        let t = datetime!(2025-03-07 12:34:56 UTC);
        assert_eq!(from_unix(to_unix(t)), t);
        assert_eq!(rfc3339(to_unix(t)), "2025-03-07T12:34:56Z");
    }
}
