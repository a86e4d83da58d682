//! Live settings: the settings file read again on SIGHUP, on `POST /reload` and when it changes,
//! and applied to the running proxy without failing a request.
//!
//! ## Why one reloader for three triggers
//! An operator edits the file, sends SIGHUP, or asks the admin endpoint; a deployment tool may do
//! two of these at once. Every trigger goes through one [`Reloader`], which takes one reload at
//! a time, so two reloads never race to build from the same running settings, and a file that
//! was just applied by a signal is not applied again by the watcher a moment later.
//!
//! ## What a reload guarantees
//! - The file is read and parsed off the async threads (`spawn_blocking`): a slow disk never
//!   stalls requests. Only a regular file of at most 4 MiB is read, opened without blocking
//!   ([`stormguard_graph::input`]): a FIFO put at the path is refused at once, not waited on.
//! - A read has [`READ_TIMEOUT`] (5 s) to return. One that does not (a hung network mount) fails
//!   the reload and frees the next: until that read returns, every trigger is answered at once
//!   with why, and no second read is started beside it.
//! - A file that cannot be read or does not validate changes nothing: the running settings stay,
//!   one log line says `file:line:column: key: message`, and
//!   `stormguard_config_reloads_total{result="failed"}` counts it.
//! - A file that validates is applied ([`Reloadable::apply`]: built in full, then swapped), and
//!   `stormguard_config_reloads_total{result="ok"}` and `stormguard_config_generation` say so.
//! - The listen and admin addresses are the sockets the process holds: a file that moves them
//!   is logged as needing a restart, the addresses stay where they are and the rest is applied.
//!
//! ## Watching the file
//! [`Reloader::watch`] looks at the file every [`WATCH_PERIOD`] (500 ms) and compares the length
//! and a hash of its content with the last look; the text hashed is the text parsed. Nothing
//! else is compared: a modification time read beside the content could come from before a
//! write whose text it was read with, and the same text would then look changed at the next
//! look and be reported (or applied) twice.
//!
//! The files the settings name (`listen.tls`'s certificate and key, an upstream's `ca_file`,
//! `cert_file` and `key_file`) are part of the look: a renewed certificate changes the
//! fingerprint as an edit of the file would, and is applied the same way (a bad one is refused
//! and counted, and the running certificate stays).
//!
//! A change is acted on once the file has stayed the same for one look, so within 0.5 to 1 s
//! of the last write (well within the 2 s the issue allows). A writer that truncates and then
//! writes (`>`, `std::fs::write`, most tools) leaves the file empty or half written for a
//! moment, longer on a loaded machine; acted on at once, that moment was a failed reload and
//! an error in the log, or worse, a shorter file that parses (routes missing) applied until
//! the next look. Nothing on disk is ever missed: a content that stays is applied at the
//! next look. A change that leaves the settings as they run (a comment) applies nothing.
//!
//! The path is opened anew at each look, never resolved once and kept: a Kubernetes ConfigMap
//! volume is updated by renaming a `..data` symlink to a new directory and deleting the old
//! one, while the file given (`DIR/settings.toml -> ..data/settings.toml`) keeps its own inode
//! and times throughout; only what is read through the symlinks changes (tests/configmap.rs
//! runs kubelet's sequence).

use std::error::Error;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::config::{self, Config, LoadError};

/// How often [`Reloader::watch`] looks at the file: four looks fit in the 2 s within which a
/// change must take effect, and a look costs one small read.
pub const WATCH_PERIOD: Duration = Duration::from_millis(500);

/// How long one read of the settings file may take. A file on a local disk is read in
/// microseconds; without a bound, a read stuck in a hung file system held the reloader's lock,
/// and with it every later SIGHUP, `POST /reload` and look of the watcher, forever.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What a reload error from [`Reloadable::apply`] carries: the data path's own error type,
/// boxed so that the reloader and the admin endpoint need not know it.
pub type ApplyError = Box<dyn Error + Send + Sync>;

