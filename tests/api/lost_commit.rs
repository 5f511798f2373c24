//! A `COMMIT` whose answer is lost: rowlock reaches PostgreSQL through a TCP proxy that, on
//! command, closes rowlock's side of every open connection while PostgreSQL's side carries on
//! with what it was sent. A trigger makes the write of a counter take a second and a half, so the
//! cut lands after the statement and its `COMMIT` reached the server and before the answer came
//! back: the change commits, and rowlock must not call it "nothing was applied" (503).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::helpers::{database_port, spawn_app_via, TestApp};

/// A loopback TCP proxy to PostgreSQL whose open connections can all be cut at once.
struct Proxy {
    port: u16,
    cut: watch::Sender<u64>,
}

impl Proxy {
    async fn start(target_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, _) = watch::channel(0u64);
        let cuts = cut.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)).await else {
                    continue;
                };
                let mut cut = cuts.subscribe();
                cut.mark_unchanged();
                tokio::spawn(relay(client, server, cut));
            }
        });
        Self { port, cut }
    }

    /// Closes rowlock's side of every connection open now; PostgreSQL's side stays open until
    /// it has answered, and its answers are dropped.
    fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

async fn relay(client: TcpStream, server: TcpStream, mut cut: watch::Receiver<u64>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let cut_off = Arc::new(AtomicBool::new(false));
    let upstream = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = client_read.read(&mut buf).await {
            if n == 0 || server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        // Keep PostgreSQL's side open: it finishes what it was sent.
        std::future::pending::<()>().await;
    });
    let dropped = cut_off.clone();
    let downstream = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            tokio::select! {
                read = server_read.read(&mut buf) => match read {
                    Ok(n) if n > 0 => {
                        if !dropped.load(Ordering::Acquire) {
                            let _ = client_write.write_all(&buf[..n]).await;
                        }
                    }
                    _ => break,
                },
                changed = cut.changed(), if !dropped.load(Ordering::Acquire) => {
                    if changed.is_err() { break; }
                    dropped.store(true, Ordering::Release);
                    let _ = client_write.shutdown().await;
                }
            }
        }
    };
    downstream.await;
    upstream.abort();
}

/// Cuts rowlock's connections once one of its sessions sleeps in the trigger (watched through
/// `pg`, a connection opened before the write could start).
async fn cut_during_the_write(pg: &tokio_postgres::Client, proxy: &Proxy) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        // On Citus the trigger sleeps on a worker, in a session Citus opened for rowlock's.
        let sql = match crate::helpers::on_citus() {
            false => {
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = current_database() AND application_name LIKE 'rowlock/%'
                    AND wait_event = 'PgSleep'"
            }
            true => {
                "SELECT count(*) FROM citus_stat_activity
                  WHERE datname = current_database() AND wait_event = 'PgSleep'"
            }
        };
        let sleeping: i64 = pg.query_one(sql, &[]).await.unwrap().get(0);
        if sleeping > 0 {
            proxy.cut();
            return;
        }
        assert!(std::time::Instant::now() < deadline, "no write ever slept");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Sends `request`, cuts the connections while its write sleeps, and asserts its answer: 504
/// `outcome_unknown`, saying it committed.
async fn committed_but_lost(
    request: reqwest::RequestBuilder,
    watch: &tokio_postgres::Client,
    proxy: &Proxy,
) {
    let answer = tokio::spawn(async move {
        let r = request.send().await.unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    });
    cut_during_the_write(watch, proxy).await;
    let (status, body) = answer.await.unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (504, Some("outcome_unknown")),
        "{body}"
    );
    assert!(
        body["detail"].as_str().unwrap().contains("committed"),
        "{body}"
    );
}

/// rowlock on the test's database, connected to it through a [`Proxy`].
async fn app_behind_proxy(tune: impl FnOnce(&mut rowlock::cli::ServeArgs)) -> (TestApp, Proxy) {
    let proxy = Proxy::start(database_port()).await;
    let (direct, proxied) = (
        format!(":{}/", database_port()),
        format!(":{}/", proxy.port),
    );
    let app = spawn_app_via(tune, |url| url.replace(&direct, &proxied)).await;
    (app, proxy)
}

