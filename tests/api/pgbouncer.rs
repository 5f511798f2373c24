//! Scale-out: several `rowlock serve` processes behind pgbouncer in transaction pooling mode
//! (`--statement-cache off`), every invariant kept across them.
//!
//! pgbouncer (Debian's 1.18, installed by `.ci/run`) runs as a real process in front of the test
//! database, with a pool far smaller than the instances' pools, so transactions of different
//! instances share server connections: a statement or setting that outlived its transaction
//! would surface here as an error or a lost update.

use std::process::Child;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use rowlock::hammer::WorkloadKind as Workload;
use rowlock::hammer::{self, transfer, HammerArgs, Verdict};
use rowlock::local_cluster::Pgbouncer;
use serde_json::{json, Value};

use crate::helpers::{free_port, serve_process, spawn_app, TestApp};

/// pgbouncer in transaction mode in front of the test database, with six server connections:
/// far fewer than the instances' pools.
async fn pgbouncer(app: &TestApp) -> Pgbouncer {
    Pgbouncer::start(&app.db_url, 6)
        .await
        .expect("start pgbouncer (apt-get install pgbouncer)")
}

/// `n` rowlock processes on `url` with the statement cache off; the first listens for
/// notifications on the direct `listen_url`, the others poll.
async fn instances(n: usize, url: &str, listen_url: &str) -> Vec<(String, Child)> {
    let mut started = Vec::new();
    for i in 0..n {
        let port = free_port();
        let mut env = vec![
            ("DATABASE_URL", url),
            ("ROWLOCK_STATEMENT_CACHE", "off"),
            ("ROWLOCK_POOL_SIZE", "8"),
        ];
        if i == 0 {
            env.push(("ROWLOCK_LISTEN_DATABASE_URL", listen_url));
        }
        let child = serve_process(port, &env, Duration::from_secs(30)).await;
        started.push((format!("http://127.0.0.1:{port}"), child));
    }
    started
}

