//! Brooker's "Exponential Backoff And Jitter" (AWS Architecture Blog, 2015), re-run on the
//! policy core.
//!
//! ## Why this experiment
//! It is the published measurement behind the project's default of full jitter, and its
//! simulator is public (aws-samples/aws-arch-backoff-simulator), so the event semantics can be
//! matched exactly and the figures compared number for number. If [`Backoff`] computed a delay
//! wrongly, or this event loop ordered messages wrongly, the figures would move.
//!
//! ## The setup, as the published simulator runs it
//! N clients start at t = 0; each must make one successful optimistic-concurrency write to one
//! shared row. A client sends a read; the server answers with the row's version; the client sends
//! a write conditioned on that version; the server accepts it iff the row still has that version
//! when the write arrives (and increments the version), else refuses it. A refused client sleeps
//! its backoff and reads again. Every message (four per attempt) takes |Normal(10 ms, 2 ms)|.
//! The server does no work of its own: it handles each message the instant it arrives, one at a
//! time, in arrival order, which is what serialises the writes. A *call* is a write the server
//! handles (refused or not); reads are not counted. A run's *time* is when the last client hears
//! that its write succeeded.
//!
//! ## How the published formulas map onto [`Backoff`]
//! The published code uses expo(n) = min(cap, base × 2^n) for the n-th failure, n from 1, with
//! base 5 ms and cap 2 s, so the first sleep's ceiling is 10 ms. The policy core's ceiling for
//! retry n is min(cap, b × 2^(n−1)), the convention of Envoy and the AWS SDKs; the two agree
//! for b = 2 × 5 ms = 10 ms, so `exponential`, `equal-jitter` and `full-jitter` run with a 10 ms
//! base. Decorrelated jitter's published sleep = min(cap, U(base, 3 × sleep)) with sleep starting
//! at base is exactly [`Backoff::DecorrelatedJitter`] with base 5 ms, whose previous delay starts
//! at base. Every sleep is taken from [`Schedule::next_delay`], one schedule per client.
//!
//! The published sleep is added to the hop of the next read (`tm + delay + backoff`), which is
//! the same as sleeping and then sending; this loop does the same.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::num::NonZeroU32;
use std::time::Duration;

use rand::Rng;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use stormguard::backoff::{self, Backoff, JitterRng, Schedule};

/// The published `base`: the smallest decorrelated sleep, and half the first exponential ceiling.
pub const BASE: Duration = Duration::from_millis(5);
/// The published `cap`: no sleep is longer.
pub const CAP: Duration = Duration::from_secs(2);

/// The published network: each hop is |Normal(mean, sd)| milliseconds.
const HOP_MEAN_MS: f64 = 10.0;
const HOP_SD_MS: f64 = 2.0;

/// One of the backoff strategies the article compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Strategy {
    /// Read again at once: the baseline that shows what backoff is for.
    None,
    /// expo(n) with no jitter: the herd stays in lockstep and waits longer and longer.
    Exponential,
    /// expo(n)/2 + U(0, expo(n)/2): jitter that keeps a minimum wait.
    EqualJitter,
    /// U(0, expo(n)): the article's recommendation.
    FullJitter,
    /// min(cap, U(base, 3 × previous sleep)).
    DecorrelatedJitter,
}

impl Strategy {
    /// Every strategy, in the article's order of presentation, which is also the order of the
    /// report, so that output is stable.
    pub const ALL: [Strategy; 5] = [
        Strategy::None,
        Strategy::Exponential,
        Strategy::EqualJitter,
        Strategy::FullJitter,
        Strategy::DecorrelatedJitter,
    ];

