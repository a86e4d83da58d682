//! `report.html` as a person sees it: opened in headless Chromium, every chart must draw a line
//! with an extent (a blank chart is the failure this catches, which no string test sees), and
//! read at a glance: at most nine legend entries per chart however many services, one colour
//! per quantity in both runs (A solid, B dashed), a log axis where the values span more than
//! 20x. Where no browser can start, the same checks run on the SVG text, and the test says
//! which ran. Screenshots are left under target/tmp/sim-report-html/ for a person to look at.

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

/// Per chart, what the checks need, put in the title as JSON for --dump-dom: the drawn lines
/// with an extent in both directions and a length (axes and ticks are straight, so they have
/// none), the legend's quantity entries, whether the y axis says "log scale", and the colours
/// of the data lines (2 px and wider) drawn solid (many points) and dashed (a dash is a
/// polyline of two or three points).
const PROBE: &str = r#"<script>
window.addEventListener('load', () => {
  const charts = [...document.querySelectorAll('figure')].map(fig => {
    const svg = fig.querySelector('svg.chart');
    const drawn = [...svg.querySelectorAll('path, polyline')];
    const lines = drawn.filter(e => {
      const box = e.getBBox();
      // A flat line (a queue that stays empty) has no height but is drawn.
      return box.width > 0 && e.getTotalLength() > 0;
    }).length;
    const data = drawn.filter(e => e.tagName === 'polyline' && +e.getAttribute('stroke-width') >= 2);
    const colours = keep => [...new Set(data.filter(keep).map(e =>
      e.getAttribute('stroke').toLowerCase()))].sort();
    return {
      lines,
      legend: fig.querySelectorAll('.legend .q').length,
      log: [...svg.querySelectorAll('text')].some(t => t.textContent.includes('log scale')),
      solid: colours(e => e.points.length > 3),
      dashed: colours(e => e.points.length <= 3),
    };
  });
  document.title = 'charts:' + JSON.stringify(charts);
});
</script>"#;

/// What the probe reports of one chart.
#[derive(Debug, serde::Deserialize, PartialEq)]
struct Drawn {
    lines: usize,
    legend: usize,
    log: bool,
    solid: Vec<String>,
    dashed: Vec<String>,
}

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

/// Per chart, what the browser drew; `Err` when it could not run.
fn browser_charts(page: &Path, screenshot: &Path) -> Result<Vec<Drawn>, String> {
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
    let title = title.replace("&amp;", "&");
    let charts = serde_json::from_str(&title).map_err(|e| format!("{e}: {title}"))?;
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
    Ok(charts)
}

/// The fallback, from the SVG text: per chart, the drawn lines (2 px and wider) of at least two
/// distinct points, and the rest as the probe sees it.
fn svg_charts(page: &Path) -> Vec<Drawn> {
    let html = std::fs::read_to_string(page).unwrap();
    html.split("<svg class=\"chart\"")
        .skip(1)
        .map(|figure| {
            let (chart, legend) = figure.split_once("</svg>").unwrap_or_default();
            let legend = legend.split("</figure>").next().unwrap_or_default();
            let mut drawn = Drawn {
                lines: 0,
                legend: legend.matches("<span class=\"q\">").count(),
                log: chart.contains("log scale"),
                solid: Vec::new(),
                dashed: Vec::new(),
            };
            for line in chart.split("<polyline ").skip(1) {
                let attr = |name: &str| {
                    let rest = line.split(&format!("{name}=\"")).nth(1).unwrap_or_default();
                    rest.split('"').next().unwrap_or_default().to_string()
                };
                if attr("stroke-width") == "1" {
                    continue;
                }
                let points: Vec<String> = attr("points")
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
                if points.windows(2).any(|w| w[0] != w[1]) {
                    drawn.lines += 1;
                }
                let colours = if points.len() > 3 {
                    &mut drawn.solid
                } else {
                    &mut drawn.dashed
                };
                colours.push(attr("stroke").to_lowercase());
            }
            for colours in [&mut drawn.solid, &mut drawn.dashed] {
                colours.sort();
                colours.dedup();
            }
            drawn
        })
        .collect()
}