/// Settings that can be replaced while requests flow: the running proxy, seen from the parts
/// that change its settings ([`Reloader`]) and show them ([`crate::admin`]).
///
/// A trait rather than the proxy itself so that reloads and the admin endpoint are tested
/// without a data path, and so that the data path is free to change how it swaps.
pub trait Reloadable: Send + Sync + 'static {
    /// Replaces the running settings with `config`, returning the new generation. On error the
    /// running settings must be unchanged. Called off the async threads, one call at a time.
    fn apply(&self, config: Config) -> Result<u64, ApplyError>;
    /// The running generation: one for the first settings, one more per successful `apply`.
    fn generation(&self) -> u64;
    /// The running settings.
    fn config(&self) -> Arc<Config>;
    /// Each route's instances now, by address, for `GET /instances`; none by default (a
    /// target without a data path).
    fn instances(&self) -> Vec<(String, Vec<crate::InstanceStatus>)> {
        Vec::new()
    }
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file could not be read, or does not validate (`file:line:column: key: message`).
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The file validates but the proxy could not build its routes from it.
    #[error("{file}: the settings are valid but could not be applied: {source}")]
    Apply {
        /// The settings file.
        file: String,
        /// Why the data path refused them.
        source: ApplyError,
    },
    /// The file drops the admin token while the admin address actually bound (which a reload
    /// cannot move) is not loopback: applied, it would open `/config`, `/metrics` and
    /// `/reload` to the network.
    #[error(
        "{file}: `admin.token` is required while the admin endpoint is bound to {bound}, which is \
         not loopback (a reload cannot move it): keep the token, or restart with a loopback \
         admin.address"
    )]
    AdminWithoutToken {
        /// The settings file.
        file: String,
        /// The address the admin endpoint is bound to.
        bound: std::net::SocketAddr,
    },
    /// The runtime is shutting down and the reload did not finish.
    #[error("the reload was interrupted: the proxy is shutting down")]
    Interrupted,
}

/// The running proxy: a reload builds its routes in full and swaps them in; requests in flight
/// finish on the routes they started with.
impl Reloadable for crate::Proxy {
    fn apply(&self, config: Config) -> Result<u64, ApplyError> {
        crate::Proxy::apply(self, config).map_err(Into::into)
    }

    fn generation(&self) -> u64 {
        crate::Proxy::generation(self)
    }

    fn config(&self) -> Arc<Config> {
        crate::Proxy::config(self)
    }

    fn instances(&self) -> Vec<(String, Vec<crate::InstanceStatus>)> {
        let config = crate::Proxy::config(self);
        config
            .routes
            .iter()
            .filter_map(|route| Some((route.name.clone(), self.instances(&route.name)?)))
            .collect()
    }
}

/// What asked for a reload; it names the trigger in the log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP.
    Signal,
    /// `POST /reload` on the admin endpoint.
    Admin,
    /// The watcher saw the file change.
    FileChange,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "SIGHUP",
            Trigger::Admin => "POST /reload",
            Trigger::FileChange => "file change",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// The reload metrics, registered beside the data path's in the one registry `/metrics` shows.
///
/// ```
/// use prometheus_client::registry::Registry;
/// use stormguard_proxy::reload::ReloadMetrics;
///
/// let mut registry = Registry::default();
/// let metrics = ReloadMetrics::register(&mut registry);
/// let mut text = String::new();
/// prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
/// assert!(text.contains("stormguard_config_reloads_total{result=\"failed\"} 0"));
/// # drop(metrics);
/// ```
#[derive(Clone, Debug)]
pub struct ReloadMetrics {
    reloads: Family<ResultLabel, Counter>,
    generation: Gauge,
    /// 1 when the last reload applied the file (or none was tried), 0 when it was refused.
    last_ok: Gauge,
}

