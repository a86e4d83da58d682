//! Input errors of shape and names: unknown keys and services, texts the policy core refuses,
//! wrong types, missing keys; each with its exact `line:column`, its dotted key and what its
//! message offers as valid.

use super::*;

/// Lines 1-6; what a test appends starts on line 7, inside the call `services.web.calls[0]`.
pub(super) const CALL: &str = "[entry]\nservice = \"web\"\n[services.web]\n[services.db]\n\
                    [[services.web.calls]]\nto = \"db\"\n";
/// Lines 1-4; what a test appends starts on line 5, inside `[services.web]`.
pub(super) const SERVICE: &str = "[entry]\nservice = \"web\"\n[services.db]\n[services.web]\n";
/// Lines 1-6; what a test appends starts on line 7, inside `scenarios.s.faults[0]`.
pub(super) const FAULT: &str = "[entry]\nservice = \"web\"\n[services.web]\ninstances = 2\n\
                     [scenarios.s]\nduration = \"60s\"\n[[scenarios.s.faults]]\n";

/// The error for `text`, as (line, column, key, message).
fn error(text: &str) -> (usize, usize, String, String) {
    let error = parse("g.toml", text).expect_err("the file should be refused");
    (
        error.line,
        error.column,
        error.key.unwrap_or_default(),
        error.message,
    )
}

/// Asserts where the error is, its key, and that the message holds each of `says`.
#[track_caller]
pub(super) fn assert_error(text: &str, line: usize, column: usize, key: &str, says: &[&str]) {
    let (l, c, k, message) = error(text);
    assert_eq!(
        (l, c, k.as_str()),
        (line, column, key),
        "message: {message}"
    );
    for part in says {
        assert!(
            message.contains(part),
            "{message:?} should contain {part:?}"
        );
    }
}

#[test]
fn unknown_keys_list_the_valid_keys_of_their_table() {
    let (line, column, key, message) = error(&format!("{CALL}timout = \"1s\"\n"));
    assert_eq!(
        (line, column, key.as_str()),
        (7, 1, "services.web.calls[0].timout")
    );
    assert_eq!(
        message,
        "unknown key `timout`; did you mean `timeout`? valid keys here: `to`, `endpoint`, `timeout`, `request_timeout`, \
         `connect_timeout`, `rtt`, `max_attempts`, `backoff`, `retry_budget`, `token_bucket`, \
         `retry_on`, `idempotent`, `method`, `count`, `parallel`, `required`, `hedge`, \
         `propagate_deadline`, `metrics`"
    );
    assert_error(
        "[entyr]\n",
        1,
        2,
        "entyr",
        &["unknown key `entyr`; did you mean `entry`? valid keys here: `entry`, `services`, `check`, `scenarios`"],
    );
    assert_error(
        &format!("{SERVICE}latency = {{ p50 = \"1ms\", p98 = \"2ms\" }}\n"),
        5,
        26,
        "services.web.latency.p98",
        &["valid keys here: `p50`, `p99`"],
    );
    assert_error(
        &format!("{CALL}retry_budget = {{ ratio = 0.1, min = 1 }}\n"),
        7,
        31,
        "services.web.calls[0].retry_budget.min",
        &["valid keys here: `ratio`, `min_per_sec`"],
    );
    assert_error(
        &format!("{FAULT}service = \"web\"\nfrom = \"1s\"\nto = \"2s\"\nslow = 2\n"),
        11,
        1,
        "scenarios.s.faults[0].slow",
        &["`slowdown`", "`instances`"],
    );
}

#[test]
fn unknown_services_list_the_known_ones() {
    let (line, column, key, message) = error(&CALL.replace("to = \"db\"", "to = \"dbb\""));
    assert_eq!(
        (line, column, key.as_str()),
        (6, 6, "services.web.calls[0].to")
    );
    assert_eq!(
        message,
        "unknown service \"dbb\": there is no [services.dbb]; known services: db, web"
    );
    assert_error(
        &CALL.replace("service = \"web\"", "service = \"www\""),
        2,
        11,
        "entry.service",
        &["unknown service \"www\"", "known services: db, web"],
    );
    assert_error(
        &format!("{FAULT}service = \"dbb\"\n"),
        8,
        11,
        "scenarios.s.faults[0].service",
        &["unknown service \"dbb\"", "known services: web"],
    );
}

