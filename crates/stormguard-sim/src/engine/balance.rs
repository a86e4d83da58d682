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
//! ## Why one detector per edge and calling instance
//! The proxy runs beside each instance of a service, with one balancer per route, so each caller
//! instance learns on its own which callee instances fail: a dead instance costs one probe per
//! caller instance per ejection, not one for the whole service. The records take under 50 bytes
//! per callee instance, per caller instance, per edge: a hundred callers over a hundred callees
//! is half a megabyte, and real graphs are far smaller, so one detector for a whole edge (which
//! would make every caller instance learn from the others' failures) buys nothing worth that.
//!
//! ## Why it costs nothing while all is well
//! As in the layer, a detector with no instance suspect (no failure nor ejection unforgiven) can
//! eject none, so the choice skips the mask, and a success at an instance not suspect changes
//! nothing, so it is not recorded: a healthy attempt pays two comparisons.

use std::time::{Duration, Instant};

use rand::Rng;
use stormguard::classify::AttemptResult;
use stormguard::instance::{choose_healthy, EjectionConfig, Outcome, OutlierDetector};

use super::model::Model;

/// One calling instance's balancer for one edge: its detector, and how many instances it
/// suspects.
struct Health {
    detector: OutlierDetector,
    /// Instances for which `detector.is_suspect` holds: with none, none is ejected.
    suspects: usize,
}

/// Every calling instance's balancer for every edge.
pub(crate) struct Balancers {
    origin: Instant,
    /// `None`: no ejection, as a `Balance` built `without_outlier_detection`.
    config: Option<EjectionConfig>,
    /// Per edge, the place of its first calling instance in `health`.
    first: Vec<usize>,
    health: Vec<Health>,
    /// The ejected mask of the choice being made, kept so that a choice allocates nothing.
    ejected: Vec<bool>,
}

impl Balancers {
    /// A balancer per edge and calling instance, ejecting as `config` says (`None`: never).
    pub(crate) fn new(model: &Model, origin: Instant, config: Option<EjectionConfig>) -> Self {
        let mut first = Vec::with_capacity(model.edges.len());
        let mut health = Vec::new();
        for edge in &model.edges {
            first.push(health.len());
            if let Some(config) = config {
                let callees = model.services[edge.to].instances;
                health.extend((0..model.services[edge.from].instances).map(|_| Health {
                    detector: OutlierDetector::new(config, callees),
                    suspects: 0,
                }));
            }
        }
        Balancers {
            origin,
            config,
            first,
            health,
            ejected: Vec::new(),
        }
    }

    /// The balancer of `edge` on its calling instance `caller`.
    pub(crate) fn of(&self, edge: usize, caller: usize) -> usize {
        self.first[edge] + caller
    }

    /// The instance for the next attempt of a call through `balancer` at virtual time `t`:
    /// `loads` are the callee's, `tried` the call's instances so far.
    pub(crate) fn choose<R: Rng + ?Sized>(
        &mut self,
        balancer: usize,
        loads: &[u64],
        tried: &[usize],
        t: u64,
        rng: &mut R,
    ) -> usize {
        let ejected: &[bool] = match self.health.get(balancer) {
            Some(health) if health.suspects > 0 => {
                let now = self.origin + Duration::from_nanos(t);
                self.ejected.clear();
                self.ejected
                    .extend((0..loads.len()).map(|i| health.detector.is_ejected(i, now)));
                &self.ejected
            }
            _ => &[],
        };
        choose_healthy(loads, tried, ejected, rng).expect("every service has an instance")
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
        health.detector.record(instance, outcome, now);
        match (was, health.detector.is_suspect(instance)) {
            (false, true) => health.suspects += 1,
            (true, false) => health.suspects -= 1,
            _ => {}
        }
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
        for _ in 0..50 {
            assert_ne!(b.choose(first, &[5, 0, 5], &[], 10, &mut rng), 1);
        }
        // The ejection is over after a second: the idle instance is picked again.
        let picks = (0..50)
            .filter(|_| b.choose(first, &[5, 0, 5], &[], SECOND, &mut rng) == 1)
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
        assert_eq!(b.health[web].suspects, 0, "forgiven");
        for _ in 0..5 {
            b.record(web, 0, unavailable, 0);
        }
        assert!(b.is_ejected(web, 0, 0));
        assert_eq!(b.health[web].suspects, 1);
    }

    #[test]
    fn without_ejection_nothing_is_recorded_and_the_choice_is_by_load() {
        let mut b = balancers(None);
        let web = b.of(0, 0);
        b.record(web, 1, REFUSED, 0);
        let mut rng = seeded(1);
        let picks = (0..50)
            .filter(|_| b.choose(web, &[5, 0, 5], &[], 10, &mut rng) == 1)
            .count();
        assert!(picks > 20, "{picks} of 50");
    }
}
