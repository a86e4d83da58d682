//! What the proxy did, read back from its own `/metrics`: the Prometheus text parsed into
//! samples, and the few figures a person asks first, in words.
//!
//! From the text rather than from the registry in memory, so the demo shows what any scraper
//! of the admin endpoint sees.

use std::fmt::Write as _;

/// One sample line: `name{label="value",...} 12`.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The samples of a Prometheus or OpenMetrics text exposition; comments and lines that are not
/// samples are skipped.
pub(super) fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(sample).collect()
}

fn sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let (labels, rest) = labels(&line[open + 1..])?;
            (&line[..open], labels, rest)
        }
        None => {
            let space = line.find(' ')?;
            (&line[..space], Vec::new(), &line[space..])
        }
    };
    // A timestamp may follow the value.
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// `a="x",b="y\"z"} rest` into the labels and what follows the `}`.
fn labels(text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = rest.find('=')?;
        let key = rest[..eq].trim().to_string();
        let mut chars = rest[eq + 1..].char_indices();
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        let mut escaped = false;
        let end = loop {
            let (i, c) = chars.next()?;
            match (escaped, c) {
                (true, 'n') => value.push('\n'),
                (true, c) => value.push(c),
                (false, '\\') => {}
                (false, '"') => break i,
                (false, c) => value.push(c),
            }
            escaped = !escaped && c == '\\';
        };
        labels.push((key, value));
        rest = &rest[eq + 1 + end + 1..];
    }
}

/// The route's figures the demo reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Figures {
    /// Requests the proxy answered on the route.
    pub answered: f64,
    /// Of those, answered 2xx.
    pub succeeded: f64,
    /// Attempts sent upstream: first tries, retries and hedges.
    pub attempts: f64,
    /// Retries sent, by what the failed attempt came to.
    pub retries: Vec<(String, f64)>,
    /// Retries the retry budget refused.
    pub denied_by_budget: f64,
    /// Hedges sent, and those that answered first.
    pub hedges: (f64, f64),
    /// Times an instance was left out of the balance for a while.
    pub ejections: f64,
    /// Requests answered otherwise than 2xx, by `stormguard-reason` (`upstream` when the
    /// upstream's own answer was passed on), most first.
    pub failures: Vec<(String, f64)>,
}

impl Figures {
    /// The figures of `route` in `samples`.
    pub(super) fn of_route(samples: &[Sample], route: &str) -> Figures {
        let sum = |name: &str, key: &str, keep: &dyn Fn(&Sample) -> bool| -> f64 {
            samples
                .iter()
                .filter(|s| s.name == name && s.label(key) == Some(route) && keep(s))
                .map(|s| s.value)
                .fold(0.0, |sum, v| sum + v)
        };
        let all = |_: &Sample| true;
        let library = |name: &str| sum(name, "target", &all);
        let by_reason = |name: &str, key: &str, keep: &dyn Fn(&Sample) -> bool| {
            let mut counts: Vec<(String, f64)> = Vec::new();
            for s in samples
                .iter()
                .filter(|s| s.name == name && s.label(key) == Some(route) && keep(s))
            {
                let reason = match s.label("reason") {
                    Some("") | None => "upstream",
                    Some(reason) => reason,
                };
                match counts.iter_mut().find(|(r, _)| r == reason) {
                    Some((_, n)) => *n += s.value,
                    None => counts.push((reason.to_string(), s.value)),
                }
            }
            counts.retain(|(_, n)| *n > 0.0);
            counts.sort_by(|a, b| b.1.total_cmp(&a.1));
            counts
        };
        Figures {
            answered: sum("stormguard_proxy_requests_total", "route", &all),
            succeeded: sum("stormguard_proxy_requests_total", "route", &|s| {
                s.label("class") == Some("2xx")
            }),
            attempts: library("stormguard_attempts_total"),
            denied_by_budget: sum("stormguard_retries_denied_total", "target", &|s| {
                s.label("reason") == Some("retry-budget")
            }),
            hedges: (
                library("stormguard_hedges_total"),
                library("stormguard_hedges_won_total"),
            ),
            ejections: library("stormguard_ejections_total"),
            retries: by_reason("stormguard_retries_total", "target", &all),
            failures: by_reason("stormguard_proxy_requests_total", "route", &|s| {
                s.label("class") != Some("2xx")
            }),
        }
    }

    /// Share of answered requests answered 2xx; `None` before any answer.
    pub(super) fn success_rate(&self) -> Option<f64> {
        (self.answered > 0.0).then(|| self.succeeded / self.answered)
    }

