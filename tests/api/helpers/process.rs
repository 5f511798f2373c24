//! Servers run outside the test's own rowlock: a deliberately broken HTTP service, and the
//! `rowlock serve` binary as a process of its own.

use std::time::{Duration, Instant};

/// A test-only HTTP server on port 0 (a deliberately broken service the hammer must catch).
pub struct TestServer {
    pub address: String,
    handle: actix_web::dev::ServerHandle,
}

impl TestServer {
    /// Serves the routes `configure` registers, on two workers, until [`TestServer::stop`].
    pub fn start(
        configure: impl Fn(&mut actix_web::web::ServiceConfig) + Clone + Send + 'static,
    ) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let server =
            actix_web::HttpServer::new(move || actix_web::App::new().configure(configure.clone()))
                .workers(2)
                .listen(listener)
                .expect("listen")
                .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            address: format!("http://127.0.0.1:{port}"),
            handle,
        }
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

/// A free loopback port (for a `rowlock serve` process).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// `rowlock serve` (the binary) on `port` with the environment `env` (`DATABASE_URL` removed
/// unless `env` sets it); returns once `/readyz` answers 200 (within `ready_within`). The caller
/// stops it and waits for it.
#[allow(clippy::zombie_processes)] // every caller kills and waits for it
pub async fn serve_process(
    port: u16,
    env: &[(&str, &str)],
    ready_within: Duration,
) -> std::process::Child {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_rowlock"));
    command
        .arg("serve")
        .env_remove("DATABASE_URL")
        .env("ROWLOCK_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null());
    // With TEST_LOG set, the server's log shows with the test's output.
    if std::env::var("TEST_LOG").is_err() {
        command.stderr(std::process::Stdio::null());
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("start rowlock serve");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + ready_within;
    loop {
        let ready = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ready {
            return child;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rowlock serve never became ready");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
