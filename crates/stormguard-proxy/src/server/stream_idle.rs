//! `stream_idle_timeout`: a request whose bodies have stopped moving is cut off, and what it held
//! upstream is freed.
//!
//! ## Why a watchdog, not a timer in the body
//! A client that does not read makes hyper stop polling the response body: HTTP/1.1 waits for
//! its writes to drain, HTTP/2 for the client's window. A timer inside the body's poll would
//! never fire, and the body would hold its upstream's `max_in_flight` place and its upstream
//! connection for as long as the client keeps its connection open. So the bodies only mark
//! that they moved ([`UnderWay::moved`]: one relaxed store a frame, no clock read), and a
//! watchdog on each client connection looks at the marks four times per timeout. A request
//! whose bodies were still for the whole timeout is cut off: HTTP/1.1 closes the connection
//! (the only way to end a response under way), HTTP/2 aborts the stream's task, which resets
//! the stream (`RST_STREAM`) and leaves the connection's other streams alone. Either way the
//! response body is dropped, and with it the upstream's body (an HTTP/1.1 upstream connection
//! is closed, not kept) and the request's place in `max_in_flight`.
//!
//! ## What counts
//! Only bodies under way: the client's body while it streams to the upstream, and the
//! response body from its head to its end. Any frame of either resets the clock, as Envoy's
//! `stream_idle_timeout` does. The wait for the response head is not watched: that is the
//! route's `timeout`'s, which [`crate::config`] shows at `/config`. A body the proxy reads
//! before forwarding has its own clock (`request_body_timeout`), which can still answer 408.
//!
//! A request is cut between one and one and a quarter timeouts after its bodies last moved.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio::time::Instant;

/// Whether a request's bodies are under way and have moved since the watchdog last looked.
/// HTTP/1.1 has one per connection (one request at a time), HTTP/2 one per stream.
pub(crate) struct BodyWatch {
    /// Bodies under way: the client's, the response's.
    under_way: AtomicU32,
    /// A body under way yielded a frame since the watchdog last looked.
    moved: AtomicBool,
    /// Bytes of the client's body taken since the request arrived, for the access log: the
    /// watch is the one thing the request's record and its body share (HTTP/1.1: one request
    /// at a time, so the count starts again with each).
    received: AtomicU64,
}

