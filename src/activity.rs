//! Which counters change most right now, as this process sees them (for the dashboard): the
//! successful changes of each counter in each of the last ten seconds.
//!
//! Bounded: each second tracks at most [`MAX_NAMES`] counters (a flood of new names is not
//! counted past that), and only the last ten seconds are kept.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Seconds the rate is taken over.
const WINDOW: u64 = 10;
/// Counters tracked per second.
pub const MAX_NAMES: usize = 10_000;

/// Changes per counter in one-second buckets.
pub struct CounterActivity {
    started: Instant,
    /// `(second, changes by name)`, indexed by `second % WINDOW`.
    seconds: Mutex<Vec<(u64, HashMap<String, u32>)>>,
}

impl Default for CounterActivity {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            seconds: Mutex::new((0..WINDOW).map(|_| (u64::MAX, HashMap::new())).collect()),
        }
    }
}

impl CounterActivity {
    /// Counts one committed change of counter `name`.
    pub fn record(&self, name: &str) {
        let now = self.started.elapsed().as_secs();
        let mut seconds = self.lock();
        let (second, changes) = &mut seconds[(now % WINDOW) as usize];
        if *second != now {
            *second = now;
            changes.clear();
        }
        if let Some(n) = changes.get_mut(name) {
            *n = n.saturating_add(1);
        } else if changes.len() < MAX_NAMES {
            let _ = changes.insert(name.to_owned(), 1);
        }
    }

    /// The `n` counters with the most changes per second over the last ten seconds, busiest
    /// first.
    pub fn busiest(&self, n: usize) -> Vec<(String, f64)> {
        let now = self.started.elapsed().as_secs();
        let mut totals: HashMap<&str, u64> = HashMap::new();
        let seconds = self.lock();
        for (second, changes) in seconds.iter() {
            if *second <= now && now - *second < WINDOW {
                for (name, count) in changes {
                    *totals.entry(name.as_str()).or_default() += u64::from(*count);
                }
            }
        }
        let mut rates: Vec<(String, f64)> = totals
            .into_iter()
            .map(|(name, total)| (name.to_owned(), total as f64 / WINDOW as f64))
            .collect();
        rates.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        rates.truncate(n);
        rates
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, HashMap<String, u32>)>> {
        // Never held across an await; every update leaves the buckets consistent.
        self.seconds.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busiest_counters_come_first_and_names_are_bounded() {
        let activity = CounterActivity::default();
        for _ in 0..30 {
            activity.record("hot");
        }
        activity.record("cold");
        let busiest = activity.busiest(5);
        assert_eq!(busiest[0], ("hot".to_owned(), 3.0));
        assert_eq!(busiest[1], ("cold".to_owned(), 0.1));
        for i in 0..MAX_NAMES + 50 {
            activity.record(&format!("n{i}"));
        }
        assert!(activity.lock().iter().all(|(_, c)| c.len() <= MAX_NAMES));
    }
}
