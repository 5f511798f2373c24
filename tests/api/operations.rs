//! Health, readiness, request ids, and `rowlock serve` starting its own PostgreSQL.

use std::process::{Child, Command};
use std::time::Duration;

use crate::helpers::{free_port, serve_process, spawn_app};

#[tokio::test]
async fn healthz_and_readyz_answer_200() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let r = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
}

#[tokio::test]
async fn a_request_id_is_echoed_or_generated() {
    let app = spawn_app().await;
    let r = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "req-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "req-42");
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert!(!r.headers()["x-request-id"].is_empty());
}

/// `rowlock serve` without DATABASE_URL, on `data_dir`; returns once /readyz answers 200.
async fn serve_locally(data_dir: &std::path::Path, port: u16) -> Child {
    let data_dir = data_dir.to_str().expect("a UTF-8 temp path");
    serve_process(
        port,
        &[("ROWLOCK_DATA_DIR", data_dir)],
        Duration::from_secs(60),
    )
    .await
}

fn terminate(mut child: Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = child.wait().expect("wait for rowlock serve");
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
}

#[tokio::test]
async fn serve_without_database_url_runs_its_own_postgres_and_keeps_data_across_restarts() {
    let dir = std::env::temp_dir().join(format!("rowlock-serve-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data_dir = dir.join("pg");
    let http = reqwest::Client::new();

    let port = free_port();
    let first = serve_locally(&data_dir, port).await;
    assert!(
        data_dir.join("PG_VERSION").exists(),
        "initdb ran in the data dir"
    );
    let r = http
        .put(format!("http://127.0.0.1:{port}/counters/kept"))
        .json(&serde_json::json!({"value": 41}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .post(format!("http://127.0.0.1:{port}/counters/kept/increment"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    terminate(first);
    assert!(
        !data_dir.join("postmaster.pid").exists(),
        "the local PostgreSQL is stopped with rowlock"
    );

    let port = free_port();
    let second = serve_locally(&data_dir, port).await;
    let body: serde_json::Value = http
        .get(format!("http://127.0.0.1:{port}/counters/kept"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["value"], 42);
    terminate(second);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_data_dir_the_postgres_user_cannot_reach_is_refused_with_advice() {
    // Only root hands the cluster to another OS user; as anyone else there is nothing to check.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let closed = std::env::temp_dir().join(format!("rowlock-closed-{}", std::process::id()));
    std::fs::create_dir_all(&closed).unwrap();
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rowlock"))
        .arg("migrate")
        .env_remove("DATABASE_URL")
        .env("ROWLOCK_DATA_DIR", closed.join("pg"))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&closed);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot enter"), "{stderr}");
}
