//! Dispatch rules spread by gossip: a rule created on one gateway opens
//! the queue on another, which routes its own log; a delete anywhere
//! removes it everywhere.

mod common;

use std::time::Duration;

use common::{TestCa, call, create_topic, eventually, produce};
use meshgate_gateway::gateway::Gateway;
use meshgate_protocol::{QueueName, QueueSpec, Receive, Reply, Request};

async fn queue_names(gateway: &Gateway) -> Vec<String> {
    match gateway.node().handle(Request::ListQueues).await {
        Ok(Reply::Queues(specs)) => specs.into_iter().map(|spec| spec.name).collect(),
        _ => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_created_on_one_gateway_spreads_to_the_others_and_so_does_its_delete() {
    let root = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new(root.path());
    let first = Gateway::start(ca.config(root.path(), "use-1", "us-east", vec![]))
        .await
        .expect("starts");
    let seed = first.cluster().addresses().gossip.to_string();
    let second = Gateway::start(ca.config(root.path(), "euw-1", "eu-west", vec![seed]))
        .await
        .expect("starts");
    create_topic(&first, "orders", 1).await;
    create_topic(&second, "orders", 1).await;
    call(
        &first,
        Request::CreateQueue(QueueSpec {
            name: "orders.inventory".into(),
            topic: "orders".into(),
            tags: "*".into(),
            filter_header: None,
            filter_key_prefix: None,
            options: Default::default(),
        }),
    )
    .await;
    let spread = eventually(Duration::from_secs(15), || async {
        second
            .node()
            .handle(Request::DescribeQueue(QueueName {
                queue: "orders.inventory".into(),
            }))
            .await
            .is_ok()
    })
    .await;
    assert!(
        spread,
        "the rule reached the other gateway and opened its queue"
    );
    produce(&second, "orders", 0, &["from-eu".to_string()]).await;
    let received = eventually(Duration::from_secs(5), || async {
        matches!(
            second.node().handle(Request::Receive(Receive {
                queue: "orders.inventory".into(),
                count_max: 10,
                wait_ms: 100,
                visibility_ms: None,
            }))
            .await,
            Ok(Reply::Messages(messages)) if messages.len() == 1 && messages[0].value == "from-eu"
        )
    })
    .await;
    assert!(received, "the second gateway routes its own log");
    call(
        &second,
        Request::DeleteQueue(QueueName {
            queue: "orders.inventory".into(),
        }),
    )
    .await;
    let deleted = eventually(Duration::from_secs(15), || async {
        queue_names(&first).await.is_empty()
    })
    .await;
    assert!(deleted, "the delete reached the first gateway");
    second.stop().await;
    first.stop().await;
}
