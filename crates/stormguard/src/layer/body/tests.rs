//! Recorded, replayed and once-streamed bodies: what each attempt reads, when, and what may be
//! sent again.

use http_body_util::{BodyExt, Full};
use tokio::sync::mpsc;

use super::*;

async fn collect<B: Body<Data = Bytes, Error = BoxError>>(body: B) -> Bytes {
    body.collect().await.unwrap().to_bytes()
}

/// The next data frame of `body`, which must be one.
async fn next_data<B: Body<Data = Bytes, Error = BoxError> + Unpin>(body: &mut B) -> Bytes {
    body.frame().await.unwrap().unwrap().into_data().unwrap()
}

/// A body whose frames the test sends one by one, as a client would: nothing is there before it
/// is sent. Ends when the sender is dropped.
struct Fed(mpsc::UnboundedReceiver<Frame<Bytes>>);

impl Body for Fed {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_recv(cx).map(|frame| frame.map(Ok))
    }
}

fn fed() -> (mpsc::UnboundedSender<Frame<Bytes>>, Fed) {
    let (tx, rx) = mpsc::unbounded_channel();
    (tx, Fed(rx))
}

fn data(s: &'static str) -> Frame<Bytes> {
    Frame::data(Bytes::from_static(s.as_bytes()))
}

fn grpc_ok() -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    trailers
}

/// A body that yields its chunks one at a time, with no size hint.
struct Chunked(VecDeque<Bytes>);

impl Body for Chunked {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

fn ten_chunks_of_ten() -> Chunked {
    Chunked((0..10u8).map(|i| Bytes::from(vec![b'a' + i; 10])).collect())
}

#[tokio::test(start_paused = true)]
async fn the_first_attempt_gets_each_chunk_as_it_arrives() {
    let (client, body) = fed();
    let (mut first, _recording) = Recording::start(body, 64);
    client.send(data("first")).unwrap();
    // The second chunk does not exist yet: the first attempt has the first without waiting.
    assert_eq!(next_data(&mut first).await, "first");
    let waiting = tokio::spawn(async move {
        let second = next_data(&mut first).await;
        (second, first)
    });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished(), "the rest is not there yet");
    client.send(data("second")).unwrap();
    drop(client);
    let (second, first) = waiting.await.unwrap();
    assert_eq!(second, "second");
    assert!(collect(first).await.is_empty());
}

#[tokio::test]
async fn a_body_read_by_a_failed_attempt_is_replayed_whole() {
    let (first, recording) = Recording::start(ten_chunks_of_ten(), 100);
    let sent = collect(first).await;
    assert_eq!(sent.len(), 100);
    for _ in 0..3 {
        let again = recording.hand_on(false).expect("within the limit");
        assert!(again.is_replayable());
        assert_eq!(again.size_hint().exact(), Some(100));
        assert_eq!(collect(again).await, sent);
    }
}

#[tokio::test(start_paused = true)]
async fn a_partly_read_body_is_replayed_then_continued_from_the_client() {
    let (client, body) = fed();
    let (mut first, recording) = Recording::start(body, 64);
    client.send(data("ab")).unwrap();
    assert_eq!(next_data(&mut first).await, "ab");
    // The first attempt failed mid-body; the retry replays what it sent, then the rest.
    let mut second = recording.hand_on(false).expect("within the limit");
    assert_eq!(next_data(&mut second).await, "ab");
    // The first attempt's request, wherever it lingers, can no longer read the client's body:
    // an error, never a body cut short.
    assert!(!first.is_end_stream());
    assert!(first.frame().await.unwrap().is_err());
    client.send(data("cd")).unwrap();
    client.send(Frame::trailers(grpc_ok())).unwrap();
    drop(client);
    let rest = second.collect().await.unwrap();
    assert_eq!(rest.trailers().unwrap()["grpc-status"], "0");
    assert_eq!(rest.to_bytes(), "cd");
    // The copy is whole now, trailers too.
    let third = recording.hand_on(false).unwrap().collect().await.unwrap();
    assert_eq!(third.trailers().unwrap()["grpc-status"], "0");
    assert_eq!(third.to_bytes(), "abcd");
}

#[tokio::test]
async fn trailers_are_replayed() {
    let (client, body) = fed();
    client.send(data("message")).unwrap();
    client.send(Frame::trailers(grpc_ok())).unwrap();
    drop(client);
    let (first, recording) = Recording::start(body, 64);
    let first = first.collect().await.unwrap();
    assert_eq!(first.trailers().unwrap()["grpc-status"], "0");
    let again = recording.hand_on(false).unwrap().collect().await.unwrap();
    assert_eq!(again.trailers().unwrap()["grpc-status"], "0");
    assert_eq!(again.to_bytes(), "message");
}

