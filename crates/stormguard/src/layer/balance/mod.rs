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
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};

use http::{Request, Response};
use rand::SeedableRng;
use tower_service::Service;

use self::future::{ResponseFuture, Step};
use self::health::Health;
use super::error::{classify_error, BoxError, Error, ErrorKind};
use super::retry::response_result;
use crate::backoff::JitterRng;
use crate::instance::{choose_healthy, EjectionConfig, Outcome, OutlierDetector};
use crate::metrics::{NoMetrics, Observer};

/// Request extension: the instances this request already went to, oldest first, and how many
/// attempts a balancer sent with it.
///
/// A retry layer adds it to its retries (with the instance each earlier attempt went to), and
/// the hedge layer to both copies of a hedged request that came without one; a balancer reads
/// it to send the attempt elsewhere and records where it sent it (in place of an [`Instance`]
/// response extension). Clones share one list, so an inner balancer's choice is seen by the
/// outer layers.
///
/// The count is what makes `stormguard-attempts` exact: every attempt a [`Balance`] sends with
/// the list counts, a hedge's copy included. The retry layer's first attempt carries none
/// (nearly every request ends with it); when its per-try timeout drops that attempt, the
/// balancer below reports an attempt that came without a list and is dropped unanswered, and a
/// hedge below its own list of both copies, to a list the layer watches the drop with. A hedge
/// that made its own list hands it up on its response, which may so carry one. A timeout of
/// another layer above (a caller's, the
/// deadline layer's) is seen only through a list the request carries: attach one before the
/// outermost layer and every layer reports the same figure; a list that comes with the request
/// is used as it is. Read it afterwards to learn where the request went.
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

    /// A new, empty list, from this thread's pool of lists that nobody held any more when
    /// their request ended ([`recycle`](TriedInstances::recycle)), else allocated.
    ///
    /// Why: a retry layer makes a list for every request it retries, and when a dependency
    /// fails that is most of its requests, each ending with the list held by the layer alone.
    /// A list taken from the pool costs no allocation (nor does the record of its first
    /// choices: the instances it had keep their room).
    pub(crate) fn pooled() -> Self {
        POOL.try_with(|pool| pool.borrow_mut().pop())
            .ok()
            .flatten()
            .map_or_else(Self::default, TriedInstances)
    }

    /// Gives the list back to this thread's pool, emptied, if no clone of it is left (nobody
    /// can see it any more) and the pool has room; else drops it.
    pub(crate) fn recycle(mut self) {
        let Some(tried) = Arc::get_mut(&mut self.0) else {
            return;
        };
        let Ok(instances) = tried.instances.get_mut() else {
            return;
        };
        if instances.capacity() > POOLED_INSTANCES {
            return;
        }
        instances.clear();
        *tried.sent.get_mut() = 0;
        let _ = POOL.try_with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < POOLED_LISTS {
                pool.push(self.0);
            }
        });
    }
}

impl TriedInstances {
    /// Runs `drop_attempts` (which drops or polls futures of attempts in flight) with this
    /// list watching: what is dropped meanwhile, on this thread, is recorded here with its
    /// instances and counted: an attempt that a [`Balance`] below had sent with no list and
    /// that had no answer, and the list of a layer below that made one for its own attempts
    /// (a hedge's for its copies, answered or not; an inner retry layer's: [`HeldList`]).
    ///
    /// Why: a retry layer gives its first attempt no list (nearly every request ends with that
    /// attempt answered, and a list in the request's extensions cost a map made and freed per
    /// request, a fifth of what the layer cost, callgrind). An answer names its instance (an
    /// [`Instance`], a hedge's list on its response, or an [`InstanceError`]), but an attempt
    /// the per-try timeout ends names none, nor does one a timeout layer below ends (which
    /// drops the call as it answers), and a retry must still go elsewhere, and the copies of a
    /// hedge below, dropped with it, must still be counted. So the layer drops its first
    /// attempt under a watch, and polls it under one once it has waited. The futures are
    /// dropped synchronously, inside this call, so their guards report here; watches nest (an
    /// inner layer's watch is restored when it ends), and no list watches outside such a call.
    /// What a layer runs and drops on another task (a spawned call) is not heard of, nor is an
    /// attempt a layer below gives up on in the first poll (a timer already run out): a retry
    /// after such an attempt may go back to its instance. (`tower::buffer`'s worker only makes
    /// the call; its future is polled and dropped on the caller's task, and is heard of.)
    pub(crate) fn watching<R>(&self, drop_attempts: impl FnOnce() -> R) -> R {
        let _scope = self.watch();
        drop_attempts()
    }

