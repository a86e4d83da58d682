//! `retry_on`: the failures that allow a retry, named as users know them from Envoy, Istio,
//! Gateway API, Linkerd and gRPC.
//!
//! ## Why a list of conditions, and what it cannot do
//! Which failures are worth a retry depends on the service: one that answers 409 to a lost
//! optimistic-lock race wants it retried, one whose 503 means "draining, go elsewhere" wants
//! that, one that answers gRPC `RESOURCE_EXHAUSTED` to say "throttled" wants a wait. The mesh
//! proxies all say so with a list (`retry_on`, `retryOn`, `codes`, `retryableStatusCodes`), so
//! stormguard reads the same words, with one meaning in the graph file, the proxy file and the
//! library.
//!
//! A condition only *allows* a retry. Whether the request may be repeated is still decided by
//! where it failed and by idempotency ([`super::Classifier::classify`]): listing `timeout` never
//! makes a POST whose answer was lost replayable, and listing `502` retries a 502 only for an
//! idempotent request, because the upstream may have done the work before its gateway failed.
//! The conditions that say the server did not do the work (`connect-failure`,
//! `refused-stream`, a reset before the request was written, 408, 429, 503, any other 4xx, and
//! gRPC `UNAVAILABLE`, `RESOURCE_EXHAUSTED` and `ABORTED`) are retried for any method.

use std::fmt;
use std::str::FromStr;

/// One condition of a `retry_on` list.
///
/// ```
/// use stormguard::classify::Condition;
///
/// let condition: Condition = "gateway-error".parse().unwrap();
/// assert_eq!(condition, Condition::GatewayError);
/// assert_eq!("409".parse::<Condition>().unwrap(), Condition::Status(409));
/// assert_eq!(Condition::Grpc(14).to_string(), "unavailable");
/// assert!("4O9".parse::<Condition>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Condition {
    /// `connect-failure`: the connection was refused or not made within `connect_timeout`.
    ConnectFailure,
    /// `refused-stream`: an HTTP/2 stream the server refused (`REFUSED_STREAM`, or above a
    /// `GOAWAY`'s last stream), which RFC 9113 guarantees was not processed.
    RefusedStream,
    /// `reset`: the connection failed, before the request was written (any method) or after
    /// it (idempotent requests only).
    Reset,
    /// `reset-before-request`: the connection failed before the request was written (Envoy's
    /// and Istio's name; safe for any method).
    ResetBeforeRequest,
    /// `timeout`: the attempt's own `timeout` fired after the request was written (idempotent
    /// requests only).
    Timeout,
    /// `5xx`: any status from 500 to 599.
    Status5xx,
    /// `gateway-error`: 502, 503 and 504.
    GatewayError,
    /// A single status from 400 to 599, e.g. `409` or `429`.
    Status(u16),
    /// A gRPC status by name (`unavailable`, `resource-exhausted`, ...), code 1 to 16.
    Grpc(u8),
}

/// The gRPC status names, by code (0 is OK and is no condition).
const GRPC_NAMES: [&str; 17] = [
    "ok",
    "cancelled",
    "unknown",
    "invalid-argument",
    "deadline-exceeded",
    "not-found",
    "already-exists",
    "permission-denied",
    "resource-exhausted",
    "failed-precondition",
    "aborted",
    "out-of-range",
    "unimplemented",
    "internal",
    "unavailable",
    "data-loss",
    "unauthenticated",
];

/// The name of gRPC status `code` in kebab case (`"unavailable"` for 14), `None` past 16.
///
/// ```
/// assert_eq!(stormguard::classify::grpc_name(8), Some("resource-exhausted"));
/// ```
pub fn grpc_name(code: u32) -> Option<&'static str> {
    GRPC_NAMES.get(code as usize).copied()
}

/// Named conditions other than statuses, as bits of [`RetryOn`].
const CONNECT_FAILURE: u8 = 1;
const REFUSED_STREAM: u8 = 1 << 1;
const RESET: u8 = 1 << 2;
const RESET_BEFORE_REQUEST: u8 = 1 << 3;
const TIMEOUT: u8 = 1 << 4;
const STATUS_5XX: u8 = 1 << 5;
const GATEWAY_ERROR: u8 = 1 << 6;

