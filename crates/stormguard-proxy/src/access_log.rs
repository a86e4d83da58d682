//! The access log: one line per request, written when the proxy is done with it.
//!
//! ## Why here, and when
//! A request's outcome is known in pieces: the route and the reason in [`crate::forward`], the
//! instance of each attempt in the route's stack ([`crate::stack`]), the bytes sent to the
//! client only as its response body ends. So one [`Access`] record follows the request: it is
//! made when the request arrives, filled in as each piece is known, carried in the response
//! body, and written once, when it is dropped: at the body's end, or earlier when the client
//! goes away. Every request gives exactly one line, whatever happens to it:
//!
//! - answered in full: the status, the `stormguard-reason` (`-` when the upstream answered;
//!   `retry-budget` or `token-bucket` when the upstream's failed answer was passed on because
//!   the route's limiter refused its retry);
//! - the client went away (or was cut off) before its answer was ready: status 499 (nginx's
//!   "client closed request") and reason `client-closed`;
//! - the answer's body did not reach its end (the client left, `stream_idle_timeout` cut it,
//!   the upstream's body broke): the status that was sent, and reason `incomplete`.
//!
//! A response that streams for a long time is logged when it ends, as nginx does; a response
//! whose bodies stall is ended by `stream_idle_timeout`, so a line is never held longer than
//! that after the last byte moved.
//!
//! ## Cost
//! Off (`listen.access_log = false`, or `stormguard::access=off` in `STORMGUARD_LOG`), a
//! request makes no record, and an attempt checks one task-local that is not set. On, the
//! record holds what the request already has (reference-counted route name, instance address
//! and path, a method that is a constant for the standard ones): no allocation until the line
//! is written. `stormguard proxy` has the line made here, as text or as JSON members, and its
//! subscriber writes it as it is ([`AccessLineFormat`]); any other subscriber gets ten fields.
//! Measured with `bench/proxy.sh` and `bench/proxy_instructions.sh` (README).
//!
//! ## Instance addresses
//! The instance is the address the latest attempt was sent to, as the upstream's instance
//! list names it (`127.0.0.1:9001`), so that the line names the same instance as `/config` and
//! the metrics. With a hedge, the latest attempt is the hedge's copy.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use http::uri::PathAndQuery;
use http::{Method, Request};
use tokio::time::Instant;

use crate::server::BodyWatch;

/// The `tracing` target of the access log's lines, apart from the proxy's other lines so that
/// it can be filtered on its own (`STORMGUARD_LOG=info,stormguard::access=off`) or sent
/// elsewhere by a subscriber.
pub const ACCESS_LOG_TARGET: &str = "stormguard::access";

/// How lines carry their values (see [`AccessLineFormat`]): its discriminant.
static FORMAT: AtomicU8 = AtomicU8::new(AccessLineFormat::Fields as u8);

/// How the access log's lines carry their values to the process's subscriber.
///
/// `tracing-subscriber` formats each of ten fields through `core::fmt`, a visitor and, for
/// text, an escaping writer that looks at every character, or, for JSON, `serde_json`: about
/// 8.5k instructions a line counted with callgrind, a fifth of a proxied request or more. A
/// subscriber that writes lines as `stormguard proxy` does can take them made already: one
/// field, `line` (`key=value` text, [`Text`](Self::Text)) or `json` (the members of the JSON
/// object, [`Json`](Self::Json)), written as it is, as the ten fields would have read.
///
/// ```
/// use stormguard_proxy::{access_log_format, AccessLineFormat};
///
/// access_log_format(AccessLineFormat::Json);
/// # access_log_format(AccessLineFormat::Fields);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum AccessLineFormat {
    /// Ten fields, for any subscriber (one that sends them elsewhere, say): the default.
    Fields = 0,
    /// One field, `line`: `route=api method=GET ...` as the text format writes the ten. Needs
    /// no escaping: route names and instance addresses come from the settings, a method is a
    /// token, and a path has no spaces or control characters (the HTTP parser refuses them).
    Text = 1,
    /// One field, `json`: `"route":"api","method":"GET",...` as `tracing-subscriber`'s JSON
    /// format writes the ten in its flattened object, strings escaped as `serde_json` escapes
    /// them.
    Json = 2,
}