    /// [`watching`](Self::watching) as a guard: this list watches until the guard is dropped,
    /// when the watch that was there before is put back (even if a drop panics meanwhile).
    #[cold]
    #[inline(never)]
    pub(crate) fn watch(&self) -> Watch {
        let previous = WATCH
            .try_with(|watch| watch.replace(Some(self.clone())))
            .ok()
            .flatten();
        Watch(previous)
    }
}

/// A [`HeldList`]'s list lent to the thread's watch ([`HeldList::lend`]).
pub(crate) struct Lent<'a> {
    held: &'a mut HeldList,
    previous: Option<TriedInstances>,
}

impl Drop for Lent<'_> {
    #[inline(never)]
    fn drop(&mut self) {
        let previous = self.previous.take();
        if let Ok(list) = WATCH.try_with(|watch| watch.replace(previous)) {
            self.held.0 = list;
        }
    }
}

/// While it lives, a list watches ([`TriedInstances::watch`]); it holds the one it replaced.
pub(crate) struct Watch(Option<TriedInstances>);

impl Drop for Watch {
    #[inline(never)]
    fn drop(&mut self) {
        let previous = self.0.take();
        let _ = WATCH.try_with(|watch| watch.set(previous));
    }
}

/// An attempt sent to `instance` with no list was dropped unanswered: the watching list, if
/// any, records and counts it ([`TriedInstances::watching`]).
fn abandoned(instance: usize) {
    with_watch(|watch| {
        watch.record(instance);
        watch.add_sent(1);
    });
}

/// Runs `report` on the list watching a drop on this thread, if any.
fn with_watch(report: impl FnOnce(&TriedInstances)) {
    let _ = WATCH.try_with(|watch| {
        let list = watch.take();
        if let Some(list) = &list {
            report(list);
        }
        watch.set(list);
    });
}

impl TriedInstances {
    /// Adds `n` attempts to the count: those sent before the list existed.
    pub(crate) fn add_sent(&self, n: u32) {
        self.0.sent.fetch_add(n, Ordering::Relaxed);
    }

    /// Tells the list watching a drop, if any, of this one's instances and attempts: a layer
    /// that made the list (a hedge for its copies, a retry layer for its retries) and is
    /// dropped before it ends. The attempts below that carry this list are counted in it, not
    /// reported one by one ([`InFlight`] reports only attempts that came without a list).
    fn report_unfinished(&self) {
        with_watch(|watch| {
            if Arc::ptr_eq(&watch.0, &self.0) {
                return;
            }
            for instance in self.to_vec() {
                watch.record(instance);
            }
            watch.add_sent(self.attempts());
        });
    }
}

/// A list a layer made for its own attempts, held while they may be in flight: if the layer's
/// future is dropped before it ends (a per-try timeout above it), the list is reported to the
/// list watching that drop ([`TriedInstances::watching`]), so that its instances and attempts
/// are not lost with it. Taken out (`.0.take()`) when the layer ends.
pub(crate) struct HeldList(pub(crate) Option<TriedInstances>);

impl Drop for HeldList {
    #[inline]
    fn drop(&mut self) {
        // Inline, the list out of line: nearly every one is dropped empty.
        if self.0.is_some() {
            self.report();
        }
    }
}

impl HeldList {
    /// Lends the list to this thread's watch until the returned guard is dropped, when it
    /// comes back here and the watch that was there before is put back (a drop that panics
    /// meanwhile included). Moved rather than cloned: no count is taken on it, for a watch
    /// that nearly never hears of anything (see [`TriedInstances::watching`]). `None` when
    /// there is no list to lend.
    pub(crate) fn lend(&mut self) -> Option<Lent<'_>> {
        self.0.as_ref()?;
        Some(self.lend_list())
    }

    #[inline(never)]
    fn lend_list(&mut self) -> Lent<'_> {
        let list = self.0.take();
        let previous = WATCH.try_with(|watch| watch.replace(list)).ok().flatten();
        Lent {
            held: self,
            previous,
        }
    }

    #[cold]
    #[inline(never)]
    fn report(&mut self) {
        if let Some(list) = self.0.take() {
            list.report_unfinished();
        }
    }
}

thread_local! {
    /// Lists recycled on this thread, for [`TriedInstances::pooled`].
    static POOL: std::cell::RefCell<Vec<Arc<Tried>>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The list watching attempts being dropped on this thread, if any
    /// ([`TriedInstances::watching`]).
    static WATCH: std::cell::Cell<Option<TriedInstances>> = const { std::cell::Cell::new(None) };
}