#[tokio::test]
async fn a_body_past_the_limit_streams_on_and_drops_its_copy() {
    let (mut first, recording) = Recording::start(ten_chunks_of_ten(), 25);
    assert!(first.is_replayable(), "nothing is over the limit yet");
    assert_eq!(next_data(&mut first).await, Bytes::from(vec![b'a'; 10]));
    assert!(recording.can_hand_on(false));
    let all = collect(first).await;
    assert_eq!(
        all.len(),
        90,
        "the attempt that passed the limit goes on to the end"
    );
    assert!(!recording.can_hand_on(false));
    assert!(recording.hand_on(false).is_none());
    assert!(
        recording.hand_on(true).is_none(),
        "read, so never sent again, whatever the error"
    );
    assert!(recording.replay_complete().is_none());
}

#[tokio::test]
async fn an_attempt_behind_a_dropped_copy_errors_rather_than_sends_part_of_it() {
    let (mut first, recording) = Recording::start(ten_chunks_of_ten(), 25);
    next_data(&mut first).await;
    let mut second = recording.hand_on(false).unwrap();
    // The second attempt reads on past the limit; the first, handed over, is behind.
    assert_eq!(collect_lossy(&mut second).await, 100);
    assert!(first.frame().await.unwrap().is_err());
}

async fn collect_lossy(body: &mut ReplayBody<Chunked>) -> usize {
    let mut n = 0;
    while let Some(frame) = body.frame().await {
        n += frame.unwrap().into_data().unwrap().len();
    }
    n
}

#[tokio::test]
async fn a_size_hint_over_the_limit_copies_nothing_but_an_unread_body_can_still_move() {
    let body = Full::new(Bytes::from(vec![7u8; 100]));
    let (first, recording) = Recording::start(body, 10);
    assert!(!first.is_replayable());
    assert_eq!(first.size_hint().exact(), Some(100), "seen before any poll");
    assert!(
        recording.hand_on(false).is_none(),
        "the attempt may have been sent"
    );
    let second = recording.hand_on(true).expect("nothing read, nothing sent");
    assert!(!first.is_end_stream());
    assert!(first.collect().await.is_err());
    assert_eq!(collect(second).await, Bytes::from(vec![7u8; 100]));
    assert!(
        recording.hand_on(true).is_none(),
        "read once, never handed on"
    );
}

#[tokio::test]
async fn an_attempt_made_while_the_body_is_unread_takes_it_over() {
    // Within the limit and unread: any retry may have it, and the earlier attempt may not.
    let (first, recording) = Recording::start(Full::new(Bytes::from_static(b"hi")), 10);
    let second = recording.hand_on(false).unwrap();
    assert!(first.collect().await.is_err());
    assert_eq!(collect(second).await, "hi");
}

#[tokio::test(start_paused = true)]
async fn a_hedge_gets_a_copy_only_once_the_body_is_complete() {
    let (client, body) = fed();
    let (mut first, recording) = Recording::start(body, 64);
    let complete = std::future::poll_fn(|cx| recording.poll_complete(cx));
    let mut complete = std::pin::pin!(complete);
    assert!(futures_poll(&mut complete).is_pending());
    client.send(data("ab")).unwrap();
    next_data(&mut first).await;
    assert!(recording.replay_complete().is_none(), "still arriving");
    client.send(data("cd")).unwrap();
    drop(client);
    assert_eq!(collect(first).await, "cd");
    assert!(complete.await);
    let hedge = recording.replay_complete().expect("whole");
    // The hedge holds its copy: the hold and the recording's copy may go first.
    drop(recording);
    assert_eq!(collect(hedge).await, "abcd");
}

fn futures_poll<F: std::future::Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    let waker = std::task::Waker::noop();
    std::pin::Pin::new(f).poll(&mut Context::from_waker(waker))
}

#[tokio::test]
async fn a_copy_that_passes_the_limit_is_never_complete() {
    let (first, recording) = Recording::start(ten_chunks_of_ten(), 25);
    collect(first).await;
    assert!(!std::future::poll_fn(|cx| recording.poll_complete(cx)).await);
}

#[tokio::test(start_paused = true)]
async fn with_no_attempt_to_follow_the_copy_goes_and_the_stream_goes_on() {
    let (client, body) = fed();
    let (mut first, recording) = Recording::start(body, 64);
    client.send(data("ab")).unwrap();
    next_data(&mut first).await;
    let copied = recording.copy_counter();
    assert_eq!(copied(), 1);
    drop(recording);
    assert!(!first.is_replayable(), "the copy is freed");
    assert_eq!(copied(), 0);
    client.send(data("cd")).unwrap();
    drop(client);
    assert_eq!(collect(first).await, "cd");
}

