//! Wall-clock time as the node writes it down: audit entries, saga logs, cache expiry,
//! commit times of change events. One definition, so every record agrees on the unit
//! and on what a clock before 1970 reads as (0).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (UTC); 0 for a clock set before it.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Microseconds since the Unix epoch (UTC), as a TIMESTAMP value holds them; 0 for a
/// clock set before it.
pub fn now_unix_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Milliseconds from `unix_us` (microseconds since the epoch) until now; 0 for a time
/// in the future (clocks of two regions disagree).
pub fn ms_since_unix_us(unix_us: i64) -> u64 {
    u64::try_from(now_unix_us().saturating_sub(unix_us) / 1000).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_units_agree_and_the_future_is_no_age() {
        let (ms, us) = (now_unix_ms(), now_unix_us());
        assert!(ms > 1_600_000_000_000, "{ms}");
        assert!((us / 1000 - i64::try_from(ms).expect("ms")).abs() < 1000);
        assert_eq!(ms_since_unix_us(us + 60_000_000), 0);
        assert!(ms_since_unix_us(us - 5_000_000) >= 5000);
    }
}
