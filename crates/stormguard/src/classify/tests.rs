use super::*;
use proptest::prelude::*;
use AttemptResult::*;
use Class::{Final, Retryable, Success};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
fn status(status: u16) -> AttemptResult {
    Response {
        status,
        retry_after: None,
    }
}
fn after(status: u16, wait: u64) -> AttemptResult {
    Response {
        status,
        retry_after: Some(secs(wait)),
    }
}
fn retry(kind: RetryKind) -> Class {
    Retryable {
        kind,
        not_before: None,
    }
}
fn not_idempotent(kind: RetryKind) -> Class {
    Final(FinalReason::NotIdempotent(kind))
}
fn too_long(wait: u64) -> Class {
    Final(FinalReason::RetryAfterTooLong {
        retry_after: secs(wait),
    })
}

#[test]
fn every_status_rule_for_both_kinds_of_method() {
    use RetryKind::Status as S;
    let d = Classifier::default();
    let d500 = Classifier::default().retry_on(RetryOn::default().with(Condition::Status(500)));
    let f = |n| Final(FinalReason::Status(n));
    let w = |n, w| Retryable {
        kind: S(n),
        not_before: Some(secs(w)),
    };
    let (r, ni, tl) = (retry, not_idempotent, too_long);
    // (classifier, result, remaining, class when idempotent, class when not)
    let table: Vec<(&Classifier, AttemptResult, Option<u64>, Class, Class)> = vec![
        (&d, status(100), None, Success, Success),
        (&d, status(200), None, Success, Success),
        (&d, status(304), None, Success, Success),
        (&d, status(399), None, Success, Success),
        (&d, status(400), None, f(400), f(400)),
        (&d, status(404), None, f(404), f(404)),
        (&d, after(409, 1), None, f(409), f(409)),
        (&d, status(408), None, r(S(408)), r(S(408))),
        (&d, status(429), None, r(S(429)), r(S(429))),
        (&d, status(503), None, r(S(503)), r(S(503))),
        (&d, after(429, 2), Some(5), w(429, 2), w(429, 2)),
        (&d, after(503, 5), Some(5), w(503, 5), w(503, 5)),
        (&d, after(503, 6), Some(5), tl(6), tl(6)),
        (&d, after(429, 300), None, w(429, 300), w(429, 300)),
        (&d, after(429, 301), None, tl(301), tl(301)),
        (&d, after(503, 301), Some(999), tl(301), tl(301)),
        (&d, status(502), None, r(S(502)), ni(S(502))),
        (&d, status(504), None, r(S(504)), ni(S(504))),
        (&d, after(502, 1), None, r(S(502)), ni(S(502))),
        (&d, status(500), None, f(500), f(500)),
        (&d500, status(500), None, r(S(500)), ni(S(500))),
        (&d, status(501), None, f(501), f(501)),
        (&d, status(505), None, f(505), f(505)),
        (&d, status(599), None, f(599), f(599)),
        (&d, status(600), None, f(600), f(600)),
    ];
    for (classifier, result, remaining, idempotent, not) in table {
        let remaining = remaining.map(secs);
        let got = |idem| classifier.classify(result, idem, remaining);
        assert_eq!(got(true), idempotent, "{result:?} idempotent");
        assert_eq!(got(false), not, "{result:?} not idempotent");
    }
}

#[test]
fn transport_failures_are_retried_unless_the_request_was_written() {
    use RetryKind as K;
    // (result, kind, safe for any method because the request never arrived)
    let table = [
        (ConnectRefused, K::Refused, true),
        (ConnectTimeout, K::ConnectTimeout, true),
        (ResetBeforeWritten, K::Reset, true),
        (RefusedStream, K::RefusedStream, true),
        (TimeoutAfterWritten, K::Timeout, false),
        (ErrorAfterWritten, K::Error, false),
    ];
    let classifier = Classifier::default();
    for (result, kind, never_arrived) in table {
        // An exhausted deadline is the deadline policy's business, not the classifier's.
        for remaining in [None, Some(Duration::ZERO)] {
            let got = |idem| classifier.classify(result, idem, remaining);
            assert_eq!(got(true), retry(kind), "{result:?}");
            let want = if never_arrived {
                retry(kind)
            } else {
                not_idempotent(kind)
            };
            assert_eq!(got(false), want, "{result:?}");
            assert_eq!(kind.reached_server(), !never_arrived);
        }
    }
}

