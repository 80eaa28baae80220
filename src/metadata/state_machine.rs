//! The metadata log's state machine: each committed Raft entry is one batch of metadata
//! records, applied to the image in log order; a snapshot is the image written as records
//! (as KRaft snapshots are).

use std::sync::Arc;

use super::{MetadataPublisher, MetadataRecord};

pub struct MetadataStateMachine {
    publisher: Arc<MetadataPublisher>,
}

impl MetadataStateMachine {
    pub fn new(publisher: Arc<MetadataPublisher>) -> Self {
        MetadataStateMachine { publisher }
    }
}

impl gregor_raft::StateMachine for MetadataStateMachine {
    fn apply(&self, index: u64, entry: &[u8]) {
        // Entries are written only by the active controller and replicated byte for byte, so
        // one that does not decode (written by another version, or damaged on disk) fails
        // the same way on every node: it is skipped whole, and its index still counts as
        // applied, so the image's offset keeps pace with the log.
        let records = decode_entry(index, entry);
        self.publisher.apply_batch(index, &records);
    }

    fn snapshot(&self) -> (u64, Vec<u8>) {
        let image = self.publisher.image();
        let records = image.to_records();
        (
            image.last_offset,
            serde_json::to_vec(&records).expect("metadata records serialize"),
        )
    }

    fn restore(&self, last_index: u64, data: &[u8]) {
        // A snapshot is the whole state: one that does not decode cannot be replaced by
        // anything correct, so this node stops rather than serve an image it knows is wrong.
        let records: Vec<MetadataRecord> = serde_json::from_slice(data)
            .unwrap_or_else(|e| panic!("metadata snapshot at {last_index} does not decode: {e}"));
        tracing::info!(
            last_index,
            records = records.len(),
            "restoring metadata image from snapshot"
        );
        self.publisher.restore(last_index, &records);
    }
}

/// The records of one log entry; none (with an error log) if it does not decode.
fn decode_entry(index: u64, entry: &[u8]) -> Vec<MetadataRecord> {
    match serde_json::from_slice(entry) {
        Ok(records) => records,
        Err(e) => {
            tracing::error!(
                index,
                bytes = entry.len(),
                error = %e,
                "metadata log entry does not decode: skipped"
            );
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gregor_raft::StateMachine;

    #[test]
    fn an_entry_that_does_not_decode_is_skipped_and_counted() {
        let publisher = Arc::new(MetadataPublisher::new());
        let sm = MetadataStateMachine::new(publisher.clone());
        sm.apply(3, b"{not json");
        sm.apply(4, br#"[{"type":"Unknown"}]"#);
        sm.apply(5, br#"[{"type":"ClusterId","cluster_id":"c"}]"#);
        let image = publisher.image();
        assert_eq!(image.last_offset, 5);
        assert_eq!(image.cluster_id.as_deref(), Some("c"));
    }
}
