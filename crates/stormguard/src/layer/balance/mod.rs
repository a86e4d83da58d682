//! [`Balance`]: sends each request to one of several instances, avoiding those it already tried
//! and those that keep failing.

mod future;
mod health;
#[cfg(test)]
mod tests;

use std::error::Error as StdError;
use std::fmt;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::{Request, Response};
use rand::SeedableRng;
use tower_service::Service;

use self::future::{ResponseFuture, Step};
use self::health::Health;
use super::error::{classify_error, BoxError, Error, ErrorKind};
use super::retry::response_result;
use crate::backoff::JitterRng;
use crate::instance::{choose_healthy, EjectionConfig, Outcome};
use crate::metrics::{NoMetrics, Observer};

/// Request extension: the instances this request already went to, oldest first, and how many
/// attempts a balancer sent with it.
///
/// The retry layer adds it from the second attempt on, and the hedge layer to both copies of a
/// hedged request; a balancer reads it to send the attempt elsewhere and records where it sent
/// it. Clones share one list, so an inner balancer's choice is seen by the outer layers.
///
/// The count is what makes `stormguard-attempts` exact: every attempt a [`Balance`] sends with
/// the list counts, a hedge's copy included, and the count survives an outer layer's timeout
/// that drops the attempts in flight. Attach one to a request before the outermost layer (as
/// `stormguard proxy` does for every route that can send a request more than once) and every
/// layer reports the same figure.
///
/// ```
/// use stormguard::layer::TriedInstances;
///
/// let tried = TriedInstances::default();
/// tried.record(2);
/// assert_eq!(tried.to_vec(), vec![2]);
/// assert_eq!(tried.attempts(), 0, "recorded after the fact, not sent by a balancer");
/// ```
#[derive(Clone, Debug, Default)]
pub struct TriedInstances(Arc<Tried>);

/// What the clones of one [`TriedInstances`] share: one allocation for the list and the count.
#[derive(Debug, Default)]
struct Tried {
    instances: Mutex<Vec<usize>>,
    sent: AtomicU32,
}

impl TriedInstances {
    /// Records that the request went to `instance`.
    pub fn record(&self, instance: usize) {
        let mut tried = self.lock();
        if tried.last() != Some(&instance) {
            tried.push(instance);
        }
    }

    /// Runs `choose` on the instances tried so far and records the one it chose, under one
    /// lock; counts the attempt when one was chosen.
    fn choose_and_record(&self, choose: impl FnOnce(&[usize]) -> Option<usize>) -> Option<usize> {
        let mut tried = self.lock();
        let chosen = choose(&tried)?;
        if tried.last() != Some(&chosen) {
            tried.push(chosen);
        }
        self.0.sent.fetch_add(1, Ordering::Relaxed);
        Some(chosen)
    }