/// The first status a single-status condition may name.
const FIRST_STATUS: u16 = 400;
/// The last.
const LAST_STATUS: u16 = 599;

/// Why a `retry_on` item was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RetryOnError {
    /// Not a known name nor a status.
    #[error(
        "{0:?} is not a retry condition: use connect-failure, refused-stream, reset, \
         reset-before-request, timeout, 5xx, gateway-error, a status from 400 to 599 (e.g. \
         \"409\"), a gRPC status name (e.g. \"unavailable\", \"resource-exhausted\"), or \
         \"default\" for the default list"
    )]
    Unknown(String),
    /// A status outside 400 to 599.
    #[error(
        "status {0} cannot be retried: only failures (400 to 599) are; a status below 400 is a \
         success"
    )]
    Status(u16),
}

impl FromStr for Condition {
    type Err = RetryOnError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        Ok(match text {
            "connect-failure" => Condition::ConnectFailure,
            "refused-stream" => Condition::RefusedStream,
            "reset" => Condition::Reset,
            "reset-before-request" => Condition::ResetBeforeRequest,
            "timeout" => Condition::Timeout,
            "5xx" => Condition::Status5xx,
            "gateway-error" => Condition::GatewayError,
            // Envoy's name for 409 alone.
            "retriable-4xx" => Condition::Status(409),
            _ if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
                let status: u16 = text
                    .parse()
                    .map_err(|_| RetryOnError::Unknown(text.to_string()))?;
                if !(FIRST_STATUS..=LAST_STATUS).contains(&status) {
                    return Err(RetryOnError::Status(status));
                }
                Condition::Status(status)
            }
            _ => {
                let lower = text.to_ascii_lowercase().replace('_', "-");
                match GRPC_NAMES.iter().position(|name| *name == lower) {
                    Some(code) if code > 0 => Condition::Grpc(code as u8),
                    _ => return Err(RetryOnError::Unknown(text.to_string())),
                }
            }
        })
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::ConnectFailure => f.write_str("connect-failure"),
            Condition::RefusedStream => f.write_str("refused-stream"),
            Condition::Reset => f.write_str("reset"),
            Condition::ResetBeforeRequest => f.write_str("reset-before-request"),
            Condition::Timeout => f.write_str("timeout"),
            Condition::Status5xx => f.write_str("5xx"),
            Condition::GatewayError => f.write_str("gateway-error"),
            Condition::Status(status) => write!(f, "{status}"),
            Condition::Grpc(code) => f.write_str(grpc_name(u32::from(*code)).unwrap_or("unknown")),
        }
    }
}

/// A set of [`Condition`]s: the failures a call may retry.
///
/// A plain, `Copy` value (a few bit sets), so that the classifier asks it in a few instructions
/// on every failed attempt. [`RetryOn::default`] is the list stormguard has always retried:
/// `connect-failure, refused-stream, reset, timeout, gateway-error, 408, 429, unavailable,
/// resource-exhausted, deadline-exceeded`. A list in a file replaces it; the item `"default"`
/// stands for it, so `["default", "409"]` extends it.
///
/// ```
/// use stormguard::classify::{Condition, RetryOn};
///
/// let on = RetryOn::parse_list(["default", "409"]).unwrap();
/// assert!(on.status(409) && on.status(503) && !on.status(500));
/// let only = RetryOn::parse_list(["409"]).unwrap();
/// assert!(only.status(409) && !only.status(503) && !only.has(Condition::ConnectFailure));
/// assert_eq!(only.to_string(), "409");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RetryOn {
    named: u8,
    /// Bit `s - 400` for each single status `s` listed.
    statuses: [u64; 4],
    /// Bit `c` for each gRPC code `c` listed.
    grpc: u32,
}

