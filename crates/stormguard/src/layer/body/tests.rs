//! The replayable and once-streamed bodies: what each attempt reads, and what may be sent again.

use super::*;
use http_body_util::{BodyExt, Full};

async fn collect<B: Body<Data = Bytes, Error = BoxError>>(body: B) -> Bytes {
    body.collect().await.unwrap().to_bytes()
}

#[tokio::test]
async fn small_bodies_replay_identically() {
    let prepared = prepare(Full::new(Bytes::from_static(b"hello")), 64, Wait::UntilEnd)
        .await
        .unwrap();
    let Prepared::Replayable(buffered) = prepared else {
        panic!("should be buffered")
    };
    for _ in 0..3 {
        let body: ReplayBody<Full<Bytes>> = buffered.replay();
        assert_eq!(collect(body).await, Bytes::from_static(b"hello"));
    }
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

#[tokio::test]
async fn large_bodies_stream_once_without_losing_the_prefix() {
    let chunks = (0..10u8).map(|i| Bytes::from(vec![b'a' + i; 10])).collect();
    let Prepared::Once(once) = prepare(Chunked(chunks), 25, Wait::UntilEnd).await.unwrap() else {
        panic!("should stream once")
    };
    assert!(!once.is_replayable());
    let all = collect(once).await;
    assert_eq!(all.len(), 100);
    assert_eq!(&all[..10], &[b'a'; 10]);
    assert_eq!(&all[90..], &[b'j'; 10]);
}

#[tokio::test]
async fn a_size_hint_over_the_limit_skips_buffering() {
    let body = Full::new(Bytes::from(vec![0u8; 100]));
    assert!(matches!(
        prepare(body, 10, Wait::UntilEnd).await.unwrap(),
        Prepared::Once(_)
    ));
}

/// A body that yields one chunk, then is not ready (a client waiting for a reply).
struct Stalls(Option<Bytes>);

impl Body for Stalls {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.0.take() {
            Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
            None => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        // Like http_body_util::Limited: at most 100 bytes, no lower bound.
        let mut hint = SizeHint::new();
        hint.set_upper(100);
        hint
    }
}

#[tokio::test(start_paused = true)]
async fn a_stalled_stream_is_sent_once_with_what_was_read() {
    let prepared = prepare(
        Stalls(Some(Bytes::from_static(b"first"))),
        64,
        Wait::WhileReady,
    )
    .await
    .unwrap();
    let Prepared::Once(once) = prepared else {
        panic!("a stalled stream must not be waited for")
    };
    assert!(!once.is_replayable());
    let hint = once.size_hint();
    assert_eq!((hint.lower(), hint.upper()), (5, Some(105)));
}

/// A body whose message arrives `after` its head, then ends.
struct Late {
    arrives: Pin<Box<tokio::time::Sleep>>,
    message: Option<Bytes>,
}

fn late(after: std::time::Duration) -> Late {
    Late {
        arrives: Box::pin(tokio::time::sleep(after)),
        message: Some(Bytes::from_static(b"message")),
    }
}

impl Body for Late {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.message.is_none() {
            return Poll::Ready(None);
        }
        std::task::ready!(std::future::Future::poll(self.arrives.as_mut(), cx));
        Poll::Ready(self.message.take().map(|b| Ok(Frame::data(b))))
    }
}

#[tokio::test(start_paused = true)]
async fn a_message_right_behind_its_head_is_buffered_a_longer_pause_is_not() {
    let soon = prepare(late(STALL_GRACE / 2), 64, Wait::WhileReady);
    let Prepared::Replayable(buffered) = soon.await.unwrap() else {
        panic!("a message within the grace is waited for")
    };
    let body: ReplayBody<Late> = buffered.replay();
    assert_eq!(collect(body).await, Bytes::from_static(b"message"));
    let started = tokio::time::Instant::now();
    let later = prepare(late(STALL_GRACE * 3), 64, Wait::WhileReady);
    assert!(matches!(later.await.unwrap(), Prepared::Once(_)));
    assert_eq!(
        started.elapsed(),
        STALL_GRACE,
        "waited the grace, no longer"
    );
}

#[test]
fn the_size_hint_of_a_streamed_body_never_has_lower_above_upper() {
    // The rest may promise at most 30 more bytes after 70 were buffered.
    let mut hint = SizeHint::new();
    hint.set_upper(30);
    struct Rest(SizeHint);
    impl Body for Rest {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(None)
        }
        fn size_hint(&self) -> SizeHint {
            self.0
        }
    }
    let body = ReplayBody {
        inner: Inner::Once(Streaming {
            prefix: VecDeque::from([Bytes::from(vec![0u8; 70])]),
            rest: Some(Box::pin(Rest(hint))),
        }),
    };
    let hint = body.size_hint();
    assert_eq!((hint.lower(), hint.upper()), (70, Some(100)));
}

#[tokio::test]
async fn a_held_body_goes_to_the_latest_attempt_only_and_only_while_unread() {
    let Prepared::Once(body) = prepare(Full::new(Bytes::from(vec![7u8; 100])), 10, Wait::UntilEnd)
        .await
        .unwrap()
    else {
        panic!("over the limit")
    };
    let (first, held) = Unsent::hold(body);
    let held = held.expect("a streamed body is held");
    assert_eq!(first.size_hint().exact(), Some(100), "seen before any poll");
    let second = held.hand_on().expect("nothing read yet");
    // The first attempt's request, wherever it lingers, can no longer send it: an error, never
    // an empty body.
    assert!(!first.is_end_stream());
    assert!(first.collect().await.is_err());
    assert_eq!(collect(second).await, Bytes::from(vec![7u8; 100]));
    assert!(held.hand_on().is_none(), "read once, never handed on");
}

#[tokio::test]
async fn a_buffered_body_needs_no_hold() {
    let body: ReplayBody<Full<Bytes>> = ReplayBody::from_bytes(Bytes::from_static(b"x"));
    let (body, held) = Unsent::hold(body);
    assert!(held.is_none());
    assert!(body.is_replayable());
}
