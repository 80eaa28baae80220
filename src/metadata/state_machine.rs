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
        // Entries are written only by the active controller, from records it serialised, and
        // replicated byte for byte: one that does not decode is a broken invariant.
        let records: Vec<MetadataRecord> = serde_json::from_slice(entry)
            .unwrap_or_else(|e| panic!("metadata log entry {index} does not decode: {e}"));
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
