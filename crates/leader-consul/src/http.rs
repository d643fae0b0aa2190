//! The HTTP client both paths share: rs-consul is handed the same hyper client, and the calls it
//! lacks (session create/renew/destroy, `/v1/txn`, blocking KV reads that must see the
//! `X-Consul-Index` of a 404) are sent here.
//!
//! TLS: the rustls crypto provider is passed explicitly (ring) rather than taken from the process
//! default, because with several crates in one build rustls may be compiled with both ring and
//! aws-lc-rs, and then `ClientConfig::builder()` panics unless someone installed a default. This
//! way nothing is installed process-wide and nothing panics.
//!
//! Connections are not kept alive between requests (as rs-consul's own default): a request never
//! lands on a pooled connection the server is just closing, and a cancelled request (the driver
//! drops it at `operation_timeout`) takes its connection with it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Method;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use leader_core::{cause_of, Error, Result};

use crate::config::ConsulConfig;

/// The client type rs-consul takes.
pub(crate) type HttpsClient = rs_consul::HttpsClient;

/// An answer: status, `X-Consul-Index` (blocking queries), body.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub index: Option<u64>,
    pub body: Bytes,
}

/// Raw access to Consul's HTTP API.
#[derive(Clone)]
pub(crate) struct Http {
    client: HttpsClient,
    config: Arc<ConsulConfig>,
}

/// A hyper client with rustls (ring, Mozilla roots) that speaks `http://` and `https://`.
pub(crate) fn https_client() -> Result<HttpsClient> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        .map_err(|e| Error::backend("cannot set up TLS for Consul").with_source(e))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::ZERO)
        .pool_max_idle_per_host(0)
        .build::<_, BoxBody<Bytes, Infallible>>(connector))
}

impl Http {
    pub(crate) fn new(client: HttpsClient, config: Arc<ConsulConfig>) -> Self {
        Http { client, config }
    }

    /// `{address}/v1/{path}?{query}&dc=...`. Paths are built from validated keys and session ids.
    pub(crate) fn url(&self, path: &str, query: &[(&str, String)]) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in query {
            q.append_pair(k, v);
        }
        if let Some(dc) = &self.config.datacenter {
            q.append_pair("dc", dc);
        }
        let q = q.finish();
        let sep = if q.is_empty() { "" } else { "?" };
        format!("{}/v1/{path}{sep}{q}", self.config.address)
    }

    /// One request, abandoned after `timeout`.
    pub(crate) async fn send(&self, method: Method, url: String, body: Vec<u8>, timeout: Duration) -> Result<Response> {
        let mut req = hyper::Request::builder().method(method).uri(&url).header("Content-Type", "application/json");
        if let Some(token) = &self.config.token {
            req = req.header("X-Consul-Token", token);
        }
        let req = req
            .body(BoxBody::new(Full::new(Bytes::from(body))))
            .map_err(|e| Error::invalid_argument(format!("cannot build a request to {url}")).with_source(e))?;
        let call = async {
            let resp = self.client.request(req).await.map_err(|e| {
                let cause = cause_of(&e);
                Error::unavailable(format!("Consul at {} did not answer: {cause}", self.config.address)).with_source(e)
            })?;
            let status = resp.status().as_u16();
            let index =
                resp.headers().get("X-Consul-Index").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| Error::unavailable("Consul's answer was cut off").with_source(e))?
                .to_bytes();
            Ok(Response { status, index, body })
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| Error::timeout(format!("Consul did not answer within {timeout:?}")))?
    }

    /// The timeout of a non-blocking request.
    pub(crate) fn timeout(&self) -> Duration {
        self.config.timeout
    }

    /// A blocking query's `wait`, and how long to give it before giving up on the connection:
    /// Consul adds up to `wait / 16` of jitter.
    pub(crate) fn blocking_timeout(&self) -> (Duration, Duration) {
        let wait = self.config.wait;
        (wait, wait + wait / 16 + self.config.timeout)
    }
}