fn stop(instances: Vec<(String, Child)>) {
    for (_, mut child) in instances {
        let _ = child.kill();
        let _ = child.wait();
    }
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let r = http.post(url).json(&body).send().await.expect("POST");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn three_instances_behind_pgbouncer_in_transaction_mode_keep_every_invariant() {
    let app = spawn_app().await;
    let bouncer = pgbouncer(&app).await;
    let servers = instances(3, bouncer.url(), &app.db_url).await;
    let bases: Vec<String> = servers.iter().map(|(b, _)| b.clone()).collect();
    let http = reqwest::Client::new();
    let at = |i: usize, path: &str| format!("{}{path}", bases[i % bases.len()]);

    // Counters: 48 clients × 25 increments of one hot counter, round-robin over the instances,
    // in every lock mode: the counter ends at exactly the acknowledged sum.
    let r = http
        .put(at(0, "/counters/hot"))
        .json(&json!({"value": 0}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let modes = [
        "",
        "?lock=none",
        "?group=off",
        "?lock=nowait",
        "?lock=skip_locked",
        "?isolation=serializable",
    ];
    let clients = (0..48).map(|c| {
        let (http, at) = (http.clone(), &at);
        async move {
            let mut acked = 0i64;
            for k in 0..25 {
                let url = at(c + k, &format!("/counters/hot/increment{}", modes[c % 6]));
                let (status, body) = post(&http, url, json!({"by": 1})).await;
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
        let url = at(a, &format!("/counters/acct{a}"));
        let r = http
            .put(url)
            .json(&json!({"value": 100, "min": 0}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    let transfers = (0..32).map(|c| {
        let (http, at) = (http.clone(), &at);
        async move {
            for k in 0..20 {
                let (from, to) = ((c * 7 + k) % 10, (c * 3 + k * 5 + 1) % 10);
                if from == to {
                    continue;
                }
                let ops = json!({"ops": [
                    {"counter": format!("acct{from}"), "by": -(((c + k) % 30) as i64 + 1)},
                    {"counter": format!("acct{to}"), "by": ((c + k) % 30) as i64 + 1}]});
                let (status, body) = post(&http, at(c + k, "/transactions"), ops).await;
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
    let (status, _) = post(&http, at(0, "/queues/work/jobs"), json!(batch)).await;
    assert_eq!(status, 201);
    let workers = (0..12).map(|w| {
        let (http, at) = (http.clone(), &at);
        async move {
            let (mut finished, mut acknowledged) = (Vec::<Value>::new(), 0usize);
            for k in 0.. {
                let body = json!({"limit": 5, "complete": finished});
                let (status, answer) = post(&http, at(w + k, "/queues/work/claim"), body).await;
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
        http.post(at(i, "/counters/hot/increment"))
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
    let (status, lease) = post(
        &http,
        at(0, "/locks/report"),
        json!({"owner": "a", "ttl_ms": 30000}),
    )
    .await;
    assert_eq!(status, 201, "{lease}");
    let (status, _) = post(
        &http,
        at(1, "/locks/report"),
        json!({"owner": "b", "ttl_ms": 30000}),
    )
    .await;
    assert_eq!(status, 423);

    // Fencing across instances: once the lease changed hands through another instance, the old
    // token is refused by a third.
    let (status, old) = post(
        &http,
        at(0, "/locks/fence"),
        json!({"owner": "a", "ttl_ms": 100}),
    )
    .await;
    assert_eq!(status, 201, "{old}");
    let (status, new) = post(
        &http,
        at(1, "/locks/fence"),
        json!({"owner": "b", "ttl_ms": 30000, "wait_ms": 10000}),
    )
    .await;
    assert_eq!(status, 201, "{new}");
    assert!(new["token"].as_i64() > old["token"].as_i64(), "{old} {new}");
    let fenced = |token: &Value| {
        http.post(at(2, "/counters/hot/increment"))
            .header("fencing-token", format!("fence={token}"))
            .json(&json!({"by": 1}))
            .send()
    };
    assert_eq!(fenced(&old["token"]).await.unwrap().status(), 409);
    assert_eq!(fenced(&new["token"]).await.unwrap().status(), 200);

    // max_running across instances: 6 concurrent claims of up to 5 jobs leave at most 2 running.
    let r = http
        .put(at(0, "/queues/limited"))
        .json(&json!({"max_running": 2}))
        .send()
        .await;
    assert_eq!(r.unwrap().status(), 200);
    let batch: Vec<Value> = (0..10).map(|i| json!({"payload": i})).collect();
    let (status, _) = post(&http, at(1, "/queues/limited/jobs"), json!(batch)).await;
    assert_eq!(status, 201);
    let claims = (0..6).map(|c| post(&http, at(c, "/queues/limited/claim"), json!({"limit": 5})));
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
    let waiting = {
        let http = http.clone();
        let url = at(2, "/queues/later/claim");
        tokio::spawn(async move { post(&http, url, json!({"wait_ms": 20000})).await })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = http
            .get(at(2, "/metrics"))
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
    let (status, _) = post(&http, at(0, "/queues/later/jobs"), json!({"payload": 1})).await;
    assert_eq!(status, 201);
    let (status, claimed) = waiting.await.unwrap();
    assert_eq!(status, 200, "{claimed}");
    assert!(
        enqueued.elapsed() < Duration::from_secs(5),
        "woken by the poll, not the deadline"
    );

    stop(servers);
    drop(bouncer);
}

#[tokio::test]
async fn the_hammer_spreads_its_requests_over_three_instances_behind_pgbouncer_and_verifies_once() {
    let app = spawn_app().await;
    let bouncer = pgbouncer(&app).await;
    let servers = instances(3, bouncer.url(), &app.db_url).await;
    let urls: Vec<String> = servers.iter().map(|(b, _)| b.clone()).collect();
    let args = |workload: Workload| {
        let mut args = HammerArgs::new(urls[0].clone());
        args.url = urls.clone();
        args.workload = workload;
        args
    };

    // Counters: one hot counter, exact and linearizable across the instances.
    let mut counters = args(Workload::Counters);
    counters.counter = "spread-hot".into();
    counters.concurrency = 32;
    counters.requests = Some(1_500);
    counters.check_linearizable = true;
    let report = hammer::execute(&counters)
        .await
        .expect("counters hammer ran");
    assert_eq!(report.verification.verdict, Verdict::Pass, "{report}");
    assert_eq!(report.statuses.ok, 1_500, "{report}");
    assert_eq!(app.db_value("spread-hot").await, Some(1_500));

    // Transfers: the sum of the balances never moves.
    let mut transfers = args(Workload::Transfer);
    transfers.transfer.accounts = 10;
    transfers.concurrency = 16;
    transfers.requests = Some(600);
    let report = transfer::execute(&transfers)
        .await
        .expect("transfer hammer ran");
    assert_eq!(report.verdict, Verdict::Pass, "{report}");
    assert_eq!(report.checks.sum_before, report.checks.sum_after);

    // Jobs, with crashing workers: every job completed exactly once.
    let mut jobs = args(Workload::Jobs);
    jobs.jobs.workers = 8;
    jobs.jobs.jobs = 300;
    jobs.jobs.claim_limit = 3;
    jobs.jobs.crash_rate = 0.05;
    jobs.jobs.lease_ms = 300;
    let report = rowlock::hammer::jobs::execute(&jobs)
        .await
        .expect("jobs hammer ran");
    assert_eq!(report.verdict, Verdict::Pass, "{report}");
    assert_eq!(report.server_counts["completed"], 300);

    stop(servers);
    drop(bouncer);
}