impl Default for RetryOn {
    /// What stormguard retries when a call says nothing: failures before the request was sent,
    /// resets and timeouts (idempotent requests only once sent), gateway errors, 408 and 429,
    /// and the gRPC statuses that stand for them.
    fn default() -> Self {
        RetryOn::none()
            .with(Condition::ConnectFailure)
            .with(Condition::RefusedStream)
            .with(Condition::Reset)
            .with(Condition::Timeout)
            .with(Condition::GatewayError)
            .with(Condition::Status(408))
            .with(Condition::Status(429))
            .with(Condition::Grpc(14))
            .with(Condition::Grpc(8))
            .with(Condition::Grpc(4))
    }
}

impl RetryOn {
    /// The empty set: nothing is retried (unless a [`super::Rule`] says so).
    pub const fn none() -> Self {
        RetryOn {
            named: 0,
            statuses: [0; 4],
            grpc: 0,
        }
    }

    /// This set with `condition` added. A status outside 400 to 599 or a gRPC code outside
    /// 1 to 16 adds nothing (the parser refuses them).
    pub fn with(mut self, condition: Condition) -> Self {
        match condition {
            Condition::ConnectFailure => self.named |= CONNECT_FAILURE,
            Condition::RefusedStream => self.named |= REFUSED_STREAM,
            Condition::Reset => self.named |= RESET,
            Condition::ResetBeforeRequest => self.named |= RESET_BEFORE_REQUEST,
            Condition::Timeout => self.named |= TIMEOUT,
            Condition::Status5xx => self.named |= STATUS_5XX,
            Condition::GatewayError => self.named |= GATEWAY_ERROR,
            Condition::Status(status) => {
                if (FIRST_STATUS..=LAST_STATUS).contains(&status) {
                    let bit = usize::from(status - FIRST_STATUS);
                    self.statuses[bit / 64] |= 1 << (bit % 64);
                }
            }
            Condition::Grpc(code) => {
                if (1..=16).contains(&code) {
                    self.grpc |= 1 << code;
                }
            }
        }
        self
    }

    /// Parses a list as a file writes it; `"default"` stands for [`RetryOn::default`].
    pub fn parse_list<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, RetryOnError> {
        items.into_iter().try_fold(RetryOn::none(), |set, item| {
            if item.trim() == "default" {
                Ok(set.union(RetryOn::default()))
            } else {
                Ok(set.with(item.parse()?))
            }
        })
    }

    /// Every condition of either set.
    pub fn union(self, other: RetryOn) -> Self {
        RetryOn {
            named: self.named | other.named,
            statuses: std::array::from_fn(|i| self.statuses[i] | other.statuses[i]),
            grpc: self.grpc | other.grpc,
        }
    }

    /// Whether `condition` itself is in the set (as listed: `has(Status(503))` is false for a
    /// set that lists only `gateway-error`; see [`RetryOn::status`] for what is retried).
    pub fn has(&self, condition: Condition) -> bool {
        self.with(condition) == *self
    }

    /// Whether a response with `status` may be retried: listed alone, or by `5xx` or
    /// `gateway-error`.
    pub fn status(&self, status: u16) -> bool {
        let single = (FIRST_STATUS..=LAST_STATUS).contains(&status) && {
            let bit = usize::from(status - FIRST_STATUS);
            self.statuses[bit / 64] & (1 << (bit % 64)) != 0
        };
        single
            || (self.named & STATUS_5XX != 0 && (500..=599).contains(&status))
            || (self.named & GATEWAY_ERROR != 0 && (502..=504).contains(&status))
    }

    /// Whether gRPC status `code` may be retried.
    pub fn grpc(&self, code: u32) -> bool {
        code < 32 && self.grpc & (1 << code) != 0
    }

    /// Whether a refused or timed-out connection may be retried.
    pub fn connect_failure(&self) -> bool {
        self.named & CONNECT_FAILURE != 0
    }

    /// Whether a refused HTTP/2 stream may be retried.
    pub fn refused_stream(&self) -> bool {
        self.named & REFUSED_STREAM != 0
    }

