//! Which instance a caller's attempt goes to: as the proxy's `Balance` layer picks it, with the
//! passive outlier ejection that layer does by default.
//!
//! ## Why the simulator ejects
//! An instance that refuses connections has nothing in flight, so a choice by load alone keeps
//! picking it, and each pick costs a retry. The proxy's balancer ejects such an instance for a
//! while; a simulator that did not would predict retries, denied retries and failed requests the
//! proxy never makes. So each call's attempts are picked by
//! [`choose_healthy`](stormguard::instance::choose_healthy) with the mask of an
//! [`OutlierDetector`], fed every copy's outcome as the layer records it: a response by its
//! status, a refused connection or a connect timeout as a connection failure, and nothing for an
//! attempt its caller stopped waiting for (a per-attempt timeout, the loser of a hedge race),
//! whose future the proxy drops before it ends.
//!
//! ## Why each balancer counts its own attempts
//! The layer compares the attempts *it* has in flight at each instance, from the send until the
//! answer comes or the attempt is dropped: not the callee's work in progress. An attempt its
//! caller gave up on stops counting while the callee still works on it; one still connecting
//! to an instance that never answers counts although the callee never saw it; another caller's
//! attempts never count. A simulator that compared the callee's work (as this one did) saw a
//! dark instance as idle while each probe's connection waited, and sent it every choice it was
//! drawn into: 0.043 attempts per request there against the proxy's 0.017, for the same call
//! (`crates/stormguard-cli/tests/sim_matches_proxy.rs`). So each balancer keeps its own counts.
//!
//! ## Why one detector per edge and calling instance
//! The proxy runs beside each instance of a service, with one balancer per route, so each caller
//! instance learns on its own which callee instances fail: a dead instance costs one probe per
//! caller instance per ejection, not one for the whole service. The records take under 50 bytes
//! per callee instance, per caller instance, per edge: a hundred callers over a hundred callees
//! is half a megabyte, and real graphs are far smaller, so one detector for a whole edge (which
//! would make every caller instance learn from the others' failures) buys nothing worth that.
//!
//! ## Why it costs little while all is well
//! A choice after the end of its balancer's latest ejection skips the mask: none can be ejected.
//! As in the layer, a success at an instance with no failure nor ejection unforgiven changes
//! nothing, so it is not recorded; and while no balancer suspects any instance, a success is
//! not looked at by the detector. A healthy attempt pays a few comparisons, and a count up and
//! down in its balancer's row.

use std::time::{Duration, Instant};

use rand::Rng;
use stormguard::classify::AttemptResult;
use stormguard::instance::{choose_healthy, EjectionConfig, Outcome, OutlierDetector};

use super::model::{nanos, Model};

/// One calling instance's balancer for one edge: its detector, and until when it may have an
/// instance ejected.
struct Health {
    detector: OutlierDetector,
    /// The end of its latest ejection, in virtual nanoseconds: from then on none is ejected,
    /// and a choice needs no mask. Most failures eject nothing, so this is rarely ahead.
    ejected_until: u64,
    /// Its suspect instances: with none, a success it hears changes nothing.
    suspects: u32,
}

/// Every calling instance's balancer for every edge.
pub(crate) struct Balancers {
    origin: Instant,
    /// `None`: no ejection, as a `Balance` built `without_outlier_detection`.
    config: Option<EjectionConfig>,
    /// Per edge, the number of its first calling instance's balancer.
    first: Vec<usize>,
    /// Per balancer, where its counts start in `in_flight`, and how many callee instances.
    spans: Vec<(usize, usize)>,
    /// Attempts each balancer has in flight at each callee instance: the load it compares.
    in_flight: Vec<u64>,
    /// Per balancer, empty when it does not eject.
    health: Vec<Health>,
    /// The ejected mask of the choice being made, kept so that a choice allocates nothing.
    ejected: Vec<bool>,
    /// Suspect instances over every balancer: with none, no success anywhere changes anything.
    suspects: usize,
}

impl Balancers {
    /// A balancer per edge and calling instance, ejecting as `config` says (`None`: never).
    pub(crate) fn new(model: &Model, origin: Instant, config: Option<EjectionConfig>) -> Self {
        let mut first = Vec::with_capacity(model.edges.len());
        let mut spans = Vec::new();
        let mut counts = 0;
        let mut health = Vec::new();
        for edge in &model.edges {
            first.push(spans.len());
            let (callers, callees) = (
                model.services[edge.from].instances,
                model.services[edge.to].instances,
            );
            for _ in 0..callers {
                spans.push((counts, callees));
                counts += callees;
            }
            if let Some(config) = config {
                health.extend((0..callers).map(|_| Health {
                    detector: OutlierDetector::new(config, callees),
                    ejected_until: 0,
                    suspects: 0,
                }));
            }
        }
        Balancers {
            origin,
            config,
            first,
            spans,
            in_flight: vec![0; counts],
            health,
            ejected: Vec::new(),
            suspects: 0,
        }
    }