    /// The name in the command line's output and the JSON keys.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::None => "none",
            Strategy::Exponential => "exponential",
            Strategy::EqualJitter => "equal-jitter",
            Strategy::FullJitter => "full-jitter",
            Strategy::DecorrelatedJitter => "decorrelated-jitter",
        }
    }

    /// The policy-core value that produces the published sleeps (see the module docs for why
    /// the exponential kinds use a 10 ms base).
    pub fn backoff(self) -> Backoff {
        let doubled = BASE * 2;
        match self {
            Strategy::None => Backoff::None,
            Strategy::Exponential => Backoff::Exponential {
                base: doubled,
                cap: CAP,
            },
            Strategy::EqualJitter => Backoff::EqualJitter {
                base: doubled,
                cap: CAP,
            },
            Strategy::FullJitter => Backoff::FullJitter {
                base: doubled,
                cap: CAP,
            },
            Strategy::DecorrelatedJitter => Backoff::DecorrelatedJitter {
                base: BASE,
                cap: CAP,
            },
        }
    }

    /// The published means over 100 runs of the published simulator, for the client counts
    /// they were recorded at (50, 100, 190), so every run can be compared with them.
    pub fn published(self, clients: u32) -> Option<Outcome> {
        // Rows: none, exponential, equal, full, decorrelated; (calls, time in ms).
        let row: [(f64, f64); 5] = match clients {
            50 => [
                (688.0, 1135.0),
                (623.0, 36100.0),
                (347.0, 4240.0),
                (333.0, 2930.0),
                (374.0, 2200.0),
            ],
            100 => [
                (2421.0, 2030.0),
                (1855.0, 63000.0),
                (812.0, 6630.0),
                (795.0, 4895.0),
                (1000.0, 4545.0),
            ],
            190 => [
                (8000.0, 3537.0),
                (5170.0, 101300.0),
                (1759.0, 9420.0),
                (1771.0, 7460.0),
                (2440.0, 7930.0),
            ],
            _ => return None,
        };
        let (calls, time_ms) = row[self as usize];
        Some(Outcome { calls, time_ms })
    }
}

/// What one run of the experiment measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// Writes the server handled, refused ones included: the work the herd cost.
    pub calls: u64,
    /// When the last client heard that its write succeeded.
    pub time: Duration,
}

/// The mean of [`Run`]s, as the article reports it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Outcome {
    /// Mean writes per run.
    pub calls: f64,
    /// Mean time until the last client succeeded, in milliseconds.
    pub time_ms: f64,
}

/// What to run: the article's defaults are 100 clients and 100 runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Clients contending for the row.
    pub clients: u32,
    /// Runs averaged per strategy; at least one, as a mean of nothing has no value.
    pub runs: NonZeroU32,
    /// Seed of every run's generator: the same seed gives the same report.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            clients: 100,
            runs: NonZeroU32::new(100).expect("100 is not zero"),
            seed: 0,
        }
    }
}

/// The experiment's result: the mean per strategy, in [`Strategy::ALL`] order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Clients contending for the row.
    pub clients: u32,
    /// Runs averaged per strategy.
    pub runs: u32,
    /// Means per strategy; serialised as an object keyed by [`Strategy::name`], in this order.
    #[serde(serialize_with = "serialize_strategies")]
    pub strategies: Vec<(Strategy, Outcome)>,
}