#[tokio::test]
async fn an_empty_body_is_complete_at_once() {
    let (first, recording) = Recording::start(Full::new(Bytes::new()), 64);
    assert!(first.is_end_stream());
    assert!(recording.replay_complete().unwrap().is_end_stream());
}

#[tokio::test]
async fn from_bytes_and_once_bodies() {
    let body: ReplayBody<Full<Bytes>> = ReplayBody::from_bytes(Bytes::from_static(b"x"));
    assert!(body.is_replayable());
    assert_eq!(collect(body).await, "x");
    let once = ReplayBody::once(ten_chunks_of_ten());
    assert!(!once.is_replayable());
    assert_eq!(collect(once).await.len(), 100);
}

#[test]
fn the_size_hint_of_a_recorded_body_never_has_lower_above_upper() {
    // The rest may promise at most 30 more bytes after 70 were copied.
    struct Rest(Option<Bytes>, SizeHint);
    impl Body for Rest {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
        }
        fn size_hint(&self) -> SizeHint {
            self.1
        }
    }
    let mut hint = SizeHint::new();
    hint.set_upper(30);
    let (mut first, recording) =
        Recording::start(Rest(Some(Bytes::from(vec![0u8; 70])), hint), 100);
    let waker = std::task::Waker::noop();
    let polled = Pin::new(&mut first).poll_frame(&mut Context::from_waker(waker));
    assert!(matches!(polled, Poll::Ready(Some(Ok(_)))));
    let second = recording.hand_on(false).unwrap();
    let hint = second.size_hint();
    assert_eq!((hint.lower(), hint.upper()), (70, Some(100)));
}

/// A client's error that the read-ahead read reaches the attempt as it was, type and all; a
/// retry made later gets an error too, never a body that looks whole.
#[tokio::test]
async fn an_error_read_ahead_reaches_the_attempt_as_it_was() {
    #[derive(Debug)]
    struct TooLarge;
    impl std::fmt::Display for TooLarge {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("too large")
        }
    }
    impl std::error::Error for TooLarge {}
    struct Fails(Option<Bytes>);
    impl Body for Fails {
        type Data = Bytes;
        type Error = TooLarge;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, TooLarge>>> {
            Poll::Ready(Some(match self.0.take() {
                Some(data) => Ok(Frame::data(data)),
                None => Err(TooLarge),
            }))
        }
    }
    let (mut first, recording) = Recording::start(Fails(Some(Bytes::from_static(b"ab"))), 64);
    assert!(!std::future::poll_fn(|cx| recording.poll_complete(cx)).await);
    assert_eq!(next_data(&mut first).await, "ab");
    let error = first.frame().await.unwrap().unwrap_err();
    assert!(error.is::<TooLarge>(), "{error}");
    assert!(first.frame().await.is_none());
    assert!(
        recording.hand_on(false).is_none(),
        "no attempt can have it whole"
    );
}

/// The read-ahead waiting in a task of its own for the body to be complete.
fn read_ahead(recording: Recording<Fed>) -> tokio::task::JoinHandle<(bool, Recording<Fed>)> {
    tokio::spawn(async move {
        let complete = std::future::poll_fn(|cx| recording.poll_complete(cx)).await;
        (complete, recording)
    })
}

/// Waits for `task`, failing rather than hanging if it is never woken (time is paused, so the
/// timeout fires as soon as every task is idle).
async fn woken<T>(task: tokio::task::JoinHandle<T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(1), task)
        .await
        .expect("never woken")
        .unwrap()
}

/// The read-ahead and the attempt take turns at a body that wakes only the last to poll it
/// (tokio's channel does): each wakes the other, so neither waits for ever.
#[tokio::test(start_paused = true)]
async fn the_read_ahead_and_the_attempt_wake_each_other() {
    let (client, body) = fed();
    let (mut first, recording) = Recording::start(body, 64);
    let ahead = read_ahead(recording);
    tokio::task::yield_now().await;
    // The attempt polls last: the body will wake the attempt only.
    let attempt = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(frame) = first.frame().await {
            got.extend_from_slice(&frame.unwrap().into_data().unwrap());
        }
        got
    });
    tokio::task::yield_now().await;
    client.send(data("ab")).unwrap();
    tokio::task::yield_now().await;
    client.send(data("cd")).unwrap();
    drop(client);
    let (complete, recording) = woken(ahead).await;
    assert!(complete, "woken by the attempt's reads");
    assert_eq!(woken(attempt).await, b"abcd");
    assert_eq!(collect(recording.replay_complete().unwrap()).await, "abcd");
}