    /// The balancer of `edge` on its calling instance `caller`.
    pub(crate) fn of(&self, edge: usize, caller: usize) -> usize {
        self.first[edge] + caller
    }

    /// The instance for the next attempt of a call through `balancer` at virtual time `t`,
    /// `tried` the call's instances so far, counted in flight there until [`Self::done`].
    pub(crate) fn choose<R: Rng + ?Sized>(
        &mut self,
        balancer: usize,
        tried: &[usize],
        t: u64,
        rng: &mut R,
    ) -> usize {
        let (start, len) = self.spans[balancer];
        let loads = &self.in_flight[start..start + len];
        let ejected: &[bool] = match self.health.get(balancer) {
            Some(health) if t < health.ejected_until => {
                let now = self.origin + Duration::from_nanos(t);
                self.ejected.clear();
                self.ejected.resize(loads.len(), false);
                health.detector.ejected_into(now, &mut self.ejected);
                &self.ejected
            }
            _ => &[],
        };
        let chosen =
            choose_healthy(loads, tried, ejected, rng).expect("every service has an instance");
        self.in_flight[start + chosen] += 1;
        chosen
    }

    /// The caller is done with an attempt `balancer` sent to `instance`: answered, timed out or
    /// abandoned.
    pub(crate) fn done(&mut self, balancer: usize, instance: usize) {
        self.in_flight[self.spans[balancer].0 + instance] -= 1;
    }

    /// Whether recording `result` at `balancer` may change anything: a success, only while
    /// that balancer suspects an instance. While no balancer suspects any, a caller that hears
    /// a success need not even look up its balancer; in a storm, where some always do, the
    /// balancers that suspect none still skip the detector.
    pub(crate) fn heeds(&self, balancer: usize, result: AttemptResult) -> bool {
        self.config.is_some()
            && match Outcome::of(result) {
                None => false,
                Some(Outcome::Success) => {
                    self.suspects > 0 && self.health.get(balancer).is_some_and(|h| h.suspects > 0)
                }
                Some(_) => true,
            }
    }

    /// Records what an attempt through `balancer` to `instance` came to, when its caller heard
    /// of it at virtual time `t`.
    pub(crate) fn record(
        &mut self,
        balancer: usize,
        instance: usize,
        result: AttemptResult,
        t: u64,
    ) {
        if self.config.is_none() {
            return;
        }
        let Some(outcome) = Outcome::of(result) else {
            return;
        };
        let health = &mut self.health[balancer];
        let was = health.detector.is_suspect(instance);
        if outcome == Outcome::Success && !was {
            return;
        }
        let now = self.origin + Duration::from_nanos(t);
        if let Some(length) = health.detector.record(instance, outcome, now) {
            let until = t.saturating_add(nanos(length));
            health.ejected_until = health.ejected_until.max(until);
        }
        match (was, health.detector.is_suspect(instance)) {
            (false, true) => {
                self.suspects += 1;
                health.suspects += 1;
            }
            (true, false) => {
                self.suspects -= 1;
                health.suspects -= 1;
            }
            _ => {}
        }
    }

    /// Sets what `balancer` has in flight at each callee instance.
    #[cfg(test)]
    fn set_loads(&mut self, balancer: usize, loads: &[u64]) {
        let (start, len) = self.spans[balancer];
        self.in_flight[start..start + len].copy_from_slice(loads);
    }

    /// What `balancer` has in flight at each callee instance.
    #[cfg(test)]
    fn loads(&self, balancer: usize) -> &[u64] {
        let (start, len) = self.spans[balancer];
        &self.in_flight[start..start + len]
    }

    /// A choice whose attempt is over at once: the loads stay as they were.
    #[cfg(test)]
    fn pick<R: Rng + ?Sized>(&mut self, balancer: usize, t: u64, rng: &mut R) -> usize {
        let chosen = self.choose(balancer, &[], t, rng);
        self.done(balancer, chosen);
        chosen
    }

    /// Whether `instance` is ejected by `balancer` at virtual time `t`.
    #[cfg(test)]
    pub(crate) fn is_ejected(&self, balancer: usize, instance: usize, t: u64) -> bool {
        self.health.get(balancer).is_some_and(|h| {
            h.detector
                .is_ejected(instance, self.origin + Duration::from_nanos(t))
        })
    }
}

#[cfg(test)]
mod tests {
    use stormguard::backoff::seeded;

    use super::*;
    use crate::engine::model::build;

    const SECOND: u64 = 1_000_000_000;