fn serialize_strategies<S: Serializer>(
    strategies: &[(Strategy, Outcome)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(Some(strategies.len()))?;
    for (strategy, outcome) in strategies {
        map.serialize_entry(strategy.name(), outcome)?;
    }
    map.end()
}

/// Runs every strategy `config.runs` times and averages, deterministically in `config`.
pub fn run(config: &Config) -> Report {
    Report {
        clients: config.clients,
        runs: config.runs.get(),
        strategies: Strategy::ALL
            .iter()
            .map(|&strategy| (strategy, run_strategy(strategy, config)))
            .collect(),
    }
}

/// The mean over `config.runs` runs of one strategy, each run seeded by [`run_seed`].
pub fn run_strategy(strategy: Strategy, config: &Config) -> Outcome {
    let runs = config.runs.get();
    let (mut calls, mut nanos) = (0u128, 0u128);
    for run in 0..runs {
        let result = simulate(
            strategy,
            config.clients,
            run_seed(config.seed, run, strategy),
        );
        calls += u128::from(result.calls);
        nanos += result.time.as_nanos();
    }
    let runs = f64::from(runs);
    Outcome {
        // Rounded so the printed JSON stays short; the runs' totals are exact integers.
        calls: (calls as f64 / runs * 100.0).round() / 100.0,
        time_ms: (nanos as f64 / runs / 1e3).round() / 1e3,
    }
}

/// The seed of one run: each (seed, run, strategy) gets its own well-mixed generator, so adding
/// runs or strategies never shifts the draws of the others.
pub fn run_seed(seed: u64, run: u32, strategy: Strategy) -> u64 {
    splitmix64(splitmix64(splitmix64(seed) ^ u64::from(run)) ^ strategy as u64)
}

/// SplitMix64's finaliser: a bijection that avalanches, so neighbouring inputs give unrelated
/// seeds.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One run of `clients` clients under `strategy`, from a generator seeded with `seed`; the
/// network and the jitter share it, as they share Python's `random` in the published code.
pub fn simulate(strategy: Strategy, clients: u32, seed: u64) -> Run {
    let policy = strategy.backoff();
    let mut sim = Simulation {
        queue: BinaryHeap::with_capacity(clients as usize),
        sent: 0,
        network: Network {
            rng: backoff::seeded(seed),
            spare: None,
        },
        schedules: (0..clients).map(|_| policy.schedule()).collect(),
        version: 0,
        calls: 0,
    };
    for client in 0..clients {
        sim.send(0, Message::Read { client }, Duration::ZERO);
    }
    let mut now = 0;
    while let Some(Reverse((at, _, message))) = sim.queue.pop() {
        now = at;
        sim.handle(now, message);
    }
    Run {
        calls: sim.calls,
        time: Duration::from_nanos(now),
    }
}

/// A message in flight; it is handled when it arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Message {
    /// A read reaches the server.
    Read { client: u32 },
    /// The row's version reaches the client.
    ReadReply { client: u32, version: u64 },
    /// A write conditioned on `version` reaches the server.
    Write { client: u32, version: u64 },
    /// The write's verdict reaches the client.
    WriteReply { client: u32, written: bool },
}

struct Simulation {
    /// Arrival time in nanoseconds, then send order: ties (which continuous hop times make
    /// rare) are broken by a counter, never by the generator or by memory layout.
    queue: BinaryHeap<Reverse<(u64, u64, Message)>>,
    sent: u64,
    network: Network,
    schedules: Vec<Schedule>,
    version: u64,
    calls: u64,
}

impl Simulation {
    /// Sends `message` at `now` after `wait`; it arrives one hop later.
    fn send(&mut self, now: u64, message: Message, wait: Duration) {
        let wait = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
        let at = now
            .saturating_add(wait)
            .saturating_add(self.network.hop_nanos());
        self.queue.push(Reverse((at, self.sent, message)));
        self.sent += 1;
    }

    fn handle(&mut self, now: u64, message: Message) {
        match message {
            Message::Read { client } => {
                let version = self.version;
                self.send(now, Message::ReadReply { client, version }, Duration::ZERO);
            }
            Message::ReadReply { client, version } => {
                self.send(now, Message::Write { client, version }, Duration::ZERO);
            }
            Message::Write { client, version } => {
                self.calls += 1;
                let written = version == self.version;
                if written {
                    self.version += 1;
                }
                self.send(now, Message::WriteReply { client, written }, Duration::ZERO);
            }
            Message::WriteReply { client, written } => {
                if !written {
                    let schedule = &mut self.schedules[client as usize];
                    let sleep = schedule.next_delay(&mut self.network.rng);
                    self.send(now, Message::Read { client }, sleep);
                }
            }
        }
    }
}

/// Hop times: |Normal(10 ms, 2 ms)| by Box-Muller, which makes normals in pairs; the second is
/// kept for the next hop rather than thrown away.
struct Network {
    rng: JitterRng,
    spare: Option<f64>,
}

impl Network {
    fn standard_normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        // 1 - [0, 1) is (0, 1], so the logarithm is finite.
        let u1 = 1.0 - self.rng.random::<f64>();
        let u2: f64 = self.rng.random();
        let radius = (-2.0 * u1.ln()).sqrt();
        let angle = std::f64::consts::TAU * u2;
        self.spare = Some(radius * angle.sin());
        radius * angle.cos()
    }

    fn hop_nanos(&mut self) -> u64 {
        let ms = (HOP_MEAN_MS + HOP_SD_MS * self.standard_normal()).abs();
        (ms * 1e6).round() as u64
    }
}

#[cfg(test)]
mod tests;
