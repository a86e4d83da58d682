//! [`Balance`]: sends each request to one of several instances, avoiding those it already tried.

use std::error::Error as StdError;
use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response};
use rand::SeedableRng;
use tower_service::Service;

use super::clock;
use super::error::{classify_error, BoxError, Error, ErrorKind};
use crate::backoff::JitterRng;
use crate::classify::AttemptResult;
use crate::instance::choose;

/// Request extension: the instances this request already went to, oldest first.
///
/// The retry layer adds it from the second attempt on, and the hedge layer to both copies of a
/// hedged request; a balancer reads it to send the attempt elsewhere and records where it sent
/// it. Clones share one list, so an inner balancer's choice is seen by the outer layers.
///
/// ```
/// use stormguard::layer::TriedInstances;
///
/// let tried = TriedInstances::default();
/// tried.record(2);
/// assert_eq!(tried.to_vec(), vec![2]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct TriedInstances(Arc<Mutex<Vec<usize>>>);

impl TriedInstances {
    /// Records that the request went to `instance`.
    pub fn record(&self, instance: usize) {
        let mut tried = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if tried.last() != Some(&instance) {
            tried.push(instance);
        }
    }

    /// The instances tried so far, oldest first.
    pub fn to_vec(&self) -> Vec<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Response extension set by [`Balance`]: which instance answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instance(pub usize);

/// An error from one instance of a [`Balance`], with the instance it came from, so that the retry
/// layer can avoid that instance.
#[derive(Debug)]
pub struct InstanceError {
    /// The instance the error came from.
    pub instance: usize,
    source: BoxError,
}

impl fmt::Display for InstanceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "instance {}: {}", self.instance, self.source)
    }
}

impl StdError for InstanceError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.source)
    }
}

/// The instance an error came from, if a [`Balance`] said.
pub(crate) fn instance_of(err: &(dyn StdError + Send + Sync + 'static)) -> Option<usize> {
    let mut next: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<InstanceError>() {
            return Some(found.instance);
        }
        next = e.source();
    }
    None
}

/// Spreads requests over instances: the less loaded (fewer requests in flight) of two random
/// instances not yet tried by this request, through [`crate::instance::choose`].
///
/// Each instance is a service (for example a hyper-util client bound to one address). Responses
/// carry an [`Instance`] extension and errors an [`InstanceError`], so that a retry avoids the
/// instance that failed.
///
/// ```
/// use std::convert::Infallible;
/// use stormguard::layer::Balance;
///
/// // One service per instance; here each answers with its own name.
/// let instance = |name: &'static str| {
///     tower::service_fn(move |_req: http::Request<()>| async move {
///         Ok::<_, Infallible>(http::Response::new(name))
///     })
/// };
/// let balance = Balance::new(vec![instance("a"), instance("b")])
///     .seed(1)
///     .eject_on_connect_failure(std::time::Duration::from_secs(1));
/// assert_eq!(balance.len(), 2);
/// assert_eq!(balance.in_flight(), vec![0, 0]);
/// ```
pub struct Balance<S> {
    // Shared: the retry layer clones its inner service for every request (tower's rule), and a
    // proxy clones its route's stack; neither should copy the instance list each time.
    instances: Arc<[S]>,
    in_flight: Arc<[AtomicU64]>,
    seed: u64,
    counter: Arc<AtomicU64>,
    ejection: Option<Arc<Ejection>>,
}

impl<S> Clone for Balance<S> {
    fn clone(&self) -> Self {
        Balance {
            instances: self.instances.clone(),
            in_flight: self.in_flight.clone(),
            seed: self.seed,
            counter: self.counter.clone(),
            ejection: self.ejection.clone(),
        }
    }
}

/// Instances that failed to connect, skipped by new requests for a while.
struct Ejection {
    cooldown: Duration,
    epoch: OnceLock<Instant>,
    /// Per instance: until when it is skipped, in nanoseconds after `epoch`; 0 when it is not.
    until: Box<[AtomicU64]>,
}