    /// The figures as a person reads them, one per line; `budget` and `hedge_delay` say the
    /// route's settings the way the lines quote them (`20%`, `50ms`).
    pub(super) fn text(&self, budget: &str, hedge_delay: &str) -> String {
        let mut out = String::new();
        let rate = self
            .success_rate()
            .map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0));
        let _ = writeln!(
            out,
            "  success rate        {rate} ({:.0} of {:.0} requests answered 2xx)",
            self.succeeded, self.answered
        );
        let per_request = if self.answered > 0.0 {
            format!(": {:.2} per request", self.attempts / self.answered)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  attempts            {:.0}{per_request}",
            self.attempts
        );
        let failed = self.answered - self.succeeded;
        let _ = writeln!(
            out,
            "  failed              {failed:.0}{}",
            counted(&self.failures, "")
        );
        let retried: f64 = self.retries.iter().map(|(_, n)| n).fold(0.0, |a, n| a + n);
        let _ = writeln!(
            out,
            "  retries             {retried:.0}{}, each on another instance",
            counted(&self.retries, "after ")
        );
        let denied = if self.denied_by_budget > 0.0 {
            format!(
                "{:.0} retries not sent: the {budget} retry budget was spent",
                self.denied_by_budget
            )
        } else {
            format!("0: the {budget} retry budget was never spent")
        };
        let _ = writeln!(out, "  denied by budget    {denied}");
        let _ = writeln!(
            out,
            "  hedges              {:.0} sent after {hedge_delay} without an answer, {:.0} \
             answered first",
            self.hedges.0, self.hedges.1
        );
        let _ = writeln!(
            out,
            "  ejections           {:.0}: the refusing instance left out of the balance, for \
             longer each time it failed again",
            self.ejections
        );
        out
    }
}

/// ` (7 after timeout, 2 after connect-refused)`, or nothing when there are none.
fn counted(counts: &[(String, f64)], before: &str) -> String {
    if counts.is_empty() {
        return String::new();
    }
    let items: Vec<String> = counts
        .iter()
        .map(|(reason, n)| format!("{n:.0} {before}{reason}"))
        .collect();
    format!(" ({})", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "\
# HELP stormguard_retries Retries sent.
# TYPE stormguard_retries counter
stormguard_retries_total{target=\"shop\",reason=\"timeout\"} 7
stormguard_retries_total{target=\"shop\",reason=\"connect-refused\"} 2
stormguard_retries_total{target=\"other\",reason=\"timeout\"} 100
stormguard_retries_denied_total{target=\"shop\",reason=\"retry-budget\"} 3
stormguard_attempts_total{target=\"shop\"} 120
stormguard_hedges_total{target=\"shop\"} 5
stormguard_hedges_won_total{target=\"shop\"} 4
stormguard_ejections_total{target=\"shop\"} 2
stormguard_proxy_requests_total{route=\"shop\",class=\"2xx\",reason=\"\"} 95
stormguard_proxy_requests_total{route=\"shop\",class=\"5xx\",reason=\"timeout\"} 5
stormguard_proxy_requests_total{route=\"\",class=\"4xx\",reason=\"no-route\"} 9
odd_name{a=\"x\\\"y\",b=\"z\"} 1.5 1700000000
bare 3
# EOF
";

    #[test]
    fn samples_are_read_with_their_labels_and_comments_skipped() {
        let samples = parse(METRICS);
        assert_eq!(samples.len(), 13);
        let odd = samples.iter().find(|s| s.name == "odd_name").unwrap();
        assert_eq!(
            odd.labels,
            [("a".into(), "x\"y".into()), ("b".into(), "z".into())]
        );
        assert_eq!(odd.value, 1.5);
        assert_eq!(samples.last().unwrap().value, 3.0);
        assert!(parse("not a sample\nname{broken 1\n").is_empty());
    }

    #[test]
    fn a_route_s_figures_leave_other_routes_out() {
        let figures = Figures::of_route(&parse(METRICS), "shop");
        assert_eq!((figures.answered, figures.succeeded), (100.0, 95.0));
        assert_eq!(figures.success_rate(), Some(0.95));
        assert_eq!(
            figures.retries,
            [
                ("timeout".to_string(), 7.0),
                ("connect-refused".to_string(), 2.0)
            ]
        );
        assert_eq!(
            (
                figures.attempts,
                figures.denied_by_budget,
                figures.ejections
            ),
            (120.0, 3.0, 2.0)
        );
        assert_eq!(figures.hedges, (5.0, 4.0));
        assert_eq!(figures.failures, [("timeout".to_string(), 5.0)]);
        let text = figures.text("20%", "50ms");
        assert!(
            text.contains("success rate        95.0% (95 of 100"),
            "{text}"
        );
        assert!(
            text.contains("retries             9 (7 after timeout, 2 after connect-refused)"),
            "{text}"
        );
        assert!(
            text.contains("failed              5 (5 timeout)\n"),
            "{text}"
        );
        assert!(
            text.contains("denied by budget    3 retries not sent"),
            "{text}"
        );
        let none = Figures::default().text("20%", "50ms");
        assert!(none.contains("success rate        - (0 of 0"), "{none}");
        assert!(none.contains("denied by budget    0: the 20% retry budget was never spent"));
    }
}
