//! The settings file as Kubernetes mounts a ConfigMap: the watch follows kubelet's atomic
//! `..data` symlink swap, applies a good update, refuses a bad one while the good settings keep
//! running, and never reads a file half way through the swap.
//!
//! ## What kubelet does (pkg/volume/util/atomic_writer.go)
//! A ConfigMap volume `DIR` holds the data in a timestamped directory `DIR/..2026_12_06_...`,
//! a symlink `DIR/..data -> ..2026_12_06_...`, and one symlink per key, `DIR/settings.toml ->
//! ..data/settings.toml`. An update writes a new timestamped directory, makes a symlink
//! `..data_tmp` to it, renames `..data_tmp` over `..data` (the one atomic step), then deletes the
//! old directory. The file the proxy is given, `DIR/settings.toml`, is never written: its inode,
//! size and modification time are the symlink's and do not change. A watch that looked at them
//! (or at the directory's) would miss every update, and one that resolved the path once at
//! start would read a deleted directory after the first. [`Reloader`] opens the path at each
//! look (so the kernel follows both symlinks to whatever `..data` names then) and compares what
//! it read, which is what these tests pin down.

#![cfg(unix)]

mod fake_proxy;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fake_proxy::{generation_after, metrics_text, settings, FakeProxy};
use prometheus_client::registry::Registry;
use stormguard_proxy::config;
use stormguard_proxy::reload::{ReloadMetrics, Reloadable, Reloader};

/// The key the ConfigMap in deploy/kubernetes holds the settings under.
const KEY: &str = "settings.toml";

/// A ConfigMap volume laid out and updated exactly as kubelet does it, in a folder of its own.
struct ConfigMapVolume {
    dir: PathBuf,
    /// Gives each timestamped directory a name of its own (kubelet's carry the time and a
    /// random suffix).
    updates: u32,
}

impl ConfigMapVolume {
    /// Mounts the volume with `text` under [`KEY`]: the first write of kubelet's sequence.
    fn mount(test: &str, text: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "stormguard-configmap-{}-{test}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut volume = ConfigMapVolume { dir, updates: 0 };
        let first = volume.write_timestamped(text);
        symlink(&first, volume.dir.join("..data_tmp")).unwrap();
        volume.swap();
        symlink(format!("..data/{KEY}"), volume.dir.join(KEY)).unwrap();
        volume
    }

    /// The path the proxy is given: `DIR/settings.toml`, a symlink into `..data`.
    fn settings(&self) -> PathBuf {
        self.dir.join(KEY)
    }

    /// Step 1: a new timestamped directory holding `text`; returns its name.
    fn write_timestamped(&mut self, text: &str) -> String {
        self.updates += 1;
        let name = format!(
            "..2026_12_06_07_45_{:02}.{}",
            self.updates,
            1_000_000 + self.updates
        );
        std::fs::create_dir(self.dir.join(&name)).unwrap();
        std::fs::write(self.dir.join(&name).join(KEY), text).unwrap();
        name
    }

    /// The timestamped directory `..data` names now.
    fn current(&self) -> String {
        let target = std::fs::read_link(self.dir.join("..data")).unwrap();
        target.to_str().unwrap().to_string()
    }

    /// Step 3: `..data_tmp` renamed over `..data`, atomically.
    fn swap(&self) {
        std::fs::rename(self.dir.join("..data_tmp"), self.dir.join("..data")).unwrap();
    }

    /// Kubelet's whole update: a new timestamped directory, `..data_tmp` to it, renamed over
    /// `..data`, the old directory deleted.
    fn update(&mut self, text: &str) {
        let old = self.current();
        let new = self.write_timestamped(text);
        symlink(&new, self.dir.join("..data_tmp")).unwrap();
        self.swap();
        std::fs::remove_dir_all(self.dir.join(old)).unwrap();
    }
}

impl Drop for ConfigMapVolume {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fake proxy started from the volume's settings file, as the sidecar is.
fn start(volume: &ConfigMapVolume) -> (Arc<FakeProxy>, Arc<Reloader>, Registry) {
    let config = config::load(&volume.settings()).unwrap();
    let proxy = FakeProxy::new(config.clone());
    let mut registry = Registry::default();
    let metrics = ReloadMetrics::register(&mut registry);
    let reloader = Arc::new(Reloader::new(
        volume.settings(),
        proxy.clone(),
        metrics,
        config,
    ));
    (proxy, reloader, registry)
}

fn reloads(registry: &Registry, result: &str) -> u64 {
    let text = metrics_text(registry);
    let prefix = format!("stormguard_config_reloads_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {prefix} in {text}"))
        .parse()
        .unwrap()
}