impl Ejection {
    fn nanos(&self, now: Instant) -> u64 {
        let epoch = *self.epoch.get_or_init(|| now);
        u64::try_from(now.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Puts the instances skipped at `now` in front of `avoid`, as if tried before the rest, so
    /// that the request's own last failure stays the one a retry avoids above all.
    fn add_skipped(&self, now: Instant, avoid: &mut Vec<usize>) {
        let now = self.nanos(now);
        let skipped: Vec<usize> = (0..self.until.len())
            .filter(|i| self.until[*i].load(Ordering::Relaxed) > now && !avoid.contains(i))
            .collect();
        if !skipped.is_empty() {
            avoid.splice(0..0, skipped);
        }
    }

    fn eject(&self, index: usize, now: Instant) {
        let cooldown = u64::try_from(self.cooldown.as_nanos()).unwrap_or(u64::MAX);
        let until = self.nanos(now).saturating_add(cooldown).max(1);
        self.until[index].store(until, Ordering::Relaxed);
    }

    fn restore(&self, index: usize) {
        if self.until[index].load(Ordering::Relaxed) != 0 {
            self.until[index].store(0, Ordering::Relaxed);
        }
    }
}

impl<S> Balance<S> {
    /// A balancer over `instances`.
    pub fn new(instances: Vec<S>) -> Self {
        let in_flight = instances.iter().map(|_| AtomicU64::new(0)).collect();
        Balance {
            instances: instances.into(),
            in_flight,
            seed: crate::backoff::process_entropy_seed(),
            counter: Arc::new(AtomicU64::new(0)),
            ejection: None,
        }
    }

    /// Skips an instance that failed to connect (refused, connect timeout, or shed the
    /// request unsent) for `cooldown`, unless every other instance is skipped or tried too.
    ///
    /// Why: least-loaded choice favours an instance that fails fast, since it never has
    /// requests in flight; with one of three instances down, most first attempts would go to it
    /// and their retries would drain the retry budget meant for real failures (Envoy's outlier
    /// detection and linkerd's failure accrual answer the same problem). After the cooldown the
    /// instance gets requests again, and one that answers is used as before. Off by default.
    pub fn eject_on_connect_failure(mut self, cooldown: Duration) -> Self {
        self.ejection = Some(Arc::new(Ejection {
            cooldown,
            epoch: OnceLock::new(),
            until: self.instances.iter().map(|_| AtomicU64::new(0)).collect(),
        }));
        self
    }

    /// Seeds the random picks (tests, simulations).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// How many instances there are.
    pub fn len(&self) -> usize {
        self.instances.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// Requests in flight at each instance.
    pub fn in_flight(&self) -> Vec<u64> {
        self.in_flight
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }
}

/// Decrements an instance's in-flight count when its request ends, however it ends.
struct InFlight {
    counts: Arc<[AtomicU64]>,
    index: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.counts[self.index].fetch_sub(1, Ordering::Relaxed);
    }
}

impl<S, B, RB> Service<Request<B>> for Balance<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Send + 'static,
    RB: Send + 'static,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<RB>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Readiness is that of the chosen instance, awaited in the call: the choice depends on
        // the request (its tried instances).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let tried = req.extensions().get::<TriedInstances>().cloned();
        let loads = self.in_flight();
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut rng = JitterRng::seed_from_u64(self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut avoid = tried.as_ref().map(|t| t.to_vec()).unwrap_or_default();
        let ejection = self.ejection.clone();
        if let Some(ejection) = &ejection {
            ejection.add_skipped(clock::now(), &mut avoid);
        }
        let Some(index) = choose(&loads, &avoid, &mut rng) else {
            return Box::pin(async { Err(Error::new(ErrorKind::NoInstance, 0, None).into()) });
        };
        if let Some(tried) = &tried {
            tried.record(index);
        }
        self.in_flight[index].fetch_add(1, Ordering::Relaxed);
        let guard = InFlight {
            counts: self.in_flight.clone(),
            index,
        };
        let mut service = self.instances[index].clone();
        Box::pin(async move {
            let _guard = guard;
            let wrap = |e: S::Error| -> BoxError {
                let source: BoxError = e.into();
                if let Some(ejection) = &ejection {
                    let result = classify_error(&*source);
                    if matches!(
                        result,
                        AttemptResult::ConnectRefused | AttemptResult::ConnectTimeout
                    ) {
                        ejection.eject(index, clock::now());
                    }
                }
                Box::new(InstanceError {
                    instance: index,
                    source,
                })
            };
            poll_fn(|cx| service.poll_ready(cx)).await.map_err(wrap)?;
            let mut response = service.call(req).await.map_err(wrap)?;
            if let Some(ejection) = &ejection {
                ejection.restore(index);
            }
            response.extensions_mut().insert(Instance(index));
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    #[tokio::test]
    async fn requests_avoid_tried_instances() {
        let make = |i: usize| {
            tower::service_fn(move |_req: Request<()>| async move {
                Ok::<_, Infallible>(Response::new(i))
            })
        };
        let mut balance = Balance::new(vec![make(0), make(1), make(2)]).seed(9);
        for _ in 0..50 {
            let tried = TriedInstances::default();
            tried.record(1);
            let mut req = Request::new(());
            req.extensions_mut().insert(tried.clone());
            let response = balance.call(req).await.unwrap();
            let went = *response.body();
            assert_ne!(went, 1);
            assert_eq!(
                response.extensions().get::<Instance>(),
                Some(&Instance(went))
            );
            assert_eq!(tried.to_vec(), vec![1, went]);
        }
        assert_eq!(balance.in_flight(), vec![0, 0, 0]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_instance_that_refused_is_skipped_until_its_cooldown_passes() {
        let mut balance = Balance::new(first_refuses(3))
            .seed(4)
            .eject_on_connect_failure(Duration::from_secs(1));
        assert_eq!(
            refusals(&mut balance).await,
            1,
            "refused once, then skipped"
        );
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(refusals(&mut balance).await, 0);
        tokio::time::advance(Duration::from_millis(2)).await;
        assert_eq!(
            refusals(&mut balance).await,
            1,
            "tried again after the cooldown"
        );
    }

    /// `n` instances that answer with their index, but instance 0, which refuses connections.
    fn first_refuses(
        n: usize,
    ) -> Vec<
        impl Service<Request<()>, Response = Response<usize>, Error = std::io::Error, Future: Send>
            + Clone
            + Send
            + 'static,
    > {
        (0..n)
            .map(|i| {
                tower::service_fn(move |_req: Request<()>| async move {
                    if i == 0 {
                        Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
                    } else {
                        Ok(Response::new(i))
                    }
                })
            })
            .collect()
    }

    /// Errors among 60 requests.
    async fn refusals<S>(balance: &mut Balance<S>) -> usize
    where
        S: Service<Request<()>, Response = Response<usize>> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send,
    {
        let mut refused = 0;
        for _ in 0..60 {
            refused += usize::from(balance.call(Request::new(())).await.is_err());
        }
        refused
    }

    #[tokio::test]
    async fn a_skipped_instance_still_takes_a_request_when_all_others_were_tried() {
        let mut balance = Balance::new(first_refuses(2))
            .seed(2)
            .eject_on_connect_failure(Duration::from_secs(60));
        assert_eq!(
            refusals(&mut balance).await,
            1,
            "instance 0 is skipped once it refused"
        );
        let tried = TriedInstances::default();
        tried.record(1);
        let mut req = Request::new(());
        req.extensions_mut().insert(tried);
        assert_eq!(instance_of(&*balance.call(req).await.unwrap_err()), Some(0));
    }

    #[tokio::test]
    async fn errors_name_their_instance() {
        let failing = tower::service_fn(|_req: Request<()>| async {
            Err::<Response<()>, BoxError>("boom".into())
        });
        let mut balance = Balance::new(vec![failing]);
        let err = balance.call(Request::new(())).await.unwrap_err();
        assert_eq!(instance_of(&*err), Some(0));
    }
}
