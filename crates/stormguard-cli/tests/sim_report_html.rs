//! `report.html` as a person sees it: opened in headless Chromium, every chart must draw a line
//! with an extent (a blank chart is the failure this catches, which no string test sees). Where
//! no browser can start, the same check runs on the SVG text, and the test says which ran.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn tmp() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("sim-report-html")
}

/// The retry-storm example, before and after its fix: its scenario moves every chart (queues
/// fill, goodput collapses, latency climbs), so a blank chart cannot pass for a flat one.
fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/graphs")
        .join(name)
}

const SCENARIO: &str = "db-hiccup";

/// Writes the report of `files` under `scenario` into `dir` and returns the page's path.
fn report(files: &[&Path], scenario: &str, dir: &Path) -> PathBuf {
    let _ = std::fs::remove_dir_all(dir);
    let out = Command::new(env!("CARGO_BIN_EXE_stormguard"))
        .arg("sim")
        .args(files)
        .args(["--scenario", scenario, "--format", "json", "--out"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("report.html")
}

/// Counts, per chart, the drawn lines with an extent in both directions and a length (axes and
/// ticks are straight, so they have none), and puts the counts in the title for --dump-dom.
const PROBE: &str = r#"<script>
window.addEventListener('load', () => {
  const counts = [...document.querySelectorAll('svg.chart')].map(svg =>
    [...svg.querySelectorAll('path, polyline')].filter(e => {
      const box = e.getBBox();
      // A flat line (a queue that stays empty) has no height but is drawn.
      return box.width > 0 && e.getTotalLength() > 0;
    }).length);
  document.title = 'charts:' + counts.join(',');
});
</script>"#;

fn browser() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromium"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| Some(PathBuf::from("/usr/bin/chromium")).filter(|p| p.is_file()))
}

/// Runs Chromium headless on `page` with `extra` flags, killed after a minute; its stdout.
fn chromium(browser: &Path, page: &Path, extra: &[&str]) -> Result<String, String> {
    let profile = page.with_extension(format!("profile-{}", extra.len()));
    let _ = std::fs::remove_dir_all(&profile);
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
        ])
        .args([
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", browser.display()))?;
    // Read while it runs: a page's DOM overflows a pipe's buffer, and a child blocked on a full
    // pipe never exits.
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).map(|_| text)
    });
    for _ in 0..600 {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let text = reader.join().expect("reader").map_err(|e| e.to_string())?;
            return if status.success() {
                Ok(text)
            } else {
                Err(format!("{} exited with {status}", browser.display()))
            };
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err("chromium did not finish within a minute".to_string())
}

/// Per chart, how many lines the browser drew with an extent; `Err` when it could not run.
fn browser_counts(page: &Path, screenshot: &Path) -> Result<Vec<usize>, String> {
    let browser = browser().ok_or("no chromium on PATH nor at /usr/bin/chromium")?;
    let html = std::fs::read_to_string(page).unwrap();
    let probed = page.with_file_name("report-probed.html");
    std::fs::write(
        &probed,
        html.replacen("</body>", &format!("{PROBE}</body>"), 1),
    )
    .unwrap();
    let dom = chromium(
        &browser,
        &probed,
        &["--virtual-time-budget=5000", "--dump-dom"],
    )?;
    let title = dom
        .split("<title>charts:")
        .nth(1)
        .and_then(|rest| rest.split("</title>").next())
        .ok_or_else(|| {
            format!(
                "the probe did not run; dom starts {:?}",
                &dom[..dom.len().min(200)]
            )
        })?;
    let counts = title.split(',').map(|n| n.parse().unwrap_or(0)).collect();
    let shot = format!("--screenshot={}", screenshot.display());
    chromium(
        &browser,
        page,
        &[&shot, "--window-size=1000,2600", "--hide-scrollbars"],
    )?;
    assert!(
        screenshot.is_file(),
        "no screenshot at {}",
        screenshot.display()
    );
    Ok(counts)
}

/// The fallback: per chart, the drawn lines (2 px and wider) of at least two distinct points.
fn svg_counts(page: &Path) -> Vec<usize> {
    let html = std::fs::read_to_string(page).unwrap();
    html.split("<svg class=\"chart\"")
        .skip(1)
        .map(|chart| {
            let chart = chart.split("</svg>").next().unwrap_or_default();
            chart
                .split("<polyline ")
                .skip(1)
                .filter(|line| !line.contains("stroke-width=\"1\""))
                .filter(|line| {
                    let points = line.split("points=\"").nth(1).unwrap_or_default();
                    let points: Vec<&str> = points
                        .split('"')
                        .next()
                        .unwrap_or_default()
                        .split_whitespace()
                        .collect();
                    points.windows(2).any(|w| w[0] != w[1])
                })
                .count()
        })
        .collect()
}

fn check(page: &Path, screenshot: &Path, runs: usize) {
    let counts = match browser_counts(page, screenshot) {
        Ok(counts) => {
            println!(
                "checked in headless Chromium; screenshot {}",
                screenshot.display()
            );
            counts
        }
        Err(why) => {
            println!("checked by parsing the SVG: Chromium could not run ({why})");
            svg_counts(page)
        }
    };
    println!("lines drawn per chart: {counts:?}");
    assert_eq!(counts.len(), 4, "four charts: {counts:?}");
    for (chart, count) in counts.iter().enumerate() {
        assert!(
            *count >= runs,
            "chart {chart} draws {count} lines: {counts:?}"
        );
    }
}

#[test]
fn every_chart_of_one_run_draws_its_lines() {
    let file = example("retry-storm.toml");
    let dir = tmp().join("one");
    let page = report(&[&file], SCENARIO, &dir);
    assert!(
        svg_counts(&page).iter().all(|&n| n >= 1),
        "{:?}",
        svg_counts(&page)
    );
    check(&page, &dir.join("report.png"), 1);
}

#[test]
fn every_chart_of_two_runs_draws_both() {
    let (before, after) = (
        example("retry-storm.toml"),
        example("retry-storm-budget.toml"),
    );
    let dir = tmp().join("two");
    let page = report(&[&before, &after], SCENARIO, &dir);
    check(&page, &dir.join("report.png"), 2);
}
