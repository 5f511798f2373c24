//! The PostgreSQL that rowlock starts itself asks every connection for a password, kept in a
//! file only its owner can read; a data directory from an earlier rowlock (trust) is upgraded.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rowlock::local_cluster::{Durability, LocalCluster, PASSWORD_FILE, SUPERUSER};
use tokio_postgres::NoTls;

use crate::helpers::connect;

/// A data directory of the test's own under the temporary directory, removed on drop.
struct DataDir(PathBuf);

impl DataDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "rowlock-auth-test-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        Self(dir)
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start(dir: &Path) -> LocalCluster {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || LocalCluster::start(&dir, Durability::Throwaway))
        .await
        .expect("start task")
        .expect("start the local cluster")
}

async fn stop(cluster: LocalCluster) {
    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .expect("stop task");
}

/// Connects as the superuser without a password; panics if that works, returns why not.
async fn refused_without_password(port: u16) -> String {
    let url = format!("postgres://{SUPERUSER}@127.0.0.1:{port}/postgres");
    match tokio_postgres::connect(&url, NoTls).await {
        Ok(_) => panic!("a connection without password was let in"),
        // The server asked for one ("password missing" on the client's side).
        Err(e) => format!("{e:?}"),
    }
}

#[tokio::test]
async fn the_local_cluster_refuses_a_connection_without_its_password() {
    let dir = DataDir::new();
    let cluster = start(&dir.0).await;

    let why = refused_without_password(cluster.port()).await;
    assert!(
        why.contains("password"),
        "refused for another reason: {why}"
    );
    let wrong = format!(
        "postgres://{SUPERUSER}:guess@127.0.0.1:{}/postgres",
        cluster.port()
    );
    assert!(tokio_postgres::connect(&wrong, NoTls).await.is_err());

    // The password rowlock uses is in a file only its owner can read.
    let file = dir.0.join(PASSWORD_FILE);
    let mode = std::fs::metadata(&file)
        .expect("password file")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "{} has mode {:o}",
        file.display(),
        mode
    );
    let password = std::fs::read_to_string(&file).expect("read the password");
    assert_eq!(password.trim(), cluster.password());
    let client = connect(&cluster.url("postgres")).await;
    let superuser: bool = client
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .expect("query")
        .get(0);
    assert!(superuser);
    drop(client);
    stop(cluster).await;
}

#[tokio::test]
async fn a_data_directory_that_trusted_loopback_gets_a_password_and_keeps_its_data() {
    let dir = DataDir::new();
    // Make the directory an earlier rowlock left: trust on loopback, a superuser without
    // password, no password file, and some data.
    let cluster = start(&dir.0).await;
    let client = connect(&cluster.url("postgres")).await;
    client
        .batch_execute(&format!(
            "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42);
             ALTER ROLE {SUPERUSER} PASSWORD NULL"
        ))
        .await
        .expect("prepare the old directory");
    drop(client);
    stop(cluster).await;
    std::fs::write(
        dir.0.join("pg_hba.conf"),
        "host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n",
    )
    .expect("write a trusting pg_hba.conf");
    std::fs::remove_file(dir.0.join(PASSWORD_FILE)).expect("remove the password file");

    let cluster = start(&dir.0).await;
    let why = refused_without_password(cluster.port()).await;
    assert!(
        why.contains("password"),
        "refused for another reason: {why}"
    );
    let client = connect(&cluster.url("postgres")).await;
    let kept: i32 = client
        .query_one("SELECT v FROM kept", &[])
        .await
        .expect("the old data")
        .get(0);
    assert_eq!(kept, 42);
    drop(client);
    stop(cluster).await;
}