impl ReloadMetrics {
    /// Creates the metrics and registers them in `registry`. Both results start at zero, so an
    /// alert on an increase of `failed` works from the first reload.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = ReloadMetrics {
            reloads: Family::default(),
            generation: Gauge::default(),
            last_ok: Gauge::default(),
        };
        metrics.last_ok.set(1);
        for result in ["ok", "failed"] {
            let _ = metrics.reloads.get_or_create(&ResultLabel { result });
        }
        registry.register(
            "stormguard_config_reloads",
            "Reloads of the settings file, by result. A failed reload kept the running settings: the proxy's log names the file, line, column and what is wrong; fix the file and it is reloaded within 2 s",
            metrics.reloads.clone(),
        );
        registry.register(
            "stormguard_config_generation",
            "Generation of the running settings: 1 at start, one more per applied reload. Proxies that should run the same file but show different generations did not all take the last change",
            metrics.generation.clone(),
        );
        registry.register(
            "stormguard_config_last_reload_successful",
            "1 when the last reload of the settings file applied it (or none was tried), 0 when it was refused and the proxy runs older settings than the file holds. At 0, the proxy's log names the file, line, column and what is wrong: fix the file (a good reload sets it back to 1)",
            metrics.last_ok.clone(),
        );
        metrics
    }

    fn count(&self, result: &'static str) {
        self.reloads.get_or_create(&ResultLabel { result }).inc();
        self.last_ok.set(i64::from(result == "ok"));
    }

    fn set_generation(&self, generation: u64) {
        self.generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }
}

/// What the file held when read: a change of either part is a change of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    hash: u64,
}

/// The file's text and its fingerprint, taken together so the text parsed is the text hashed.
struct Snapshot {
    text: String,
    fingerprint: Fingerprint,
}

/// How the reloader reads the file and the files it names: [`read`], or a stand-in in tests.
type ReadFn = Arc<dyn Fn(&Path, &[PathBuf]) -> Result<Snapshot, LoadError> + Send + Sync>;

/// Marks a read in progress; cleared when the read's thread is done with it, however it ends.
struct Reading(Arc<AtomicBool>);

impl Drop for Reading {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Reads the settings file at `path`, and fingerprints it with the files it named when last
/// applied (`named`: its certificates and keys), so that a renewed certificate is a change.
/// A named file that cannot be read is fingerprinted by its error: the parse that follows
/// says what is wrong with it.
fn read(path: &Path, named: &[PathBuf]) -> Result<Snapshot, LoadError> {
    let failed = |source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    };
    let text = stormguard_graph::input::read_text(path).map_err(failed)?;
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    for file in named {
        match stormguard_graph::input::read_text(file) {
            Ok(contents) => contents.hash(&mut hasher),
            Err(error) => error.to_string().hash(&mut hasher),
        }
    }
    let fingerprint = Fingerprint {
        len: text.len() as u64,
        hash: hasher.finish(),
    };
    Ok(Snapshot { text, fingerprint })
}

/// What the reloader remembers between reloads; behind one lock, which is also what makes
/// reloads one at a time.
struct State {
    /// The file as last acted on, whatever came of it; `None` when it could not be read.
    seen: Option<Fingerprint>,
    /// A content the watcher saw once and acts on if the next look finds it unchanged.
    pending: Option<Fingerprint>,
    /// The settings as the file last gave them and they were applied (the addresses as the
    /// file wrote them, not as bound).
    applied: Config,
}

/// Reloads the settings file into the running proxy on demand and when the file changes.
///
/// ```no_run
/// # async fn run(proxy: std::sync::Arc<dyn stormguard_proxy::reload::Reloadable>,
/// #     started_from: stormguard_proxy::config::Config) {
/// use std::sync::Arc;
/// use prometheus_client::registry::Registry;
/// use stormguard_proxy::reload::{ReloadMetrics, Reloader, Trigger};
///
/// let mut registry = Registry::default();
/// let metrics = ReloadMetrics::register(&mut registry);
/// let reloader = Arc::new(Reloader::new("stormguard.toml".into(), proxy, metrics, started_from));
/// tokio::spawn(reloader.clone().watch());
/// match reloader.reload(Trigger::Admin).await {
///     Ok(generation) => println!("running generation {generation}"),
///     Err(error) => println!("kept the running settings: {error}"),
/// }
/// # }
/// ```
pub struct Reloader {
    path: PathBuf,
    target: Arc<dyn Reloadable>,
    metrics: ReloadMetrics,
    /// The addresses the process was started with, as the file wrote them: the sockets it holds.
    started: (SocketAddr, SocketAddr),
    state: tokio::sync::Mutex<State>,
    read: ReadFn,
    read_timeout: Duration,
    /// Whether a read is still running on its thread, past its timeout or not.
    reading: Arc<AtomicBool>,
}

