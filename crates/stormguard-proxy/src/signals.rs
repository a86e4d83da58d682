//! The signals a sidecar answers to: SIGHUP reloads the settings, SIGTERM (and SIGINT, for a
//! person at a terminal) starts the drain.
//!
//! ## Why registration is separate from waiting
//! A signal that arrives before its handler is installed takes the default action, and SIGHUP's
//! default is to end the process. So [`Termination::install`] and [`Hangups::install`] register
//! the handlers at once, before the proxy says it is ready; waiting on them comes later. Both
//! need a running tokio runtime (its signal driver).

use std::io;
use std::sync::Arc;

use crate::reload::{Reloader, Trigger};

/// SIGTERM and SIGINT, caught from the moment of [`Termination::install`].
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use stormguard_proxy::signals::Termination;
///
/// let termination = Termination::install()?;
/// let signal = termination.wait().await;
/// println!("{signal}: draining");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Termination {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Termination {
    /// Installs the handlers, so the signals no longer end the process by default.
    ///
    /// # Errors
    /// The handlers cannot be installed (no tokio runtime with signals enabled, or the OS
    /// refused).
    pub fn install() -> io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Termination {
                term: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Termination {})
        }
    }

    /// Waits for the first of the signals and names it.
    pub async fn wait(mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.interrupt.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = &mut self;
            // Without Unix signals, Ctrl-C is the only way to ask for a drain.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
            "Ctrl-C"
        }
    }
}

/// SIGHUP, caught from the moment of [`Hangups::install`]; each one is a reload.
///
/// ```no_run
/// # async fn run(reloader: std::sync::Arc<stormguard_proxy::reload::Reloader>) -> std::io::Result<()> {
/// use stormguard_proxy::signals::Hangups;
///
/// let hangups = Hangups::install()?;
/// tokio::spawn(hangups.reload_each(reloader));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Hangups {
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl Hangups {
    /// Installs the handler, so SIGHUP no longer ends the process.
    ///
    /// # Errors
    /// As [`Termination::install`].
    pub fn install() -> io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Hangups {
                hangup: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Hangups {})
        }
    }

    /// Reloads the settings at each SIGHUP, until dropped. Signals that arrive during a reload
    /// are merged into one more reload after it (the OS merges pending signals too), which is
    /// what was asked: the file as it is now. Outcomes are logged and counted by the reload.
    pub async fn reload_each(mut self, reloader: Arc<Reloader>) {
        #[cfg(unix)]
        while self.hangup.recv().await.is_some() {
            let _ = reloader.reload(Trigger::Signal).await;
        }
        #[cfg(not(unix))]
        {
            let _ = (&mut self, reloader, Trigger::Signal);
            std::future::pending::<()>().await;
        }
    }
}
