//! A body too large to copy: sent to another instance after an attempt that sent nothing of
//! it, and never after an attempt that read any of it.

use http_body_util::BodyExt;

use super::*;
use crate::layer::NotSent;

/// A service whose first call fails as not sent, after reading `read_first` frames of the body;
/// every later call reads the whole body, answers 201, and hands the bytes to the test.
fn refuses_first(
    read_first: usize,
    calls: Calls,
    bodies: Arc<std::sync::Mutex<Vec<Bytes>>>,
) -> impl tower::Service<
    Request<ReplayBody<Body>>,
    Response = Response<()>,
    Error = crate::layer::BoxError,
    Future = impl Send,
> + Clone {
    tower::service_fn(move |req: Request<ReplayBody<Body>>| {
        let n = calls.next();
        let bodies = bodies.clone();
        async move {
            let mut body = req.into_body();
            if n == 0 {
                for _ in 0..read_first {
                    let _ = body.frame().await;
                }
                let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
                return Err(Box::new(NotSent::new(refused)) as crate::layer::BoxError);
            }
            let bytes = body.collect().await?.to_bytes();
            bodies.lock().unwrap().push(bytes);
            Ok(status(201))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_large_body_refused_before_it_was_read_goes_to_another_attempt() {
    let (calls, bodies) = (Calls::default(), Arc::default());
    let svc = RetryLayer::new(unlimited())
        .body_limit(4)
        .layer(refuses_first(0, calls.clone(), Arc::clone(&bodies)));
    // A POST: not idempotent, so only "nothing was sent" allows the second attempt.
    let response = svc.oneshot(request(Method::POST)).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(Attempts::of(&response), 2);
    assert_eq!(calls.get(), 2);
    assert_eq!(*bodies.lock().unwrap(), [Bytes::from_static(b"payload")]);
}

#[tokio::test(start_paused = true)]
async fn a_large_body_read_even_once_is_never_sent_again() {
    let (calls, bodies) = (Calls::default(), Arc::default());
    let svc = RetryLayer::new(unlimited())
        .body_limit(4)
        .layer(refuses_first(1, calls.clone(), Arc::clone(&bodies)));
    // The error says "not sent", but the body was read: that decides.
    let err = svc.oneshot(request(Method::PUT)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectRefused);
    assert_eq!(err.attempts(), 1);
    assert_eq!(
        calls.get(),
        1,
        "a body that streamed once is never half-replayed"
    );
    assert!(bodies.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_large_body_is_not_sent_again_after_an_attempt_that_may_have_reached_the_server() {
    let calls = Calls::default();
    let seen = calls.clone();
    // Never reads the body, but the failure is one after writing: the server may have acted.
    let resets = tower::service_fn(move |_req: Request<ReplayBody<Body>>| {
        seen.next();
        async { Err::<Response<()>, _>(std::io::Error::from(std::io::ErrorKind::ConnectionReset)) }
    });
    let svc = RetryLayer::new(unlimited()).body_limit(4).layer(resets);
    let err = svc.oneshot(request(Method::GET)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Reset);
    assert_eq!(calls.get(), 1);
}
