//! [`SetAuthority`]: one instance of a [`Balance`](super::Balance) as an address on a shared
//! client.

use std::task::{Context, Poll};

use http::uri::{Authority, Scheme, Uri};
use http::Request;
use tower_service::Service;

/// Sends every request to one address, by rewriting the URI's scheme and authority, through a
/// shared inner client. It makes an instance of a [`Balance`](super::Balance) out of a
/// connection-pooling client such as hyper-util's, so that all instances share one pool.
///
/// ```
/// use stormguard::layer::SetAuthority;
///
/// let svc = tower::service_fn(|req: http::Request<()>| async move {
///     Ok::<_, std::convert::Infallible>(req.uri().to_string())
/// });
/// let at = SetAuthority::new(svc, "127.0.0.1:9001".parse().unwrap());
/// assert_eq!(at.authority().as_str(), "127.0.0.1:9001");
/// ```
#[derive(Clone, Debug)]
pub struct SetAuthority<S> {
    inner: S,
    scheme: Scheme,
    authority: Authority,
}

impl<S> SetAuthority<S> {
    /// Sends to `authority` over plain HTTP.
    pub fn new(inner: S, authority: Authority) -> Self {
        SetAuthority {
            inner,
            scheme: Scheme::HTTP,
            authority,
        }
    }

    /// Uses `scheme` instead of `http`.
    pub fn scheme(mut self, scheme: Scheme) -> Self {
        self.scheme = scheme;
        self
    }

    /// The address requests go to.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }
}

impl<S, B> Service<Request<B>> for SetAuthority<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let mut parts = std::mem::take(req.uri_mut()).into_parts();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        *req.uri_mut() = Uri::from_parts(parts).expect("scheme, authority and path make a URI");
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn rewrites_scheme_and_authority_keeping_the_path() {
        let echo = tower::service_fn(|req: Request<()>| async move {
            Ok::<_, std::convert::Infallible>(req.uri().to_string())
        });
        let at = SetAuthority::new(echo, "10.0.0.7:8080".parse().unwrap());
        let req = Request::get("/items?page=2").body(()).unwrap();
        assert_eq!(
            at.clone().oneshot(req).await.unwrap(),
            "http://10.0.0.7:8080/items?page=2"
        );
        let req = Request::get("http://api.internal/x").body(()).unwrap();
        assert_eq!(at.oneshot(req).await.unwrap(), "http://10.0.0.7:8080/x");
    }
}