#[test]
fn retry_kinds_know_timeouts_and_whether_the_server_was_reached() {
    use RetryKind::*;
    let table = [
        (Refused, false, false),
        (ConnectTimeout, true, false),
        (Reset, false, false),
        (Timeout, true, true),
        (Error, false, true),
        (Status(503), false, true),
    ];
    for (kind, timeout, reached) in table {
        assert_eq!(kind.is_timeout(), timeout, "{kind:?}");
        assert_eq!(kind.reached_server(), reached, "{kind:?}");
    }
}

#[test]
fn idempotent_methods_and_idempotency_key() {
    let none = HeaderMap::new();
    let mut keyed = HeaderMap::new();
    keyed.insert("Idempotency-Key", HeaderValue::from_static("k1"));
    for m in [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::PUT,
        Method::DELETE,
        Method::TRACE,
    ] {
        assert!(is_idempotent(&m, &none), "{m}");
    }
    let custom = Method::from_bytes(b"PURGE").unwrap();
    for m in [Method::POST, Method::PATCH, Method::CONNECT, custom] {
        assert!(!is_idempotent(&m, &none), "{m}");
        assert!(is_idempotent(&m, &keyed), "{m} with key");
    }
}

#[test]
fn retry_after_accepts_seconds_and_dates() {
    let now = SystemTime::UNIX_EPOCH + secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
    let table: [(&'static str, Option<Duration>); 12] = [
        ("0", Some(Duration::ZERO)),
        ("120", Some(secs(120))),
        (" 7\t", Some(secs(7))),
        ("99999999999999999999999", Some(secs(u64::MAX))),
        ("Sun, 06 Nov 1994 08:49:47 GMT", Some(secs(10))),
        ("Sunday, 06-Nov-94 08:49:47 GMT", Some(secs(10))),
        ("Sun Nov  6 08:49:47 1994", Some(secs(10))),
        ("Sun, 06 Nov 1994 08:49:00 GMT", Some(Duration::ZERO)),
        ("", None),
        ("-5", None),
        ("1.5", None),
        ("tomorrow", None),
    ];
    for (text, want) in table {
        assert_eq!(
            parse_retry_after(&HeaderValue::from_static(text), now),
            want,
            "{text:?}"
        );
    }
    let bytes = HeaderValue::from_bytes(b"\xff").unwrap();
    assert_eq!(parse_retry_after(&bytes, now), None);
}

fn any_result() -> impl Strategy<Value = AttemptResult> {
    prop_oneof![
        (any::<u16>(), proptest::option::of(0u64..1000)).prop_map(|(s, w)| Response {
            status: s,
            retry_after: w.map(secs)
        }),
        Just(ConnectRefused),
        Just(ConnectTimeout),
        Just(ResetBeforeWritten),
        Just(TimeoutAfterWritten),
        Just(ErrorAfterWritten),
        Just(RefusedStream),
        (0u8..=16, proptest::option::of(0u64..1000)).prop_map(|(code, w)| Grpc {
            code,
            pushback: w.map(secs)
        }),
    ]
}

proptest! {
    #[test]
    fn classification_invariants(
        result in any_result(), idempotent in any::<bool>(), retry_500 in any::<bool>(),
        max in 0u64..1000, remaining in proptest::option::of(0u64..1000),
    ) {
        let mut retry_on = RetryOn::default();
        if retry_500 {
            retry_on = retry_on.with(Condition::Status(500));
        }
        let classifier = Classifier { retry_on, max_retry_after: secs(max), rule: None };
        let class = classifier.classify(result, idempotent, remaining.map(secs));
        if let Response { status, .. } = result {
            prop_assert_eq!(class == Success, status < 400);
            if (400..500).contains(&status) && status != 408 && status != 429 {
                prop_assert_eq!(class, Final(FinalReason::Status(status)));
            }
        }
        if !idempotent && matches!(result, TimeoutAfterWritten | ErrorAfterWritten) {
            prop_assert!(matches!(class, Final(FinalReason::NotIdempotent(_))));
        }
        if let Retryable { kind, not_before } = class {
            // Whatever reached the server is retried only when idempotent or when the
            // server said it did not do the work.
            let declined = kind.declined();
            prop_assert!(idempotent || !kind.reached_server() || declined);
            if let Some(wait) = not_before {
                prop_assert!(wait <= secs(max) && remaining.is_none_or(|r| wait <= secs(r)));
            }
        }
    }
}

fn any_retry_on() -> impl Strategy<Value = RetryOn> {
    proptest::collection::vec(retry_on::tests::any_condition(), 0..8)
        .prop_map(|conditions| conditions.into_iter().fold(RetryOn::none(), RetryOn::with))
}

proptest! {
    /// `RetryOn::for_any_method` is what the classifier makes of a set for a request that is
    /// not idempotent: each outcome is retried under the set for such a request exactly when it
    /// is under the reduced set for any request. `check` reads a call's retries through it.
    #[test]
    fn for_any_method_is_what_a_non_idempotent_request_is_retried_on(
        retry_on in any_retry_on(), result in any_result(),
    ) {
        let retried = |on: RetryOn, idempotent| {
            let classifier = Classifier { retry_on: on, max_retry_after: secs(3600), rule: None };
            matches!(classifier.classify(result, idempotent, None), Retryable { .. })
        };
        let reduced = retry_on.for_any_method();
        prop_assert_eq!(retried(retry_on, false), retried(reduced, true));
        prop_assert_eq!(retried(reduced, false), retried(reduced, true));
        prop_assert_eq!(reduced.for_any_method(), reduced);
    }
}

#[test]
fn grpc_unavailable_retries_like_503_and_invalid_argument_is_final() {
    let c = Classifier::default();
    let response = |code| AttemptResult::Response {
        status: grpc_status_as_http(code),
        retry_after: None,
    };
    assert_eq!(
        c.classify(response(14), false, None),
        Class::Retryable {
            kind: RetryKind::Status(503),
            not_before: None
        }
    );
    assert_eq!(c.classify(response(0), true, None), Class::Success);
    assert!(matches!(
        c.classify(response(3), true, None),
        Class::Final(_)
    ));
    assert!(matches!(
        c.classify(response(13), true, None),
        Class::Final(_)
    ));
    assert_eq!(parse_grpc_pushback(None), None);
    assert_eq!(
        parse_grpc_pushback(Some(&HeaderValue::from_static("x"))),
        Some(Duration::MAX)
    );
}

#[test]
fn retry_on_allows_only_what_it_lists() {
    let only = |items: &[&str]| {
        Classifier::default().retry_on(RetryOn::parse_list(items.iter().copied()).unwrap())
    };
    let conflict = status(409);
    // 409 listed: retried for any method, since the server did not apply a conflicting request.
    assert_eq!(
        only(&["409"]).classify(conflict, false, None),
        retry(RetryKind::Status(409))
    );
    // Everything else is final once the list replaces the default.
    let c = only(&["409"]);
    assert_eq!(
        c.classify(status(503), true, None),
        Final(FinalReason::Status(503))
    );
    assert_eq!(
        c.classify(ConnectRefused, true, None),
        Final(FinalReason::NotListed(RetryKind::Refused))
    );
    assert_eq!(
        c.classify(TimeoutAfterWritten, true, None),
        Final(FinalReason::NotListed(RetryKind::Timeout))
    );
    // The default does not list 409.
    assert_eq!(
        Classifier::default().classify(conflict, true, None),
        Final(FinalReason::Status(409))
    );
    // 5xx covers 500 for idempotent requests; a listed timeout is still refused for a POST.
    let five = only(&["5xx", "timeout"]);
    assert_eq!(
        five.classify(status(500), true, None),
        retry(RetryKind::Status(500))
    );
    assert_eq!(
        five.classify(status(500), false, None),
        not_idempotent(RetryKind::Status(500))
    );
    assert_eq!(
        five.classify(TimeoutAfterWritten, false, None),
        not_idempotent(RetryKind::Timeout)
    );
    // reset-before-request retries a reset before the write, never an error after it.
    let before = only(&["reset-before-request"]);
    assert_eq!(
        before.classify(ResetBeforeWritten, false, None),
        retry(RetryKind::Reset)
    );
    assert_eq!(
        before.classify(ErrorAfterWritten, true, None),
        Final(FinalReason::NotListed(RetryKind::Error))
    );
    // A refused stream has its own condition.
    assert_eq!(
        only(&["reset"]).classify(RefusedStream, true, None),
        Final(FinalReason::NotListed(RetryKind::RefusedStream))
    );
}

#[test]
fn grpc_statuses_are_named_conditions() {
    let grpc = |code| Grpc {
        code,
        pushback: None,
    };
    let d = Classifier::default();
    assert_eq!(d.classify(grpc(0), false, None), Success);
    // UNAVAILABLE and RESOURCE_EXHAUSTED: the server did not do the work, any method.
    assert_eq!(
        d.classify(grpc(14), false, None),
        retry(RetryKind::Grpc(14))
    );
    assert_eq!(d.classify(grpc(8), false, None), retry(RetryKind::Grpc(8)));
    // DEADLINE_EXCEEDED may come after the work: idempotent only (as 504).
    assert_eq!(d.classify(grpc(4), true, None), retry(RetryKind::Grpc(4)));
    assert_eq!(
        d.classify(grpc(4), false, None),
        not_idempotent(RetryKind::Grpc(4))
    );
    // INTERNAL and INVALID_ARGUMENT are not in the default list.
    for code in [3, 13] {
        assert_eq!(
            d.classify(grpc(code), true, None),
            Final(FinalReason::NotListed(RetryKind::Grpc(code)))
        );
    }
    let internal = Classifier::default().retry_on(RetryOn::parse_list(["internal"]).unwrap());
    assert_eq!(
        internal.classify(grpc(13), true, None),
        retry(RetryKind::Grpc(13))
    );
    // Pushback is honoured, and "do not retry" (MAX) is final.
    let pushed = Grpc {
        code: 14,
        pushback: Some(secs(2)),
    };
    assert_eq!(
        d.classify(pushed, false, None),
        Retryable {
            kind: RetryKind::Grpc(14),
            not_before: Some(secs(2))
        }
    );
    let never = Grpc {
        code: 14,
        pushback: Some(Duration::MAX),
    };
    assert!(matches!(
        d.classify(never, false, None),
        Final(FinalReason::RetryAfterTooLong { .. })
    ));
    assert_eq!(pushed.http_status(), Some(503));
}

#[test]
fn a_rule_answers_before_the_list() {
    let rule = Rule::new(|result, _| match result {
        Response { status: 404, .. } => Some(retry(RetryKind::Status(404))),
        Response { status: 503, .. } => Some(Final(FinalReason::Status(503))),
        _ => None,
    });
    let c = Classifier::default().rule(rule.clone());
    assert_eq!(
        c.classify(status(404), false, None),
        retry(RetryKind::Status(404))
    );
    assert_eq!(
        c.classify(status(503), true, None),
        Final(FinalReason::Status(503))
    );
    // Unanswered outcomes fall through to the default list.
    assert_eq!(
        c.classify(status(502), true, None),
        retry(RetryKind::Status(502))
    );
    assert_eq!(c, Classifier::default().rule(rule));
    assert_ne!(c, Classifier::default());
}

/// The fast path of `is_success` says what `classify` says, with and without a rule (a rule
/// may call a 200 a failure, or a 503 a success).
#[test]
fn is_success_agrees_with_classify() {
    let results = [
        status(200),
        status(204),
        status(399),
        status(400),
        status(429),
        after(503, 1),
        status(500),
        Grpc {
            code: 0,
            pushback: None,
        },
        Grpc {
            code: 14,
            pushback: None,
        },
        ConnectRefused,
        ConnectTimeout,
        ResetBeforeWritten,
        RefusedStream,
        TimeoutAfterWritten,
        ErrorAfterWritten,
    ];
    let inverted = Classifier::default().rule(Rule::new(|result, _| match result {
        Response { status: 200, .. } => Some(Final(FinalReason::Status(200))),
        Response { status: 503, .. } => Some(Success),
        _ => None,
    }));
    for classifier in [Classifier::default(), inverted] {
        for result in results {
            for idempotent in [false, true] {
                assert_eq!(
                    classifier.is_success(result, idempotent),
                    classifier.classify(result, idempotent, None) == Success,
                    "{result:?}, idempotent {idempotent}"
                );
            }
        }
    }
}
