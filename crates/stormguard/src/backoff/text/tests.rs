use super::*;
use proptest::prelude::*;

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

#[test]
fn parses_every_kind() {
    let (base, cap) = (ms(25), ms(1000));
    let cases = [
        ("none", Backoff::None),
        ("constant(100ms)", Backoff::Constant(ms(100))),
        ("constant(delay=100ms)", Backoff::Constant(ms(100))),
        ("constant(1ms)", Backoff::Constant(ms(1))),
        ("constant(1h)", Backoff::Constant(ms(3_600_000))),
        (
            "exponential(base=25ms, cap=1s)",
            Backoff::Exponential { base, cap },
        ),
        (
            "full-jitter(base=25ms, cap=1s)",
            Backoff::FullJitter { base, cap },
        ),
        (
            "equal-jitter(base=25ms, cap=1s)",
            Backoff::EqualJitter { base, cap },
        ),
        (
            "decorrelated-jitter(base=25ms, cap=1s)",
            Backoff::DecorrelatedJitter { base, cap },
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(text.parse::<Backoff>(), Ok(expected), "{text}");
    }
}

#[test]
fn canonical_examples_print_back_identically() {
    for text in [
        "none",
        "constant(100ms)",
        "exponential(base=25ms, cap=1s)",
        "full-jitter(base=25ms, cap=1s)",
        "equal-jitter(base=25ms, cap=1s)",
        "decorrelated-jitter(base=25ms, cap=1s)",
        "full-jitter(base=25ms, cap=250ms)",
    ] {
        assert_eq!(text.parse::<Backoff>().unwrap().to_string(), text);
    }
    assert_eq!(
        Backoff::default().to_string(),
        "full-jitter(base=25ms, cap=250ms)"
    );
}

#[test]
fn accepts_any_key_order_and_spacing() {
    let expected = Backoff::FullJitter {
        base: ms(25),
        cap: ms(1000),
    };
    for text in [
        "full-jitter(cap=1s, base=25ms)",
        "full-jitter(base=25ms,cap=1s)",
        "  full-jitter ( base = 25ms ,  cap = 1000ms )  ",
        "full-jitter(cap=1s,base=0.025s)",
    ] {
        assert_eq!(text.parse::<Backoff>(), Ok(expected), "{text}");
    }
    assert_eq!(
        "constant( delay = 1s )".parse(),
        Ok(Backoff::Constant(ms(1000)))
    );
}

fn error(text: &str) -> BackoffParseError {
    text.parse::<Backoff>().expect_err(text)
}

#[test]
fn refuses_mistakes_with_a_specific_error() {
    use BackoffParseError as E;
    assert_eq!(error(""), E::Empty);
    assert_eq!(error("  "), E::Empty);
    assert!(
        matches!(error("linear(base=1s, cap=2s)"), E::UnknownKind { kind } if kind == "linear")
    );
    assert!(matches!(
        error("Full-Jitter(base=1s, cap=2s)"),
        E::UnknownKind { .. }
    ));
    assert!(matches!(
        error("full-jitter"),
        E::MissingArguments {
            kind: "full-jitter",
            ..
        }
    ));
    assert!(matches!(error("constant"), E::MissingArguments { .. }));
    assert!(matches!(
        error("full-jitter(base=1s"),
        E::UnclosedParenthesis { .. }
    ));
    assert!(matches!(
        error("full-jitter(base=25ms)"),
        E::MissingCap { .. }
    ));
    assert!(matches!(error("exponential()"), E::MissingCap { .. }));
    assert!(matches!(
        error("full-jitter(cap=1s)"),
        E::MissingBase { .. }
    ));
    assert!(matches!(error("constant()"), E::MissingDelay));
    assert!(
        matches!(error("full-jitter(base=1ms, cap=1s, max=2s)"), E::UnknownKey { key, .. } if key == "max")
    );
    assert!(matches!(error("constant(base=1s)"), E::UnknownKey { .. }));
    assert!(
        matches!(error("full-jitter(base=1ms, base=2ms, cap=1s)"), E::DuplicateKey { key, .. } if key == "base")
    );
    assert!(matches!(
        error("full-jitter(1ms, 1s)"),
        E::MalformedArgument { .. }
    ));
    assert!(matches!(
        error("full-jitter(base=1ms, cap=1s,)"),
        E::MalformedArgument { .. }
    ));
    assert!(matches!(
        error("constant(1s, 2s)"),
        E::MalformedArgument { .. }
    ));
    assert!(matches!(
        error("constant(1s, delay=2s)"),
        E::MalformedArgument { .. }
    ));
    assert!(matches!(
        error("full-jitter(base=10, cap=1s)"),
        E::BadDuration { key: "base", .. }
    ));
    assert!(matches!(
        error("constant(fast)"),
        E::BadDuration { key: "delay", .. }
    ));
    assert!(matches!(
        error("full-jitter(base=2s, cap=1s)"),
        E::BaseAboveCap { .. }
    ));
    assert!(matches!(
        error("exponential(base=0s, cap=1s)"),
        E::DelayOutOfRange { key: "base", .. }
    ));
    assert!(matches!(
        error("decorrelated-jitter(base=0ms, cap=0ms)"),
        E::DelayOutOfRange { .. }
    ));
    assert!(
        matches!(error("full-jitter(base=1ms, cap=1s) x"), E::TrailingText { rest, .. } if rest == "x")
    );
    assert!(matches!(
        error("full-jitter(base=1ms, cap=1s))"),
        E::TrailingText { .. }
    ));
    assert!(matches!(error("none()"), E::TrailingText { .. }));
    assert!(matches!(error("none please"), E::TrailingText { .. }));
}

/// Zero is `none`'s to say, for every kind alike: `constant(0ms)` is refused as
/// `full-jitter(base=0ms, ...)` is, and so is a delay below a millisecond or above an hour,
/// which would once parse and then panic on the first `Instant` it was added to.
#[test]
fn every_delay_of_every_kind_is_one_millisecond_to_one_hour() {
    use BackoffParseError as E;
    for kind in Kind::ALL.into_iter().filter(|&k| k != Kind::None) {
        for (delay, words) in [
            ("0ms", "write `none` to retry at once"),
            ("999us", "below a millisecond"),
            ("3600000000001ns", "outlived every caller"),
            ("5000000000000000h", "outlived every caller"),
        ] {
            let (text, key) = match kind {
                Kind::Constant => (format!("constant({delay})"), "delay"),
                _ => (format!("{}(base={delay}, cap=1h)", kind.name()), "base"),
            };
            let refused = error(&text);
            assert!(
                matches!(refused, E::DelayOutOfRange { key: k, .. } if k == key),
                "{text}: {refused:?}"
            );
            let message = refused.to_string();
            assert!(message.contains("a backoff waits 1ms to 1h"), "{message}");
            assert!(message.contains(words), "{text}: {message}");
        }
        if let Kind::Growing(_) = kind {
            let text = format!("{}(base=1ms, cap=2h)", kind.name());
            assert!(
                matches!(error(&text), E::DelayOutOfRange { key: "cap", .. }),
                "{text}"
            );
        }
    }
    assert_eq!(
        "exponential(base=1ms, cap=1h)".parse(),
        Ok(Backoff::Exponential {
            base: MIN_DELAY,
            cap: MAX_DELAY
        })
    );
}

#[test]
fn messages_say_what_was_wrong_and_what_is_valid() {
    let missing_cap = error("exponential(base=25ms)").to_string();
    assert!(
        missing_cap.contains("uncapped backoff is a bug"),
        "{missing_cap}"
    );
    assert!(missing_cap.contains("add cap="), "{missing_cap}");
    let zero = error("full-jitter(base=0s, cap=1s)").to_string();
    assert!(zero.contains("0 × 2^n = 0"), "{zero}");
    let above = error("full-jitter(base=2s, cap=1s)").to_string();
    assert!(above.contains("base 2s is above cap 1s"), "{above}");
    let unknown = error("linear(base=1s, cap=2s)").to_string();
    assert!(
        unknown.contains("\"linear\"") && unknown.contains(VALID_FORMS),
        "{unknown}"
    );
    let bad = error("full-jitter(base=10, cap=1s)");
    assert!(bad.to_string().contains("bad base"), "{bad}");
    assert!(bad.to_string().contains("missing unit"), "{bad}");
    assert!(std::error::Error::source(&bad).is_some());
}

fn duration_strategy() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (0u64..=1_000_000_000_000_000).prop_map(Duration::from_nanos),
        (0u64..10_000).prop_map(Duration::from_millis),
        (0u64..100).prop_map(|m| Duration::from_secs(m * 60)),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

/// A delay a text may give: 1 ms to 1 h, at any precision.
fn delay_strategy() -> impl Strategy<Value = Duration> {
    duration_strategy().prop_map(|d| d.clamp(MIN_DELAY, MAX_DELAY))
}

/// Every value the parser accepts: delays in range, growing kinds with base <= cap.
fn valid_backoff() -> impl Strategy<Value = Backoff> {
    let growing = (0usize..4, delay_strategy(), delay_strategy()).prop_map(|(kind, a, b)| {
        let (base, cap) = (a.min(b), a.max(b));
        Growing::ALL[kind].with(base, cap)
    });
    prop_oneof![
        Just(Backoff::None),
        delay_strategy().prop_map(Backoff::Constant),
        growing,
    ]
}

proptest! {
    #[test]
    fn print_then_parse_round_trips(backoff in valid_backoff()) {
        prop_assert_eq!(backoff.to_string().parse::<Backoff>(), Ok(backoff));
    }

    #[test]
    fn parse_then_print_is_canonical(backoff in valid_backoff()) {
        // Reversed keys and extra spaces still print canonically.
        let text = match backoff {
            Backoff::Exponential { base, cap }
            | Backoff::FullJitter { base, cap }
            | Backoff::EqualJitter { base, cap }
            | Backoff::DecorrelatedJitter { base, cap } => format!(
                " {} ( cap = {} , base = {} ) ",
                Kind::of(&backoff).name(),
                duration::format(cap),
                duration::format(base)
            ),
            Backoff::Constant(d) => format!("constant(delay={})", duration::format(d)),
            Backoff::None => " none ".to_owned(),
        };
        let parsed: Backoff = text.parse().unwrap();
        prop_assert_eq!(parsed, backoff);
        prop_assert_eq!(parsed.to_string(), backoff.to_string());
    }

    #[test]
    fn parse_never_panics(text in "\\PC{0,40}") {
        let _ = text.parse::<Backoff>();
    }

    #[test]
    fn parse_never_panics_on_near_misses(
        kind in "(none|constant|exponential|full-jitter|equal-jitter|decorrelated-jitter)",
        arguments in "[a-z0-9=,. ()µ-]{0,30}",
    ) {
        let _ = format!("{kind}({arguments})").parse::<Backoff>();
    }
}