#[test]
fn long_service_lists_are_cut() {
    let mut text = String::from("[entry]\nservice = \"nope\"\n");
    for i in 0..25 {
        text.push_str(&format!("[services.s{i:02}]\n"));
    }
    assert_error(
        &text,
        2,
        11,
        "entry.service",
        &["s00, s01", "s19 and 5 more"],
    );
}

#[test]
fn bad_durations_carry_the_policy_cores_message() {
    let expected = stormguard::duration::parse("10").unwrap_err().to_string();
    assert_error(
        &format!("{CALL}timeout = \"10\"\n"),
        7,
        11,
        "services.web.calls[0].timeout",
        &[&expected, "missing unit"],
    );
    assert_error(
        &format!("{CALL}connect_timeout = \"1 s\"\n"),
        7,
        19,
        "services.web.calls[0].connect_timeout",
        &["space between number and unit"],
    );
    assert_error(
        "[entry]\nservice = \"web\"\ntimeout = \"-1s\"\n[services.web]\n",
        3,
        11,
        "entry.timeout",
        &["negative"],
    );
    assert_error(
        &format!("{SERVICE}contention = \"fast\"\n"),
        5,
        14,
        "services.web.contention",
        &["invalid duration \"fast\""],
    );
}

#[test]
fn bad_backoff_and_hedge_texts_carry_the_policy_cores_message() {
    let expected = "linear(base=1s, cap=2s)"
        .parse::<stormguard::backoff::Backoff>()
        .unwrap_err()
        .to_string();
    assert_error(
        &format!("{CALL}backoff = \"linear(base=1s, cap=2s)\"\n"),
        7,
        11,
        "services.web.calls[0].backoff",
        &[&expected],
    );
    assert_error(
        &format!("{CALL}backoff = \"exponential(base=25ms)\"\n"),
        7,
        11,
        "services.web.calls[0].backoff",
        &["no cap"],
    );
    assert_error(
        &format!("{CALL}hedge = {{ delay = \"soon\" }}\n"),
        7,
        19,
        "services.web.calls[0].hedge.delay",
        &["invalid hedge delay \"soon\"", "\"p95\""],
    );
    assert_error(
        &format!("{CALL}hedge = {{ delay = \"p100\" }}\n"),
        7,
        19,
        "services.web.calls[0].hedge.delay",
        &["invalid hedge delay"],
    );
    assert_error(
        &format!("{CALL}hedge = {{ delay = \"5ms\", max_extra = 2.0 }}\n"),
        7,
        38,
        "services.web.calls[0].hedge.max_extra",
        &["2 is out of range", "a hedge's max_extra is 0 to 1"],
    );
    assert_error(
        &format!("{CALL}hedge = {{ max_extra = 0.1 }}\n"),
        7,
        9,
        "services.web.calls[0].hedge.delay",
        &["missing", "\"50ms\""],
    );
}

#[test]
fn missing_required_keys() {
    assert_error(
        "[services.web]\n",
        1,
        1,
        "entry",
        &["missing [entry] table", "known services: web"],
    );
    assert_error(
        "[entry]\ntimeout = \"1s\"\n[services.web]\n",
        1,
        1,
        "entry.service",
        &["missing", "known services: web"],
    );
    assert_error(
        &format!("{CALL}[[services.web.calls]]\ntimeout = \"1s\"\n"),
        7,
        1,
        "services.web.calls[1].to",
        &["missing", "known services: db, web"],
    );
    assert_error(
        "[entry]\nservice = \"web\"\n[services.web]\n[scenarios.s]\n",
        4,
        1,
        "scenarios.s.duration",
        &["missing", "\"120s\""],
    );
    assert_error(
        "[entry]\nservice = \"web\"\n[services.web]\n[scenarios.s]\nduration = \"0s\"\n",
        5,
        12,
        "scenarios.s.duration",
        &["0s is out of range", "a simulated run is 1s to 24h"],
    );
    assert_error(
        &format!("{FAULT}from = \"1s\"\n"),
        7,
        1,
        "scenarios.s.faults[0].service",
        &["missing", "known services: web"],
    );
}

