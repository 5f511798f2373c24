//! How large the group-commit groups of one run were, from `rowlock serve`'s own `/metrics`.
//!
//! The histogram `rowlock_group_size` (requests per group) is scraped right before and right
//! after a run; the difference of its cumulative bucket counts is that run's distribution. A
//! percentile is reported as the upper bound of the bucket it falls in (1, 2, 4, … 2048), the
//! mean as Δsum ÷ Δcount.

use serde::{Deserialize, Serialize};

const METRIC: &str = "rowlock_group_size";

/// `rowlock_group_size` at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Scrape {
    /// (upper bound, cumulative count), in the order exported (ascending, `+Inf` last).
    buckets: Vec<(f64, u64)>,
    sum: f64,
    count: u64,
}

/// Group sizes (requests per group) during one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct GroupSizes {
    /// Groups committed (or ended) during the run.
    pub groups: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    /// The upper bound of the largest bucket any group fell in.
    pub max_bucket: f64,
}

/// Scrapes `rowlock_group_size` from `{base}/metrics`; `None` (with a warning) when it cannot
/// be read.
pub(crate) async fn scrape(http: &reqwest::Client, base: &str) -> Option<Scrape> {
    scrape_histogram(http, base, METRIC).await
}

/// Scrapes the histogram `metric` from `{base}/metrics` (e.g. `rowlock_job_group_acks`).
pub(crate) async fn scrape_histogram(
    http: &reqwest::Client,
    base: &str,
    metric: &str,
) -> Option<Scrape> {
    let answer = async {
        let response = http.get(format!("{base}/metrics")).send().await?;
        response.error_for_status()?.text().await
    }
    .await;
    match answer {
        Ok(text) => Some(parse_histogram(&text, metric)),
        Err(e) => {
            eprintln!("warning: cannot scrape {base}/metrics: {e}");
            None
        }
    }
}

/// The group sizes between two scrapes (`None` when either is missing or no group ended).
pub(crate) fn between(before: Option<&Scrape>, after: Option<&Scrape>) -> Option<GroupSizes> {
    after?.since(before?)
}

/// The histogram `metric` out of a Prometheus (or OpenMetrics) text exposition.
pub(crate) fn parse_histogram(text: &str, metric: &str) -> Scrape {
    let mut scrape = Scrape::default();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        let value = |s: &str| s.split_whitespace().next().map(str::to_owned);
        if let Some(rest) = rest.strip_prefix("_bucket{") {
            let Some((labels, tail)) = rest.split_once('}') else {
                continue;
            };
            let le = labels
                .split(',')
                .find_map(|l| l.trim().strip_prefix("le=\""))
                .and_then(|l| l.strip_suffix('"'))
                .and_then(|l| match l {
                    "+Inf" => Some(f64::INFINITY),
                    l => l.parse().ok(),
                });
            let n = value(tail).and_then(|v| v.parse::<f64>().ok());
            if let (Some(le), Some(n)) = (le, n) {
                scrape.buckets.push((le, n as u64));
            }
        } else if let Some(rest) = rest.strip_prefix("_sum ") {
            scrape.sum = value(rest).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        } else if let Some(rest) = rest.strip_prefix("_count ") {
            scrape.count = value(rest)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0) as u64;
        }
    }
    scrape
        .buckets
        .sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    scrape
}

impl Scrape {
    /// The distribution of the groups that ended since `earlier`.
    pub(crate) fn since(&self, earlier: &Self) -> Option<GroupSizes> {
        let groups = self.count.checked_sub(earlier.count).filter(|&n| n > 0)?;
        // Cumulative counts per bucket bound, minus the earlier ones.
        let deltas: Vec<(f64, u64)> = self
            .buckets
            .iter()
            .map(|&(le, n)| {
                let then = earlier
                    .buckets
                    .iter()
                    .find(|b| b.0 == le)
                    .map_or(0, |b| b.1);
                (le, n.saturating_sub(then))
            })
            .collect();
        let quantile = |q: f64| {
            let rank = ((q * groups as f64).ceil() as u64).max(1);
            deltas
                .iter()
                .find(|b| b.1 >= rank)
                .map_or(f64::INFINITY, |b| b.0)
        };
        let max_bucket = deltas
            .iter()
            .find(|b| b.1 >= groups)
            .map_or(f64::INFINITY, |b| b.0);
        Some(GroupSizes {
            groups,
            mean: (self.sum - earlier.sum) / groups as f64,
            p50: quantile(0.5),
            p90: quantile(0.9),
            p99: quantile(0.99),
            max_bucket,
        })
    }
}

/// A bucket bound for the table: `-` when there were no groups, `>2048` past the last bound.
pub(crate) fn show(value: Option<f64>) -> String {
    match value {
        None => "-".into(),
        Some(v) if v.is_infinite() => ">2048".into(),
        Some(v) => format!("{v:.0}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rowlock_group_size` out of a Prometheus (or OpenMetrics) text exposition.
    fn parse(text: &str) -> Scrape {
        parse_histogram(text, METRIC)
    }

    fn exposition(buckets: &[(&str, u64)], sum: f64, count: u64) -> String {
        let mut text = String::from(
            "# HELP rowlock_group_size Requests\n# TYPE rowlock_group_size histogram\n",
        );
        text += &format!("rowlock_group_size_sum {sum}\nrowlock_group_size_count {count}\n");
        for (le, n) in buckets {
            text += &format!("rowlock_group_size_bucket{{le=\"{le}\"}} {n}\n");
        }
        text + "rowlock_group_wait_seconds_count 7\n# EOF\n"
    }

    #[test]
    fn percentiles_come_from_the_bucket_deltas() {
        let before = parse(&exposition(
            &[("1.0", 10), ("2.0", 10), ("4.0", 10), ("+Inf", 10)],
            10.0,
            10,
        ));
        // Since then: 50 groups of 1, 40 of 2, 10 of 3 or 4.
        let after = parse(&exposition(
            &[("1.0", 60), ("2.0", 100), ("4.0", 110), ("+Inf", 110)],
            10.0 + 50.0 + 80.0 + 35.0,
            110,
        ));
        let sizes = after.since(&before).unwrap();
        assert_eq!(sizes.groups, 100);
        assert_eq!((sizes.p50, sizes.p90, sizes.p99), (1.0, 2.0, 4.0));
        assert_eq!(sizes.max_bucket, 4.0);
        assert!((sizes.mean - 1.65).abs() < 1e-9);
    }

    #[test]
    fn no_new_groups_is_none() {
        let s = parse(&exposition(&[("1.0", 3), ("+Inf", 3)], 3.0, 3));
        assert_eq!(s.since(&s), None);
        assert_eq!(between(None, Some(&s)), None);
        assert_eq!(show(None), "-");
        assert_eq!(show(Some(f64::INFINITY)), ">2048");
    }
}
