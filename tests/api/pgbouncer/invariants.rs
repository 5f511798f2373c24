//! Three instances behind pgbouncer, by hand: counters in every lock mode, transfers, jobs,
//! idempotency keys, leases and fencing, `max_running` and long polls, each across instances.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Instances};

#[tokio::test]
async fn three_instances_behind_pgbouncer_in_transaction_mode_keep_every_invariant() {
    let app = spawn_app().await;
    let bouncer = app.start_pgbouncer().await;
    let servers = Instances::start(3, bouncer.url(), &app.db_url).await;
    let http = &servers.http;

    // Counters: 48 clients × 25 increments of one hot counter, round-robin over the instances,
    // in every lock mode: the counter ends at exactly the acknowledged sum.
    assert_eq!(
        servers.put(0, "/counters/hot", json!({"value": 0})).await,
        201
    );
    let modes = [
        "",
        "?lock=none",
        "?group=off",
        "?lock=nowait",
        "?lock=skip_locked",
        "?isolation=serializable",
    ];
    let clients = (0..48).map(|c| {
        let servers = &servers;
        async move {
            let mut acked = 0i64;
            for k in 0..25 {
                let path = format!("/counters/hot/increment{}", modes[c % 6]);
                let (status, body) = servers.post(c + k, &path, json!({"by": 1})).await;
                match status {
                    200 => acked += 1,
                    409 | 423 => {}
                    other => panic!("increment answered {other}: {body}"),
                }
            }
            acked
        }
    });
    let acked: i64 = join_all(clients).await.into_iter().sum();
    assert!(acked > 600, "{acked} increments acknowledged");
    assert_eq!(app.db_value("hot").await, Some(acked));

    // Transfers between 10 accounts: the sum never moves and no balance goes negative.
    for a in 0..10 {
        let body = json!({"value": 100, "min": 0});
        assert_eq!(
            servers.put(a, &format!("/counters/acct{a}"), body).await,
            201
        );
    }
    let transfers = (0..32).map(|c| {
        let servers = &servers;
        async move {
            for k in 0..20 {
                let (from, to) = ((c * 7 + k) % 10, (c * 3 + k * 5 + 1) % 10);
                if from == to {
                    continue;
                }
                let ops = json!({"ops": [
                    {"counter": format!("acct{from}"), "by": -(((c + k) % 30) as i64 + 1)},
                    {"counter": format!("acct{to}"), "by": ((c + k) % 30) as i64 + 1}]});
                let (status, body) = servers.post(c + k, "/transactions", ops).await;
                assert!(
                    matches!(status, 200 | 409),
                    "transfer answered {status}: {body}"
                );
            }
        }
    });
    join_all(transfers).await;
    let total = app
        .scalar("SELECT sum(value)::bigint FROM counters WHERE name LIKE 'acct%'")
        .await;
    assert_eq!(total, 1000);
    let negative = app
        .scalar("SELECT count(*) FROM counters WHERE name LIKE 'acct%' AND value < 0")
        .await;
    assert_eq!(negative, 0);

    // Jobs: 300 jobs, 12 workers claiming with piggy-backed completions round-robin over the
    // instances: every job completed exactly once.
    let batch: Vec<Value> = (0..300).map(|i| json!({"payload": {"n": i}})).collect();
    let (status, _) = servers.post(0, "/queues/work/jobs", json!(batch)).await;
    assert_eq!(status, 201);
    let workers = (0..12).map(|w| {
        let servers = &servers;
        async move {
            let (mut finished, mut acknowledged) = (Vec::<Value>::new(), 0usize);
            for k in 0.. {
                let body = json!({"limit": 5, "complete": finished});
                let (status, answer) = servers.post(w + k, "/queues/work/claim", body).await;
                assert_eq!(status, 200, "{answer}");
                let completed = answer["completed"].as_array().unwrap();
                assert!(completed.iter().all(|r| r["status"] == 200), "{answer}");
                acknowledged += completed.len();
                let jobs = answer["jobs"].as_array().unwrap();
                if jobs.is_empty() {
                    return acknowledged;
                }
                finished = jobs
                    .iter()
                    .map(|j| json!({"id": j["id"], "token": j["token"]}))
                    .collect();
            }
            unreachable!()
        }
    });
    let acknowledged: usize = join_all(workers).await.into_iter().sum();
    assert_eq!(acknowledged, 300);
    let once = app
        .scalar("SELECT count(*) FROM jobs WHERE queue = 'work' AND state = 'completed' AND attempt = 1")
        .await;
    assert_eq!(once, 300);

    // An idempotency key sent to one instance is replayed by another.
    let send = |i: usize| {
        http.post(servers.at(i, "/counters/hot/increment"))
            .header("idempotency-key", "across-instances")
            .json(&json!({"by": 5}))
            .send()
    };
    let first = send(1).await.unwrap();
    assert_eq!(first.status(), 200);
    let first_body = first.text().await.unwrap();
    let again = send(2).await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.text().await.unwrap(), first_body);
    assert_eq!(app.db_value("hot").await, Some(acked + 5));

    // A lease held through one instance is held for all of them.
    let (status, lease) = servers
        .post(0, "/locks/report", json!({"owner": "a", "ttl_ms": 30000}))
        .await;
    assert_eq!(status, 201, "{lease}");
    let (status, _) = servers
        .post(1, "/locks/report", json!({"owner": "b", "ttl_ms": 30000}))
        .await;
    assert_eq!(status, 423);

    // Fencing across instances: once the lease changed hands through another instance, the old
    // token is refused by a third.
    let (status, old) = servers
        .post(0, "/locks/fence", json!({"owner": "a", "ttl_ms": 100}))
        .await;
    assert_eq!(status, 201, "{old}");
    let (status, new) = servers
        .post(
            1,
            "/locks/fence",
            json!({"owner": "b", "ttl_ms": 30000, "wait_ms": 10000}),
        )
        .await;
    assert_eq!(status, 201, "{new}");
    assert!(new["token"].as_i64() > old["token"].as_i64(), "{old} {new}");
    let fenced = |token: &Value| {
        http.post(servers.at(2, "/counters/hot/increment"))
            .header("fencing-token", format!("fence={token}"))
            .json(&json!({"by": 1}))
            .send()
    };
    assert_eq!(fenced(&old["token"]).await.unwrap().status(), 409);
    assert_eq!(fenced(&new["token"]).await.unwrap().status(), 200);

    // max_running across instances: 6 concurrent claims of up to 5 jobs leave at most 2 running.
    assert_eq!(
        servers
            .put(0, "/queues/limited", json!({"max_running": 2}))
            .await,
        200
    );
    let batch: Vec<Value> = (0..10).map(|i| json!({"payload": i})).collect();
    let (status, _) = servers.post(1, "/queues/limited/jobs", json!(batch)).await;
    assert_eq!(status, 201);
    let claims = (0..6).map(|c| servers.post(c, "/queues/limited/claim", json!({"limit": 5})));
    let claimed: usize = join_all(claims)
        .await
        .iter()
        .map(|(status, jobs)| match status {
            200 => jobs.as_array().map_or(0, Vec::len),
            _ => 0,
        })
        .sum();
    assert_eq!(claimed, 2);
    let running = app
        .scalar("SELECT count(*) FROM jobs WHERE queue = 'limited' AND state = 'running'")
        .await;
    assert_eq!(running, 2);

    // A long poll on an instance without LISTEN (it looks again on a timer) is answered when
    // another instance enqueues.
    let waiting = tokio::spawn(servers.post(2, "/queues/later/claim", json!({"wait_ms": 20000})));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = http
            .get(servers.at(2, "/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.lines().any(|l| l == "rowlock_waiters 1") {
            break;
        }
        assert!(Instant::now() < deadline, "the claim never waited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let enqueued = Instant::now();
    let (status, _) = servers
        .post(0, "/queues/later/jobs", json!({"payload": 1}))
        .await;
    assert_eq!(status, 201);
    let (status, claimed) = waiting.await.unwrap();
    assert_eq!(status, 200, "{claimed}");
    assert!(
        enqueued.elapsed() < Duration::from_secs(5),
        "woken by the poll, not the deadline"
    );

    drop(servers);
    drop(bouncer);
}