#[test]
fn wrong_types_say_what_was_expected() {
    assert_error(
        &format!("{CALL}timeout = 5\n"),
        7,
        11,
        "services.web.calls[0].timeout",
        &["the bare number 5 is not a duration", "\"5s\" or \"5ms\""],
    );
    // An unquoted time of day or date is TOML's, not a duration: said so, not "invalid
    // type: map" (how the toml crate hands a date to a visitor).
    assert_error(
        &format!("{CALL}timeout = 07:32:00\n"),
        7,
        11,
        "services.web.calls[0].timeout",
        &[
            "the unquoted 07:32:00 is a TOML date or time, not a duration",
            "\"2s\" or \"250ms\"",
        ],
    );
    assert_error(
        &format!("{CALL}timeout = {{ s = 2 }}\n"),
        7,
        11,
        "services.web.calls[0].timeout",
        &["a table is not a duration"],
    );
    assert_error(
        &format!("{CALL}rtt = 0.5\n"),
        7,
        7,
        "services.web.calls[0].rtt",
        &["bare number 0.5"],
    );
    assert_error(
        &format!("{SERVICE}instances = \"3\"\n"),
        5,
        13,
        "services.web.instances",
        &["invalid type: string \"3\", expected a whole number"],
    );
    assert_error(
        &format!("{SERVICE}instances = -1\n"),
        5,
        13,
        "services.web.instances",
        &["expected a whole number from 1 to 1000"],
    );
    assert_error(
        &format!("{CALL}idempotent = \"yes\"\n"),
        7,
        14,
        "services.web.calls[0].idempotent",
        &["\"yes\" is not a choice: use true", "or \"by-method\""],
    );
    assert_error(
        &format!("{SERVICE}calls = 5\n"),
        5,
        9,
        "services.web.calls",
        &["expected an array"],
    );
    assert_error(
        &format!("{SERVICE}calls = [5]\n"),
        5,
        10,
        "services.web.calls[0]",
        &["expected a table"],
    );
    assert_error(
        &format!("{CALL}to2 = 1\n").replace("to = \"db\"", "to = 1"),
        6,
        6,
        "services.web.calls[0].to",
        &["expected a string"],
    );
    assert_error(
        "[entry]\nservice = \"web\"\n[services.web]\n[check]\nmax_amplification = \"ten\"\n",
        5,
        21,
        "check.max_amplification",
        &["expected a number"],
    );
}

#[test]
fn toml_syntax_errors_have_a_position_and_no_key() {
    let error = parse("g.toml", "[entry]\nservice = web\n").unwrap_err();
    assert_eq!((error.line, error.column, error.key), (2, 11, None));
    let error = parse("g.toml", "[entry]\nservice = \"a\"\nservice = \"b\"\n").unwrap_err();
    assert_eq!(
        (error.line, error.column, error.key.as_deref()),
        (3, 1, None)
    );
    assert!(error.message.contains("duplicate key"), "{}", error.message);
}

#[test]
fn the_error_display_examples_of_the_report() {
    let shown = |text: String| parse("graph.toml", &text).unwrap_err().to_string();
    assert_eq!(
        shown(CALL.replace("to = \"db\"", "to = \"dbb\"")),
        "graph.toml:6:6: `services.web.calls[0].to`: unknown service \"dbb\": there is no \
         [services.dbb]; known services: db, web"
    );
    assert_eq!(
        shown(format!("{CALL}timeout = 5\n")),
        "graph.toml:7:11: `services.web.calls[0].timeout`: the bare number 5 is not a duration: \
         it has no unit; write a string with a unit, e.g. \"5s\" or \"5ms\""
    );
}

#[test]
fn an_injected_error_status_is_a_failure() {
    let text = "[entry]\nservice = \"a\"\n[services.a]\n[scenarios.s]\nduration = \"1s\"\n\
                [[scenarios.s.faults]]\nservice = \"a\"\nfrom = \"0s\"\nto = \"1s\"\n\
                error_status = 200\nerror_rate = 0.5\n";
    let error = crate::parse("g.toml", text).unwrap_err();
    assert_eq!((error.line, error.column), (10, 16));
    assert_eq!(
        error.key.as_deref(),
        Some("scenarios.s.faults[0].error_status")
    );
    assert!(
        error
            .message
            .contains("an injected error's status is 400 to 599"),
        "{error}"
    );
    let ok = crate::parse("g.toml", &text.replace("= 200", "= 409")).unwrap();
    assert_eq!(ok.scenarios["s"].faults[0].error_status, 409);
}