impl Reloader {
    /// A reloader of the file at `path` into `target`, which runs the settings `started_from`
    /// as parsed from that file (with the addresses as written, even if `target` runs them with
    /// the ports actually bound). Sets the generation gauge.
    pub fn new(
        path: PathBuf,
        target: Arc<dyn Reloadable>,
        metrics: ReloadMetrics,
        started_from: Config,
    ) -> Self {
        metrics.set_generation(target.generation());
        Reloader {
            path,
            target,
            metrics,
            started: (started_from.listen.address, started_from.admin.address),
            state: tokio::sync::Mutex::new(State {
                seen: None,
                pending: None,
                applied: started_from,
            }),
            read: Arc::new(read),
            read_timeout: READ_TIMEOUT,
            reading: Arc::default(),
        }
    }

    /// The same reloader, reading with `read` and waiting `timeout` for it.
    #[cfg(test)]
    fn reading_with(mut self, read: ReadFn, timeout: Duration) -> Self {
        self.read = read;
        self.read_timeout = timeout;
        self
    }

    /// The settings file, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The proxy whose settings this reloader replaces.
    pub fn target(&self) -> &Arc<dyn Reloadable> {
        &self.target
    }

    /// Reads the file now and applies it, whatever changed; waits for a reload in progress
    /// first. Returns the new generation, or why the running settings were kept (logged and
    /// counted either way).
    ///
    /// Cancel safety: dropping the future before it ends may leave the file read but not
    /// applied; the running settings are then those before, or the new ones in full.
    pub async fn reload(&self, trigger: Trigger) -> Result<u64, ReloadError> {
        let applied = self.read_and_apply(trigger, true).await?;
        Ok(applied.unwrap_or_else(|| self.target.generation()))
    }

    /// Looks at the file once and applies it if it changed since it was last acted on, the
    /// previous look found the same content (a write still in progress is not acted on), and
    /// its settings differ from those running. `Ok(None)`: nothing to do yet.
    ///
    /// A file that cannot be read or parsed is reported once per change, not at every look.
    pub async fn reload_if_changed(&self) -> Result<Option<u64>, ReloadError> {
        self.read_and_apply(Trigger::FileChange, false).await
    }

    /// One reload, under the lock: with `always` false, only if the file changed since it was
    /// last looked at (and reading it failing again is not news).
    async fn read_and_apply(
        &self,
        trigger: Trigger,
        always: bool,
    ) -> Result<Option<u64>, ReloadError> {
        let mut state = self.state.lock().await;
        let snapshot = self.read_bounded(state.applied.pem_files()).await?;
        match snapshot {
            Ok(snapshot) if !always && state.seen == Some(snapshot.fingerprint) => {
                state.pending = None;
                Ok(None)
            }
            Ok(snapshot) if !always && state.pending != Some(snapshot.fingerprint) => {
                // New since the last look: acted on if it is still there at the next.
                state.pending = Some(snapshot.fingerprint);
                Ok(None)
            }
            Ok(snapshot) => {
                state.seen = Some(snapshot.fingerprint);
                state.pending = None;
                self.parse_and_apply(&mut state, snapshot.text, trigger, always)
                    .await
            }
            Err(_) if !always && state.seen.is_none() => Ok(None),
            Err(error) => {
                state.seen = None;
                Err(self.failed(trigger, error.into()))
            }
        }
    }

