//! The metadata image the brokers read, and how committed records reach it.
//!
//! Records come out of the metadata log in commit order; `MetadataPublisher::apply` builds
//! the next image from them and hands (old, new) to every listener, which reconciles its own
//! state (the replica manager creates, updates and deletes partition logs).

pub mod image;
pub mod records;
pub mod state_machine;
pub mod topic_config;

use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

pub use image::{BrokerRegistration, MetadataImage, PartitionRegistration, TopicImage};
pub use records::{BrokerEndpoint, ConfigResource, MetadataRecord};

/// Reacts to a newly published image.
pub trait MetadataListener: Send + Sync {
    fn on_metadata(&self, old: &MetadataImage, new: &MetadataImage);
}

/// Holds the current image and publishes new ones to listeners.
///
/// # Invariants
/// - Images are published in record order: `image().last_offset` only grows.
pub struct MetadataPublisher {
    image: RwLock<Arc<MetadataImage>>,
    listeners: RwLock<Vec<Arc<dyn MetadataListener>>>,
    /// Serialises `apply` so listeners see images one at a time, in order.
    apply_lock: Mutex<()>,
}

impl Default for MetadataPublisher {
    fn default() -> Self {
        Self::new()
    }
}

impl MetadataPublisher {
    pub fn new() -> Self {
        MetadataPublisher {
            image: RwLock::new(Arc::new(MetadataImage::default())),
            listeners: RwLock::new(Vec::new()),
            apply_lock: Mutex::new(()),
        }
    }

    /// The current image; cheap to call, and consistent for as long as it is held.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.read().clone()
    }

    pub fn register(&self, listener: Arc<dyn MetadataListener>) {
        self.listeners.write().push(listener);
    }

    /// Applies committed records, publishes the new image and tells the listeners.
    pub fn apply(&self, records: &[(u64, MetadataRecord)]) {
        if records.is_empty() {
            return;
        }
        let _guard = self.apply_lock.lock();
        let old = self.image();
        let mut new = (*old).clone();
        for (offset, record) in records {
            new.apply(*offset, record);
        }
        self.publish(old, new);
    }

    /// Applies one committed entry (a batch of records that commit together).
    pub fn apply_batch(&self, offset: u64, records: &[MetadataRecord]) {
        let _guard = self.apply_lock.lock();
        let old = self.image();
        let mut new = (*old).clone();
        new.apply_batch(offset, records);
        self.publish(old, new);
    }

    /// Replaces the image with one rebuilt from a snapshot.
    pub fn restore(&self, offset: u64, records: &[MetadataRecord]) {
        let _guard = self.apply_lock.lock();
        let old = self.image();
        self.publish(old, MetadataImage::from_records(offset, records));
    }

    fn publish(&self, old: Arc<MetadataImage>, new: MetadataImage) {
        let new = Arc::new(new);
        *self.image.write() = new.clone();
        let listeners = self.listeners.read().clone();
        for listener in listeners {
            listener.on_metadata(&old, &new);
        }
    }
}
