//! The transaction coordinator's settings, under Kafka's names and defaults.

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionCoordinatorConfig {
    /// `transaction.state.log.num.partitions`: partitions of `__transaction_state`.
    pub num_partitions: i32,
    /// `transaction.state.log.replication.factor`: created at exactly this factor.
    pub replication_factor: i16,
    /// `transaction.state.log.min.isr`: the topic's `min.insync.replicas`.
    pub min_isr: i32,
    /// `transaction.state.log.segment.bytes`.
    pub segment_bytes: i64,
    /// `transaction.max.timeout.ms`: the largest `transaction.timeout.ms` a producer may ask.
    pub max_timeout_ms: i32,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub abort_timed_out_interval_ms: u64,
    /// `transactional.id.expiration.ms`: an idle, finished transactional id is removed.
    pub id_expiration_ms: i64,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`.
    pub remove_expired_interval_ms: u64,
    /// How long a write to `__transaction_state` waits for the ISR (Kafka uses the
    /// request timeout of the append, `request.timeout.ms`).
    pub write_timeout_ms: u64,
}

impl Default for TransactionCoordinatorConfig {
    fn default() -> Self {
        TransactionCoordinatorConfig {
            num_partitions: 50,
            replication_factor: 3,
            min_isr: 2,
            segment_bytes: 104_857_600,
            max_timeout_ms: 900_000,
            abort_timed_out_interval_ms: 10_000,
            id_expiration_ms: 604_800_000,
            remove_expired_interval_ms: 3_600_000,
            write_timeout_ms: 30_000,
        }
    }
}

impl TransactionCoordinatorConfig {
    /// Reads the settings from the broker's properties; a malformed or out-of-range value
    /// is an error naming the key.
    pub fn from_props(props: &BTreeMap<String, String>) -> Result<Self, String> {
        fn get<T: std::str::FromStr + PartialOrd + Copy>(
            props: &BTreeMap<String, String>,
            key: &str,
            default: T,
            min: T,
        ) -> Result<T, String> {
            let v = match props.get(key) {
                None => default,
                Some(s) => s
                    .trim()
                    .parse()
                    .map_err(|_| format!("{key}: not a number: {s}"))?,
            };
            if v < min {
                return Err(format!("{key}: out of range"));
            }
            Ok(v)
        }
        let d = Self::default();
        Ok(TransactionCoordinatorConfig {
            num_partitions: get(
                props,
                "transaction.state.log.num.partitions",
                d.num_partitions,
                1,
            )?,
            replication_factor: get(
                props,
                "transaction.state.log.replication.factor",
                d.replication_factor,
                1,
            )?,
            min_isr: get(props, "transaction.state.log.min.isr", d.min_isr, 1)?,
            segment_bytes: get(
                props,
                "transaction.state.log.segment.bytes",
                d.segment_bytes,
                1,
            )?,
            max_timeout_ms: get(props, "transaction.max.timeout.ms", d.max_timeout_ms, 1)?,
            abort_timed_out_interval_ms: get(
                props,
                "transaction.abort.timed.out.transaction.cleanup.interval.ms",
                d.abort_timed_out_interval_ms,
                1,
            )?,
            id_expiration_ms: get(
                props,
                "transactional.id.expiration.ms",
                d.id_expiration_ms,
                1,
            )?,
            remove_expired_interval_ms: get(
                props,
                "transaction.remove.expired.transaction.cleanup.interval.ms",
                d.remove_expired_interval_ms,
                1,
            )?,
            write_timeout_ms: get(props, "request.timeout.ms", d.write_timeout_ms, 1)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(
            TransactionCoordinatorConfig::from_props(&BTreeMap::new()).unwrap(),
            Default::default()
        );
        let props: BTreeMap<String, String> = [
            (
                "transaction.state.log.num.partitions".to_string(),
                "4".to_string(),
            ),
            ("transaction.max.timeout.ms".to_string(), "1000".to_string()),
        ]
        .into_iter()
        .collect();
        let c = TransactionCoordinatorConfig::from_props(&props).unwrap();
        assert_eq!((c.num_partitions, c.max_timeout_ms), (4, 1000));
        let bad: BTreeMap<String, String> = [(
            "transaction.state.log.num.partitions".to_string(),
            "0".to_string(),
        )]
        .into_iter()
        .collect();
        assert!(TransactionCoordinatorConfig::from_props(&bad).is_err());
    }
}