    /// Reads the file off the async threads, waiting at most `read_timeout`. A read still running
    /// then is left to end on its thread (it cannot be cancelled), and no other starts until it
    /// has: one stuck thread at most, and each trigger meanwhile fails at once, saying why.
    async fn read_bounded(
        &self,
        named: Vec<PathBuf>,
    ) -> Result<Result<Snapshot, LoadError>, ReloadError> {
        let stuck = |message: String| {
            Ok(Err(LoadError::Read {
                path: self.path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, message),
            }))
        };
        if self.reading.swap(true, Ordering::AcqRel) {
            return stuck(format!(
                "an earlier read of the file, given up after {:?}, has not returned yet (a hung \
                 file system?): the running settings stay until it does",
                self.read_timeout
            ));
        }
        let reading = Reading(self.reading.clone());
        let (read, path) = (self.read.clone(), self.path.clone());
        let task = tokio::task::spawn_blocking(move || {
            let _reading = reading;
            read(&path, &named)
        });
        match tokio::time::timeout(self.read_timeout, task).await {
            Ok(joined) => joined.map_err(|_| ReloadError::Interrupted),
            Err(_) => stuck(format!(
                "no answer within {:?} (a hung file system?): the running settings stay",
                self.read_timeout
            )),
        }
    }

    /// Watches the file every [`WATCH_PERIOD`] and applies each change; runs until dropped.
    /// Errors are logged and counted by the reload itself.
    ///
    /// The first two looks only take the file's fingerprint, unless its settings already
    /// differ from those the proxy started with.
    pub async fn watch(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(WATCH_PERIOD);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            // Logged and counted inside; nothing more to do with the outcome here.
            let _ = self.reload_if_changed().await;
        }
    }

    /// Parses `text` and applies it; with `always` false, settings equal to those applied last
    /// are left alone (`Ok(None)`).
    async fn parse_and_apply(
        &self,
        state: &mut State,
        text: String,
        trigger: Trigger,
        always: bool,
    ) -> Result<Option<u64>, ReloadError> {
        let file = self.path.display().to_string();
        let parse_file = file.clone();
        let parsed = tokio::task::spawn_blocking(move || config::parse(&parse_file, &text))
            .await
            .map_err(|_| ReloadError::Interrupted)?;
        let config = match parsed {
            Ok(config) => config,
            Err(error) => return Err(self.failed(trigger, LoadError::Parse(error).into())),
        };
        if !always && config == state.applied {
            // A file put back as it was after a refused edit: what runs is what it holds.
            self.metrics.last_ok.set(1);
            tracing::debug!(
                file,
                "the file changed but its settings did not: nothing to apply"
            );
            return Ok(None);
        }
        let pinned = self.pin_addresses(config.clone(), &file);
        // The file's own check of this rule saw the address it asks for, not the one kept.
        if pinned.admin.token.is_none() && !pinned.admin.address.ip().is_loopback() {
            let bound = pinned.admin.address;
            return Err(self.failed(trigger, ReloadError::AdminWithoutToken { file, bound }));
        }
        let target = self.target.clone();
        let applied = tokio::task::spawn_blocking(move || target.apply(pinned))
            .await
            .map_err(|_| ReloadError::Interrupted)?;
        match applied {
            Ok(generation) => {
                state.applied = config;
                self.metrics.count("ok");
                self.metrics.set_generation(generation);
                tracing::info!(
                    file,
                    generation,
                    trigger = trigger.as_str(),
                    "settings reloaded"
                );
                Ok(Some(generation))
            }
            Err(source) => Err(self.failed(trigger, ReloadError::Apply { file, source })),
        }
    }

    /// Keeps the addresses the process holds, saying so when the file moved them.
    fn pin_addresses(&self, mut config: Config, file: &str) -> Config {
        let running = self.target.config();
        let (listen, admin) = self.started;
        let moved = [
            (
                "listen.address",
                listen,
                config.listen.address,
                running.listen.address,
            ),
            (
                "admin.address",
                admin,
                config.admin.address,
                running.admin.address,
            ),
        ];
        for (key, started, requested, running) in moved {
            if requested != started {
                tracing::warn!(
                    file,
                    %running,
                    %requested,
                    "{key} changed: it needs a restart; the rest of the file is applied"
                );
            }
        }
        config.listen.address = running.listen.address;
        config.admin.address = running.admin.address;
        config
    }

    fn failed(&self, trigger: Trigger, error: ReloadError) -> ReloadError {
        self.metrics.count("failed");
        tracing::error!(
            generation = self.target.generation(),
            trigger = trigger.as_str(),
            "reload refused, running settings kept: {error}"
        );
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "stormguard-reload-{}-{name}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn the_fingerprint_follows_the_content_even_at_the_same_length() {
        let path = temp_file("fingerprint", "a = 1\n");
        let first = read(&path, &[]).unwrap();
        assert_eq!(read(&path, &[]).unwrap().fingerprint, first.fingerprint);
        std::fs::write(&path, "a = 2\n").unwrap();
        let second = read(&path, &[]).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(second.text, "a = 2\n");
        assert_eq!(second.fingerprint.len, first.fingerprint.len);
        assert_ne!(second.fingerprint.hash, first.fingerprint.hash);
    }

    #[test]
    fn a_missing_file_is_a_read_error_naming_it() {
        let error = read(Path::new("/nonexistent/stormguard.toml"), &[])
            .err()
            .unwrap();
        assert!(matches!(error, LoadError::Read { .. }));
        assert!(error
            .to_string()
            .starts_with("/nonexistent/stormguard.toml: "));
    }

    /// Keeps whatever it is given.
    struct Keeps(std::sync::Mutex<(u64, Arc<Config>)>);

    impl Reloadable for Keeps {
        fn apply(&self, config: Config) -> Result<u64, ApplyError> {
            let mut running = self.0.lock().unwrap();
            *running = (running.0 + 1, Arc::new(config));
            Ok(running.0)
        }

        fn generation(&self) -> u64 {
            self.0.lock().unwrap().0
        }

        fn config(&self) -> Arc<Config> {
            self.0.lock().unwrap().1.clone()
        }
    }

    #[tokio::test]
    async fn a_stuck_read_fails_its_reload_and_never_holds_the_next() {
        const SETTINGS: &str = "[upstreams.api]\ninstances = [\"127.0.0.1:9001\"]\n[[routes]]\n\
                                name = \"api\"\nupstream = \"api\"\ntimeout = \"2s\"\n";
        let path = temp_file("stuck", SETTINGS);
        let config = config::parse("p.toml", SETTINGS).unwrap();
        let target = Arc::new(Keeps(std::sync::Mutex::new((1, Arc::new(config.clone())))));
        let mut registry = Registry::default();
        let metrics = ReloadMetrics::register(&mut registry);
        // The first read hangs (as in a hung network mount) until released; the rest read.
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = std::sync::Mutex::new(Some(released));
        let reader: ReadFn = Arc::new(move |path, named| {
            if let Some(wait) = released.lock().unwrap().take() {
                let _ = wait.recv();
            }
            read(path, named)
        });
        let timeout = Duration::from_millis(50);
        let reloader =
            Reloader::new(path.clone(), target, metrics, config).reading_with(reader, timeout);
        let bounded = |what| async move {
            tokio::time::timeout(Duration::from_secs(10), what)
                .await
                .expect("the reload answered")
        };
        let stuck = bounded(reloader.reload(Trigger::Signal)).await.unwrap_err();
        assert!(
            stuck.to_string().contains("no answer within 50ms"),
            "{stuck}"
        );
        // The stuck read still holds its thread: the next trigger is told so, at once.
        let waiting = bounded(reloader.reload(Trigger::Admin)).await.unwrap_err();
        assert!(
            waiting.to_string().contains("has not returned yet"),
            "{waiting}"
        );
        release.send(()).unwrap();
        let mut outcome = Err(waiting);
        for _ in 0..200 {
            outcome = bounded(reloader.reload(Trigger::Admin)).await;
            if outcome.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            outcome.unwrap(),
            2,
            "reloads work again once the read returned"
        );
    }

    #[test]
    fn both_results_are_shown_from_the_start() {
        let mut registry = Registry::default();
        let metrics = ReloadMetrics::register(&mut registry);
        metrics.set_generation(3);
        metrics.count("ok");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("stormguard_config_reloads_total{result=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("stormguard_config_reloads_total{result=\"failed\"} 0"),
            "{text}"
        );
        assert!(text.contains("stormguard_config_generation 3"), "{text}");
    }

    #[test]
    fn the_last_reload_says_whether_the_file_runs() {
        let mut registry = Registry::default();
        let metrics = ReloadMetrics::register(&mut registry);
        let last = |registry: &Registry| {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
            let line = text
                .lines()
                .find(|l| l.starts_with("stormguard_config_last_reload_successful "))
                .map(str::to_string);
            line.unwrap_or_else(|| panic!("no gauge in\n{text}"))
        };
        assert!(last(&registry).ends_with(" 1"), "none tried yet");
        metrics.count("failed");
        assert!(last(&registry).ends_with(" 0"));
        metrics.count("ok");
        assert!(last(&registry).ends_with(" 1"));
    }
}