#[test]
fn queue_keys_are_strict_and_point_at_their_value() {
    let text = format!("{SERVICE}queue_discipline = \"random\"\n");
    assert_error(
        &text,
        5,
        20,
        "services.web.queue_discipline",
        &[
            "\"random\" is not a queue discipline",
            "\"fifo\", \"lifo\" or \"codel\"",
        ],
    );
    // codel settings beside another discipline would be ignored: refused.
    let text = format!("{SERVICE}queue_discipline = \"lifo\"\ncodel = {{ target = \"5ms\" }}\n");
    assert_error(
        &text,
        6,
        9,
        "services.web.codel",
        &["do nothing", "queue_discipline = \"codel\""],
    );
    let text = format!("{SERVICE}codel = {{ target = \"5ms\" }}\n");
    assert_error(&text, 5, 9, "services.web.codel", &["on a \"fifo\" queue"]);
    let text = format!(
        "{SERVICE}queue_discipline = \"codel\"\ncodel = {{ target = \"100ms\", interval = \"50ms\" }}\n"
    );
    assert_error(
        &text,
        6,
        40,
        "services.web.codel.interval",
        &["target 100ms is not below interval 50ms"],
    );
    let text = format!("{SERVICE}queue_discipline = \"codel\"\ncodel = {{ target = \"0s\" }}\n");
    assert_error(&text, 6, 20, "services.web.codel.target", &["out of range"]);
    let text = format!("{SERVICE}queue_timeout = \"0s\"\n");
    assert_error(
        &text,
        5,
        17,
        "services.web.queue_timeout",
        &["out of range", "1ms to 1h"],
    );
    let text = format!("{SERVICE}queue_colour = \"red\"\n");
    assert!(
        error(&text).3.contains("queue_discipline"),
        "{:?}",
        error(&text)
    );
}

/// A name with an escape sequence or a line break would reach the reader's terminal as it is
/// (found by a review: a service named `"\u001b[31mred"` recoloured `check`'s report): refused,
/// with the key escaped in the error.
#[test]
fn names_with_control_characters_are_refused() {
    let (line, _, key, message) =
        error("[entry]\nservice = \"web\"\n[services.web]\n[services.\"\\u001b[31mred\"]\n");
    assert_eq!(line, 4);
    assert_eq!(key, "services.\"\\u{1b}[31mred\"");
    assert!(message.contains("control characters"), "{message}");
    let (_, _, key, _) =
        error("[entry]\nservice = \"web\"\n[services.web]\n[services.web.endpoints.\"a\\nb\"]\n");
    assert_eq!(key, "services.web.endpoints.\"a\\nb\"");
    let (_, _, key, _) =
        error("[entry]\nservice = \"web\"\n[services.web]\n[scenarios.\"t\\tab\"]\n");
    assert_eq!(key, "scenarios.\"t\\tab\"");
    // Unicode that prints is a name like any other.
    assert!(parse(
        "g.toml",
        "[entry]\nservice = \"wéb🚀\"\n[services.\"wéb🚀\"]\n"
    )
    .is_ok());
}

/// A fault or load step that starts at or after the scenario's end never happens; `sim` once
/// ran it and reported the run as never recovered from it.
#[test]
fn a_fault_after_the_scenario_s_end_is_refused() {
    assert_error(
        "[entry]\nservice = \"web\"\n[services.web]\n[scenarios.s]\nduration = \"10s\"\n\
         [[scenarios.s.faults]]\nservice = \"web\"\nfrom = \"20s\"\nto = \"30s\"\nslowdown = 2\n",
        8,
        8,
        "scenarios.s.faults[0].from",
        &[
            "20s is not before the scenario's duration 10s",
            "use from < duration",
        ],
    );
    assert_error(
        "[entry]\nservice = \"web\"\n[services.web]\n[scenarios.s]\nduration = \"10s\"\n\
         [[scenarios.s.load]]\nfrom = \"10s\"\nto = \"12s\"\nrate = 5\n",
        7,
        8,
        "scenarios.s.load[0].from",
        &["a load step that starts after the users stop arriving"],
    );
}