/// Each step of the swap looked at by itself: nothing before the rename, the new settings
/// after it (at the second look, as for any edit), nothing more when the old directory goes.
#[tokio::test]
async fn each_step_of_the_swap_is_seen_as_it_should_be() {
    let mut volume = ConfigMapVolume::mount("steps", &settings(""));
    let (proxy, reloader, registry) = start(&volume);
    let look = || async { reloader.reload_if_changed().await.unwrap() };
    assert_eq!((look().await, look().await), (None, None), "as started");

    let old = volume.current();
    let new = volume.write_timestamped(&settings("timeout = \"3s\""));
    assert_eq!(
        look().await,
        None,
        "a new directory that ..data does not name"
    );
    symlink(&new, volume.dir.join("..data_tmp")).unwrap();
    assert_eq!(look().await, None, "..data_tmp made, not yet renamed");
    assert_eq!(look().await, None);

    volume.swap();
    assert_eq!(
        look().await,
        None,
        "the first look after the swap waits one more"
    );
    assert_eq!(look().await, Some(2), "the second applies it");
    assert_eq!(
        proxy.config().routes[0].call.timeout,
        Some(Duration::from_secs(3))
    );

    std::fs::remove_dir_all(volume.dir.join(old)).unwrap();
    assert_eq!(
        (look().await, look().await),
        (None, None),
        "old directory gone"
    );
    assert_eq!(
        reloads(&registry, "failed"),
        0,
        "no look read a vanished file"
    );
    assert_eq!(reloads(&registry, "ok"), 1);
}

/// The watcher as the sidecar runs it: a ConfigMap update is applied within 2 s, a bad one is
/// refused once and the good settings keep running, and the fix that follows is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_follows_the_configmap_swap_and_refuses_a_bad_update() {
    let mut volume = ConfigMapVolume::mount("watch", &settings(""));
    let (proxy, reloader, registry) = start(&volume);
    let watcher = tokio::spawn(reloader.clone().watch());
    // Let the watcher take the file's fingerprint first: the settings as started apply nothing.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(proxy.generation(), 1);

    volume.update(&settings("timeout = \"3s\""));
    let (generation, took) = generation_after(&proxy, 1)
        .await
        .expect("the swap is applied within 5 s");
    assert_eq!(generation, 2);
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(
        proxy.config().routes[0].call.timeout,
        Some(Duration::from_secs(3))
    );

    // A negative timeout does not validate: refused, counted once, the 3 s settings stay.
    volume.update(&settings("timeout = \"-1s\""));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(proxy.generation(), 2, "the bad update is not applied");
    assert_eq!(
        proxy.config().routes[0].call.timeout,
        Some(Duration::from_secs(3))
    );
    assert_eq!(reloads(&registry, "failed"), 1, "reported once");

    volume.update(&settings("timeout = \"5s\""));
    let (generation, _) = generation_after(&proxy, 2)
        .await
        .expect("the fix is applied within 5 s");
    assert_eq!(generation, 3);
    assert_eq!(
        proxy.config().routes[0].call.timeout,
        Some(Duration::from_secs(5))
    );
    // The generation is swapped before the reload is counted: wait for the count (bounded).
    let counted = tokio::time::Instant::now() + Duration::from_secs(5);
    while reloads(&registry, "ok") < 2 && tokio::time::Instant::now() < counted {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(reloads(&registry, "ok"), 2);
    watcher.abort();
    // Every update deleted the directory before it: only the newest is left.
    let timestamped = std::fs::read_dir(&volume.dir)
        .unwrap()
        .filter(|entry| {
            let name = entry.as_ref().unwrap().file_name();
            let name = name.to_str().unwrap().to_string();
            name.starts_with("..2026")
        })
        .count();
    assert_eq!(timestamped, 1);
    assert!(volume.dir.join(KEY).is_symlink());
    assert!(Path::new(&volume.dir.join("..data")).is_symlink());
}
