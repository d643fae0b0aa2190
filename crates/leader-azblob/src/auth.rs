//! How requests are authorised: Shared Key signing, a SAS token, or an Entra ID bearer token from a
//! [`TokenProvider`] the caller supplies.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use leader_core::{async_trait, Error, Result};
use reqwest::header::HeaderMap;
use sha2::Sha256;

/// The public key of Azurite's development account `devstoreaccount1` (Microsoft documents it; it
/// grants nothing outside the emulator).
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
/// See [`DEV_ACCOUNT`].
pub const DEV_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Supplies OAuth bearer tokens (Microsoft Entra ID) for the scope `https://storage.azure.com/.default`.
///
/// This crate does not depend on `azure_identity`; wrap whichever credential you use (managed
/// identity, workload identity, a service principal) in this trait. The provider should cache
/// tokens and refresh them before they expire: it is called before every request.
#[async_trait]
pub trait TokenProvider: Send + Sync + 'static {
    /// A valid access token (without the `Bearer ` prefix).
    async fn token(&self) -> Result<String>;
}

/// How the store authorises its requests.
#[derive(Clone)]
pub enum Credential {
    /// Shared Key: the account name and its (base64) key; every request is signed with HMAC-SHA256.
    SharedKey {
        /// The storage account.
        account: String,
        /// The decoded account key.
        key: Vec<u8>,
    },
    /// A shared access signature, the query string without its leading `?` (`sv=...&sig=...`). It
    /// needs read, write, create and list permissions on the container (and create for the
    /// container itself, if it does not exist yet).
    Sas(String),
    /// Microsoft Entra ID: a bearer token per request (role "Storage Blob Data Contributor").
    Token(Arc<dyn TokenProvider>),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::SharedKey { account, .. } => write!(f, "SharedKey({account}, <redacted>)"),
            Credential::Sas(_) => f.write_str("Sas(<redacted>)"),
            Credential::Token(_) => f.write_str("Token(<provider>)"),
        }
    }
}

impl Credential {
    /// A Shared Key credential from the base64 account key.
    pub fn shared_key(account: &str, key_base64: &str) -> Result<Self> {
        let key = base64::engine::general_purpose::STANDARD
            .decode(key_base64.trim())
            .map_err(|e| Error::invalid_argument(format!("the account key of {account:?} is not valid base64: {e}")))?;
        if key.is_empty() {
            return Err(Error::invalid_argument(format!("the account key of {account:?} is empty")));
        }
        Ok(Credential::SharedKey { account: account.to_owned(), key })
    }

    /// A SAS credential; a leading `?` is dropped.
    pub fn sas(token: &str) -> Result<Self> {
        let token = token.trim().trim_start_matches('?');
        if !token.contains("sig=") {
            return Err(Error::invalid_argument(
                "the SAS token has no sig= parameter; give the query string of a SAS (sv=...&sig=...)",
            ));
        }
        Ok(Credential::Sas(token.to_owned()))
    }
}

/// What the Shared Key signature covers of one request.
pub(crate) struct SignInput<'a> {
    pub method: &'a str,
    /// The URL path as sent (already percent-encoded), starting with `/`.
    pub path: &'a str,
    /// Decoded query parameters (the SAS is never combined with Shared Key).
    pub query: &'a [(String, String)],
    pub headers: &'a HeaderMap,
    pub content_length: usize,
}

/// The `Authorization: SharedKey account:signature` value for a request (version 2015-02-21 and
/// later rules: a zero Content-Length is signed as the empty string).
pub(crate) fn shared_key_authorization(account: &str, key: &[u8], input: &SignInput<'_>) -> Result<String> {
    let to_sign = string_to_sign(account, input);
    let mut mac = Hmac::<Sha256>::new_from_slice(key)
        .map_err(|e| Error::invalid_argument(format!("unusable account key: {e}")))?;
    mac.update(to_sign.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    Ok(format!("SharedKey {account}:{sig}"))
}

fn string_to_sign(account: &str, input: &SignInput<'_>) -> String {
    let h = |name: &str| input.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let length = if input.content_length == 0 { String::new() } else { input.content_length.to_string() };
    let mut s = String::with_capacity(256);
    for part in [
        input.method.to_owned(),
        h("content-encoding"),
        h("content-language"),
        length,
        h("content-md5"),
        h("content-type"),
        String::new(), // Date: we send x-ms-date instead
        h("if-modified-since"),
        h("if-match"),
        h("if-none-match"),
        h("if-unmodified-since"),
        h("range"),
    ] {
        s.push_str(&part);
        s.push('\n');
    }
    // Canonicalized headers: every x-ms-* header, lower-case names, sorted.
    let mut ms: Vec<(String, String)> = input
        .headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-ms-"))
        .map(|(name, value)| (name.as_str().to_owned(), value.to_str().unwrap_or("").trim().to_owned()))
        .collect();
    ms.sort();
    for (name, value) in ms {
        s.push_str(&name);
        s.push(':');
        s.push_str(&value);
        s.push('\n');
    }
    // Canonicalized resource: /account/path, then each query parameter (lower-case name, sorted,
    // values of one name joined by commas) on its own line.
    s.push('/');
    s.push_str(account);
    s.push_str(input.path);
    let mut params: std::collections::BTreeMap<String, Vec<&str>> = Default::default();
    for (k, v) in input.query {
        params.entry(k.to_ascii_lowercase()).or_default().push(v);
    }
    for (k, mut vs) in params {
        vs.sort_unstable();
        s.push('\n');
        s.push_str(&k);
        s.push(':');
        s.push_str(&vs.join(","));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn string_to_sign_follows_the_documented_layout() {
        let mut headers = HeaderMap::new();
        headers.insert("x-ms-version", HeaderValue::from_static("2021-08-06"));
        headers.insert("x-ms-date", HeaderValue::from_static("Mon, 23 Nov 2026 12:00:00 GMT"));
        headers.insert("if-match", HeaderValue::from_static("\"0x1\""));
        let query = vec![("comp".to_owned(), "lease".to_owned()), ("Restype".to_owned(), "x".to_owned())];
        let input = SignInput {
            method: "PUT",
            path: "/devstoreaccount1/c/b",
            query: &query,
            headers: &headers,
            content_length: 0,
        };
        let s = string_to_sign("devstoreaccount1", &input);
        assert_eq!(
            s,
            "PUT\n\n\n\n\n\n\n\n\"0x1\"\n\n\n\n\
             x-ms-date:Mon, 23 Nov 2026 12:00:00 GMT\nx-ms-version:2021-08-06\n\
             /devstoreaccount1/devstoreaccount1/c/b\ncomp:lease\nrestype:x"
        );
    }

    #[test]
    fn bad_keys_and_sas_are_refused() {
        assert!(Credential::shared_key("a", "not base64!").is_err());
        assert!(Credential::sas("sv=2021&sp=r").is_err());
        assert!(Credential::sas("?sv=2021&sig=abc").is_ok());
        assert!(format!("{:?}", Credential::shared_key("a", DEV_ACCOUNT_KEY).ok()).contains("redacted"));
    }
}
