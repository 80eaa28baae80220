//! Wall-clock time for the broker's edges (record timestamps, retention). State machines take
//! `now_ms` as an argument instead of reading the clock, so tests can drive time.

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