/// Sets how the access log's lines carry their values (see [`AccessLineFormat`]), for the
/// whole process.
pub fn set_format(format: AccessLineFormat) {
    FORMAT.store(format as u8, Ordering::Relaxed);
}

/// The format [`set_format`] set.
fn format() -> AccessLineFormat {
    match FORMAT.load(Ordering::Relaxed) {
        1 => AccessLineFormat::Text,
        2 => AccessLineFormat::Json,
        _ => AccessLineFormat::Fields,
    }
}

/// Appends `value` as JSON, through `serde_json` (strings escaped as `tracing-subscriber`'s
/// JSON format escapes them, since it uses the same serializer).
fn push_json<T: serde::Serialize + ?Sized>(json: &mut Vec<u8>, value: &T) {
    // Into a `Vec`, a string or a whole number cannot fail to serialize.
    let _ = serde_json::to_writer(json, value);
}

/// Appends `n` in decimal: `core::fmt`'s integer formatting goes through a formatter and its
/// padding, which costs more than the few digits themselves.
fn push_number(line: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // ASCII digits only.
    line.push_str(std::str::from_utf8(&digits[at..]).unwrap_or("0"));
}

/// Whether lines of the access log would be written at all by the process's subscriber.
pub(crate) fn enabled() -> bool {
    tracing::enabled!(target: ACCESS_LOG_TARGET, tracing::Level::INFO)
}

tokio::task_local! {
    /// The record of the request this task is answering, while its answer is being made.
    static CURRENT: RefCell<Option<Access>>;
}

/// Runs `answer` with `access` as the request's record; returns the answer and the record, or
/// writes the record (as `client-closed`) if the future is dropped before it answers.
pub(crate) async fn recording<T>(
    access: Access,
    answer: impl std::future::Future<Output = T>,
) -> (T, Option<Access>) {
    CURRENT
        .scope(RefCell::new(Some(access)), async {
            let answer = answer.await;
            (answer, CURRENT.with(|current| current.borrow_mut().take()))
        })
        .await
}

/// Notes the route that took the request being answered, if it is being recorded: known
/// before the answer, so that a client that leaves before it still gets its route logged.
pub(crate) fn routed(route: &Arc<str>) {
    let _ = CURRENT.try_with(|current| {
        if let Some(access) = current.borrow_mut().as_mut() {
            access.route = Some(route.clone());
        }
    });
}

/// Notes the outcome of the request being answered, if it is being recorded.
pub(crate) fn answered(status: u16, attempts: u32, reason: &'static str) {
    let _ = CURRENT.try_with(|current| {
        if let Some(access) = current.borrow_mut().as_mut() {
            access.status = status;
            access.attempts = attempts;
            access.reason = reason;
        }
    });
}

/// Notes that a retry of the request being answered was refused by its route's limiter (`why`:
/// `retry-budget` or `token-bucket`), if it is being recorded. The upstream's last answer then
/// goes to the client as it came (its 503 is the upstream's, with no `stormguard-reason`), and
/// without this the line read as an answer no retry was ever wanted for: the line's `reason`
/// says why it was not retried instead of `-`.
pub(crate) fn retry_refused(why: &'static str) {
    let _ = CURRENT.try_with(|current| {
        if let Some(access) = current.borrow_mut().as_mut() {
            access.refused = why;
        }
    });
}

/// Notes that an attempt of the request being answered goes to `instance`, if it is being
/// recorded. Without a record: one look at a task-local.
pub(crate) fn attempt_to(instance: &Arc<str>) {
    let _ = CURRENT.try_with(|current| {
        if let Some(access) = current.borrow_mut().as_mut() {
            access.instance = Some(instance.clone());
            access.sent = access.sent.saturating_add(1);
        }
    });
}

/// Notes that the client of the request being answered went away before its body ended: the
/// line says 499 `client-closed`, as for a client that left before the answer, not the 400
/// `bad-body` that the proxy answers into a closed connection.
pub(crate) fn client_left() {
    let _ = CURRENT.try_with(|current| {
        if let Some(access) = current.borrow_mut().as_mut() {
            access.client_left = true;
        }
    });
}

