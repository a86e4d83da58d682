//! `queue-outlives-caller`: a FIFO queue whose full wait (queue x hold / concurrency) is past
//! the shortest timeout of the calls into it, firing and not.

use super::*;
use crate::model::{Codel, QueueDiscipline};
use crate::report::Severity;

/// web calls search (fixed 20 ms, 4 workers, a queue of 200: a full one waits 1 s) with a
/// 500 ms timeout.
fn web_search(set: impl FnOnce(&mut Service)) -> Builder {
    Builder::new("web")
        .service("web", |s| s.latency = fixed_latency(1))
        .call("web", "search", timed(500))
        .service("search", |s| {
            s.latency = fixed_latency(20);
            s.concurrency = 4;
            s.queue = 200;
            set(s);
        })
}

#[test]
fn fires_where_a_full_fifo_queue_waits_past_the_callers_timeout() {
    let report = web_search(|_| {}).check();
    assert_eq!(fired(&report, "queue-outlives-caller"), ["search"]);
    let finding = only(&report, "queue-outlives-caller");
    assert_eq!(finding.severity, Severity::Warning);
    // 200 x 20 ms / 4 workers.
    assert_eq!((finding.value, finding.limit), (Some(1000.0), Some(500.0)));
    assert!(
        finding
            .message
            .contains("past the 500ms web -> search waits"),
        "{}",
        finding.message
    );
    assert!(
        finding.fix.starts_with("queue_discipline = \"codel\""),
        "{}",
        finding.fix
    );
    // (500 ms - 20 ms of work) / 2.
    assert!(
        finding.fix.contains("queue_timeout = \"240ms\""),
        "{}",
        finding.fix
    );
}

#[test]
fn is_silent_with_another_discipline_a_queue_timeout_or_a_queue_that_fits() {
    type Cure = (&'static str, fn(&mut Service));
    let cures: [Cure; 5] = [
        ("lifo", |s| s.queue_discipline = QueueDiscipline::Lifo),
        ("codel", |s| {
            s.queue_discipline = QueueDiscipline::Codel(Codel::default());
        }),
        ("queue_timeout", |s| s.queue_timeout = Some(ms(240))),
        // 100 x 20 ms / 4 = 500 ms: no longer than the caller waits.
        ("a queue of 100", |s| s.queue = 100),
        ("no queue", |s| s.queue = 0),
    ];
    for (name, cure) in cures {
        let report = web_search(cure).check();
        assert!(
            fired(&report, "queue-outlives-caller").is_empty(),
            "{name}: {:#?}",
            report.findings
        );
    }
}

#[test]
fn the_users_timeout_counts_for_the_entry_service() {
    let report = Builder::new("web")
        .service("web", |s| {
            s.latency = fixed_latency(100);
            s.concurrency = 1;
            s.queue = 30;
        })
        .entry(|e| e.timeout = ms(2000))
        .check();
    let finding = only(&report, "queue-outlives-caller");
    assert!(
        finding.message.contains("past the 2s users wait"),
        "{}",
        finding.message
    );
    assert_eq!(finding.value, Some(3000.0));
}
