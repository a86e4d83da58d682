//! Reloads from every trigger: a broken file keeps the running settings and says where it is
//! broken, a good file takes effect within 2 s of being written, reloads never overlap, and
//! the addresses the process holds stay where they are.

mod fake_proxy;

use std::sync::atomic::Ordering;
use std::time::Duration;

use fake_proxy::{generation_after, metrics_showing, metrics_text, settings, settings_with, start};
use stormguard_proxy::reload::{ReloadError, Reloadable, Reloader, Trigger};

#[tokio::test]
async fn a_broken_file_keeps_the_old_generation_and_says_where_it_is_broken() {
    let (proxy, reloader, registry, path) = start("broken", &settings(""));
    std::fs::write(&path, settings("max_attempts = 0")).unwrap();
    let error = reloader.reload(Trigger::Signal).await.unwrap_err();
    assert!(matches!(error, ReloadError::Load(_)), "{error:?}");
    let place = format!("{}:9:16: `routes[0].max_attempts`: ", path.display());
    assert!(error.to_string().starts_with(&place), "{error}");
    assert_eq!(proxy.generation(), 1);
    assert_eq!(
        proxy.applies.load(Ordering::SeqCst),
        0,
        "nothing was applied"
    );
    let text = metrics_text(&registry);
    assert!(
        text.contains("stormguard_config_reloads_total{result=\"failed\"} 1"),
        "{text}"
    );
    assert!(text.contains("stormguard_config_generation 1"), "{text}");
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn a_missing_file_and_a_refused_apply_keep_the_running_settings() {
    let (proxy, reloader, registry, path) = start("refused", &settings(""));
    std::fs::write(&path, settings("timeout = \"4s\"")).unwrap();
    proxy.refuse.store(true, Ordering::SeqCst);
    let error = reloader.reload(Trigger::Admin).await.unwrap_err();
    assert!(matches!(error, ReloadError::Apply { .. }), "{error:?}");
    assert!(
        error.to_string().contains("an instance is not host:port"),
        "{error}"
    );
    std::fs::remove_file(&path).unwrap();
    let error = reloader.reload(Trigger::Admin).await.unwrap_err();
    assert!(
        error.to_string().contains("cannot read the settings file"),
        "{error}"
    );
    assert_eq!(proxy.generation(), 1);
    assert_eq!(
        proxy.config().routes[0].call.timeout,
        Some(Duration::from_secs(2))
    );
    let text = metrics_text(&registry);
    assert!(
        text.contains("stormguard_config_reloads_total{result=\"failed\"} 2"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_file_takes_effect_within_two_seconds_of_being_written() {
    let (proxy, reloader, registry, path) = start("watch", &settings(""));
    let watcher = tokio::spawn(reloader.clone().watch());
    // Let the watcher take the file's fingerprint first: the file as started applies nothing.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        proxy.generation(),
        1,
        "the file as started is not applied again"
    );

    std::fs::write(&path, settings("timeout = \"3s\"")).unwrap();
    let (generation, took) = generation_after(&proxy, 1)
        .await
        .expect("applied within 5 s");
    assert_eq!(generation, 2);
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(
        proxy.config().routes[0].call.timeout,
        Some(Duration::from_secs(3))
    );

    // Same length, same second: only the content's hash tells this edit apart.
    std::fs::write(&path, settings("timeout = \"4s\"")).unwrap();
    let (generation, took) = generation_after(&proxy, 2)
        .await
        .expect("applied within 5 s");
    assert_eq!(generation, 3);
    assert!(took < Duration::from_secs(2), "took {took:?}");

    // Broken, then fixed: reported once, the running settings kept, then the fix applied.
    std::fs::write(&path, settings("timeout = \"-1s\"")).unwrap();
    // Reported at the second look after the write: within 1 s, with room for a loaded machine.
    let failed = "stormguard_config_reloads_total{result=\"failed\"} 1";
    let text = metrics_showing(&registry, &[failed]).await;
    assert!(text.contains(failed), "{text}");
    assert_eq!(proxy.generation(), 3);
    std::fs::write(&path, settings("timeout = \"5s\"")).unwrap();
    assert_eq!(generation_after(&proxy, 3).await.map(|(g, _)| g), Some(4));
    let (ok, generation) = (
        "stormguard_config_reloads_total{result=\"ok\"} 3",
        "stormguard_config_generation 4",
    );
    let text = metrics_showing(&registry, &[ok, generation]).await;
    assert!(text.contains(ok) && text.contains(generation), "{text}");
    watcher.abort();
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_that_leaves_the_settings_as_they_run_applies_nothing() {
    let (proxy, reloader, _registry, path) = start("comment", &settings(""));
    look_twice(&reloader, None).await;
    std::fs::write(
        &path,
        settings("# a comment changes the file, not the settings"),
    )
    .unwrap();
    look_twice(&reloader, None).await;
    assert_eq!(proxy.applies.load(Ordering::SeqCst), 0);
    // An explicit reload applies whatever is there: it was asked for.
    assert_eq!(reloader.reload(Trigger::Admin).await.unwrap(), 2);
    std::fs::remove_file(&path).unwrap();
}

/// Two looks of the watcher: a change is acted on at the second, once it stayed the same.
async fn look_twice(reloader: &Reloader, expected: Option<u64>) {
    assert_eq!(
        reloader.reload_if_changed().await.unwrap(),
        None,
        "not at the first look"
    );
    assert_eq!(reloader.reload_if_changed().await.unwrap(), expected);
}

/// A writer that truncates and then writes leaves the file empty for a moment, longer on a
/// loaded machine: seen then, it is not a failed reload, and what is then written is applied.
#[tokio::test]
async fn a_file_seen_half_written_is_not_acted_on() {
    let (proxy, reloader, registry, path) = start("half-written", &settings(""));
    look_twice(&reloader, None).await;
    std::fs::write(&path, "").unwrap();
    assert_eq!(reloader.reload_if_changed().await.unwrap(), None);
    std::fs::write(&path, settings("timeout = \"3s\"")).unwrap();
    look_twice(&reloader, Some(2)).await;
    assert_eq!(proxy.applies.load(Ordering::SeqCst), 1);
    let text = metrics_text(&registry);
    assert!(
        text.contains("stormguard_config_reloads_total{result=\"failed\"} 0"),
        "{text}"
    );
    std::fs::remove_file(&path).unwrap();
}

/// The same broken text is reported once, however often it is looked at and whatever happens
/// to its modification time; fixed, it is applied.
#[tokio::test]
async fn a_broken_file_is_reported_once_and_its_fix_applied() {
    let (proxy, reloader, registry, path) = start("touched", &settings(""));
    look_twice(&reloader, None).await;
    std::fs::write(&path, settings("timeout = \"-1s\"")).unwrap();
    assert_eq!(reloader.reload_if_changed().await.unwrap(), None);
    assert!(reloader.reload_if_changed().await.is_err());
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1))
        .unwrap();
    for _ in 0..3 {
        assert_eq!(reloader.reload_if_changed().await.unwrap(), None);
    }
    let text = metrics_text(&registry);
    assert!(
        text.contains("stormguard_config_reloads_total{result=\"failed\"} 1"),
        "{text}"
    );
    std::fs::write(&path, settings("timeout = \"5s\"")).unwrap();
    look_twice(&reloader, Some(2)).await;
    assert_eq!(proxy.generation(), 2);
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_from_every_trigger_run_one_at_a_time() {
    let (proxy, reloader, _registry, path) = start("serial", &settings(""));
    *proxy.apply_time.lock().unwrap() = Duration::from_millis(20);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let reloader = reloader.clone();
        let trigger = [Trigger::Signal, Trigger::Admin][i % 2];
        tasks.push(tokio::spawn(async move { reloader.reload(trigger).await }));
    }
    let mut generations = Vec::new();
    for task in tasks {
        // FakeProxy panics (and the task fails) if two applies overlap.
        generations.push(task.await.unwrap().unwrap());
    }
    generations.sort_unstable();
    assert_eq!(generations, (2..=9).collect::<Vec<u64>>());
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn moved_addresses_need_a_restart_and_the_rest_is_applied() {
    let head = "[listen]\naddress = \"127.0.0.1:18080\"\n[admin]\naddress = \"127.0.0.1:19901\"\n";
    let (proxy, reloader, _registry, path) = start("addresses", &settings_with(head, ""));
    let moved = "[listen]\naddress = \"127.0.0.1:28080\"\n[admin]\naddress = \"127.0.0.1:29901\"\n";
    std::fs::write(&path, settings_with(moved, "timeout = \"3s\"")).unwrap();
    assert_eq!(reloader.reload(Trigger::Signal).await.unwrap(), 2);
    let running = proxy.config();
    assert_eq!(running.listen.address.to_string(), "127.0.0.1:18080");
    assert_eq!(running.admin.address.to_string(), "127.0.0.1:19901");
    assert_eq!(running.routes[0].call.timeout, Some(Duration::from_secs(3)));
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn a_reload_cannot_drop_the_token_of_an_admin_bound_beyond_loopback() {
    let head = "[admin]\naddress = \"0.0.0.0:19902\"\ntoken = \"s3cret\"\n";
    let (proxy, reloader, registry, path) = start("admin-token", &settings_with(head, ""));
    // Valid on its own (loopback, no token), but the admin stays bound to 0.0.0.0.
    let dropped = "[admin]\naddress = \"127.0.0.1:19902\"\n";
    std::fs::write(&path, settings_with(dropped, "")).unwrap();
    let error = reloader.reload(Trigger::Admin).await.unwrap_err();
    assert!(
        matches!(error, ReloadError::AdminWithoutToken { .. }),
        "{error:?}"
    );
    assert_eq!(proxy.generation(), 1);
    assert_eq!(proxy.config().admin.token.as_deref(), Some("s3cret"));
    assert!(
        metrics_text(&registry).contains("stormguard_config_reloads_total{result=\"failed\"} 1")
    );
    std::fs::remove_file(&path).unwrap();
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads() {
    use stormguard_proxy::signals::Hangups;

    let (proxy, reloader, _registry, path) = start("sighup", &settings(""));
    // Installed before the signal is sent, so SIGHUP cannot end this test process.
    let hangups = Hangups::install().unwrap();
    tokio::spawn(hangups.reload_each(reloader.clone()));
    std::fs::write(&path, settings("timeout = \"7s\"")).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(generation_after(&proxy, 1).await.map(|(g, _)| g), Some(2));
    assert_eq!(
        proxy.config().routes[0].call.timeout,
        Some(Duration::from_secs(7))
    );
    std::fs::remove_file(&path).unwrap();
}

/// Makes a FIFO at `path`; false where `mkfifo` is missing.
fn mkfifo(path: &std::path::Path) -> bool {
    let _ = std::fs::remove_file(path);
    std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .is_ok_and(|status| status.success())
}

#[tokio::test]
async fn a_fifo_at_the_path_is_refused_at_once_and_later_reloads_still_work() {
    let (proxy, reloader, registry, path) = start("fifo", &settings(""));
    if !mkfifo(&path) {
        eprintln!("SKIPPED: mkfifo is not available");
        return;
    }
    // Opening a FIFO with no writer used to wait forever, holding every later reload with it.
    for trigger in [Trigger::Signal, Trigger::Admin] {
        let reload = reloader.reload(trigger);
        let Ok(outcome) = tokio::time::timeout(Duration::from_secs(5), reload).await else {
            // Let the reader stuck in `open` go, so that the runtime can end, then fail.
            let _ = std::fs::OpenOptions::new().write(true).open(&path);
            panic!("{trigger:?}: a reload of a FIFO did not answer within 5 s");
        };
        let error = outcome.unwrap_err().to_string();
        assert!(
            error.starts_with(&format!(
                "{}: cannot read the settings file: is a FIFO",
                path.display()
            )),
            "{error}"
        );
        assert!(error.contains("not a regular file"), "{error}");
    }
    let look = tokio::time::timeout(Duration::from_secs(5), reloader.reload_if_changed()).await;
    assert!(look.is_ok(), "the watcher's look answered");
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, settings("timeout = \"3s\"")).unwrap();
    assert_eq!(reloader.reload(Trigger::Signal).await.unwrap(), 2);
    assert_eq!(
        proxy.config().routes[0].call.timeout,
        Some(Duration::from_secs(3))
    );
    let text = metrics_text(&registry);
    assert!(
        text.contains("stormguard_config_reloads_total{result=\"failed\"} 2"),
        "{text}"
    );
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn a_settings_file_over_4_mib_is_refused_naming_the_file_and_the_limit() {
    let (proxy, reloader, _registry, path) = start("large", &settings(""));
    // Valid settings, made large by a comment: accepted and hashed at every look before.
    let mut text = settings("timeout = \"3s\"");
    text.push('#');
    text.push_str(&"x".repeat(4 * 1024 * 1024));
    text.push('\n');
    std::fs::write(&path, &text).unwrap();
    let error = reloader
        .reload(Trigger::Signal)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        format!(
            "{}: cannot read the settings file: is larger than 4 MiB, the limit for a graph or \
             settings file",
            path.display()
        )
    );
    assert_eq!(proxy.generation(), 1);
    let loaded = stormguard_proxy::config::load(&path)
        .unwrap_err()
        .to_string();
    assert!(loaded.contains("larger than 4 MiB"), "{loaded}");
    std::fs::remove_file(&path).unwrap();
}

/// A broken edit put back as it was leaves the settings that run those the file holds: the
/// reload-failed alert (`stormguard_config_last_reload_successful == 0`) must clear then too,
/// though nothing is applied.
#[tokio::test]
async fn a_broken_edit_put_back_clears_the_last_reload_failure() {
    let (proxy, reloader, registry, path) = start("put-back", &settings(""));
    let last = |registry: &prometheus_client::registry::Registry| {
        let text = metrics_text(registry);
        text.lines()
            .find_map(|l| l.strip_prefix("stormguard_config_last_reload_successful "))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no gauge in\n{text}"))
    };
    look_twice(&reloader, None).await;
    assert_eq!(last(&registry), "1");
    std::fs::write(&path, settings("timeout = \"-1s\"")).unwrap();
    assert_eq!(reloader.reload_if_changed().await.unwrap(), None);
    assert!(reloader.reload_if_changed().await.is_err());
    assert_eq!(last(&registry), "0");
    std::fs::write(&path, settings("")).unwrap();
    look_twice(&reloader, None).await;
    assert_eq!(proxy.applies.load(Ordering::SeqCst), 0, "nothing to apply");
    assert_eq!(last(&registry), "1");
    std::fs::remove_file(&path).unwrap();
}
