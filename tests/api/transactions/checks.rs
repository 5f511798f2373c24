//! What a transaction is checked against: bounds after each op, a row held elsewhere under
//! `lock=nowait`, and malformed transactions.

use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app};

/// Every intermediate value counts, not only the net change: rowlock and the database (which
/// decides in one statement whether to write) must both refuse these, and agree on it.
#[tokio::test]
async fn a_counter_named_twice_must_stay_in_bounds_after_each_op() {
    let app = spawn_app().await;
    app.create_accounts(&["a", "b"], 0).await;
    let r = app.put_counter("big", json!({"value": i64::MAX - 1})).await;
    assert_eq!(r.status().as_u16(), 201);

    // Net +5, but the first op would take `a` below its min 0.
    let dip = json!({"ops": [{"counter": "a", "by": -5}, {"counter": "a", "by": 10}]});
    let problem = assert_problem(app.post_transaction("", dip).await, 409, "bound_violation").await;
    assert!(
        problem["detail"].as_str().unwrap().starts_with("op 1:"),
        "{problem}"
    );

    // Net -5, but the first op would overflow a signed 64-bit value.
    let spike = json!({"ops": [{"counter": "b", "by": 1}, {"counter": "big", "by": 5}, {"counter": "big", "by": -10}]});
    let problem = assert_problem(app.post_transaction("", spike).await, 422, "invalid").await;
    assert!(
        problem["detail"].as_str().unwrap().starts_with("op 2:"),
        "{problem}"
    );

    assert_eq!(app.db_value("a").await, Some(0));
    assert_eq!(app.db_value("b").await, Some(0));
    assert_eq!(app.db_value("big").await, Some(i64::MAX - 1));
    let recorded = app.scalar("SELECT count(*) FROM transactions").await;
    assert_eq!(recorded, 0);

    // In the other order each intermediate value is fine.
    let rise = json!({"ops": [{"counter": "a", "by": 10}, {"counter": "b", "by": 3}, {"counter": "a", "by": -5}]});
    let r = app.post_transaction("", rise).await;
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.unwrap();
    let pairs: Vec<(i64, i64)> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["previous"].as_i64().unwrap(),
                r["value"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(pairs, vec![(0, 10), (0, 3), (10, 5)]);
    let stored: Value = app.get_json(&format!("/transactions/{}", body["id"])).await;
    assert_eq!(stored["results"], body["results"]);
    assert_eq!(app.db_value("a").await, Some(5));
    assert_eq!(app.db_value("b").await, Some(3));
}

#[tokio::test]
async fn nowait_on_a_transaction_with_one_row_held_elsewhere_is_423() {
    let app = spawn_app().await;
    app.create_accounts(&["alice", "bob"], 100).await;
    let holder = app.hold_row("bob").await;
    let body = json!({"ops": [{"counter": "alice", "by": -1}, {"counter": "bob", "by": 1}]});
    assert_problem(
        app.post_transaction("lock=nowait", body.clone()).await,
        423,
        "lock_not_available",
    )
    .await;
    assert_problem(
        app.post_transaction("lock=skip_locked", body.clone()).await,
        423,
        "row_skipped",
    )
    .await;
    assert_problem(
        app.post_transaction("lock_timeout_ms=100", body).await,
        423,
        "lock_not_available",
    )
    .await;
    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(app.db_value("alice").await, Some(100));
}

#[tokio::test]
async fn bad_transactions_are_4xx_and_change_nothing() {
    let app = spawn_app().await;
    app.create_accounts(&["a"], 10).await;
    let too_many: Vec<Value> = (0..101).map(|_| json!({"counter": "a", "by": 1})).collect();
    let cases = [
        (json!({"ops": []}), 422, "invalid"),
        (json!({"ops": too_many}), 422, "invalid"),
        (
            json!({"ops": [{"counter": "a b", "by": 1}]}),
            400,
            "bad_request",
        ),
        (json!({"ops": [{"counter": "a", "by": 0}]}), 422, "invalid"),
        (json!({"ops": [{"counter": "a"}]}), 400, "bad_request"),
        (
            json!({"ops": [{"counter": "a", "by": 1}], "atomc": true}),
            400,
            "bad_request",
        ),
        (
            json!({"ops": [{"counter": "a", "by": 1e30}]}),
            422,
            "invalid",
        ),
    ];
    for (body, status, code) in cases {
        assert_problem(app.post_transaction("", body).await, status, code).await;
    }
    assert_eq!(app.db_value("a").await, Some(10));
}