    /// Whether a connection that failed before the request was written may be retried.
    pub fn reset_before_request(&self) -> bool {
        self.named & (RESET | RESET_BEFORE_REQUEST) != 0
    }

    /// Whether a connection that failed after the request was written may be retried (for an
    /// idempotent request).
    pub fn reset_after_request(&self) -> bool {
        self.named & RESET != 0
    }

    /// Whether an attempt's own timeout may be retried (for an idempotent request).
    pub fn timeout(&self) -> bool {
        self.named & TIMEOUT != 0
    }

    /// The part of this set that a request which must not be applied twice is still retried
    /// on: the failures before it was sent (`connect-failure`, `refused-stream`, and a `reset`
    /// only before the request, as `reset-before-request`), and the answers that say the server
    /// did not do the work (408, 429, 503 and the other 4xx, gRPC `resource-exhausted`,
    /// `aborted` and `unavailable`; `5xx` and `gateway-error` count as 503 alone).
    ///
    /// The classifier retries nothing else of a request that is not idempotent, whatever the
    /// set lists ([`super::Classifier::classify`]), so this is what such a call's `retry_on`
    /// comes to: `check` reads a call through it (a call left with nothing here never
    /// retries), and a fix writes it so that a file says what happens.
    ///
    /// ```
    /// use stormguard::classify::RetryOn;
    ///
    /// let listed = RetryOn::parse_list(["timeout", "5xx", "connect-failure", "409"]).unwrap();
    /// assert_eq!(listed.for_any_method().to_string(), "connect-failure, 409, 503");
    /// assert!(RetryOn::parse_list(["timeout", "502"]).unwrap().for_any_method().is_empty());
    /// ```
    pub fn for_any_method(&self) -> RetryOn {
        use super::RetryKind;
        self.conditions()
            .into_iter()
            .filter_map(|condition| match condition {
                Condition::ConnectFailure
                | Condition::RefusedStream
                | Condition::ResetBeforeRequest => Some(condition),
                Condition::Reset => Some(Condition::ResetBeforeRequest),
                Condition::Timeout => None,
                Condition::Status5xx | Condition::GatewayError => Some(Condition::Status(503)),
                Condition::Status(status) => {
                    RetryKind::Status(status).declined().then_some(condition)
                }
                Condition::Grpc(code) => RetryKind::Grpc(code).declined().then_some(condition),
            })
            .fold(RetryOn::none(), RetryOn::with)
    }

    /// Whether nothing at all is retried.
    pub fn is_empty(&self) -> bool {
        *self == RetryOn::none()
    }

    /// The conditions in a fixed order (named, then statuses, then gRPC codes): what a file
    /// would write to say this set.
    pub fn conditions(&self) -> Vec<Condition> {
        let named = [
            (CONNECT_FAILURE, Condition::ConnectFailure),
            (REFUSED_STREAM, Condition::RefusedStream),
            (RESET, Condition::Reset),
            (RESET_BEFORE_REQUEST, Condition::ResetBeforeRequest),
            (TIMEOUT, Condition::Timeout),
            (STATUS_5XX, Condition::Status5xx),
            (GATEWAY_ERROR, Condition::GatewayError),
        ];
        let mut out: Vec<Condition> = named
            .into_iter()
            .filter(|(bit, _)| self.named & bit != 0)
            .map(|(_, condition)| condition)
            .collect();
        out.extend(
            (FIRST_STATUS..=LAST_STATUS)
                .filter(|&s| {
                    let bit = usize::from(s - FIRST_STATUS);
                    self.statuses[bit / 64] & (1 << (bit % 64)) != 0
                })
                .map(Condition::Status),
        );
        out.extend(
            (1..=16u8)
                .filter(|&c| self.grpc(c.into()))
                .map(Condition::Grpc),
        );
        out
    }
}

