//! The cost meter: its billing rules on hand-made calls, and its recording of a real
//! flow on moto (item images around each write, the partitions every request writes).

use neuraforge_tests::TestStack;
use neuraforge_tests::cost::{
    IndexShape, TableShape, Touched, item_size, read_units, singletons, sqs_requests, write_units,
};
use neuraforge_tests::recorder::Recorder;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};

#[test]
fn item_sizes_follow_dynamodbs_rules() {
    assert_eq!(item_size(&json!({"ab": {"S": "xyz"}})), 2 + 3);
    // Numbers: one byte per two significant digits, plus one.
    assert_eq!(item_size(&json!({"n": {"N": "12345"}})), 1 + 3 + 1);
    assert_eq!(
        item_size(&json!({"b": {"BOOL": true}, "z": {"NULL": true}})),
        2 + 2
    );
    // Lists and maps: 3 bytes of overhead, one per element, names inside maps.
    assert_eq!(
        item_size(&json!({"l": {"L": [{"S": "a"}, {"S": "bc"}]}})),
        1 + 3 + 2 + 3
    );
    assert_eq!(
        item_size(&json!({"m": {"M": {"k": {"S": "v"}}}})),
        1 + 3 + 2 + 1
    );
}

fn shapes() -> HashMap<String, TableShape> {
    HashMap::from([(
        "t".to_string(),
        TableShape {
            logical: "Tickets".into(),
            key: vec!["id".into()],
            indexes: vec![IndexShape {
                name: "by-status".into(),
                key: vec!["status".into()],
                projected: Some(vec![]),
            }],
        },
    )])
}

fn item(id: &str, status: Option<&str>, padding: usize) -> serde_json::Value {
    let mut item = json!({"id": {"S": id}, "pad": {"S": "x".repeat(padding)}});
    if let Some(status) = status {
        item["status"] = json!({ "S": status });
    }
    item
}

fn touched(
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
    tx: bool,
) -> Touched {
    Touched {
        table: "t".into(),
        key: json!({"id": {"S": "a"}}),
        before,
        after,
        sent: None,
        transactional: tx,
    }
}

#[test]
fn a_write_costs_a_unit_per_kb_of_its_larger_image_plus_its_index_writes_doubled_in_a_transaction()
{
    let shapes = shapes();
    // 1.5 KB, no index key: 2 units.
    assert_eq!(
        write_units(&touched(None, Some(item("a", None, 1500)), false), &shapes),
        2.0
    );
    // Shrinking from 2.5 KB to 0.5 KB is billed at the larger image: 3 units.
    let shrink = touched(
        Some(item("a", None, 2500)),
        Some(item("a", None, 500)),
        false,
    );
    assert_eq!(write_units(&shrink, &shapes), 3.0);
    // Entering the index adds its (keys-only) write; changing the index key, a delete too.
    let enter = touched(
        Some(item("a", None, 10)),
        Some(item("a", Some("open"), 10)),
        false,
    );
    assert_eq!(write_units(&enter, &shapes), 2.0);
    let moved = touched(
        Some(item("a", Some("open"), 10)),
        Some(item("a", Some("closed"), 10)),
        false,
    );
    assert_eq!(write_units(&moved, &shapes), 3.0);
    // Changing only what a keys-only index does not hold writes the table alone.
    let unprojected = touched(
        Some(item("a", Some("open"), 10)),
        Some(item("a", Some("open"), 900)),
        false,
    );
    assert_eq!(write_units(&unprojected, &shapes), 1.0);
    // The same in a transaction costs double.
    let moved_tx = touched(
        Some(item("a", Some("open"), 10)),
        Some(item("a", Some("closed"), 10)),
        true,
    );
    assert_eq!(write_units(&moved_tx, &shapes), 6.0);
    // A put whose condition failed still costs the item it sent.
    let refused = Touched {
        sent: Some(item("a", None, 3000)),
        ..touched(Some(item("a", None, 10)), Some(item("a", None, 10)), false)
    };
    assert_eq!(write_units(&refused, &shapes), 3.0);
}

