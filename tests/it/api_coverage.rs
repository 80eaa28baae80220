//! Every API that ApiVersions advertises is served: a request at each advertised version
//! gets a response (never a closed connection), so the version table and the handlers agree.

use kafka_protocol::messages::*;
use kafka_protocol::protocol::Request;

use crate::client::Client;
use crate::harness::Node;

fn answers<R: Request + Default>(c: &mut Client, version: i16) -> bool {
    c.request(&R::default(), version).is_ok()
}

#[test]
fn every_advertised_api_version_answers() {
    let node = Node::start(&[]);
    let mut c = Client::connect(&node.bootstrap());
    let versions = c.request(&ApiVersionsRequest::default(), 3).unwrap();
    assert_eq!(versions.error_code, 0);
    for key in &versions.api_keys {
        let api = ApiKey::try_from(key.api_key).expect("a known api key");
        // Produce below v3 is advertised for librdkafka's sake but refused (KIP-896), and a
        // default Produce has acks=0, which gets no response by design.
        if api == ApiKey::Produce {
            continue;
        }
        for version in key.min_version..=key.max_version {
            let mut c = Client::connect(&node.bootstrap());
            let ok = match api {
                ApiKey::Fetch => answers::<FetchRequest>(&mut c, version),
                ApiKey::ListOffsets => answers::<ListOffsetsRequest>(&mut c, version),
                ApiKey::Metadata => answers::<MetadataRequest>(&mut c, version),
                ApiKey::OffsetCommit => answers::<OffsetCommitRequest>(&mut c, version),
                ApiKey::OffsetFetch => answers::<OffsetFetchRequest>(&mut c, version),
                ApiKey::FindCoordinator => answers::<FindCoordinatorRequest>(&mut c, version),
                ApiKey::JoinGroup => answers::<JoinGroupRequest>(&mut c, version),
                ApiKey::Heartbeat => answers::<HeartbeatRequest>(&mut c, version),
                ApiKey::LeaveGroup => answers::<LeaveGroupRequest>(&mut c, version),
                ApiKey::SyncGroup => answers::<SyncGroupRequest>(&mut c, version),
                ApiKey::DescribeGroups => answers::<DescribeGroupsRequest>(&mut c, version),
                ApiKey::ListGroups => answers::<ListGroupsRequest>(&mut c, version),
                ApiKey::DeleteGroups => answers::<DeleteGroupsRequest>(&mut c, version),
                ApiKey::OffsetDelete => answers::<OffsetDeleteRequest>(&mut c, version),
                ApiKey::ApiVersions => answers::<ApiVersionsRequest>(&mut c, version),
                ApiKey::CreateTopics => answers::<CreateTopicsRequest>(&mut c, version),
                ApiKey::DeleteTopics => answers::<DeleteTopicsRequest>(&mut c, version),
                ApiKey::DeleteRecords => answers::<DeleteRecordsRequest>(&mut c, version),
                ApiKey::InitProducerId => answers::<InitProducerIdRequest>(&mut c, version),
                ApiKey::OffsetForLeaderEpoch => {
                    answers::<OffsetForLeaderEpochRequest>(&mut c, version)
                }
                ApiKey::DescribeConfigs => answers::<DescribeConfigsRequest>(&mut c, version),
                ApiKey::CreatePartitions => answers::<CreatePartitionsRequest>(&mut c, version),
                ApiKey::IncrementalAlterConfigs => {
                    answers::<IncrementalAlterConfigsRequest>(&mut c, version)
                }
                ApiKey::ListPartitionReassignments => {
                    answers::<ListPartitionReassignmentsRequest>(&mut c, version)
                }
                ApiKey::ElectLeaders => answers::<ElectLeadersRequest>(&mut c, version),
                ApiKey::DescribeQuorum => answers::<DescribeQuorumRequest>(&mut c, version),
                ApiKey::DescribeCluster => answers::<DescribeClusterRequest>(&mut c, version),
                ApiKey::DescribeTopicPartitions => {
                    answers::<DescribeTopicPartitionsRequest>(&mut c, version)
                }
                ApiKey::AddPartitionsToTxn => answers::<AddPartitionsToTxnRequest>(&mut c, version),
                ApiKey::AddOffsetsToTxn => answers::<AddOffsetsToTxnRequest>(&mut c, version),
                ApiKey::EndTxn => answers::<EndTxnRequest>(&mut c, version),
                ApiKey::DescribeTransactions => {
                    answers::<DescribeTransactionsRequest>(&mut c, version)
                }
                ApiKey::ListTransactions => answers::<ListTransactionsRequest>(&mut c, version),
                other => panic!("advertised api {other:?} has no case in this test"),
            };
            assert!(ok, "{api:?} v{version} closed the connection");
        }
    }
}