/// A hedge that waits as long as the attempt's timeout never sends its copy (the attempt times
/// out first), though `check` counted its copies in the amplification: refused, as a connect
/// timeout above the timeout is.
#[test]
fn a_hedge_delay_at_or_above_the_timeout_is_refused() {
    assert_error(
        &format!("{CALL}timeout = \"100ms\"\nhedge = {{ delay = \"3s\" }}\n"),
        8,
        9,
        "services.web.calls[0].hedge.delay",
        &["3s is not below timeout 100ms", "would never fire"],
    );
    assert_error(
        &format!("{CALL}timeout = \"100ms\"\nhedge = {{ delay = \"100ms\" }}\n"),
        8,
        9,
        "services.web.calls[0].hedge.delay",
        &["100ms is not below timeout 100ms"],
    );
    assert!(parse(
        "g.toml",
        &format!("{CALL}timeout = \"100ms\"\nhedge = {{ delay = \"99ms\" }}\n")
    )
    .is_ok());
    assert!(parse(
        "g.toml",
        &format!("{CALL}timeout = \"100ms\"\nhedge = {{ delay = \"p99\" }}\n")
    )
    .is_ok());
}

/// `retry_on = []` with more than one attempt is refused at the list: `check` counted the
/// attempts (amplification, a non-idempotent retry) that the proxy and `sim` never send.
#[test]
fn an_empty_retry_on_with_attempts_to_spare_is_refused() {
    assert_error(
        &format!("{CALL}max_attempts = 3\nretry_on = []\n"),
        8,
        12,
        "services.web.calls[0].retry_on",
        &["an empty list retries nothing, so max_attempts = 3 sends one attempt"],
    );
    // One attempt, or a hedge (its copies go whatever fails), may list nothing.
    crate::parse(
        "g.toml",
        &format!("{CALL}max_attempts = 1\nretry_on = []\n"),
    )
    .unwrap();
    crate::parse(
        "g.toml",
        &format!("{CALL}max_attempts = 3\nretry_on = []\nhedge = {{ delay = \"5ms\" }}\n"),
    )
    .unwrap();
}

/// A key or a table given twice is named, with where the table was first given, where the
/// message was a bare "duplicate key".
#[test]
fn a_key_or_table_given_twice_is_named() {
    let error = crate::parse(
        "d.toml",
        "[entry]\nservice = \"web\"\n[services.web]\ninstances = 2\ninstances = 3\n",
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "d.toml:5:1: duplicate key `instances`: a table holds each key once; remove one of them"
    );
    let error = crate::parse(
        "d.toml",
        "[entry]\nservice = \"web\"\n[services.web]\n[services.api]\n[services.web]  # again\n",
    )
    .unwrap_err();
    assert!(
        error.to_string().contains(
            "the table [services.web] is given twice (first at line 3): TOML holds each table \
             once"
        ),
        "{error}"
    );
}

/// A typo is answered with the key it most likely meant: one edit (a letter missing, extra,
/// wrong, or two swapped) per three letters, and only when one key is that near.
#[test]
fn a_typo_names_the_key_it_most_likely_meant() {
    use super::convert::serde_message;
    let said = |typed: &str, valid: &str| {
        serde_message(
            &format!("unknown field `{typed}`, expected one of {valid}"),
            None,
        )
    };
    let keys = "`timeout`, `request_timeout`, `connect_timeout`, `rtt`, `to`";
    assert!(said("timout", keys).contains("did you mean `timeout`?"));
    assert!(said("tiemout", keys).contains("did you mean `timeout`?"));
    assert!(said("rt", keys).contains("did you mean `rtt`?"));
    // Nothing near, or two as near: no guess.
    assert!(!said("deadline", keys).contains("did you mean"));
    assert!(!said("tx", "`to`, `tz`").contains("did you mean"));
}
