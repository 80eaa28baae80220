//! Producer-id blocks for brokers (Kafka's `ProducerIdControlManager`).

use kafka_protocol::ResponseError;

use super::ControllerResult;
use crate::error::ApiError;
use crate::metadata::{MetadataImage, MetadataRecord};

/// Producer ids are handed to brokers in blocks of this size (Kafka's `ProducerIdsBlock`).
pub const PRODUCER_ID_BLOCK_SIZE: i32 = 1000;

pub struct ProducerIdControlManager;

impl ProducerIdControlManager {
    /// The next block for `broker_id`, from a registered broker at its current epoch
    /// (Kafka's `checkBrokerEpoch`). Kafka's error when the id space is used up.
    pub fn allocate(
        &self,
        image: &MetadataImage,
        broker_id: i32,
        broker_epoch: i64,
    ) -> Result<ControllerResult<(i64, i32)>, ApiError> {
        match image.brokers.get(&broker_id) {
            None => {
                return Err(ApiError::with_message(
                    ResponseError::BrokerIdNotRegistered,
                    format!("Broker {broker_id} is not registered"),
                ))
            }
            Some(b) if b.broker_epoch != broker_epoch => {
                return Err(ApiError::with_message(
                    ResponseError::StaleBrokerEpoch,
                    format!(
                        "Expected broker epoch {}, got {broker_epoch}",
                        b.broker_epoch
                    ),
                ))
            }
            Some(_) => {}
        }
        let first = image.next_producer_id;
        if first > i64::MAX - PRODUCER_ID_BLOCK_SIZE as i64 {
            return Err(ApiError::with_message(
                ResponseError::UnknownServerError,
                "Exhausted all producerIds as the next block's end producerId has exceeded the int64 type limit",
            ));
        }
        Ok(ControllerResult::atomic(
            vec![MetadataRecord::ProducerIds {
                broker_id,
                first_producer_id: first,
                size: PRODUCER_ID_BLOCK_SIZE,
            }],
            (first, PRODUCER_ID_BLOCK_SIZE),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_need_a_current_broker_epoch_and_stop_at_the_end_of_the_id_space() {
        let mut image = MetadataImage::default();
        image.apply(
            1,
            &MetadataRecord::RegisterBroker {
                broker_id: 1,
                broker_epoch: 1,
                incarnation_id: uuid::Uuid::new_v4(),
                endpoints: vec![],
                rack: None,
            },
        );
        let m = ProducerIdControlManager;
        assert!(m.allocate(&image, 2, 1).is_err());
        assert!(m.allocate(&image, 1, 0).is_err());
        assert_eq!(m.allocate(&image, 1, 1).unwrap().response, (0, 1000));
        image.next_producer_id = i64::MAX - 10;
        assert!(m.allocate(&image, 1, 1).is_err());
    }
}