/// At most this many lists wait in a thread's pool: enough for the requests a thread has in
/// flight at once on a busy proxy, few enough that an idle thread holds little.
const POOLED_LISTS: usize = 64;

/// A list that grew past this many instances is dropped rather than pooled, so that one
/// request that went to many instances does not keep its room for ever.
const POOLED_INSTANCES: usize = 16;

/// Response extension set by [`Balance`]: which instance answered a request that came without
/// a [`TriedInstances`] list.
///
/// A request with a list has the balancer's choice recorded in the list instead, where the
/// retry layer reads it: an extension on every response would cost a map allocated and filled
/// for nothing. To learn where such a request went, attach the list and read it.
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

#[cfg(test)]
impl InstanceError {
    /// `source`, as instance `instance` of a balancer gave it.
    pub(crate) fn new(instance: usize, source: BoxError) -> Self {
        InstanceError { instance, source }
    }
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
/// Each instance is a service (for example a hyper-util client bound to one address). A
/// request's choice is recorded in its [`TriedInstances`] list when it carries one (as a retry
/// layer's retries do), its response is marked with an [`Instance`] extension when it does
/// not, an error always carries an [`InstanceError`], and an attempt that came without a list
/// and is dropped unanswered is reported to the list watching its drop, if any: so a retry
/// avoids the instance that failed
/// or hung, and an answer says where it came from.
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
    // proxy clones its route's stack; neither should copy the instance list each time. Behind a
    // lock only so that [`update`](Balance::update) can change the set under the running
    // stack: a request takes a read lock for its choice, which a writer holds only to swap.
    current: Arc<RwLock<Members<S>>>,
    seed: u64,
}

/// One set of instances and what the balancer knows of them.
struct Members<S> {
    instances: Arc<[S]>,
    state: Arc<State>,
}

/// What the clones of a balancer share, behind one pointer so that a clone costs one count.
struct State {
    /// Each instance's count, shared with the sets that follow while the instance stays, so
    /// that a request sent before a change is still counted after it.
    in_flight: Box<[Arc<AtomicU64>]>,
    /// Each instance's name (an address), by which a changed set keeps an instance's state.
    names: Arc<[Arc<str>]>,
    /// Each instance's stable number: what [`TriedInstances`], [`Instance`], [`InstanceError`]
    /// and [`Event::Ejected`](crate::metrics::Event::Ejected) carry, so that a retry after a
    /// change still avoids the instance it tried. Never reused within a balancer.
    ids: Box<[usize]>,
    /// Whether `ids[i] == i` for every instance (a set never changed): the choice then reads
    /// the tried list as positions, with no lookup.
    ids_are_positions: bool,
    /// The number the next new instance gets.
    next_id: usize,
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
}

impl State {
    /// A state for `names`, carrying what `previous` knew of each name it also had.
    fn new(names: Arc<[Arc<str>]>, settings: Settings, previous: Option<&State>) -> Self {
        let mut next_id = previous.map_or(0, |p| p.next_id);
        let mut in_flight = Vec::with_capacity(names.len());
        let mut ids = Vec::with_capacity(names.len());
        let mut from = Vec::with_capacity(names.len());
        for name in names.iter() {
            let old = previous.and_then(|p| Some((p, p.names.iter().position(|n| n == name)?)));
            match old {
                Some((p, i)) => {
                    in_flight.push(p.in_flight[i].clone());
                    ids.push(p.ids[i]);
                    from.push(Some(i));
                }
                None => {
                    in_flight.push(Arc::new(AtomicU64::new(0)));
                    ids.push(next_id);
                    next_id += 1;
                    from.push(None);
                }
            }
        }
        let health = settings.ejection.map(|config| {
            let detector = match previous.and_then(|p| p.health.as_ref()) {
                Some(health) => health.detector().carried(&from),
                None => OutlierDetector::new(config, names.len()),
            };
            Health::new(
                detector,
                names.clone(),
                settings.observer.clone(),
                settings.target.clone(),
            )
        });
        State {
            in_flight: in_flight.into(),
            ids_are_positions: ids.iter().enumerate().all(|(i, id)| i == *id),
            ids: ids.into(),
            names,
            next_id,
            counter: AtomicU64::new(0),
            health,
            settings,
        }
    }

