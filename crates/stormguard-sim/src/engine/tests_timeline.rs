//! The timeline, the triggers and the recovery time of whole runs: the seconds add up to the
//! totals, a fault shows in the seconds it lasts, and recovery is found where it happens.

use std::time::Duration;

use super::tests::run;

/// `web` calls `db` with three attempts; `db` fails everything for 3 s, or slows down x20.
const FAULTY: &str = r#"
    [entry]
    service = "web"
    timeout = "5s"
    rate = 200
    [services.web]
    concurrency = 1000
    [[services.web.calls]]
    to = "db"
    timeout = "1s"
    max_attempts = 3
    backoff = "none"
    retry_budget = "none"
    [services.db]
    instances = 2
    concurrency = 4
    queue = 1000
    latency = { p50 = "5ms", p99 = "20ms" }
    [scenarios.errors]
    duration = "15s"
    [[scenarios.errors.faults]]
    service = "db"
    from = "3s"
    to = "6s"
    error_rate = 1.0
    [scenarios.slow]
    duration = "15s"
    [[scenarios.slow.faults]]
    service = "db"
    from = "3s"
    to = "5s"
    slowdown = 20.0
    [[scenarios.slow.faults]]
    service = "db"
    from = "3s"
    to = "5s"
    error_rate = 0.01
    instances = 1
    [[scenarios.slow.load]]
    from = "8s"
    to = "9s"
    rate = 400
    [scenarios.calm]
    duration = "10s"
"#;

#[test]
fn the_seconds_add_up_to_the_totals() {
    let outcome = run(FAULTY, Some("slow"), 21);
    let steps = &outcome.timeline;
    assert_eq!(steps.len(), 15);
    assert!(steps.iter().enumerate().all(|(k, s)| s.at_s == k as u64));
    let sum = |f: &dyn Fn(&super::Step) -> u64| steps.iter().map(f).sum::<u64>();
    assert_eq!(sum(&|s| s.users), outcome.users.requests);
    assert_eq!(sum(&|s| s.succeeded), outcome.users.succeeded);
    let mut latencies: Vec<u64> = steps.iter().flat_map(|s| s.latency_ns.clone()).collect();
    latencies.sort_unstable();
    assert_eq!(latencies, outcome.users.latency_ns);
    // Users reach web without network delay, so web's attempts are all inside the duration.
    assert_eq!(
        sum(&|s| s.attempts["web"]),
        outcome.services["web"].attempts
    );
    // db's attempts after the duration (the drain) are not in the timeline.
    let db = outcome.services["db"].attempts;
    let in_timeline = sum(&|s| s.attempts["db"]);
    assert!(
        in_timeline <= db && in_timeline + 100 > db,
        "{in_timeline} of {db}"
    );
    let longest = steps.iter().map(|s| s.max_queue["db"]).max();
    assert_eq!(longest, Some(outcome.services["db"].max_queue));
}

#[test]
fn a_fault_shows_in_the_seconds_it_lasts() {
    let outcome = run(FAULTY, Some("errors"), 4);
    let steps = &outcome.timeline;
    for k in [1, 7, 8, 12] {
        let step = &steps[k];
        let attempts = step.attempts["db"] as f64 / step.users as f64;
        assert!(step.goodput().unwrap() > 0.99, "second {k}: {step:?}");
        assert!((0.99..1.01).contains(&attempts), "second {k}: {attempts}");
    }
    for k in [3, 4] {
        let step = &steps[k];
        let attempts = step.attempts["db"] as f64 / step.users as f64;
        assert_eq!(step.goodput(), Some(0.0), "second {k}");
        assert!((2.9..3.1).contains(&attempts), "second {k}: {attempts}");
    }
    assert_eq!(outcome.triggers.len(), 1);
    assert_eq!(outcome.triggers[0].label, "db: error_rate 1");
    assert_eq!(outcome.recovered_at, Some(Duration::from_secs(6)));
}

#[test]
fn a_slow_instance_queues_through_its_fault_and_the_triggers_say_so() {
    let outcome = run(FAULTY, Some("slow"), 8);
    let labels: Vec<&str> = outcome.triggers.iter().map(|t| &*t.label).collect();
    assert_eq!(
        labels,
        [
            "db: slowdown x20",
            "db: error_rate 0.01 on 1 of 2 instances",
            "load: 400/s"
        ]
    );
    assert_eq!(outcome.triggers[2].from, Duration::from_secs(8));
    let queue = |k: usize| outcome.timeline[k].max_queue["db"];
    assert!(queue(1) < 10, "before: {}", queue(1));
    // Three times the load the workers can take: the queues grow through the fault.
    assert!(
        queue(3) > 30 && queue(4) > queue(3),
        "{} {}",
        queue(3),
        queue(4)
    );
    let users = |k: usize| outcome.timeline[k].users;
    assert!(
        users(8) > 300 && users(7) < 260,
        "{} {}",
        users(7),
        users(8)
    );
    // The load step is a trigger too: recovery is looked for from its end.
    assert_eq!(outcome.recovered_at, Some(Duration::from_secs(9)));
}

#[test]
fn without_a_trigger_there_is_no_recovery_to_find() {
    let calm = run(FAULTY, Some("calm"), 2);
    assert!(calm.triggers.is_empty());
    assert_eq!(calm.recovered_at, None);
    assert_eq!(calm.timeline.len(), 10);
    let plain = run(FAULTY, None, 2);
    assert_eq!(plain.timeline.len(), 60);
    assert_eq!(plain.recovered_at, None);
}
