//! The transaction workloads' accounts (or items): reset and read before the run, read again
//! after it (`PUT` and `GET /counters/{name}`), with bounded retries while the server drains.

use anyhow::{bail, Context, Result};
use futures_util::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::json;

use super::load::Client;

/// Counters reset or read at once.
const CONCURRENCY: usize = 32;
/// Attempts of one setup or verification read: right after a run whose requests timed out the
/// server may still be draining them.
const READ_ATTEMPTS: u32 = 5;

#[derive(Deserialize)]
struct Counter {
    value: i64,
    min: Option<i64>,
}

/// Sets every counter to `initial` with `min: 0` (creating it when missing) and reads it back.
pub(crate) async fn reset_and_read(
    client: &Client,
    names: &[String],
    initial: i64,
) -> Result<Vec<i64>> {
    futures_util::stream::iter(names.iter().cloned())
        .map(|name| async move {
            let url = format!("{}/counters/{name}", client.bases.next());
            let body = json!({"value": initial, "min": 0, "max": null});
            let status = client.http.put(&url).json(&body).send().await?.status();
            if !status.is_success() {
                bail!("resetting counter '{name}' answered {status}");
            }
            let counter = get(client, &name).await?;
            if counter.min != Some(0) {
                bail!(
                    "counter '{name}' has min {:?} after its reset, not 0",
                    counter.min
                );
            }
            Ok(counter.value)
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await
}

/// Reads every counter's value, in order.
pub(crate) async fn read_all(client: &Client, names: &[String]) -> Result<Vec<i64>> {
    futures_util::stream::iter(names.iter().cloned())
        .map(|name| async move { get(client, &name).await.map(|c| c.value) })
        .buffered(CONCURRENCY)
        .try_collect()
        .await
}

/// Reads one counter, retrying (bounded, with backoff) on a transport error or a 503.
async fn get(client: &Client, name: &str) -> Result<Counter> {
    let mut attempt = 1;
    loop {
        match get_once(client, name).await {
            Err(e) if attempt < READ_ATTEMPTS => {
                tracing::debug!(name, attempt, "reading a counter failed, retrying: {e:#}");
                tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

async fn get_once(client: &Client, name: &str) -> Result<Counter> {
    let response = client
        .http
        .get(format!("{}/counters/{name}", client.bases.next()))
        .send()
        .await
        .with_context(|| format!("cannot read counter '{name}'"))?;
    if !response.status().is_success() {
        bail!("reading counter '{name}' answered {}", response.status());
    }
    Ok(response.json().await?)
}