/// One request's line of the access log, written when dropped.
pub(crate) struct Access {
    start: Instant,
    method: Method,
    path: Option<PathAndQuery>,
    route: Option<Arc<str>>,
    status: u16,
    /// The attempts the answer counted (`stormguard-attempts`).
    attempts: u32,
    /// The attempts sent so far, one per instance an attempt went to: what the line says of a
    /// request whose client left before its answer counted them (it said 0 of one the
    /// upstream had received).
    sent: u32,
    /// The client went away before its request's body ended.
    client_left: bool,
    /// `stormguard-reason`, "" when the upstream answered.
    reason: &'static str,
    /// Why a retry was refused ([`retry_refused`]), "" when none was.
    refused: &'static str,
    instance: Option<Arc<str>>,
    /// The client's body as it arrived (counted by the stream's watch).
    watch: Arc<BodyWatch>,
    response_bytes: u64,
    /// Whether an answer was made: dropped before, the client left first.
    answered: bool,
    /// Whether the response body reached its end.
    complete: bool,
}

impl Access {
    /// The record of `req`, arriving now, whose client body `watch` counts.
    pub(crate) fn start<B>(req: &Request<B>, watch: &Arc<BodyWatch>) -> Self {
        watch.reset_received();
        Access {
            start: Instant::now(),
            method: req.method().clone(),
            path: req.uri().path_and_query().cloned(),
            route: None,
            status: 499,
            attempts: 0,
            sent: 0,
            client_left: false,
            reason: "",
            refused: "",
            instance: None,
            watch: watch.clone(),
            response_bytes: 0,
            answered: false,
            complete: false,
        }
    }

    /// The answer is made; its body is `empty` (nothing to send, or a HEAD request's).
    pub(crate) fn sending(&mut self, empty: bool) {
        self.answered = true;
        self.complete = empty || self.method == Method::HEAD;
    }

    /// `n` more bytes of the response body went to the client.
    pub(crate) fn sent(&mut self, n: usize) {
        self.response_bytes += n as u64;
    }

    /// The response body reached its end.
    pub(crate) fn complete(&mut self) {
        self.complete = true;
    }

    /// The `reason` field: the proxy's reason, or why the exchange ended early; for the
    /// upstream's answer, why it was not retried when a limiter refused the retry, else `-`.
    fn reason(&self) -> &'static str {
        match (
            self.answered && !self.client_left,
            self.complete,
            self.reason,
        ) {
            (false, _, _) => "client-closed",
            (true, false, _) => "incomplete",
            (true, true, "") if !self.refused.is_empty() => self.refused,
            (true, true, "") => "-",
            (true, true, reason) => reason,
        }
    }
}

impl Drop for Access {
    fn drop(&mut self) {
        self.write(format());
    }
}

