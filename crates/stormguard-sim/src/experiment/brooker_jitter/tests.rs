//! The experiment against its published setup and figures.

use super::*;

fn config(clients: u32, runs: u32, seed: u64) -> Config {
    Config {
        clients,
        runs: NonZeroU32::new(runs).unwrap(),
        seed,
    }
}

#[test]
fn the_same_seed_gives_the_same_report_and_another_seed_another() {
    let a = run(&config(30, 3, 7));
    assert_eq!(a, run(&config(30, 3, 7)));
    assert_ne!(a, run(&config(30, 3, 8)));
    for strategy in Strategy::ALL {
        assert_eq!(simulate(strategy, 40, 1), simulate(strategy, 40, 1));
    }
}

#[test]
fn every_run_seed_differs() {
    let mut seeds: Vec<u64> = (0..100)
        .flat_map(|run| Strategy::ALL.map(|s| run_seed(0, run, s)))
        .collect();
    seeds.sort_unstable();
    seeds.dedup();
    assert_eq!(seeds.len(), 500);
}

#[test]
fn a_lone_client_writes_once_after_four_hops() {
    for strategy in Strategy::ALL {
        let run = simulate(strategy, 1, 3);
        assert_eq!(run.calls, 1);
        // Four hops of |N(10, 2)| ms: far outside 20..60 ms is a broken network model.
        assert!(
            (20..60).contains(&run.time.as_millis()),
            "{strategy:?}: {run:?}"
        );
    }
    assert_eq!(
        simulate(Strategy::FullJitter, 0, 3),
        Run {
            calls: 0,
            time: Duration::ZERO
        }
    );
}

#[test]
fn every_client_succeeds_exactly_once() {
    // Each success increments the version once, and a client stops after its success,
    // so the calls are at least the clients; with no sleep every failure is a call too.
    for strategy in Strategy::ALL {
        let run = simulate(strategy, 25, 11);
        assert!(run.calls >= 25, "{strategy:?}: {run:?}");
    }
}

#[test]
fn the_policy_values_give_the_published_sleeps() {
    let mut rng = backoff::seeded(0);
    let mut exponential = Strategy::Exponential.backoff().schedule();
    for n in 1..=12u32 {
        let expo = (BASE * 2u32.pow(n)).min(CAP);
        assert_eq!(exponential.next_delay(&mut rng), expo, "n = {n}");
        assert_eq!(Strategy::FullJitter.backoff().max_delay(n), expo);
        assert_eq!(Strategy::EqualJitter.backoff().max_delay(n), expo);
    }
    let mut equal = Strategy::EqualJitter.backoff().schedule();
    let first = equal.next_delay(&mut rng);
    assert!(first >= BASE && first <= BASE * 2, "{first:?}");
    let mut decorrelated = Strategy::DecorrelatedJitter.backoff().schedule();
    let first = decorrelated.next_delay(&mut rng);
    assert!(first >= BASE && first <= BASE * 3, "{first:?}");
    assert_eq!(
        Strategy::None.backoff().schedule().next_delay(&mut rng),
        Duration::ZERO
    );
}

#[test]
fn hops_have_the_published_mean_and_spread() {
    let mut network = Network {
        rng: backoff::seeded(5),
        spare: None,
    };
    let n = 100_000;
    let hops: Vec<f64> = (0..n).map(|_| network.hop_nanos() as f64 / 1e6).collect();
    let mean = hops.iter().sum::<f64>() / f64::from(n);
    let variance = hops.iter().map(|h| (h - mean).powi(2)).sum::<f64>() / f64::from(n);
    assert!((mean - 10.0).abs() < 0.05, "mean {mean}");
    assert!(
        (variance.sqrt() - 2.0).abs() < 0.05,
        "sd {}",
        variance.sqrt()
    );
}

#[test]
fn json_is_keyed_by_strategy_in_the_articles_order() {
    let report = run(&config(5, 2, 0));
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.starts_with(r#"{"clients":5,"runs":2,"strategies":{"none":{"calls":"#));
    let order: Vec<usize> = Strategy::ALL
        .iter()
        .map(|s| json.find(&format!("\"{}\"", s.name())).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{json}");
}

#[test]
fn published_figures_exist_only_where_they_were_measured() {
    assert_eq!(
        Strategy::FullJitter.published(100),
        Some(Outcome {
            calls: 795.0,
            time_ms: 4895.0
        })
    );
    assert_eq!(Strategy::None.published(190).unwrap().calls, 8000.0);
    assert_eq!(Strategy::Exponential.published(101), None);
}

/// The article's findings at 100 clients, and its figures, over 30 runs.
#[test]
fn reproduces_the_published_findings_at_100_clients() {
    let report = run(&config(100, 30, 0));
    let get = |s: Strategy| report.strategies[s as usize].1;
    let none = get(Strategy::None);
    let expo = get(Strategy::Exponential);
    let equal = get(Strategy::EqualJitter);
    let full = get(Strategy::FullJitter);
    let decorrelated = get(Strategy::DecorrelatedJitter);
    let text = format!("{report:?}");
    assert!(full.calls < expo.calls / 2.0, "{text}");
    assert!((equal.calls / full.calls - 1.0).abs() < 0.2, "{text}");
    assert!(equal.time_ms > full.time_ms, "{text}");
    assert!(decorrelated.calls > full.calls, "{text}");
    for jittered in [equal, full, decorrelated] {
        assert!(none.calls > jittered.calls.max(expo.calls), "{text}");
        assert!(
            expo.time_ms > 4.0 * jittered.time_ms.max(none.time_ms),
            "{text}"
        );
    }
    for strategy in [
        Strategy::EqualJitter,
        Strategy::FullJitter,
        Strategy::DecorrelatedJitter,
    ] {
        let published = strategy.published(100).unwrap();
        let ratio = get(strategy).calls / published.calls;
        assert!(
            (0.75..1.25).contains(&ratio),
            "{strategy:?}: {ratio} {text}"
        );
    }
}
