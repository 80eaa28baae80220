//! Per-partition log configuration (Kafka's topic-level log configs).

use std::fmt;
use std::str::FromStr;

/// Which timestamp the log keeps in a batch's `max_timestamp` (`message.timestamp.type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// Keep the producer's timestamps.
    #[default]
    CreateTime,
    /// Overwrite `max_timestamp` with the broker's clock on append.
    LogAppendTime,
}

impl TimestampType {
    /// The name Kafka uses in configs (`CreateTime` / `LogAppendTime`).
    pub fn as_str(self) -> &'static str {
        match self {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        }
    }
}

impl fmt::Display for TimestampType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TimestampType {
    type Err = String;

    fn from_str(s: &str) -> Result<TimestampType, String> {
        match s {
            "CreateTime" => Ok(TimestampType::CreateTime),
            "LogAppendTime" => Ok(TimestampType::LogAppendTime),
            other => Err(format!("unknown message.timestamp.type {other:?}")),
        }
    }
}

/// Kafka's default `segment.bytes`: 1 GiB.
pub const SEGMENT_BYTES_DEFAULT: u64 = 1 << 30;
/// Kafka's default `segment.ms` and `retention.ms`: 7 days.
pub const WEEK_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// Kafka's default `max.message.bytes`.
pub const MAX_MESSAGE_BYTES_DEFAULT: u32 = 1_048_588;

/// The log configs of one partition, with Kafka's names in the field docs.
///
/// Values are used as given; nonsensical ones are clamped where they are used (a segment never
/// grows past `i32::MAX` bytes, because index positions are 32-bit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment before it would exceed this size.
    pub segment_bytes: u64,
    /// `segment.ms`: roll the active segment once its first batch is this old.
    pub segment_ms: i64,
    /// `retention.ms`: delete non-active segments whose largest timestamp is older; -1 keeps
    /// them forever.
    pub retention_ms: i64,
    /// `retention.bytes`: delete the oldest non-active segments while the log is larger;
    /// -1 means unlimited.
    pub retention_bytes: i64,
    /// `index.interval.bytes`: bytes of batches between two offset index entries.
    pub index_interval_bytes: u32,
    /// `segment.index.bytes`: size of a full index; a full index rolls the segment.
    pub segment_index_bytes: u32,
    /// `max.message.bytes`: the largest batch a producer may append.
    pub max_message_bytes: u32,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// `flush.messages`: fsync after this many records; `i64::MAX` never flushes by count.
    pub flush_messages: i64,
    /// `flush.ms`: fsync once unflushed data is this old; `i64::MAX` never flushes by time.
    pub flush_ms: i64,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            segment_ms: WEEK_MS,
            retention_ms: WEEK_MS,
            retention_bytes: -1,
            index_interval_bytes: 4096,
            segment_index_bytes: 10 * 1024 * 1024,
            max_message_bytes: MAX_MESSAGE_BYTES_DEFAULT,
            timestamp_type: TimestampType::CreateTime,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
        }
    }
}

impl LogConfig {
    /// `segment.bytes` clamped to what 32-bit index positions can address.
    pub fn segment_bytes_max(&self) -> u64 {
        self.segment_bytes.min(i32::MAX as u64)
    }

    /// Entries an offset index holds before the segment must roll (8 bytes an entry).
    pub fn offset_index_entries_max(&self) -> usize {
        (self.segment_index_bytes / crate::index::ENTRY_SIZE as u32) as usize
    }

    /// Entries a time index holds before the segment must roll (12 bytes an entry).
    pub fn time_index_entries_max(&self) -> usize {
        (self.segment_index_bytes / crate::time_index::ENTRY_SIZE as u32) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kafkas() {
        let config = LogConfig::default();
        assert_eq!(config.segment_bytes, 1_073_741_824);
        assert_eq!(config.segment_ms, 604_800_000);
        assert_eq!(config.retention_ms, 604_800_000);
        assert_eq!(config.retention_bytes, -1);
        assert_eq!(config.index_interval_bytes, 4096);
        assert_eq!(config.segment_index_bytes, 10_485_760);
        assert_eq!(config.max_message_bytes, 1_048_588);
        assert_eq!(config.timestamp_type, TimestampType::CreateTime);
        assert_eq!(config.offset_index_entries_max(), 1_310_720);
        assert_eq!(config.time_index_entries_max(), 873_813);
        assert_eq!(config.segment_bytes_max(), 1_073_741_824);
    }

    #[test]
    fn timestamp_type_names_round_trip() {
        for t in [TimestampType::CreateTime, TimestampType::LogAppendTime] {
            assert_eq!(t.as_str().parse::<TimestampType>().unwrap(), t);
        }
        assert!("createtime".parse::<TimestampType>().is_err());
    }
}
