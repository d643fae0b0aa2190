//! The few Blob REST calls this store makes, signed and sent with `reqwest`, and their answers.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use leader_core::{cause_of, Error, Result};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use tokio::sync::Semaphore;

use crate::auth::{shared_key_authorization, Credential, SignInput};

/// The REST API version sent with every request (leases with If-Match, Bearer tokens).
pub(crate) const API_VERSION: &str = "2021-08-06";

/// Query values are encoded as RFC 3986 unreserved characters; everything else is %XX.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// One HTTP client (its own connection pool) for one container.
///
/// At most `pool_size` requests are in flight at once (the others wait for a permit), and at most
/// `pool_size` idle connections are kept, so a store handle holds about `pool_size` sockets
/// however many elections run on it (without the bound, 300 participants on one handle opened
/// ~300 sockets at once).
#[derive(Clone)]
pub(crate) struct Rest {
    http: reqwest::Client,
    permits: Arc<Semaphore>,
    /// `host:port` of the endpoint, for messages.
    pub(crate) shown: String,
    /// Service endpoint without a trailing `/`: `https://acct.blob.core.windows.net` or, path-style,
    /// `http://127.0.0.1:10000/devstoreaccount1`.
    endpoint: url::Url,
    pub(crate) container: String,
    credential: Credential,
}

/// A request before it is signed.
pub(crate) struct Call<'a> {
    pub method: Method,
    /// `None`: the container itself.
    pub blob: Option<&'a str>,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl<'a> Call<'a> {
    pub fn new(method: Method, blob: Option<&'a str>) -> Self {
        Call { method, blob, query: Vec::new(), headers: Vec::new(), body: Vec::new() }
    }

    pub fn query(mut self, name: &str, value: impl Into<String>) -> Self {
        self.query.push((name.to_owned(), value.into()));
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }
}

/// An answer: status, headers, body.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Azure's error code (`LeaseAlreadyPresent`, `ConditionNotMet`, ...), from the header.
    pub fn code(&self) -> &str {
        self.header("x-ms-error-code").unwrap_or("")
    }

    pub fn etag(&self) -> Result<String> {
        self.header("etag")
            .map(str::to_owned)
            .ok_or_else(|| Error::backend("the blob service answered without an ETag"))
    }

    /// The server's clock when it answered.
    pub fn date(&self) -> Option<SystemTime> {
        self.header("date").and_then(|d| httpdate::parse_http_date(d).ok())
    }

    /// An error naming what was attempted, the status and Azure's code.
    pub fn error(&self, what: &str) -> Error {
        let detail = String::from_utf8_lossy(&self.body);
        let detail = detail.chars().take(300).collect::<String>();
        let msg = format!("{what}: HTTP {} {}", self.status.as_u16(), self.code());
        match self.status {
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => Error::backend(format!(
                "{msg} (authorisation failed: check the account key, SAS permissions or token role, and the clock)"
            ))
            .with_source(std::io::Error::other(detail)),
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT => {
                Error::unavailable(msg).with_source(std::io::Error::other(detail))
            }
            StatusCode::REQUEST_TIMEOUT => Error::timeout(msg),
            _ => Error::backend(msg).with_source(std::io::Error::other(detail)),
        }
    }
}

impl Rest {
    pub fn new(endpoint: url::Url, container: String, credential: Credential, pool_size: usize) -> Result<Self> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // A safety net only: the election driver abandons calls at its operation_timeout.
            .timeout(Duration::from_secs(60))
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(pool_size);
        let loopback = match endpoint.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        if loopback {
            // An emulator on this host: never through an HTTP proxy from the environment.
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(|e| Error::backend("cannot build the HTTP client").with_source(e))?;
        let shown = match (endpoint.host_str(), endpoint.port_or_known_default()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            _ => endpoint.to_string(),
        };
        Ok(Rest { http, permits: Arc::new(Semaphore::new(pool_size)), shown, endpoint, container, credential })
    }

    /// `/<endpoint path>/<container>[/<blob>]`, percent-encoded as sent.
    fn path(&self, blob: Option<&str>) -> String {
        let base = self.endpoint.path().trim_end_matches('/');
        let mut path = format!("{base}/{}", self.container);
        if let Some(blob) = blob {
            path.push('/');
            // Blob names hold only letters, digits and . _ - : / (validated), all safe in a path.
            path.push_str(blob);
        }
        path
    }

    /// Signs and sends one call; transport failures become `Unavailable`/`Timeout` errors, any
    /// HTTP status is returned for the caller to judge.
    pub async fn send(&self, call: Call<'_>) -> Result<Reply> {
        let path = self.path(call.blob);
        let mut query_string =
            call.query.iter().map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, QUERY))).collect::<Vec<_>>();
        let mut headers = HeaderMap::new();
        let date = httpdate::fmt_http_date(SystemTime::now());
        insert(&mut headers, "x-ms-date", &date)?;
        insert(&mut headers, "x-ms-version", API_VERSION)?;
        for (name, value) in &call.headers {
            insert(&mut headers, name, value)?;
        }
        match &self.credential {
            Credential::SharedKey { account, key } => {
                let input = SignInput {
                    method: call.method.as_str(),
                    path: &path,
                    query: &call.query,
                    headers: &headers,
                    content_length: call.body.len(),
                };
                let auth = shared_key_authorization(account, key, &input)?;
                insert(&mut headers, "authorization", &auth)?;
            }
            Credential::Sas(sas) => query_string.push(sas.clone()),
            Credential::Token(provider) => {
                let token = provider.token().await?;
                insert(&mut headers, "authorization", &format!("Bearer {token}"))?;
            }
        }
        let mut url = self.endpoint.clone();
        url.set_path(&path);
        let query = query_string.join("&");
        url.set_query(if query.is_empty() { None } else { Some(&query) });
        let len = call.body.len();
        let req_has_body = !matches!(call.method, Method::GET | Method::HEAD);
        let mut req = self.http.request(call.method, url).headers(headers);
        if req_has_body {
            // Azure refuses a write without a length (411), even an empty one.
            req = req.header("content-length", len.to_string()).body(call.body);
        }
        // Held until the whole answer is read, when the connection can serve the next request.
        let _permit = self.permits.acquire().await.map_err(|_| Error::backend("the HTTP client was closed"))?;
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| self.transport(e))?.to_vec();
        Ok(Reply { status, headers, body })
    }

    /// A transport failure as `Unavailable` (or `Timeout`), naming the endpoint and the cause
    /// (the OS error where there is one). The request's URL is dropped from the source: with a
    /// SAS it carries a signature.
    fn transport(&self, e: reqwest::Error) -> Error {
        let cause = cause_of(&e);
        let ep = &self.shown;
        let err = if e.is_timeout() {
            Error::timeout(format!("the blob service at {ep} did not answer in time: {cause}"))
        } else if e.is_connect() {
            Error::unavailable(format!("cannot reach the blob service at {ep}: {cause}"))
        } else {
            Error::unavailable(format!("the connection to the blob service at {ep} failed: {cause}"))
        };
        err.with_source(e.without_url())
    }
}

fn insert(headers: &mut HeaderMap, name: &str, value: &str) -> Result<()> {
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|e| Error::invalid_argument(format!("header name {name:?}: {e}")))?;
    let value = HeaderValue::from_str(value)
        .map_err(|e| Error::invalid_argument(format!("value of header {name}: {e} (only visible ASCII is allowed)")))?;
    headers.insert(name, value);
    Ok(())
}