/// The charts of `page` as Chromium drew them (a screenshot at `screenshot`), else as the SVG
/// says; every chart draws at least `runs` lines.
fn check(page: &Path, screenshot: &Path, runs: usize) -> Vec<Drawn> {
    let charts = match browser_charts(page, screenshot) {
        Ok(charts) => {
            println!(
                "checked in headless Chromium; screenshot {}",
                screenshot.display()
            );
            charts
        }
        Err(why) => {
            println!("checked by parsing the SVG: Chromium could not run ({why})");
            svg_charts(page)
        }
    };
    let counts: Vec<usize> = charts.iter().map(|c| c.lines).collect();
    println!("lines drawn per chart: {counts:?}");
    assert_eq!(counts.len(), 4, "four charts: {counts:?}");
    for (chart, count) in counts.iter().enumerate() {
        assert!(
            *count >= runs,
            "chart {chart} draws {count} lines: {counts:?}"
        );
    }
    charts
}

#[test]
fn every_chart_of_one_run_draws_its_lines() {
    let file = example("retry-storm.toml");
    let dir = tmp().join("one");
    let page = report(&[&file], SCENARIO, &dir);
    let svg = svg_charts(&page);
    assert!(svg.iter().all(|c| c.lines >= 1), "{svg:?}");
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

/// A graph of `services` leaves under api, each called once per user request in parallel but
/// the last, called 30 times (30x the others' rate: a log axis), and a fault on the first;
/// `max_attempts` on every call.
fn wide_graph(services: usize, max_attempts: u32) -> String {
    let mut toml = String::from(
        "[entry]\nservice = \"api\"\ntimeout = \"2s\"\nrate = 100\n\n\
         [services.api]\ninstances = 2\nconcurrency = 1000\nlatency = { p50 = \"1ms\", p99 = \"5ms\" }\n",
    );
    for k in 1..=services {
        let count = if k == services { 30 } else { 1 };
        toml.push_str(&format!(
            "\n[[services.api.calls]]\nto = \"s{k}\"\ntimeout = \"200ms\"\nparallel = true\n\
             count = {count}\nmax_attempts = {max_attempts}\n"
        ));
    }
    for k in 1..=services {
        toml.push_str(&format!(
            "\n[services.s{k}]\nconcurrency = 1000\nlatency = {{ p50 = \"2ms\", p99 = \"10ms\" }}\n"
        ));
    }
    toml.push_str(
        "\n[scenarios.s1-errors]\nduration = \"12s\"\n\n[[scenarios.s1-errors.faults]]\n\
         service = \"s1\"\nfrom = \"4s\"\nto = \"8s\"\nerror_rate = 0.8\n",
    );
    toml
}

#[test]
fn ten_services_in_two_runs_read_at_a_glance() {
    let dir = tmp().join("wide");
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = (dir.join("wide-a.toml"), dir.join("wide-b.toml"));
    std::fs::write(&a, wide_graph(9, 4)).unwrap();
    std::fs::write(&b, wide_graph(9, 2)).unwrap();
    let out = dir.join("out");
    let page = report(&[&a, &b], "s1-errors", &out);
    let charts = check(&page, &out.join("report.png"), 2);
    println!("{charts:#?}");
    for (i, chart) in charts.iter().enumerate() {
        // Ten services: seven by name, "others", and the offered load on the first chart.
        assert!(
            chart.legend <= 9,
            "chart {i}: {} legend entries",
            chart.legend
        );
        // Every quantity of A (solid) is drawn for B (dashed) in the same colour, and no other.
        assert_eq!(chart.solid, chart.dashed, "chart {i}: colours of A and B");
    }
    assert_eq!(charts[0].legend, 9, "{:?}", charts[0]);
    assert_eq!(charts[3].legend, 8, "{:?}", charts[3]);
    // 3000 attempts a second at s9 against 100 at the others: a log axis; a share never.
    assert!(charts[0].log, "{:?}", charts[0]);
    assert!(!charts[1].log, "{:?}", charts[1]);
    // The load chart's colours: seven services, the others' grey, the users' black.
    assert_eq!(charts[0].solid.len(), 9, "{:?}", charts[0]);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains(">attempts at 3 others</span>"),
        "the three smallest summed"
    );
    assert_eq!(
        svg_charts(&page)[0].solid,
        charts[0].solid,
        "the SVG says what Chromium drew"
    );
}
