//! The example graphs of examples/graphs/, built in code to the same settings, with the exact
//! findings their header comments promise. Keep both in step: once the parser lands, the files
//! themselves can be checked against the same lists.

use stormguard::backoff::Backoff;

use super::*;

fn latency(p50: u64, p99: u64) -> Latency {
    Latency {
        p50: ms(p50),
        p99: ms(p99),
    }
}

fn full_jitter(base: u64, cap: u64) -> Backoff {
    Backoff::FullJitter {
        base: ms(base),
        cap: ms(cap),
    }
}

fn pairs(report: &Report) -> Vec<(&'static str, String)> {
    found(report)
}

fn expect(list: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    list.iter().map(|&(r, p)| (r, p.to_string())).collect()
}

/// examples/graphs/healthy.toml
pub(crate) fn healthy() -> Graph {
    Builder::new("web")
        .entry(|e| {
            e.timeout = ms(2000);
            e.rate = 200.0;
        })
        .service("web", |s| {
            s.instances = 3;
            s.latency = latency(2, 20);
        })
        .service("api", |s| {
            s.instances = 4;
            s.latency = latency(5, 50);
        })
        .service("cache", |s| {
            s.instances = 2;
            s.latency = latency(1, 5);
        })
        .service("db", |s| {
            s.instances = 3;
            s.latency = latency(10, 80);
        })
        .call("web", "api", |c| {
            c.timeout = Some(ms(400));
            c.connect_timeout = Some(ms(5));
            c.max_attempts = 2;
            c.backoff = full_jitter(25, 250);
            c.limiter = Some(budget(0.1));
        })
        .call("api", "cache", |c| {
            c.timeout = Some(ms(50));
            c.connect_timeout = Some(ms(5));
            c.hedge = Some(crate::model::HedgeSpec {
                delay: stormguard::hedge::HedgeDelay::Fixed(ms(10)),
                max_extra: 0.05,
            });
        })
        .call("api", "db", |c| {
            c.timeout = Some(ms(200));
            c.connect_timeout = Some(ms(5));
        })
        .build()
}

#[test]
fn healthy_has_no_findings() {
    let report = check(&healthy());
    assert_eq!(pairs(&report), expect(&[]));
    assert_eq!(report.services["db"].amplification, 2.0);
}

/// examples/graphs/brooker-five-layers.toml
pub(crate) fn brooker() -> Graph {
    let layers = [
        ("web", "gateway", 2000),
        ("gateway", "orders", 1000),
        ("orders", "inventory", 500),
        ("inventory", "storage", 250),
        ("storage", "db", 100),
    ];
    let mut builder = Builder::new("web");
    for (from, to, timeout) in layers {
        builder = builder.call(from, to, |c| {
            c.timeout = Some(ms(timeout));
            c.connect_timeout = Some(ms(5));
            c.max_attempts = 3;
            c.backoff = full_jitter(25, 250);
        });
    }
    builder
        .instances_everywhere(3)
        .service("db", |s| s.latency = latency(5, 40))
        .build()
}

#[test]
fn brooker_gives_243_at_the_bottom() {
    let report = check(&brooker());
    assert_eq!(
        pairs(&report),
        expect(&[
            ("retries-over-capacity", "db"),
            ("retry-amplification", "db"),
            ("timeout-inversion", "gateway->orders"),
            ("layered-retries", "gateway->orders"),
            ("retry-without-budget", "gateway->orders"),
            ("too-many-attempts", "gateway->orders"),
            ("retry-amplification", "inventory"),
            ("timeout-inversion", "inventory->storage"),
            ("layered-retries", "inventory->storage"),
            ("retry-without-budget", "inventory->storage"),
            ("too-many-attempts", "inventory->storage"),
            ("timeout-inversion", "orders->inventory"),
            ("layered-retries", "orders->inventory"),
            ("retry-without-budget", "orders->inventory"),
            ("too-many-attempts", "orders->inventory"),
            ("retries-over-capacity", "storage"),
            ("retry-amplification", "storage"),
            ("layered-retries", "storage->db"),
            ("retry-without-budget", "storage->db"),
            ("too-many-attempts", "storage->db"),
            ("timeout-inversion", "web->gateway"),
            ("retry-without-budget", "web->gateway"),
            ("too-many-attempts", "web->gateway"),
        ])
    );
    assert_eq!(report.services["db"].amplification, 243.0);
    assert_eq!(report.services["db"].depth, 5);
    assert_eq!((report.summary.errors, report.summary.warnings), (9, 14));
}