    /// Where the instance numbered `id` is in this set, if it is.
    fn position(&self, id: usize) -> Option<usize> {
        if self.ids_are_positions {
            return (id < self.ids.len()).then_some(id);
        }
        self.ids.iter().position(|i| *i == id)
    }
}

impl<S> Clone for Balance<S> {
    fn clone(&self) -> Self {
        Balance {
            current: self.current.clone(),
            seed: self.seed,
        }
    }
}

/// The names instances get when none is given: their positions.
fn numbered(n: usize) -> Arc<[Arc<str>]> {
    (0..n).map(|i| Arc::from(i.to_string())).collect()
}

impl<S> Balance<S> {
    /// A balancer over `instances`, with outlier detection on its defaults. The instances are
    /// named by their positions; see [`named`](Balance::named).
    pub fn new(instances: Vec<S>) -> Self {
        let names = numbered(instances.len());
        Self::with_names(names, instances)
    }

    /// A balancer over `instances`, each with its name (an address, say): the name is what an
    /// ejection's log line says, and what [`update`](Balance::update) and
    /// [`carry`](Balance::carry) know an instance by.
    ///
    /// ```
    /// use stormguard::layer::Balance;
    ///
    /// let instance = tower::service_fn(|_req: http::Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(()))
    /// });
    /// let balance = Balance::named(vec![("10.0.0.1:80", instance.clone())]);
    /// balance.update(vec![("10.0.0.1:80", instance.clone()), ("10.0.0.2:80", instance)]);
    /// let names = balance.names();
    /// assert_eq!(names.iter().map(|n| &**n).collect::<Vec<_>>(), ["10.0.0.1:80", "10.0.0.2:80"]);
    /// ```
    pub fn named(instances: Vec<(impl Into<Arc<str>>, S)>) -> Self {
        let (names, instances): (Vec<Arc<str>>, Vec<S>) = instances
            .into_iter()
            .map(|(name, service)| (name.into(), service))
            .unzip();
        Self::with_names(names.into(), instances)
    }

