//! The counter workload's virtual clients: each increments (`lock=…`, or `If-Match` with retries
//! on 412) until the run's budget is spent, and records what came back.
//!
//! Each client keeps its own latency histogram and history (merged at the end, no locking on the
//! hot path); only the per-second timeline and the progress counters are shared.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::linearizable::Op;
use crate::hammer::args::{HammerArgs, LockArg};
use crate::hammer::client::{Answer, Api};
use crate::hammer::load::{histogram, run_clients, Budget, Progress, Tickets};
use crate::hammer::report::StatusCounts;

/// What the load produced, before verification.
pub(crate) struct RunOutput {
    pub elapsed: Duration,
    pub statuses: StatusCounts,
    pub optimistic_retries: u64,
    /// Latency of each increment (all its attempts), in microseconds.
    pub latency: Histogram<u64>,
    pub timeline: Vec<Second>,
    /// Acknowledged increments with their timing, when linearizability is checked.
    pub history: Vec<Op>,
}

/// The increments that completed during one second of the run.
pub(crate) struct Second {
    pub completed: u64,
    pub acknowledged: u64,
    pub latency: Histogram<u64>,
}

struct Shared {
    api: Arc<Api>,
    tickets: Tickets,
    lock: LockArg,
    max_attempts: u32,
    spread: usize,
    record_history: bool,
    started: Instant,
    progress: Arc<Progress>,
    timeline: Mutex<Vec<Second>>,
}

/// The effect an increment had on the database, as far as the client can know.
enum Effect {
    Applied(i64),
    NotApplied,
    /// A transport error or an unexpected 5xx on the `POST`: it may or may not have committed.
    Unknown,
}

/// One increment's final answer: its status (`None` for a transport error) and effect.
struct Outcome {
    status: Option<u16>,
    effect: Effect,
}

/// What one virtual client saw.
struct ClientOutput {
    statuses: StatusCounts,
    retries: u64,
    latency: Histogram<u64>,
    history: Vec<Op>,
}

/// Runs the load described by `args` against `api` until `stop`.
pub(crate) async fn run(
    args: &HammerArgs,
    api: Arc<Api>,
    budget: Budget,
) -> anyhow::Result<RunOutput> {
    let Budget { stop, progress } = budget;
    let shared = Arc::new(Shared {
        api,
        tickets: Tickets::new(stop),
        lock: args.lock,
        max_attempts: args.max_attempts,
        spread: args.spread.max(1) as usize,
        record_history: args.check_linearizable,
        started: Instant::now(),
        progress,
        timeline: Mutex::new(Vec::new()),
    });
    let outs = run_clients(args.concurrency, |_| client(shared.clone())).await?;
    let mut statuses = StatusCounts::default();
    let mut latency = histogram(3);
    let (mut retries, mut history) = (0, Vec::new());
    for out in outs {
        statuses.merge(&out.statuses);
        retries += out.retries;
        latency.add(&out.latency)?;
        history.extend(out.history);
    }
    let elapsed = shared.started.elapsed();
    let timeline = std::mem::take(&mut *lock(&shared.timeline));
    Ok(RunOutput {
        elapsed,
        statuses,
        optimistic_retries: retries,
        latency,
        timeline,
        history,
    })
}

/// One virtual client.
async fn client(shared: Arc<Shared>) -> anyhow::Result<ClientOutput> {
    let mut rng = StdRng::from_entropy();
    let mut versions: HashMap<usize, i64> = HashMap::new();
    let mut out = ClientOutput {
        statuses: StatusCounts::default(),
        retries: 0,
        latency: histogram(3),
        history: Vec::new(),
    };
    while shared.tickets.next() {
        let index = if shared.spread > 1 {
            rng.gen_range(0..shared.spread)
        } else {
            0
        };
        let began = Instant::now();
        let outcome = match shared.lock {
            LockArg::Optimistic => {
                shared
                    .optimistic(index, &mut versions, &mut out.retries)
                    .await
            }
            _ => shared.locked(index).await,
        };
        let ended = Instant::now();
        shared.record(&mut out, &outcome, began, ended);
    }
    Ok(out)
}