    /// `web` (two instances) calls `api` (three).
    fn balancers(config: Option<EjectionConfig>) -> Balancers {
        let graph = stormguard_graph::parse(
            "t.toml",
            r#"
            [entry]
            service = "web"
            [services.web]
            instances = 2
            [[services.web.calls]]
            to = "api"
            [services.api]
            instances = 3
            "#,
        )
        .unwrap();
        let model = build(&graph, None, None, None).unwrap();
        Balancers::new(&model, crate::engine::tests::origin(), config)
    }

    const REFUSED: AttemptResult = AttemptResult::ConnectRefused;
    const OK: AttemptResult = AttemptResult::Response {
        status: 200,
        retry_after: None,
    };

    #[test]
    fn a_refused_connection_ejects_the_instance_for_that_caller_only() {
        let mut b = balancers(Some(EjectionConfig::default()));
        let (first, second) = (b.of(0, 0), b.of(0, 1));
        b.record(first, 1, REFUSED, 0);
        assert!(b.is_ejected(first, 1, 0));
        assert!(
            !b.is_ejected(second, 1, 0),
            "the other caller has not seen it"
        );
        let mut rng = seeded(1);
        b.set_loads(first, &[5, 0, 5]);
        for _ in 0..50 {
            assert_ne!(b.pick(first, 10, &mut rng), 1);
        }
        // The ejection is over after a second: the idle instance is picked again.
        let picks = (0..50)
            .filter(|_| b.pick(first, SECOND, &mut rng) == 1)
            .count();
        assert!(picks > 20, "{picks} of 50");
    }

    #[test]
    fn timeouts_are_not_counted_and_connect_timeouts_are() {
        let mut b = balancers(Some(EjectionConfig::default()));
        let web = b.of(0, 0);
        b.record(web, 2, AttemptResult::TimeoutAfterWritten, 0);
        assert!(!b.is_ejected(web, 2, 0));
        b.record(web, 2, AttemptResult::ConnectTimeout, 0);
        assert!(b.is_ejected(web, 2, 0));
    }

    #[test]
    fn five_5xx_in_a_row_eject_and_a_success_forgives() {
        let mut b = balancers(Some(EjectionConfig::default()));
        let web = b.of(0, 1);
        let unavailable = AttemptResult::Response {
            status: 503,
            retry_after: None,
        };
        for _ in 0..4 {
            b.record(web, 0, unavailable, 0);
        }
        b.record(web, 0, OK, 0);
        assert_eq!(b.suspects, 0, "forgiven");
        for _ in 0..5 {
            b.record(web, 0, unavailable, 0);
        }
        assert!(b.is_ejected(web, 0, 0));
        assert_eq!((b.suspects, b.health[web].ejected_until), (1, SECOND));
    }

    #[test]
    fn a_success_is_heeded_only_while_some_instance_is_suspect() {
        let mut b = balancers(Some(EjectionConfig::default()));
        let (first, second) = (b.of(0, 0), b.of(0, 1));
        assert!(!b.heeds(second, OK));
        assert!(!b.heeds(second, AttemptResult::TimeoutAfterWritten));
        assert!(b.heeds(second, REFUSED));
        b.record(second, 2, REFUSED, 0);
        assert!(b.heeds(second, OK));
        assert!(!b.heeds(first, OK), "the other balancer suspects none");
        // Back after its ejection, a success forgives it: nothing is suspect any more.
        b.record(second, 2, OK, SECOND);
        assert!(!b.heeds(second, OK));
        assert!(!balancers(None).heeds(second, REFUSED));
    }

    #[test]
    fn an_attempt_counts_for_its_own_balancer_until_its_caller_is_done() {
        let mut b = balancers(None);
        let (first, second) = (b.of(0, 0), b.of(0, 1));
        let mut rng = seeded(4);
        // 0 and 1 tried: the attempts go to 2, and count there until their caller is done.
        assert_eq!(b.choose(first, &[0, 1], 0, &mut rng), 2);
        assert_eq!(b.choose(first, &[0, 1], 0, &mut rng), 2);
        assert_eq!(b.loads(first), [0, 0, 2]);
        assert_eq!(
            b.loads(second),
            [0, 0, 0],
            "another caller's are not its own"
        );
        for _ in 0..50 {
            assert_ne!(b.pick(first, 0, &mut rng), 2);
        }
        let picks = (0..50).filter(|_| b.pick(second, 0, &mut rng) == 2).count();
        assert!(picks > 5, "{picks} of 50");
        b.done(first, 2);
        b.done(first, 2);
        assert_eq!(b.loads(first), [0, 0, 0]);
    }

    #[test]
    fn without_ejection_nothing_is_recorded_and_the_choice_is_by_load() {
        let mut b = balancers(None);
        let web = b.of(0, 0);
        b.record(web, 1, REFUSED, 0);
        let mut rng = seeded(1);
        b.set_loads(web, &[5, 0, 5]);
        let picks = (0..50).filter(|_| b.pick(web, 10, &mut rng) == 1).count();
        assert!(picks > 20, "{picks} of 50");
    }
}