    /// Attempts a [`Balance`] sent with this list (or a clone of it): 0 before the first.
    pub fn attempts(&self) -> u32 {
        self.0.sent.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<usize>> {
        self.0.instances.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The instances tried so far, oldest first.
    pub fn to_vec(&self) -> Vec<usize> {
        self.lock().clone()
    }
}

/// Response extension set by [`Balance`]: which instance answered (unless built
/// [`without_instance_extension`](Balance::without_instance_extension)).
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
/// instances not yet tried by this request and not ejected, through
/// [`crate::instance::choose_healthy`].
///
/// Each instance is a service (for example a hyper-util client bound to one address). Responses
/// carry an [`Instance`] extension and errors an [`InstanceError`], so that a retry avoids the
/// instance that failed.
///
/// ## Passive health checking
/// An instance that refuses connections never has a request in flight, so load alone would keep
/// choosing it, and every such choice costs a retry. So every attempt's outcome is recorded in an
/// [`OutlierDetector`](crate::instance::OutlierDetector) shared by the clones of the balancer: by
/// default one refused or timed-out connection, or five 5xx or resets in a row, eject the instance
/// for 1 s, doubling while it keeps failing, up to 30 s, and at most half of the instances at once
/// ([`EjectionConfig`], [`crate::instance::ejection`] for why). Outcomes come from the inner
/// service: a connect error as [`classify_error`] sees it, a 5xx status, anything else a
/// success; a timeout (the attempt's future dropped) is not counted. An ejection is reported to
/// the [`observer`](Balance::observer) as [`Event::Ejected`](crate::metrics::Event::Ejected), and
/// [`ejected`](Balance::ejected) says which instances are out now.
///
/// ```
/// use std::convert::Infallible;
/// use stormguard::instance::EjectionConfig;
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
///     .outlier_detection(EjectionConfig { failures: 3, ..EjectionConfig::default() })
///     .target("api");
/// assert_eq!(balance.len(), 2);
/// assert_eq!(balance.in_flight(), vec![0, 0]);
/// assert_eq!(balance.ejected(), vec![false, false]);
/// ```
pub struct Balance<S> {
    // Shared: the retry layer clones its inner service for every request (tower's rule), and a
    // proxy clones its route's stack; neither should copy the instance list each time.
    instances: Arc<[S]>,
    seed: u64,
    state: Arc<State>,
}

/// What the clones of a balancer share, behind one pointer so that a clone costs one count.
struct State {
    in_flight: Box<[AtomicU64]>,
    /// Numbers the choices, so that each draws different random picks from one seed.
    counter: AtomicU64,
    /// `None` without outlier detection.
    health: Option<Health>,
    settings: Settings,
}

/// What the builder methods set, kept to build the state anew.
#[derive(Clone)]
struct Settings {
    ejection: Option<EjectionConfig>,
    observer: Arc<dyn Observer>,
    target: Arc<str>,
    /// Whether responses carry an [`Instance`] extension.
    mark: bool,
}

impl State {
    fn new(instances: usize, settings: Settings) -> Self {
        State {
            in_flight: (0..instances).map(|_| AtomicU64::new(0)).collect(),
            counter: AtomicU64::new(0),
            health: settings.ejection.map(|config| {
                Health::new(
                    config,
                    instances,
                    settings.observer.clone(),
                    settings.target.clone(),
                )
            }),
            settings,
        }
    }
}

impl<S> Clone for Balance<S> {
    fn clone(&self) -> Self {
        Balance {
            instances: self.instances.clone(),
            seed: self.seed,
            state: self.state.clone(),
        }
    }
}

impl<S> Balance<S> {
    /// A balancer over `instances`, with outlier detection on its defaults.
    pub fn new(instances: Vec<S>) -> Self {
        let settings = Settings {
            ejection: Some(EjectionConfig::default()),
            observer: Arc::new(NoMetrics),
            target: Arc::from("default"),
            mark: true,
        };
        Balance {
            state: Arc::new(State::new(instances.len(), settings)),
            instances: instances.into(),
            seed: crate::backoff::process_entropy_seed(),
        }
    }

    /// Changes the settings. The state is built anew, with no request in flight and nothing
    /// recorded: a builder method configures a balancer before it is used, and a clone made
    /// before it keeps the old state.
    fn map(mut self, f: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = self.state.settings.clone();
        f(&mut settings);
        self.state = Arc::new(State::new(self.instances.len(), settings));
        self
    }

    /// Seeds the random picks (tests, simulations).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Ejects failing instances as `config` says (on by default, with
    /// [`EjectionConfig::default`]).
    pub fn outlier_detection(self, config: EjectionConfig) -> Self {
        self.map(|s| s.ejection = Some(config))
    }

    /// Never ejects an instance: the choice goes by load and tried instances only. For a
    /// balancer whose instances are checked by something else (a service mesh, active health
    /// checks that remove them from the list).
    pub fn without_outlier_detection(self) -> Self {
        self.map(|s| s.ejection = None)
    }

    /// Responses carry no [`Instance`] extension (errors still carry their [`InstanceError`]).
    ///
    /// For a balancer whose requests all carry a [`TriedInstances`] list, as under a
    /// [`RetryLayer::balanced`](super::RetryLayer::balanced): the balancer records each choice in
    /// the list, where the retry layer reads it, so the extension only costs a map allocated and
    /// filled on every response.
    ///
    /// ```
    /// use stormguard::layer::Balance;
    ///
    /// let instance = tower::service_fn(|_req: http::Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(()))
    /// });
    /// let balance = Balance::new(vec![instance]).without_instance_extension();
    /// assert_eq!(balance.len(), 1);
    /// ```
    pub fn without_instance_extension(self) -> Self {
        self.map(|s| s.mark = false)
    }

    /// Reports ejections to `observer`, as [`Event::Ejected`](crate::metrics::Event::Ejected).
    /// Share it with the [`RetryLayer`](super::RetryLayer) of the same target.
    pub fn observer(self, observer: impl Observer) -> Self {
        self.map(|s| s.observer = Arc::new(observer))
    }

    /// The name the metrics carry (`target` label): a route or upstream name.
    pub fn target(self, target: &str) -> Self {
        self.map(|s| s.target = Arc::from(target))
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
        self.state
            .in_flight
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }

    /// Which instances are ejected now (tokio's clock), for metrics and status pages: all
    /// `false` without outlier detection.
    pub fn ejected(&self) -> Vec<bool> {
        self.state
            .health
            .as_ref()
            .and_then(Health::ejected)
            .unwrap_or_else(|| vec![false; self.instances.len()])
    }
}

/// Up to this many instances, a choice reads their loads into an array on the stack.
const FEW_INSTANCES: usize = 16;

/// Decrements an instance's in-flight count when its request ends, however it ends.
struct InFlight {
    state: Arc<State>,
    index: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.in_flight[self.index].fetch_sub(1, Ordering::Relaxed);
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
    type Future = ResponseFuture<S::Future, RB>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Readiness is that of the chosen instance, awaited in the call: the choice depends on
        // the request (its tried instances).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let tried = req.extensions().get::<TriedInstances>();
        let state = &self.state;
        // The loads of a few instances are copied to the stack: a list on the heap for every
        // request cost more than the choice itself.
        let mut few = [0u64; FEW_INSTANCES];
        let many: Vec<u64>;
        let loads: &[u64] = if state.in_flight.len() <= FEW_INSTANCES {
            for (load, count) in few.iter_mut().zip(state.in_flight.iter()) {
                *load = count.load(Ordering::Relaxed);
            }
            &few[..state.in_flight.len()]
        } else {
            many = self.in_flight();
            &many
        };
        let n = state.counter.fetch_add(1, Ordering::Relaxed);
        let mut rng = JitterRng::seed_from_u64(self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        // While an instance is suspect every choice reads the ejections: on the stack too.
        let mut few_ejected = [false; FEW_INSTANCES];
        let many_ejected: Option<Vec<bool>>;
        let ejected: &[bool] = match &state.health {
            None => &[],
            Some(health) if loads.len() <= FEW_INSTANCES => {
                let flags = &mut few_ejected[..loads.len()];
                if health.ejected_into(flags) {
                    flags
                } else {
                    &[]
                }
            }
            Some(health) => {
                many_ejected = health.ejected();
                many_ejected.as_deref().unwrap_or(&[])
            }
        };
        let chosen = match tried {
            // Chosen and recorded under one lock, with the list read in place.
            Some(tried) => {
                tried.choose_and_record(|already| choose_healthy(loads, already, ejected, &mut rng))
            }
            None => choose_healthy(loads, &[], ejected, &mut rng),
        };
        let Some(index) = chosen else {
            return ResponseFuture::ready(Err(Error::new(ErrorKind::NoInstance, 0, None).into()));
        };
        state.in_flight[index].fetch_add(1, Ordering::Relaxed);
        let guard = InFlight {
            state: state.clone(),
            index,
        };
        let mut service = self.instances[index].clone();
        // An instance is nearly always ready at once (a pooled client): then the call is made
        // here, and the future holds the call in flight, unboxed; only an instance not ready
        // costs a box that holds the service and the request as well.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match service.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => ResponseFuture {
                state: Step::Called {
                    call: service.call(req),
                    guard: Some(guard),
                },
            },
            Poll::Ready(Err(e)) => ResponseFuture::ready(answered(guard, Err(e.into()))),
            Poll::Pending => ResponseFuture::boxed(Box::pin(async move {
                let answer = async {
                    poll_fn(|cx| service.poll_ready(cx)).await?;
                    service.call(req).await
                }
                .await;
                answered(guard, answer.map_err(Into::into))
            })),
        }
    }
}

/// What an instance answered, recorded in its health and marked with the instance.
fn answered<RB>(
    guard: InFlight,
    answer: Result<Response<RB>, BoxError>,
) -> Result<Response<RB>, BoxError> {
    let index = guard.index;
    let health = guard.state.health.as_ref();
    match answer {
        Ok(mut response) => {
            if let Some(health) = health {
                health.record(index, Outcome::of(response_result(&response)));
            }
            if guard.state.settings.mark {
                response.extensions_mut().insert(Instance(index));
            }
            Ok(response)
        }
        Err(source) => {
            if let Some(health) = health {
                health.record(index, Outcome::of(classify_error(&*source)));
            }
            Err(Box::new(InstanceError {
                instance: index,
                source,
            }) as BoxError)
        }
    }
}