#[test]
fn brooker_amplification_fix_names_the_calls_and_stops_the_rule() {
    let report = check(&brooker());
    let db = report
        .findings
        .iter()
        .find(|f| f.rule == "retry-amplification" && place(f) == "db")
        .unwrap();
    assert_eq!(
        db.fix,
        "max_attempts = 1 on gateway -> orders, orders -> inventory, inventory -> storage and \
         storage -> db, and max_attempts = 2 on web -> gateway: retries at one layer, so db \
         receives at most 2"
    );
    let mut fixed = brooker();
    for (service, attempts) in [
        ("gateway", 1),
        ("orders", 1),
        ("inventory", 1),
        ("storage", 1),
        ("web", 2),
    ] {
        fixed.services.get_mut(service).unwrap().calls[0].max_attempts = attempts;
    }
    let report = check(&fixed);
    assert!(fired(&report, "retry-amplification").is_empty());
    assert!(fired(&report, "layered-retries").is_empty());
    assert_eq!(report.services["db"].amplification, 2.0);
}

/// examples/graphs/cockcroft-edge.toml
pub(crate) fn cockcroft() -> Graph {
    Builder::new("edge")
        .service("edge", |s| s.latency = latency(2, 20))
        .service("api", |s| s.latency = latency(5, 50))
        .service("search", |s| s.latency = latency(5, 50))
        .service("db", |s| s.latency = latency(20, 200))
        .service("index", |s| s.latency = latency(10, 100))
        .call("edge", "api", |c| {
            c.timeout = Some(ms(1000));
            c.connect_timeout = Some(ms(5));
        })
        .call("edge", "search", |c| {
            c.timeout = Some(ms(500));
            c.connect_timeout = Some(ms(5));
            c.propagate_deadline = true;
        })
        .call("api", "db", |c| {
            c.timeout = Some(ms(2000));
            c.connect_timeout = Some(ms(5));
            c.max_attempts = 2;
            c.backoff = full_jitter(50, 500);
            c.limiter = Some(budget(0.1));
        })
        .call("search", "index", |c| {
            c.timeout = Some(ms(300));
            c.connect_timeout = Some(ms(5));
            c.max_attempts = 2;
            c.backoff = full_jitter(25, 250);
            c.limiter = Some(budget(0.1));
        })
        .instances_everywhere(3)
        .build()
}

#[test]
fn cockcroft_edge_gives_up_first() {
    let report = check(&cockcroft());
    assert_eq!(
        pairs(&report),
        expect(&[
            ("timeout-inversion", "edge->api"),
            ("timeout-inversion", "edge->search"),
        ])
    );
    assert_eq!(report.summary.errors, 1);
    assert_eq!(report.summary.infos, 1);
    // The timeout the fix names for edge -> api stops the error.
    let fix = &report.findings[0].fix;
    assert!(
        fix.starts_with("timeout = \"4157ms\" on edge -> api"),
        "{fix}"
    );
    let mut fixed = cockcroft();
    fixed.services.get_mut("edge").unwrap().calls[0].timeout = Some(ms(4157));
    assert_eq!(
        pairs(&check(&fixed)),
        expect(&[("timeout-inversion", "edge->search")])
    );
}

/// examples/graphs/mux-expediting.toml
pub(crate) fn mux() -> Graph {
    Builder::new("mux")
        .entry(|e| e.timeout = ms(2000))
        .service("mux", |s| s.latency = latency(5, 50))
        .service("users", |s| s.latency = latency(10, 100))
        .service("recommendations", |s| s.latency = latency(20, 150))
        .service("items", |s| s.latency = latency(5, 40))
        .call("mux", "users", |c| {
            c.timeout = Some(ms(300));
            c.connect_timeout = Some(ms(10));
            c.parallel = true;
        })
        .call("mux", "recommendations", |c| {
            c.timeout = Some(ms(500));
            c.connect_timeout = Some(ms(10));
            c.parallel = true;
            c.required = false;
        })
        .call("mux", "items", |c| {
            c.timeout = Some(ms(150));
            c.connect_timeout = Some(ms(10));
            c.count = 10;
        })
        .instances_everywhere(4)
        .build()
}

#[test]
fn mux_misses_its_budget_by_its_own_work() {
    let report = check(&mux());
    assert_eq!(pairs(&report), expect(&[("entry-budget", "mux")]));
    let finding = only(&report, "entry-budget");
    assert_eq!(
        finding.fix,
        "timeout = \"139ms\" on mux -> items: the call may take 1500ms now, and mux then works \
         at most 1997ms, within the 2s a user waits"
    );
    let mut fixed = mux();
    let mux = fixed.services.get_mut("mux").unwrap();
    mux.calls[2].timeout = Some(ms(139));
    assert!(check(&fixed).findings.is_empty());
}