impl Shared {
    async fn locked(&self, index: usize) -> Outcome {
        match self.api.increment(index, None).await {
            Ok(answer) => classify(answer),
            Err(_) => Outcome {
                status: None,
                effect: Effect::Unknown,
            },
        }
    }

    /// `If-Match` with the last version this client saw; on 412 re-read and try again, up to
    /// `max_attempts` times and never past the deadline.
    async fn optimistic(
        &self,
        index: usize,
        versions: &mut HashMap<usize, i64>,
        retries: &mut u64,
    ) -> Outcome {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let version = match versions.get(&index) {
                Some(v) => *v,
                // A failed re-read changed nothing: the increment was simply not applied.
                None => match self.api.state(index).await {
                    Ok(Ok(state)) => state.version,
                    Ok(Err(status)) => return not_applied(Some(status)),
                    Err(_) => return not_applied(None),
                },
            };
            let answer = match self.api.increment(index, Some(version)).await {
                Ok(answer) => answer,
                Err(_) => {
                    let _ = versions.remove(&index);
                    return Outcome {
                        status: None,
                        effect: Effect::Unknown,
                    };
                }
            };
            match answer {
                Answer::Applied(state) => {
                    let _ = versions.insert(index, state.version);
                    return classify(answer);
                }
                Answer::Status(412) => {
                    let _ = versions.remove(&index);
                    if attempt >= self.max_attempts || self.tickets.past_deadline() {
                        return not_applied(Some(412));
                    }
                    *retries += 1;
                }
                Answer::Status(_) => return classify(answer),
            }
        }
    }

    fn record(&self, out: &mut ClientOutput, outcome: &Outcome, began: Instant, ended: Instant) {
        let micros = ended.duration_since(began).as_micros().max(1) as u64;
        out.statuses.record(outcome.status);
        if matches!(outcome.effect, Effect::Unknown) {
            out.statuses.unknown_outcomes += 1;
        }
        // Auto-resizing: recording cannot fail (saturating would clamp to the initial range).
        let _ = out.latency.record(micros);
        let acknowledged = matches!(outcome.effect, Effect::Applied(_));
        if let (Effect::Applied(value), true) = (&outcome.effect, self.record_history) {
            out.history.push(Op {
                start_ns: nanos_since(self.started, began),
                end_ns: nanos_since(self.started, ended),
                value: *value,
            });
        }
        self.progress.record(acknowledged);
        let second = ended.duration_since(self.started).as_secs() as usize;
        let mut timeline = lock(&self.timeline);
        while timeline.len() <= second {
            timeline.push(Second {
                completed: 0,
                acknowledged: 0,
                latency: histogram(2),
            });
        }
        let bucket = &mut timeline[second];
        bucket.completed += 1;
        bucket.acknowledged += u64::from(acknowledged);
        let _ = bucket.latency.record(micros);
    }
}

fn classify(answer: Answer) -> Outcome {
    match answer {
        Answer::Applied(state) => Outcome {
            status: Some(200),
            effect: Effect::Applied(state.value),
        },
        // 503 is rowlock's "nothing was done, try later"; any other 5xx is a failure whose
        // effect the client cannot know.
        Answer::Status(status) if status >= 500 && status != 503 => Outcome {
            status: Some(status),
            effect: Effect::Unknown,
        },
        Answer::Status(status) => not_applied(Some(status)),
    }
}

fn not_applied(status: Option<u16>) -> Outcome {
    Outcome {
        status,
        effect: Effect::NotApplied,
    }
}

fn nanos_since(origin: Instant, at: Instant) -> u64 {
    at.duration_since(origin).as_nanos() as u64
}

/// The timeline lock is never held across a panic point, so a poisoned lock still holds
/// consistent data.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
