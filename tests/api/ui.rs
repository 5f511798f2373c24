//! The dashboard at `/ui`, driven in headless Chromium (Debian's `chromium`, through
//! `playwright-core` from npm; `tests/ui/dashboard.mjs` does the clicking and the DOM checks).
//!
//! The Rust side sets up, through the API and a plain connection, everything the page must show:
//! a counter, a queue with queued and dead jobs, a held lease, and a request blocked by a session
//! holding a counter's row. The browser side checks the page shows them, sees an increment within
//! 3 s, pauses the queue from the page, and writes a screenshot whose path this test prints.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, TestApp};

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui")
}

/// The browser: `CHROMIUM`, else Debian's.
fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| {
            ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
        })
        .expect("headless Chromium is needed: apt install chromium (or set CHROMIUM)")
}

/// Installs `playwright-core` (no browser download) next to the script, once.
fn install_driver() {
    if ui_dir().join("node_modules/playwright-core").exists() {
        return;
    }
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(ui_dir())
        .status()
        .expect("npm is needed: apt install nodejs npm");
    assert!(status.success(), "npm install in tests/ui failed");
}

#[tokio::test]
async fn the_dashboard_shows_counters_queues_leases_and_who_blocks_whom_and_acts() {
    install_driver();
    let browser = chromium();
    let app = spawn_app().await;
    app.create_counter("stock", 42).await;
    app.create_counter("held", 0).await;
    // Some traffic, so that the busiest counter and the rates have something to show.
    for _ in 0..30 {
        assert_eq!(app.increment("stock", "", 1).await.status(), 200);
    }

    // A queue with one dead job and three queued ones.
    let doomed = app
        .enqueue(
            "mail",
            json!("doomed"),
            json!({"max_attempts": 1, "priority": 9}),
        )
        .await;
    let claimed = app.claim("mail", json!({"limit": 1})).await;
    assert_eq!(claimed[0]["id"].as_i64(), Some(doomed));
    let token = claimed[0]["token"].as_str().unwrap();
    let failed = app
        .post(
            &format!("/jobs/{doomed}/fail"),
            json!({"token": token, "error": "smtp"}),
        )
        .await;
    assert_eq!(failed.status(), 200);
    for n in 0..3 {
        app.enqueue("mail", json!({"n": n}), json!({})).await;
    }

    // A held lease.
    let lease = app
        .post(
            "/locks/report",
            json!({"owner": "worker-a", "ttl_ms": 120000}),
        )
        .await;
    assert_eq!(lease.status(), 201);
    let lease: Value = lease.json().await.unwrap();

    // A session holding counter `held`, and a request waiting for it.
    let holder = app.pg().await;
    holder.batch_execute("BEGIN").await.unwrap();
    holder
        .execute("SELECT * FROM counters WHERE name = 'held' FOR UPDATE", &[])
        .await
        .unwrap();
    let blocker_pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let blocked = {
        let request = app
            .http
            .post(app.url("/counters/held/increment?lock_timeout_ms=60000"))
            .json(&json!({"by": 1}));
        tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
    };
    app.wait_for_lock_waiters(1).await;

    let screenshot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui/dashboard.png");
    std::fs::create_dir_all(screenshot.parent().unwrap()).unwrap();
    let expect = json!({
        "counter": "stock", "value": 72, "queue": "mail", "counts": {"queued": 3, "dead": 1},
        "lease_key": "report", "lease_owner": "worker-a", "lease_token": lease["token"],
        "blocked_counter": "held", "blocker_pid": blocker_pid,
        // On Citus the row lock is waited for on a worker, whose table the coordinator
        // does not see.
        "wait_names": if crate::helpers::on_citus() { "on a worker" } else { "counters" },
    });
    let script = ui_dir().join("dashboard.mjs");
    let (base, env_expect) = (app.address.clone(), expect.to_string());
    let (shot, browser_path) = (screenshot.clone(), browser.clone());
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .env("BASE_URL", base)
            .env("EXPECT", env_expect)
            .env("SCREENSHOT", shot)
            .env("CHROMIUM", browser_path)
            .output()
            .expect("node is needed: apt install nodejs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "dashboard checks failed:\n{stdout}\n{stderr}"
    );
    println!("dashboard screenshot: {}", screenshot.display());

    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(blocked.await.unwrap().unwrap(), 200);
    assert_eq!(app.db_value("stock").await, Some(73));
}

#[tokio::test]
async fn with_an_ops_token_the_dashboard_data_needs_it_and_the_page_asks_for_it() {
    let app: TestApp = spawn_app_with(|args| args.auth.ops_token = Some("ops-secret".into())).await;
    let get = |path: &str, token: Option<&str>| {
        let mut request = app.http.get(app.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    for path in ["/debug/dashboard", "/debug/locks", "/metrics"] {
        assert_eq!(get(path, None).await.unwrap().status(), 401, "{path}");
        assert_eq!(
            get(path, Some("wrong")).await.unwrap().status(),
            401,
            "{path}"
        );
        assert_eq!(
            get(path, Some("ops-secret")).await.unwrap().status(),
            200,
            "{path}"
        );
    }
    // The page holds no data: it loads without the token, and asks for it.
    let page = get("/ui", None).await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("id=\"login\"") && html.contains("Bearer"),
        "the page asks for a token"
    );
    // Its lists, with the token.
    let snapshot: Value = get("/debug/dashboard?search=st", Some("ops-secret"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for list in ["counters", "queues", "leases", "waiting"] {
        assert!(snapshot[list].is_array(), "{snapshot}");
    }
}