impl fmt::Display for RetryOn {
    /// The list as a file writes it, comma-separated (`"none"` when empty).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let conditions = self.conditions();
        if conditions.is_empty() {
            return f.write_str("none");
        }
        for (i, condition) in conditions.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{condition}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for RetryOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RetryOn[{self}]")
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_name_parses_and_prints_back() {
        let names = [
            "connect-failure",
            "refused-stream",
            "reset",
            "reset-before-request",
            "timeout",
            "5xx",
            "gateway-error",
            "400",
            "409",
            "599",
        ];
        for name in names {
            let condition: Condition = name.parse().unwrap();
            assert_eq!(condition.to_string(), name);
        }
        for code in 1..=16u8 {
            let name = grpc_name(code.into()).unwrap();
            assert_eq!(name.parse::<Condition>().unwrap(), Condition::Grpc(code));
            // gRPC's own spelling is accepted too.
            let upper = name.to_ascii_uppercase().replace('-', "_");
            assert_eq!(upper.parse::<Condition>().unwrap(), Condition::Grpc(code));
        }
        assert_eq!(
            "retriable-4xx".parse::<Condition>().unwrap(),
            Condition::Status(409)
        );
    }

    #[test]
    fn garbage_and_out_of_range_are_refused_with_the_choices() {
        for bad in [
            "",
            "ok",
            "5XX ",
            "2xx",
            "40 9",
            "-409",
            "99999999",
            "unavailble",
        ] {
            let error = bad.parse::<Condition>().unwrap_err();
            assert!(error.to_string().contains("is not a retry condition") || bad == "99999999");
        }
        assert_eq!(
            "200".parse::<Condition>().unwrap_err(),
            RetryOnError::Status(200)
        );
        assert_eq!(
            "600".parse::<Condition>().unwrap_err(),
            RetryOnError::Status(600)
        );
    }

    #[test]
    fn groups_cover_their_statuses_and_nothing_else() {
        let five = RetryOn::none().with(Condition::Status5xx);
        assert!((500..=599).all(|s| five.status(s)));
        assert!(!five.status(499) && !five.status(600));
        let gateway = RetryOn::none().with(Condition::GatewayError);
        let got: Vec<u16> = (400..=599).filter(|&s| gateway.status(s)).collect();
        assert_eq!(got, [502, 503, 504]);
        assert!(!gateway.has(Condition::Status(503)));
    }

    #[test]
    fn the_default_is_todays_list_and_default_extends() {
        let on = RetryOn::default();
        assert_eq!(
            on.to_string(),
            "connect-failure, refused-stream, reset, timeout, gateway-error, 408, 429, \
             deadline-exceeded, resource-exhausted, unavailable"
        );
        let extended = RetryOn::parse_list(["409", "default"]).unwrap();
        assert_eq!(extended, on.with(Condition::Status(409)));
        assert!(RetryOn::parse_list(Vec::<&str>::new()).unwrap().is_empty());
        assert_eq!(RetryOn::none().to_string(), "none");
    }

    /// Any condition a file may list (also `super::tests`').
    pub(in crate::classify) fn any_condition() -> impl Strategy<Value = Condition> {
        prop_oneof![
            Just(Condition::ConnectFailure),
            Just(Condition::RefusedStream),
            Just(Condition::Reset),
            Just(Condition::ResetBeforeRequest),
            Just(Condition::Timeout),
            Just(Condition::Status5xx),
            Just(Condition::GatewayError),
            (400u16..=599).prop_map(Condition::Status),
            (1u8..=16).prop_map(Condition::Grpc),
        ]
    }

    proptest! {
        #[test]
        fn a_set_round_trips_through_its_text(conditions in proptest::collection::vec(any_condition(), 0..12)) {
            let set = conditions.iter().fold(RetryOn::none(), |s, c| s.with(*c));
            let text = set.to_string();
            let items: Vec<&str> = if set.is_empty() { vec![] } else { text.split(", ").collect() };
            prop_assert_eq!(RetryOn::parse_list(items).unwrap(), set);
            for condition in conditions {
                prop_assert!(set.has(condition));
            }
        }

        #[test]
        fn parsing_never_panics(text in ".{0,12}") {
            let _ = text.parse::<Condition>();
        }
    }
}
