//! Large graphs finish: the figures are linear in services plus calls and the search does not
//! recurse, so neither depth nor the number of paths can blow the stack or the clock.

use super::*;

fn name(k: usize) -> String {
    format!("s{k:05}")
}

#[test]
fn a_chain_of_10000_services_does_not_overflow_the_stack() {
    let n = 10_000;
    let mut builder = Builder::new(&name(0));
    for k in 0..n - 1 {
        builder = builder.call(&name(k), &name(k + 1), |c| {
            timed(100)(c);
            c.max_attempts = 2;
        });
    }
    let report = builder.check();
    let bottom = report.services[&name(n - 1)];
    assert_eq!(bottom.depth, 9_999);
    // 2^9999 overflows a float: the figure saturates rather than wrapping or panicking.
    assert_eq!(bottom.amplification, f64::INFINITY);
    assert_eq!(report.services.len(), n);
}

/// 10,000 services, 50,000 calls, each service calling five later ones picked by a fixed
/// linear congruential sequence: acyclic, with an astronomical number of paths.
pub(crate) fn wide_graph() -> Graph {
    let n = 10_000;
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut builder = Builder::new(&name(0));
    for k in 0..n {
        builder = builder.service(&name(k), |s| s.instances = 3);
    }
    for k in 0..n - 1 {
        for _ in 0..5 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let span = n - 1 - k;
            let to = k + 1 + ((state >> 33) as usize % span.min(50));
            builder = builder.call(&name(k), &name(to), |c| {
                timed(100)(c);
                c.max_attempts = 2;
            });
        }
    }
    for _ in 0..5 {
        builder = builder.call(&name(n - 1), &name(0), timed(100));
    }
    builder.build()
}

#[test]
fn a_wide_graph_of_10000_services_and_50000_calls_finishes() {
    let graph = wide_graph();
    let calls: usize = graph.services.values().map(|s| s.calls.len()).sum();
    assert_eq!((graph.services.len(), calls), (10_000, 50_000));
    let report = check(&graph);
    assert_eq!(fired(&report, "call-cycle").len(), 5);
    assert!(report.summary.errors > 0);
}