/// The attempt's read that passes the limit, while the body would wake the attempt alone, tells
/// the read-ahead that no hedge can have the body, though the body has not ended.
#[tokio::test(start_paused = true)]
async fn a_copy_dropped_by_the_attempts_read_wakes_the_read_ahead() {
    let (client, body) = fed();
    let (mut first, recording) = Recording::start(body, 3);
    let ahead = read_ahead(recording);
    tokio::task::yield_now().await;
    let attempt = tokio::spawn(async move {
        let a = next_data(&mut first).await;
        let b = next_data(&mut first).await;
        (a, b, first)
    });
    tokio::task::yield_now().await;
    client.send(data("ab")).unwrap();
    tokio::task::yield_now().await;
    client.send(data("cd")).unwrap();
    let (complete, _recording) = woken(ahead).await;
    assert!(!complete, "past the limit, the client still sending");
    let (a, b, first) = woken(attempt).await;
    assert_eq!((a, b), ("ab".into(), "cd".into()));
    drop(client);
    assert!(collect(first).await.is_empty());
}

/// An attempt waiting for the client when the body is handed on is woken, and ends in an error
/// rather than waiting on a body that is no longer its own.
#[tokio::test(start_paused = true)]
async fn an_attempt_waiting_when_the_body_is_handed_on_is_woken() {
    let (_client, body) = fed();
    let (mut first, recording) = Recording::start(body, 64);
    let waiting = tokio::spawn(async move { first.frame().await.map(|f| f.is_err()) });
    tokio::task::yield_now().await;
    let _second = recording.hand_on(false).unwrap();
    assert_eq!(woken(waiting).await, Some(true));
}

/// An attempt dropped while the body would wake it alone hands the wait back to the read-ahead.
#[tokio::test(start_paused = true)]
async fn an_attempt_dropped_while_waiting_wakes_the_read_ahead() {
    let (client, body) = fed();
    let (mut first, recording) = Recording::start(body, 64);
    let ahead = read_ahead(recording);
    tokio::task::yield_now().await;
    // The attempt polls last, then goes (a cancelled attempt).
    assert!(futures_poll(&mut first.frame()).is_pending());
    drop(first);
    tokio::task::yield_now().await;
    client.send(data("ab")).unwrap();
    drop(client);
    let (complete, recording) = woken(ahead).await;
    assert!(complete);
    assert_eq!(collect(recording.replay_complete().unwrap()).await, "ab");
}

/// The hold dropped (the hedge layer's race over) while the body would wake the read-ahead
/// alone: the attempt waiting is woken, and reads the body itself.
#[tokio::test(start_paused = true)]
async fn the_hold_dropped_while_reading_ahead_wakes_the_attempt() {
    let (client, body) = fed();
    let (mut first, recording) = Recording::start(body, 64);
    let attempt = tokio::spawn(async move { next_data(&mut first).await });
    tokio::task::yield_now().await;
    // The read-ahead polls last, then goes.
    {
        let mut complete = std::pin::pin!(std::future::poll_fn(|cx| recording.poll_complete(cx)));
        assert!(futures_poll(&mut complete).is_pending());
    }
    drop(recording);
    tokio::task::yield_now().await;
    client.send(data("ab")).unwrap();
    assert_eq!(woken(attempt).await, "ab");
}

/// Many bodies read by an attempt on one thread and ahead of it on another: every byte reaches
/// the attempt once and in order, and the copy is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_and_the_read_ahead_on_two_threads_lose_nothing() {
    for round in 0..200u32 {
        let (client, body) = fed();
        let (mut first, recording) = Recording::start(body, 1 << 20);
        let attempt = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(frame) = first.frame().await {
                got.extend_from_slice(&frame.unwrap().into_data().unwrap());
            }
            got
        });
        let sender = tokio::spawn(async move {
            for i in 0..50u8 {
                client.send(Frame::data(Bytes::from(vec![i; 3]))).unwrap();
                if i % 7 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        });
        assert!(std::future::poll_fn(|cx| recording.poll_complete(cx)).await);
        sender.await.unwrap();
        let expected: Vec<u8> = (0..50u8).flat_map(|i| [i; 3]).collect();
        assert_eq!(attempt.await.unwrap(), expected, "round {round}");
        assert_eq!(
            collect(recording.replay_complete().unwrap()).await,
            expected
        );
    }
}
