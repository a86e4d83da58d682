//! Where the histograms come from: a file, standard input, a `/metrics` page over HTTP, or a
//! Prometheus server's HTTP API. Plain HTTP/1.1 with hyper-util's client (the one the proxy
//! uses): a Prometheus server and a `/metrics` page are nearly always reached that way inside a
//! network, and a TLS stack for the rare other case is not worth its weight here (`curl` it to
//! a file and pass the file).

use std::io::Read;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::header::{ACCEPT, USER_AGENT};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use stormguard_recommend::series::{Series, Unit};
use stormguard_recommend::{exposition, prometheus_api};

use crate::InputError;

/// How long one request may take, answer included: a server that takes longer is not going to
/// answer, and the user should hear so rather than wait.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest answer or saved page read: a `/metrics` page or query answer of a big server is
/// a few MB.
const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// What Prometheus itself sends when it scrapes: OpenMetrics first, then the classic format.
const EXPOSITION_ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Where to read histograms.
#[derive(Debug)]
pub(super) enum Source {
    /// A Prometheus server's HTTP API, the buckets' increase over `window`.
    Prometheus { url: String, window: Duration },
    /// An exposition page: a file, `-` (standard input) or an `http://` URL.
    Page(String),
}

impl Source {
    /// Where the figures come from, for the first line of the report.
    pub(super) fn describe(&self) -> String {
        match self {
            Source::Prometheus { url, window } => {
                format!("{url} over {}", stormguard::duration::format(*window))
            }
            Source::Page(page) if page == "-" => "standard input".to_string(),
            Source::Page(page) => page.clone(),
        }
    }
}

/// A `--window` as given ("1h", "30m"): how far back a Prometheus server is asked to look
/// (`recommend` and `import` take the same option).
pub(crate) fn window(text: &str) -> Result<Duration, InputError> {
    stormguard::duration::parse(text)
        .ok()
        .filter(|w| !w.is_zero())
        .ok_or_else(|| {
            InputError(format!(
                "--window {text}: give a duration with a unit, e.g. \"1h\" or \"30m\""
            ))
        })
}

/// Every histogram series of `source`, units it states none for taken as `unit`.
pub(super) fn series(source: &Source, unit: Option<Unit>) -> anyhow::Result<Vec<Series>> {
    match source {
        Source::Page(page) if page.starts_with("http://") => {
            let text = block_on(async {
                let client = client();
                let (status, body) = get(&client, page, EXPOSITION_ACCEPT).await?;
                if !status.is_success() {
                    anyhow::bail!("GET {page}: {status}");
                }
                Ok(body)
            })?;
            page_series(page, &text, unit)
        }
        Source::Page(page) if page.contains("://") => Err(InputError(format!(
            "{page}: only http:// is fetched; save the page with curl and pass the file"
        ))
        .into()),
        Source::Page(page) if page == "-" => {
            let mut text = String::new();
            std::io::stdin()
                .take(BODY_LIMIT as u64 + 1)
                .read_to_string(&mut text)
                .context("reading standard input")?;
            if text.len() > BODY_LIMIT {
                return Err(InputError(format!(
                    "<stdin>: the page is larger than {} MiB, the limit for a metrics page",
                    BODY_LIMIT >> 20
                ))
                .into());
            }
            page_series("<stdin>", &text, unit)
        }
        Source::Page(page) => {
            // A saved page is bounded like a fetched one, and never read from a FIFO or device.
            let text = stormguard_graph::input::read_text_at_most(page.as_ref(), BODY_LIMIT as u64)
                .map_err(|e| {
                    // A page piped in is read with `--metrics -`: say that, not "save the
                    // text to a file first" as the other commands' inputs are told.
                    let e = e.to_string().replace(
                        "save the text to a file first",
                        "pass `--metrics -` to read standard input",
                    );
                    InputError(format!("{page}: cannot read: {e}"))
                })?;
            page_series(page, &text, unit)
        }
        Source::Prometheus { url, window } => block_on(prometheus(url, *window, unit)),
    }
}

fn page_series(name: &str, text: &str, unit: Option<Unit>) -> anyhow::Result<Vec<Series>> {
    let mut series = exposition::parse(text).map_err(|e| InputError(format!("{name}:{e}")))?;
    for s in &mut series {
        s.unit = s.unit.or(unit);
    }
    Ok(series)
}

/// One query for the metric names, then one per histogram (see
/// [`stormguard_recommend::prometheus_api`] for why buckets rather than quantiles).
async fn prometheus(
    url: &str,
    window: Duration,
    unit: Option<Unit>,
) -> anyhow::Result<Vec<Series>> {
    if !url.starts_with("http://") {
        return Err(InputError(format!(
            "--prometheus {url}: give the server's http:// address, e.g. http://127.0.0.1:9090"
        ))
        .into());
    }
    let base = url.trim_end_matches('/');
    let client = client();
    let names_url = format!("{base}{}", prometheus_api::NAMES_PATH);
    let (_, body) = get(&client, &names_url, "application/json").await?;
    let names =
        prometheus_api::histogram_names(&body).with_context(|| format!("GET {names_url}"))?;
    let mut series = Vec::new();
    for name in names {
        let query = prometheus_api::buckets_query(&name, window);
        let query_url = format!("{base}{}", prometheus_api::query_path(&query));
        let (_, body) = get(&client, &query_url, "application/json").await?;
        let found = prometheus_api::series(&name, &body, unit)
            .with_context(|| format!("querying {query}"))?;
        series.extend(found);
    }
    Ok(series)
}

pub(crate) fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GETs `url`: its status and its body as text. A status is not an error here, since the
/// Prometheus API explains a refusal in a JSON body that the caller reads. Bounded: no more
/// than [`REQUEST_TIMEOUT`] and a body of at most [`BODY_LIMIT`]; `import --prometheus` asks
/// through it too.
pub(crate) async fn get(
    client: &Client<HttpConnector, Empty<Bytes>>,
    url: &str,
    accept: &str,
) -> anyhow::Result<(StatusCode, String)> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| InputError(format!("{url}: not a URL: {e}")))?;
    let request = Request::get(uri)
        .header(ACCEPT, accept)
        .header(
            USER_AGENT,
            concat!("stormguard/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::new())
        .with_context(|| format!("GET {url}"))?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), BODY_LIMIT)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("GET {url}: reading the answer: {e}"))?
            .to_bytes();
        let text = String::from_utf8(body.to_vec())
            .map_err(|_| anyhow::anyhow!("GET {url}: the answer is not UTF-8 text"))?;
        Ok((status, text))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("GET {url}: no answer within {REQUEST_TIMEOUT:?}"))?
}

/// Runs `future` on a runtime of its own: the command does a handful of requests, one after
/// another, and nothing else.
pub(crate) fn block_on<T>(
    future: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?
        .block_on(future)
}
