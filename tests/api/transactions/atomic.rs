//! A transaction is all or nothing: a transfer recorded, an order refused as a whole, a savepoint
//! rolled back alone, a missing counter named, one counter named twice locked once.

use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn a_transfer_moves_value_and_is_recorded() {
    let app = spawn_app().await;
    app.create_accounts(&["alice", "bob"], 100).await;
    let r = app
        .post_transaction(
            "",
            json!({"ops": [{"counter": "alice", "by": -30}, {"counter": "bob", "by": 30}]}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["results"][0]["counter"], "alice");
    assert_eq!(body["results"][0]["previous"], 100);
    assert_eq!(body["results"][0]["value"], 70);
    assert_eq!(body["results"][1]["value"], 130);
    assert_eq!(app.db_value("alice").await, Some(70));
    assert_eq!(app.db_value("bob").await, Some(130));

    let id = body["id"].as_i64().unwrap();
    let stored: Value = app.get_json(&format!("/transactions/{id}")).await;
    assert_eq!(stored["id"], id);
    assert_eq!(
        stored["ops"],
        json!([{"counter": "alice", "by": -30}, {"counter": "bob", "by": 30}])
    );
    assert_eq!(stored["results"], body["results"]);
    let r = app
        .http
        .get(app.url("/transactions/999999"))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not_found").await;
    let r = app
        .http
        .get(app.url("/transactions/abc"))
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "bad_request").await;
}

#[tokio::test]
async fn an_order_whose_third_line_exceeds_stock_changes_nothing() {
    let app = spawn_app().await;
    app.create_accounts(&["apples", "pears", "plums"], 5).await;
    let order = json!({"ops": [
        {"counter": "apples", "by": -2}, {"counter": "pears", "by": -3}, {"counter": "plums", "by": -6}
    ]});
    let problem = assert_problem(
        app.post_transaction("", order.clone()).await,
        409,
        "bound_violation",
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().starts_with("op 3:"),
        "{problem}"
    );
    for name in ["apples", "pears", "plums"] {
        assert_eq!(app.db_value(name).await, Some(5), "{name}");
    }
    let count = app.scalar("SELECT count(*) FROM transactions").await;
    assert_eq!(count, 0, "a refused transaction is not recorded");

    // The same order, line by line under savepoints: lines 1 and 2 apply, line 3 is reported.
    let mut each = order;
    each["atomic"] = json!(false);
    let r = app.post_transaction("", each).await;
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.unwrap();
    let results = body["results"].as_array().unwrap();
    assert_eq!(results[0]["applied"], true);
    assert_eq!(results[1]["applied"], true);
    assert_eq!(results[2]["applied"], false);
    assert_eq!(results[2]["error"]["code"], "bound_violation");
    assert_eq!(results[2]["error"]["status"], 409);
    assert_eq!(app.db_value("apples").await, Some(3));
    assert_eq!(app.db_value("pears").await, Some(2));
    assert_eq!(app.db_value("plums").await, Some(5));
}

#[tokio::test]
async fn a_non_atomic_op_that_overflows_is_rolled_back_to_its_savepoint_alone() {
    let app = spawn_app().await;
    app.create_counter("big", i64::MAX - 1).await;
    app.create_counter("small", 0).await;
    let r = app.post_transaction("",
        json!({"atomic": false, "ops": [
            {"counter": "small", "by": 1}, {"counter": "big", "by": 5}, {"counter": "small", "by": 1}
        ]}),
    )
    .await;
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["results"][1]["error"]["code"], "invalid");
    assert_eq!(body["results"][2]["previous"], 1);
    assert_eq!(app.db_value("small").await, Some(2));
    assert_eq!(app.db_value("big").await, Some(i64::MAX - 1));
}

#[tokio::test]
async fn a_missing_counter_is_404_naming_it_and_nothing_changes() {
    let app = spawn_app().await;
    app.create_accounts(&["alice"], 100).await;
    let r = app
        .post_transaction(
            "",
            json!({"ops": [{"counter": "alice", "by": -30}, {"counter": "nobody", "by": 30}]}),
        )
        .await;
    let problem = assert_problem(r, 404, "not_found").await;
    assert!(problem["detail"].as_str().unwrap().contains("'nobody'"));
    assert_eq!(app.db_value("alice").await, Some(100));
}

#[tokio::test]
async fn the_same_counter_twice_is_locked_once_and_applied_in_order() {
    let app = spawn_app().await;
    app.create_accounts(&["a"], 10).await;
    let r = app
        .post_transaction(
            "",
            json!({"ops": [{"counter": "a", "by": -1}, {"counter": "a", "by": -2}]}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["results"][0]["value"], 9);
    assert_eq!(body["results"][1]["previous"], 9);
    assert_eq!(body["results"][1]["value"], 7);
    assert_eq!(app.db_value("a").await, Some(7));
}