    fn with_names(names: Arc<[Arc<str>]>, instances: Vec<S>) -> Self {
        let settings = Settings {
            ejection: Some(EjectionConfig::default()),
            observer: Arc::new(NoMetrics),
            target: Arc::from("default"),
        };
        Balance {
            current: Arc::new(RwLock::new(Members {
                state: Arc::new(State::new(names, settings, None)),
                instances: instances.into(),
            })),
            seed: crate::backoff::process_entropy_seed(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Members<S>> {
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the settings. The state is built anew, with no request in flight and nothing
    /// recorded: a builder method configures a balancer before it is used, and a clone made
    /// before it keeps the old state.
    fn map(self, f: impl FnOnce(&mut Settings)) -> Self {
        let (instances, state) = {
            let members = self.read();
            (members.instances.clone(), members.state.clone())
        };
        let mut settings = state.settings.clone();
        f(&mut settings);
        Balance {
            current: Arc::new(RwLock::new(Members {
                state: Arc::new(State::new(state.names.clone(), settings, None)),
                instances,
            })),
            seed: self.seed,
        }
    }

    /// Replaces the instances, for this balancer and every clone of it (the stacks that hold
    /// it): requests from now on choose among `instances`. An instance whose name was in the
    /// set before keeps its in-flight count and its ejection record, so a refresh neither
    /// forgets a failing instance nor loads an idle-looking busy one; a new one starts clean.
    /// A request already sent to an instance that left finishes there (its service is held by
    /// its future), and a retry after the change still avoids the instances it tried.
    ///
    /// An outcome that arrives after the change from a request sent before it is recorded in
    /// the old set's detector, which no choice reads any more: a change loses at most the
    /// outcomes of the requests in flight across it.
    pub fn update(&self, instances: Vec<(impl Into<Arc<str>>, S)>) {
        let (names, instances): (Vec<Arc<str>>, Vec<S>) = instances
            .into_iter()
            .map(|(name, service)| (name.into(), service))
            .unzip();
        let mut members = self.current.write().unwrap_or_else(|e| e.into_inner());
        let state = State::new(
            names.into(),
            members.state.settings.clone(),
            Some(&members.state),
        );
        *members = Members {
            instances: instances.into(),
            state: Arc::new(state),
        };
    }

    /// Takes over what `previous` knows of the instances both have by name: in-flight counts
    /// and ejection records. For a balancer built to replace another (a reload that changed a
    /// route), so that an instance ejected before the reload stays ejected after it. Call it
    /// last, after the other builder methods.
    pub fn carry<T>(self, previous: &Balance<T>) -> Self {
        {
            let old = previous.read();
            let mut members = self.current.write().unwrap_or_else(|e| e.into_inner());
            let mut state = State::new(
                members.state.names.clone(),
                members.state.settings.clone(),
                Some(&old.state),
            );
            // Numbers are this balancer's own: its requests never carried the old ones.
            state.ids = (0..state.ids.len()).collect();
            state.ids_are_positions = true;
            state.next_id = state.ids.len();
            members.state = Arc::new(state);
        }
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
        self.read().instances.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Each instance's name, in order: as given to [`named`](Balance::named) or
    /// [`update`](Balance::update), or its position.
    pub fn names(&self) -> Vec<Arc<str>> {
        self.read().state.names.to_vec()
    }

    /// Requests in flight at each instance.
    pub fn in_flight(&self) -> Vec<u64> {
        self.read()
            .state
            .in_flight
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }

    /// Which instances are ejected now (tokio's clock), for metrics and status pages: all
    /// `false` without outlier detection.
    pub fn ejected(&self) -> Vec<bool> {
        let members = self.read();
        members
            .state
            .health
            .as_ref()
            .and_then(Health::ejected)
            .unwrap_or_else(|| vec![false; members.instances.len()])
    }
}

/// Up to this many instances, a choice reads their loads into an array on the stack.
const FEW_INSTANCES: usize = 16;

/// Decrements an instance's in-flight count when its request ends, however it ends.
struct InFlight {
    state: Arc<State>,
    index: usize,
    /// Whether the request came without a [`TriedInstances`] list, so that its response is
    /// marked with an [`Instance`] instead (see [`answered`]).
    mark: bool,
    /// Whether the instance answered (see [`answered`]); a guard dropped before that is an
    /// attempt given up on, which a watching list hears of ([`TriedInstances::watching`]) when
    /// its request came without a list (one with a list counted it there, and the layer that
    /// made that list reports it: [`HeldList`]).
    answered: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.in_flight[self.index].fetch_sub(1, Ordering::Relaxed);
        if !self.answered && self.mark {
            abandoned(self.state.ids[self.index]);
        }
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
        let members = self.read();
        let state = &members.state;
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
            many = state
                .in_flight
                .iter()
                .map(|n| n.load(Ordering::Relaxed))
                .collect();
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
            // Chosen and recorded under one lock, with the list read in place; the list holds
            // instance numbers, which are positions until the set changes.
            Some(tried) => tried.choose_and_record(|already| {
                let index = if state.ids_are_positions {
                    choose_healthy(loads, already, ejected, &mut rng)
                } else {
                    let here: Vec<usize> = already
                        .iter()
                        .filter_map(|id| state.position(*id))
                        .collect();
                    choose_healthy(loads, &here, ejected, &mut rng)
                };
                index.map(|i| state.ids[i])
            }),
            None => choose_healthy(loads, &[], ejected, &mut rng).map(|i| state.ids[i]),
        };
        let Some(index) = chosen.and_then(|id| state.position(id)) else {
            return ResponseFuture::ready(Err(Error::new(ErrorKind::NoInstance, 0, None).into()));
        };
        state.in_flight[index].fetch_add(1, Ordering::Relaxed);
        let guard = InFlight {
            state: state.clone(),
            index,
            mark: tried.is_none(),
            answered: false,
        };
        let mut service = members.instances[index].clone();
        drop(members);
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

/// What an instance answered, recorded in its health and marked with the instance: an error
/// always (an [`InstanceError`]), a response with an [`Instance`] extension when its request came
/// without a [`TriedInstances`] list. A request with a list has the choice recorded there
/// already, which is where the retry layer reads it; the extension would only cost a map
/// allocated and filled on every response.
fn answered<RB>(
    mut guard: InFlight,
    answer: Result<Response<RB>, BoxError>,
) -> Result<Response<RB>, BoxError> {
    guard.answered = true;
    let index = guard.index;
    let id = guard.state.ids[index];
    let health = guard.state.health.as_ref();
    match answer {
        Ok(mut response) => {
            if let Some(health) = health {
                health.record(index, id, Outcome::of(response_result(&response)));
            }
            if guard.mark {
                response.extensions_mut().insert(Instance(id));
            }
            Ok(response)
        }
        Err(source) => {
            if let Some(health) = health {
                health.record(index, id, Outcome::of(classify_error(&*source)));
            }
            Err(Box::new(InstanceError {
                instance: id,
                source,
            }) as BoxError)
        }
    }
}