#[test]
fn a_read_costs_a_unit_per_4_kb_halved_when_eventually_consistent_and_sqs_counts_64_kb_chunks() {
    let big = item("a", None, 5000);
    let strong = json!({"ConsistentRead": true});
    assert_eq!(read_units("GetItem", &strong, &json!({"Item": big})), 2.0);
    assert_eq!(
        read_units("GetItem", &json!({}), &json!({"Item": big})),
        1.0
    );
    let page = json!({"Items": [item("a", None, 3000), item("b", None, 3000)]});
    assert_eq!(
        read_units("Query", &json!({}), &page),
        1.0,
        "6 KB: 2 units, halved"
    );
    assert_eq!(
        read_units("Query", &json!({}), &json!({"Items": []})),
        0.5,
        "an empty page still costs"
    );
    assert_eq!(
        read_units("PutItem", &json!({}), &json!({})),
        0.0,
        "a write reads nothing"
    );
    let batch = json!({"RequestItems": {"t": {"ConsistentRead": true}}});
    let two = json!({"Responses": {"t": [item("a", None, 10), item("b", None, 5000)]}});
    assert_eq!(
        read_units("BatchGetItem", &batch, &two),
        3.0,
        "1 + 2, each item on its own"
    );
    let body = "x".repeat(70 * 1024);
    assert_eq!(
        sqs_requests("SendMessage", &json!({"MessageBody": body}), &json!({})),
        2.0
    );
    assert_eq!(sqs_requests("DeleteMessage", &json!({}), &json!({})), 1.0);
}

#[test]
fn a_key_every_request_writes_is_a_singleton_and_distinct_keys_are_not() {
    let keys = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        singletons(&[
            keys(&["head", "a"]),
            keys(&["head", "b"]),
            keys(&["head", "c"])
        ]),
        keys(&["head"])
    );
    assert!(singletons(&[keys(&["a"]), keys(&["b"])]).is_empty());
    assert!(
        singletons(&[keys(&["a"])]).is_empty(),
        "one request proves nothing"
    );
}

#[tokio::test]
async fn the_meter_records_each_writes_images_and_partition_on_moto() {
    let stack = TestStack::new().await;
    let recorder = Recorder::metering(&stack.sdk, &stack.local.tables);
    let metered = stack.with_sdk(recorder.sdk(&stack.sdk));
    let shapes = neuraforge_tests::cost::table_shapes(&stack.local.tables);
    let table = &stack.local.tables["RateLimitsTable"];
    let put = |padding: usize| {
        metered
            .dynamodb
            .put_item()
            .table_name(table)
            .item(
                "limit_key",
                aws_sdk_dynamodb::types::AttributeValue::S("k".into()),
            )
            .item(
                "pad",
                aws_sdk_dynamodb::types::AttributeValue::S("x".repeat(padding)),
            )
            .send()
    };
    put(1500).await.unwrap();
    put(100).await.unwrap();
    let calls = recorder.take_calls();
    assert_eq!(calls.len(), 2);
    let [first, second] = [&calls[0].touched[0], &calls[1].touched[0]];
    assert!(first.before.is_none() && first.after.is_some(), "{first:?}");
    assert_eq!(write_units(first, &shapes), 2.0, "1.5 KB written");
    assert_eq!(
        write_units(second, &shapes),
        2.0,
        "overwriting 1.5 KB with 0.1 KB is billed at the larger image"
    );
    assert_eq!(
        neuraforge_tests::cost::partition_of(second, &shapes),
        "RateLimitsTable/k"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_flow_stays_under_its_ceiling_and_writes_no_key_every_request_writes() {
    // The regression guard of infra/cost/budget.yaml: a change that adds a write to a
    // flow, or a key all of its requests write, fails here until the budget says so.
    let budget = neuraforge_tests::meter::Budget::load();
    // Six requests a flow: a key that is sharded (the audit log's 16 chains, by request id) is
    // written by all of them by chance once in 16^5 runs, not once in 256 as with three.
    let flows = neuraforge_tests::meter::run(6).await;
    assert_eq!(
        flows
            .iter()
            .map(|f| f.name.to_string())
            .collect::<BTreeSet<_>>(),
        budget.flows.keys().cloned().collect::<BTreeSet<_>>(),
        "every metered flow has a budget, every budget a flow"
    );
    let breaches: Vec<String> = flows.iter().flat_map(|f| budget.breaches(f)).collect();
    assert_eq!(breaches, Vec::<String>::new());
}