impl BodyWatch {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(BodyWatch {
            under_way: AtomicU32::new(0),
            moved: AtomicBool::new(false),
            received: AtomicU64::new(0),
        })
    }

    /// A new request: its client body has not sent a byte yet.
    pub(crate) fn reset_received(&self) {
        self.received.store(0, Ordering::Relaxed);
    }

    /// `n` more bytes of the client's body were taken.
    #[inline]
    pub(crate) fn received_more(&self, n: usize) {
        self.received.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Bytes of the client's body taken since [`BodyWatch::reset_received`].
    pub(crate) fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Marks a body under way until the returned mark is dropped (at the body's end, or with
    /// the body).
    pub(crate) fn start(self: &Arc<Self>) -> UnderWay {
        self.under_way.fetch_add(1, Ordering::AcqRel);
        UnderWay(self.clone())
    }
}

/// A body under way, counted in its [`BodyWatch`] until dropped.
pub(crate) struct UnderWay(Arc<BodyWatch>);

impl UnderWay {
    /// Says that the body yielded a frame. The common case (already marked since the last
    /// look) only reads.
    #[inline]
    pub(crate) fn moved(&self) {
        let moved = &self.0.moved;
        if !moved.load(Ordering::Relaxed) {
            moved.store(true, Ordering::Relaxed);
        }
    }
}

impl UnderWay {
    /// The watch this body reports to.
    pub(crate) fn watch(&self) -> &BodyWatch {
        &self.0
    }
}

impl Drop for UnderWay {
    fn drop(&mut self) {
        self.0.under_way.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The watchdog's view of one [`BodyWatch`]: since when its bodies have been seen still.
#[derive(Default)]
struct Still {
    since: Option<Instant>,
}

impl Still {
    /// Looks at `watch` at `now`: whether a body has been under way without moving for
    /// `limit`. A body that moved since the last look is taken to have moved now.
    fn too_long(&mut self, watch: &BodyWatch, now: Instant, limit: Duration) -> bool {
        let moved = watch.moved.swap(false, Ordering::Relaxed);
        if watch.under_way.load(Ordering::Acquire) == 0 {
            self.since = None;
            return false;
        }
        if moved {
            self.since = Some(now);
            return false;
        }
        let since = *self.since.get_or_insert(now);
        now.saturating_duration_since(since) >= limit
    }
}

/// How often the watchdog looks: a quarter of the timeout, so that a request is cut at most a
/// quarter late, and a connection's task wakes four times a timeout (every 15 s by default).
fn period(limit: Duration) -> Duration {
    (limit / 4).max(Duration::from_millis(1))
}

/// Resolves once the HTTP/1.1 connection's request has had a body under way that did not move
/// for `limit`. Cancel safe.
pub(super) async fn stalled(watch: &BodyWatch, limit: Duration) {
    let mut still = Still::default();
    let period = period(limit);
    loop {
        tokio::time::sleep(period).await;
        if still.too_long(watch, Instant::now(), limit) {
            return;
        }
    }
}

/// The streams of one HTTP/2 connection, each watched, and the executor that spawns their
/// tasks so that a stalled one can be aborted.
pub(super) struct H2Streams {
    inner: Mutex<Streams>,
}

struct Streams {
    /// The watch of the stream whose request just reached the service, until hyper spawns its
    /// task: hyper calls the service and spawns the stream's task one after the other.
    next: Option<Arc<BodyWatch>>,
    watched: Vec<Watched>,
    /// `watched` is pruned of ended streams when it grows to this, so that a connection that
    /// carries many short streams between two looks of the watchdog keeps few entries.
    prune_at: usize,
}

struct Watched {
    watch: Arc<BodyWatch>,
    task: AbortHandle,
    still: Still,
}

const PRUNE_AT_LEAST: usize = 64;

impl H2Streams {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(H2Streams {
            inner: Mutex::new(Streams {
                next: None,
                watched: Vec::new(),
                prune_at: PRUNE_AT_LEAST,
            }),
        })
    }

    fn streams(&self) -> std::sync::MutexGuard<'_, Streams> {
        // A list of streams stays valid after any panic.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The watch of a stream whose request just reached the service; its task, spawned next by
    /// [`StreamExecutor`], is the one aborted if it stalls.
    pub(super) fn arrived(&self) -> Arc<BodyWatch> {
        let watch = BodyWatch::new();
        // Only the connection's task calls the service and the executor: never contended.
        self.streams().next = Some(watch.clone());
        watch
    }

    /// Runs `serving`, the connection's task, with these as the streams [`StreamExecutor`]
    /// spawns into: hyper spawns each stream's task from within the connection's poll.
    pub(super) async fn serve<F: Future>(self: Arc<Self>, serving: F) -> F::Output {
        CONNECTION.scope(self, serving).await
    }

    /// Keeps `task`, just spawned, with the watch of the request that [`H2Streams::arrived`]
    /// last (hyper calls the service and spawns the stream's task one after the other).
    fn spawned(&self, task: AbortHandle) {
        let mut streams = self.streams();
        // Nothing waiting is a task that is not a request's stream: left unwatched.
        let Some(watch) = streams.next.take() else {
            return;
        };
        if streams.watched.len() >= streams.prune_at {
            streams.watched.retain(|stream| !stream.task.is_finished());
            streams.prune_at = (streams.watched.len() * 2).max(PRUNE_AT_LEAST);
        }
        streams.watched.push(Watched {
            watch,
            task,
            still: Still::default(),
        });
    }

    /// Aborts, for as long as it is polled, every stream that had a body under way that did
    /// not move for `limit`. Never resolves; cancel safe.
    pub(super) async fn cut_stalled(
        &self,
        limit: Duration,
        cut: &prometheus_client::metrics::counter::Counter,
    ) -> Infallible {
        let period = period(limit);
        loop {
            tokio::time::sleep(period).await;
            let now = Instant::now();
            let mut streams = self.streams();
            streams.watched.retain_mut(|stream| {
                if stream.task.is_finished() {
                    return false;
                }
                if stream.still.too_long(&stream.watch, now, limit) {
                    tracing::debug!(
                        ?limit,
                        "resetting an HTTP/2 stream whose bodies stalled (stream_idle_timeout)"
                    );
                    stream.task.abort();
                    cut.inc();
                    return false;
                }
                true
            });
        }
    }
}

tokio::task_local! {
    /// The streams of the HTTP/2 connection whose task is running ([`H2Streams::serve`]).
    static CONNECTION: Arc<H2Streams>;
}

/// Spawns each HTTP/2 stream's task on tokio, as hyper's `TokioExecutor` does, and keeps a
/// handle to abort it in its connection's [`H2Streams`]. One for every connection of a
/// generation (it is in the generation's connection builder): the connection is the one
/// whose task spawns, told by [`H2Streams::serve`].
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct StreamExecutor;

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        let task = tokio::spawn(future).abort_handle();
        // Outside a connection's task (never, from hyper's server) it is spawned unwatched.
        let _ = CONNECTION.try_with(|streams| streams.spawned(task));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_under_way_that_does_not_move_is_stalled_after_the_limit() {
        let watch = BodyWatch::new();
        let start = Instant::now();
        let body = watch.start();
        // Moving every 300 ms keeps it alive for as long as it moves.
        let moving = async {
            for _ in 0..5 {
                tokio::time::sleep(ms(300)).await;
                body.moved();
            }
        };
        tokio::select! {
            () = stalled(&watch, ms(400)) => panic!("cut off while moving"),
            () = moving => {}
        }
        assert_eq!(start.elapsed(), ms(1500));
        stalled(&watch, ms(400)).await;
        let cut = start.elapsed() - ms(1500);
        assert!(cut >= ms(400) && cut <= ms(500), "{cut:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_under_way_is_never_stalled() {
        let watch = BodyWatch::new();
        drop(watch.start());
        let waited = tokio::time::timeout(Duration::from_secs(60), stalled(&watch, ms(100))).await;
        assert!(
            waited.is_err(),
            "a connection waiting for a response head was cut off"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_http2_stream_is_aborted_and_the_others_are_not() {
        use hyper::rt::Executor;
        use tokio::sync::oneshot;
        let streams = H2Streams::new();
        let executor = StreamExecutor;
        // A stream's task that holds `alive` until it ends or is aborted.
        let stream = |alive: oneshot::Sender<()>| async move {
            let _alive = alive;
            std::future::pending::<()>().await
        };
        let (alive, stalled_ended) = oneshot::channel();
        let (alive_too, mut moving_ended) = oneshot::channel();
        let (stalled, moving) = streams
            .clone()
            .serve(async {
                let stalled = streams.arrived().start();
                executor.execute(stream(alive));
                let moving = streams.arrived().start();
                executor.execute(stream(alive_too));
                // A task that is not a request's stream is spawned, not watched.
                executor.execute(async {});
                (stalled, moving)
            })
            .await;
        assert_eq!(streams.streams().watched.len(), 2);
        let watchdog = tokio::spawn({
            let streams = streams.clone();
            async move {
                streams
                    .cut_stalled(
                        ms(400),
                        &prometheus_client::metrics::counter::Counter::default(),
                    )
                    .await;
            }
        });
        let start = Instant::now();
        let moving_on = async {
            loop {
                tokio::time::sleep(ms(100)).await;
                moving.moved();
            }
        };
        tokio::select! {
            ended = stalled_ended => assert!(ended.is_err(), "aborted, not ended"),
            () = moving_on => unreachable!(),
        }
        let cut = start.elapsed();
        assert!(cut >= ms(400) && cut <= ms(500), "{cut:?}");
        assert_eq!(streams.streams().watched.len(), 1);
        assert_eq!(
            moving_ended.try_recv(),
            Err(oneshot::error::TryRecvError::Empty),
            "the moving stream goes on"
        );
        drop((stalled, moving));
        watchdog.abort();
    }
}