impl Access {
    /// Writes the line, its values carried as `format` says.
    fn write(&self, format: AccessLineFormat) {
        let duration = self.start.elapsed();
        let (status, attempts) = if self.answered && !self.client_left {
            (self.status, self.attempts)
        } else {
            (499, self.attempts.max(self.sent))
        };
        // Text as Display, not Debug (which escapes each character), and the duration as a whole
        // number: counted with callgrind, Debug strings and an f64 made the line cost half again
        // as much. Nothing here needs escaping in text: route names and addresses come from the
        // settings, methods are tokens, and a path has no spaces or control characters
        // (the parser refuses them); JSON escapes whatever it writes anyway.
        let route = self.route.as_deref().unwrap_or("-");
        let path = self.path.as_ref().map_or("-", PathAndQuery::path);
        let duration_us = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        let instance = self.instance.as_deref().unwrap_or("-");
        // Each format's pushes written out in full: a loop over the ten as (key, value) pairs
        // cost some 500 instructions a line more (counted with callgrind).
        match format {
            AccessLineFormat::Text => {
                let mut line = String::with_capacity(160 + path.len());
                for (key, value) in [
                    ("route=", route),
                    (" method=", self.method.as_str()),
                    (" path=", path),
                ] {
                    line.push_str(key);
                    line.push_str(value);
                }
                line.push_str(" status=");
                push_number(&mut line, u64::from(status));
                line.push_str(" attempts=");
                push_number(&mut line, u64::from(attempts));
                line.push_str(" reason=");
                line.push_str(self.reason());
                line.push_str(" duration_us=");
                push_number(&mut line, duration_us);
                line.push_str(" instance=");
                line.push_str(instance);
                line.push_str(" request_bytes=");
                push_number(&mut line, self.watch.received());
                line.push_str(" response_bytes=");
                push_number(&mut line, self.response_bytes);
                tracing::info!(target: ACCESS_LOG_TARGET, line = line.as_str());
                return;
            }
            AccessLineFormat::Json => {
                let mut json = Vec::with_capacity(200 + path.len());
                json.extend_from_slice(b"\"route\":");
                push_json(&mut json, route);
                json.extend_from_slice(b",\"method\":");
                push_json(&mut json, self.method.as_str());
                json.extend_from_slice(b",\"path\":");
                push_json(&mut json, path);
                json.extend_from_slice(b",\"status\":");
                push_json(&mut json, &status);
                json.extend_from_slice(b",\"attempts\":");
                push_json(&mut json, &attempts);
                json.extend_from_slice(b",\"reason\":");
                push_json(&mut json, self.reason());
                json.extend_from_slice(b",\"duration_us\":");
                push_json(&mut json, &duration_us);
                json.extend_from_slice(b",\"instance\":");
                push_json(&mut json, instance);
                json.extend_from_slice(b",\"request_bytes\":");
                push_json(&mut json, &self.watch.received());
                json.extend_from_slice(b",\"response_bytes\":");
                push_json(&mut json, &self.response_bytes);
                // `serde_json` writes UTF-8: the check finds nothing to refuse.
                let json = std::str::from_utf8(&json).unwrap_or_default();
                tracing::info!(target: ACCESS_LOG_TARGET, json);
                return;
            }
            AccessLineFormat::Fields => {}
        }
        tracing::info!(
            target: ACCESS_LOG_TARGET,
            route = %route,
            method = %self.method.as_str(),
            path = %path,
            status,
            attempts,
            reason = %self.reason(),
            duration_us,
            instance = %instance,
            request_bytes = self.watch.received(),
            response_bytes = self.response_bytes,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Access {
        let req = Request::get("/a/b?secret=1").body(()).unwrap();
        Access::start(&req, &BodyWatch::new())
    }

    #[test]
    fn the_reason_says_how_the_exchange_ended() {
        let mut access = record();
        assert_eq!(access.reason(), "client-closed");
        access.reason = "timeout";
        access.sending(false);
        assert_eq!(access.reason(), "incomplete");
        access.complete();
        assert_eq!(access.reason(), "timeout");
        access.reason = "";
        assert_eq!(access.reason(), "-");
        // The upstream's answer, whose retry the budget refused.
        access.refused = "retry-budget";
        assert_eq!(access.reason(), "retry-budget");
        // The proxy's own answer says its own reason.
        access.reason = "overloaded";
        assert_eq!(access.reason(), "overloaded");
        // An empty body is complete as soon as it is sent.
        let mut empty = record();
        empty.sending(true);
        assert_eq!(empty.reason(), "-");
    }

    #[tokio::test]
    async fn attempts_and_answers_are_noted_only_while_recording() {
        let instance: Arc<str> = Arc::from("127.0.0.1:9001");
        // Outside a recording: nothing to note, nothing fails.
        attempt_to(&instance);
        answered(200, 1, "");
        let route: Arc<str> = Arc::from("api");
        let ((), access) = recording(record(), async {
            routed(&route);
            attempt_to(&instance);
            answered(504, 2, "timeout");
        })
        .await;
        let access = access.unwrap();
        assert_eq!(access.instance.as_deref(), Some("127.0.0.1:9001"));
        assert_eq!(access.route.as_deref(), Some("api"));
        assert_eq!((access.status, access.attempts), (504, 2));
        assert_eq!(access.path.as_ref().unwrap().path(), "/a/b");
    }

    #[test]
    fn a_line_made_as_text_or_json_reads_as_the_fields_would() {
        use std::sync::Mutex;
        #[derive(Clone, Default)]
        struct Caught(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Caught {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut access = record();
        access.route = Some(Arc::from("api"));
        access.instance = Some(Arc::from("127.0.0.1:9001"));
        (access.status, access.attempts, access.reason) = (503, 2, "retry-budget");
        access.answered = true;
        access.response_bytes = 1_234_567;
        let caught_line = |access: &Access, format: AccessLineFormat, json: bool| {
            // tracing caches each callsite's interest for the whole process, and another test
            // setting its own subscriber at the same moment can leave this one's event unseen
            // (CI caught an empty capture once): the cache is rebuilt under this subscriber,
            // and a capture that still came out empty is taken again, a few times at most.
            let mut text = String::new();
            for _ in 0..5 {
                let caught = Caught::default();
                let writer = caught.clone();
                let builder = tracing_subscriber::fmt()
                    .with_writer(move || writer.clone())
                    .with_ansi(false)
                    .without_time();
                let capture = || {
                    tracing::callsite::rebuild_interest_cache();
                    access.write(format)
                };
                if json {
                    let subscriber = builder
                        .json()
                        .flatten_event(true)
                        .with_current_span(false)
                        .with_span_list(false)
                        .finish();
                    tracing::subscriber::with_default(subscriber, capture);
                } else {
                    tracing::subscriber::with_default(builder.finish(), capture);
                }
                text = String::from_utf8(caught.0.lock().unwrap().clone()).unwrap();
                if !text.is_empty() {
                    break;
                }
            }
            text
        };
        // The duration differs between two calls: taken out.
        let timeless = |text: &str, key: &str, end: char| {
            let at = text.find(key).unwrap();
            let to = at + key.len() + text[at + key.len()..].find(end).unwrap();
            format!("{}{}", &text[..at], &text[to..])
        };
        // The text formats without the duration.
        let line = |access: &Access, format: AccessLineFormat, json: bool| {
            let text = caught_line(access, format, json);
            if json {
                text
            } else {
                timeless(&text, " duration_us=", ' ')
            }
        };
        let fields = line(&access, AccessLineFormat::Fields, false);
        assert_eq!(
            fields,
            " INFO stormguard::access: route=api method=GET path=/a/b status=503 attempts=2 \
             reason=incomplete instance=127.0.0.1:9001 request_bytes=0 response_bytes=1234567\n"
        );
        // As text, the same characters in one field, which `stormguard proxy` writes as they are.
        let text = line(&access, AccessLineFormat::Text, false);
        let prefix = " INFO stormguard::access: ";
        assert_eq!(
            text,
            format!(
                "{prefix}line={:?}\n",
                &fields[prefix.len()..fields.len() - 1]
            )
        );
        // As JSON, the members `tracing-subscriber` writes for the ten fields, in their order,
        // strings escaped as `serde_json` escapes them (a route name can hold anything).
        access.route = Some(Arc::from("a\"b\\c\n\t\u{1}\u{7f}/é"));
        let fields = line(&access, AccessLineFormat::Fields, true);
        let made = line(&access, AccessLineFormat::Json, true);
        let members = made
            .strip_prefix("{\"level\":\"INFO\",\"json\":")
            .and_then(|rest| rest.strip_suffix(",\"target\":\"stormguard::access\"}\n"))
            .unwrap_or_else(|| panic!("one field, json: {made}"));
        let members: String = serde_json::from_str(members).unwrap();
        let (fields, members) = (
            timeless(&fields, ",\"duration_us\":", ','),
            timeless(&members, ",\"duration_us\":", ','),
        );
        assert_eq!(
            fields,
            format!("{{\"level\":\"INFO\",{members},\"target\":\"stormguard::access\"}}\n")
        );
        let mut number = String::new();
        for n in [0, 7, 10, u64::MAX] {
            number.clear();
            push_number(&mut number, n);
            assert_eq!(number, n.to_string());
        }
    }
}