#[tokio::test]
async fn a_group_whose_commit_answer_is_lost_is_answered_as_committed() {
    let (app, proxy) = app_behind_proxy(|args| args.group.group_concurrency = 1).await;
    app.create_counter("x", 0).await;
    app.create_counter("y", 0).await;
    app.slow_writes_of("x", 1.5).await;
    let requests = (0..2).map(|_| app.increment_request("x", 1)).collect();
    let (holds_x, grouped) = app.one_group_waiting_for_x(requests).await;
    let watch = app.pg().await;
    holds_x.batch_execute("COMMIT").await.unwrap();
    cut_during_the_write(&watch, &proxy).await;

    let mut values = Vec::new();
    for r in grouped {
        let (status, body) = r.await.unwrap();
        assert_eq!(status, 200, "the group committed: {body}");
        values.push(body["value"].as_i64().unwrap());
    }
    values.sort_unstable();
    assert_eq!(values, vec![1, 2]);
    assert_eq!(app.db_value("x").await, Some(2));
}

#[tokio::test]
async fn a_lone_increment_whose_answer_is_lost_is_looked_up_never_503() {
    let (app, proxy) = app_behind_proxy(|_| {}).await;
    app.create_counter("x", 0).await;
    app.slow_writes_of("x", 1.5).await;
    let watch = app.pg().await;
    let request = app
        .http
        .post(app.url("/counters/x/increment"))
        .json(&json!({"by": 1}));
    // Its id was read before anything was locked: looked up, it committed, but the statement's
    // result (the value it wrote) was lost with the connection.
    committed_but_lost(request, &watch, &proxy).await;
    app.wait_until("SELECT value FROM counters WHERE name = 'x'", 1)
        .await;
}

/// An increment whose `COMMIT` is refused (here by a deferred constraint trigger, as a
/// serialization failure would be) changed nothing and must not be answered 200: the answer
/// waits for the `COMMIT`'s, on every path.
#[tokio::test]
async fn a_change_refused_at_commit_is_never_answered_200() {
    let app = crate::helpers::spawn_app().await;
    app.create_counter("d", 0).await;
    let pg = app.pg().await;
    crate::helpers::allow_triggers(&pg).await;
    pg.batch_execute(
        "CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'refused at commit' USING ERRCODE = 'serialization_failure';
         END $$",
    )
    .await
    .unwrap();
    pg.batch_execute(
        "CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER UPDATE ON counters
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
         WHEN (NEW.name = 'd') EXECUTE FUNCTION refuse_at_commit()",
    )
    .await
    .unwrap();
    for query in [
        "lock=wait",
        "lock=nowait",
        "lock=wait&group=off",
        "lock=none",
    ] {
        let r = app.increment("d", query, 1).await;
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        assert_ne!(status, 200, "{query}: {body}");
        assert!(status == 409 || status == 503, "{query}: {status} {body}");
    }
    assert_eq!(app.db_value("d").await, Some(0));
}

#[tokio::test]
async fn a_pipelined_transaction_whose_commit_answer_is_lost_is_never_503() {
    let (app, proxy) = app_behind_proxy(|_| {}).await;
    app.create_counter("x", 0).await;
    app.create_counter("z", 0).await;
    app.slow_writes_of("z", 1.5).await;
    let watch = app.pg().await;
    // Alone (repeatable read), as `BEGIN`, its settings with `txid_current()`, the statement
    // and `COMMIT` in one pipeline: the write sleeps, the COMMIT waits behind it on the server.
    let request = app
        .http
        .post(app.url("/transactions?isolation=repeatable_read"))
        .json(&json!({"ops": [{"counter": "x", "by": -5}, {"counter": "z", "by": 5}]}));
    // Looked up by its id: committed, but the statement's result was lost with it.
    committed_but_lost(request, &watch, &proxy).await;
    assert_eq!(app.db_value("z").await, Some(5));
    assert_eq!(app.db_value("x").await, Some(-5));
}
