//! Metadata log entries, one per line (each the JSON the active controller writes): decoded as
//! the state machine decodes them and applied in log order to an image, then the image is
//! written as a snapshot's records and rebuilt from them, as a restarting node does. An entry
//! that does not decode is skipped; applying the ones that do must never panic.

#![no_main]

use gregor::metadata::{MetadataImage, MetadataRecord};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: gregor_fuzz::BoundedAlloc = gregor_fuzz::BoundedAlloc;

fuzz_target!(|data: &[u8]| {
    let mut image = MetadataImage::default();
    let mut offset = 0u64;
    for entry in data.split(|b| *b == b'\n') {
        offset += 1;
        let Ok(records) = serde_json::from_slice::<Vec<MetadataRecord>>(entry) else {
            continue;
        };
        image.apply_batch(offset, &records);
    }
    let snapshot = image.to_records();
    let restored = MetadataImage::from_records(image.last_offset, &snapshot);
    assert_eq!(
        restored.topics, image.topics,
        "a snapshot changes the topics"
    );
    assert_eq!(
        restored.configs, image.configs,
        "a snapshot changes the configs"
    );
    assert_eq!(
        restored.next_producer_id, image.next_producer_id,
        "a snapshot changes the next producer id"
    );
});
