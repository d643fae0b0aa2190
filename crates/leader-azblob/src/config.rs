//! Where the store lives and how it authenticates: [`AzureBlobStoreBuilder`], `azblob://` URLs and
//! Azure connection strings.

use std::sync::Arc;

use leader_core::redact::secrets as redact;
use leader_core::{Error, Result};
use percent_encoding::percent_decode_str;

use crate::auth::{Credential, TokenProvider, DEV_ACCOUNT, DEV_ACCOUNT_KEY};
use crate::AzureBlobStore;

/// The container used when a connection string names none.
pub const DEFAULT_CONTAINER: &str = "leader-elections";

/// Default most requests in flight, and sockets kept, per store handle.
pub const DEFAULT_POOL_SIZE: usize = 8;

/// Builds an [`AzureBlobStore`] from parts. Nothing is sent until the first store call; the
/// container is created then if it is missing.
///
/// ```
/// use leader_azblob::AzureBlobStore;
/// let store = AzureBlobStore::builder()
///     .endpoint("https://myaccount.blob.core.windows.net")
///     .account_key("myaccount", "a2V5")
///     .container("elections")
///     .build()?;
/// # Ok::<(), leader_core::Error>(())
/// ```
#[derive(Debug, Default, Clone)]
pub struct AzureBlobStoreBuilder {
    endpoint: Option<String>,
    account: Option<String>,
    container: Option<String>,
    prefix: String,
    credential: Option<Credential>,
    pool_size: Option<usize>,
    error: Option<String>,
}

impl AzureBlobStoreBuilder {
    /// The blob service endpoint: `https://ACCOUNT.blob.core.windows.net`, or path-style for
    /// Azurite, `http://127.0.0.1:10000/devstoreaccount1`. Default: from the account name.
    pub fn endpoint(mut self, endpoint: &str) -> Self {
        self.endpoint = Some(endpoint.to_owned());
        self
    }

    /// The storage account (needed for Shared Key, and to derive the endpoint when none is given).
    pub fn account(mut self, account: &str) -> Self {
        self.account = Some(account.to_owned());
        self
    }

    /// Shared Key authorisation with the account's base64 key.
    pub fn account_key(mut self, account: &str, key_base64: &str) -> Self {
        self.account = Some(account.to_owned());
        match Credential::shared_key(account, key_base64) {
            Ok(c) => self.credential = Some(c),
            Err(e) => self.error = Some(e.message().to_owned()),
        }
        self
    }

    /// Authorisation by a shared access signature (`sv=...&sig=...`).
    pub fn sas(mut self, token: &str) -> Self {
        match Credential::sas(token) {
            Ok(c) => self.credential = Some(c),
            Err(e) => self.error = Some(e.message().to_owned()),
        }
        self
    }

    /// Authorisation by Microsoft Entra ID bearer tokens (see [`TokenProvider`]).
    pub fn token_provider(mut self, provider: Arc<dyn TokenProvider>) -> Self {
        self.credential = Some(Credential::Token(provider));
        self
    }

    /// The container holding one blob per election (3-63 lower-case letters, digits and single
    /// hyphens). Created on first use if missing.
    pub fn container(mut self, container: &str) -> Self {
        self.container = Some(container.to_owned());
        self
    }

    /// A prefix for the blob names (`apps/billing/`), so that several applications can share a
    /// container. Letters, digits and `. _ - : /`.
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    /// The most requests in flight at once, and so the most sockets one store handle keeps open
    /// to the blob service (default [`DEFAULT_POOL_SIZE`]; 1 to 1000). Calls beyond it wait
    /// for a free connection, within the election's `operation_timeout`.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = Some(size);
        self
    }

    /// Checks everything and builds the store (no network traffic).
    pub fn build(self) -> Result<AzureBlobStore> {
        if let Some(e) = self.error {
            return Err(Error::invalid_argument(e));
        }
        let credential = self.credential.ok_or_else(|| {
            Error::invalid_argument(
                "no credential: give an account key, a SAS or a token provider (Microsoft Entra ID)",
            )
        })?;
        let container = self.container.ok_or_else(|| Error::invalid_argument("no container name given"))?;
        validate_container(&container)?;
        validate_blob_prefix(&self.prefix)?;
        let endpoint = match (self.endpoint, &self.account) {
            (Some(e), _) => e,
            (None, Some(account)) => format!("https://{account}.blob.core.windows.net"),
            (None, None) => return Err(Error::invalid_argument("no endpoint and no account name given")),
        };
        let endpoint = url::Url::parse(endpoint.trim_end_matches('/'))
            .map_err(|e| Error::invalid_argument(format!("blob endpoint {endpoint:?} is not a URL: {e}")))?;
        if !matches!(endpoint.scheme(), "http" | "https") || endpoint.host_str().is_none() {
            return Err(Error::invalid_argument(format!(
                "blob endpoint {endpoint} must be an http:// or https:// URL with a host"
            )));
        }
        if endpoint.query().is_some() {
            return Err(Error::invalid_argument(format!(
                "blob endpoint {endpoint} has a query; give a SAS with .sas(...) instead"
            )));
        }
        let pool_size = self.pool_size.unwrap_or(DEFAULT_POOL_SIZE);
        if !(1..=1000).contains(&pool_size) {
            return Err(Error::invalid_argument(format!("pool size {pool_size} must be from 1 to 1000")));
        }
        AzureBlobStore::from_parts(endpoint, container, self.prefix, credential, pool_size)
    }
}

/// Container names: 3-63 characters of lower-case letters, digits and hyphens, starting and ending
/// with a letter or digit, no two hyphens in a row (Azure's rule).
pub fn validate_container(name: &str) -> Result<()> {
    let ok_chars = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let ok = (3..=63).contains(&name.len())
        && ok_chars
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_argument(format!(
            "container name {name:?} is not valid: Azure needs 3-63 lower-case letters, digits and hyphens, \
             starting and ending with a letter or digit, without two hyphens in a row"
        )))
    }
}

fn validate_blob_prefix(prefix: &str) -> Result<()> {
    let bad = prefix.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/')));
    if let Some(c) = bad {
        return Err(Error::invalid_argument(format!(
            "blob prefix {prefix:?} contains {c:?}; allowed are letters, digits and '.', '_', '-', ':', '/'"
        )));
    }
    if prefix.starts_with('/') || prefix.contains("//") || prefix.len() > 512 {
        return Err(Error::invalid_argument(format!(
            "blob prefix {prefix:?} must not start with '/', contain '//', or exceed 512 bytes"
        )));
    }
    Ok(())
}

/// Reads an `azblob://` / `azure://` URL (see the crate docs for the form).
pub(crate) fn builder_from_url(input: &str) -> Result<AzureBlobStoreBuilder> {
    let url =
        url::Url::parse(input).map_err(|e| Error::invalid_argument(format!("invalid URL {}: {e}", redact(input))))?;
    if !crate::SCHEMES.contains(&url.scheme()) {
        return Err(Error::invalid_argument(format!("URL {} is not an azblob:// or azure:// URL", redact(input))));
    }
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| {
        Error::invalid_argument(format!("URL {} has no host (azblob://ACCOUNT@HOST:PORT/CONTAINER)", redact(input)))
    })?;
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    let mut account = Some(decode(url.username())).filter(|a| !a.is_empty());
    let mut key = url.password().map(decode);
    let (mut tls, mut path_style, mut sas, mut pool_size) = (None, None, None, None);
    for (name, value) in raw_query_pairs(url.query().unwrap_or("")) {
        match name.as_str() {
            "key" => key = Some(value),
            "sas" => sas = Some(value),
            "account" => account = Some(value),
            "tls" => tls = Some(parse_bool("tls", &value)?),
            "path_style" => path_style = Some(parse_bool("path_style", &value)?),
            "pool_size" => {
                pool_size = Some(value.parse::<usize>().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| {
                    Error::invalid_argument(format!("option pool_size={value:?} must be a number from 1 to 1000"))
                })?)
            }
            other => {
                return Err(Error::invalid_argument(format!(
                    "unknown option {other:?} in URL {}; known: key, sas, account, tls, path_style, pool_size",
                    redact(input)
                )))
            }
        }
    }
    let local = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[');
    let path_style = path_style.unwrap_or(local);
    let scheme = if tls.unwrap_or(!local) { "https" } else { "http" };
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let endpoint = if path_style {
        let account = account.get_or_insert_with(|| DEV_ACCOUNT.to_owned());
        format!("{scheme}://{host}{port}/{account}")
    } else if !host.contains('.') {
        // azblob://ACCOUNT/CONTAINER: the host is the account name.
        let account = account.get_or_insert_with(|| host.to_owned());
        format!("{scheme}://{account}.blob.core.windows.net{port}")
    } else {
        if account.is_none() {
            account = host.split('.').next().map(str::to_owned);
        }
        format!("{scheme}://{host}{port}")
    };
    let path = url.path().trim_start_matches('/');
    let (container, prefix) = path.split_once('/').unwrap_or((path, ""));
    if container.is_empty() {
        return Err(Error::invalid_argument(format!(
            "URL {} names no container (azblob://ACCOUNT@HOST:PORT/CONTAINER)",
            redact(input)
        )));
    }
    let mut b = AzureBlobStoreBuilder::default().endpoint(&endpoint).container(container).prefix(prefix);
    if let Some(n) = pool_size {
        b = b.pool_size(n);
    }
    let account = account.unwrap_or_default();
    b = match (sas, key) {
        (Some(sas), _) => b.account(&account).sas(&sas),
        (None, Some(key)) => b.account_key(&account, &key),
        (None, None) if account == DEV_ACCOUNT => b.account_key(DEV_ACCOUNT, DEV_ACCOUNT_KEY),
        (None, None) => {
            return Err(Error::invalid_argument(format!(
                "URL {} carries no credential: give ACCOUNT:KEY@ (key percent-encoded), key=, or sas=; \
                 Microsoft Entra ID is available through AzureBlobStore::builder().token_provider(...)",
                redact(input)
            )))
        }
    };
    Ok(b)
}

/// Reads an Azure Storage connection string (`DefaultEndpointsProtocol=...;AccountName=...;
/// AccountKey=...;BlobEndpoint=...`, `SharedAccessSignature=...`, or `UseDevelopmentStorage=true`).
/// `Container=NAME` (this crate's addition) picks the container, else `container` or
/// [`DEFAULT_CONTAINER`].
pub(crate) fn builder_from_connection_string(cs: &str, container: Option<&str>) -> Result<AzureBlobStoreBuilder> {
    let mut fields = std::collections::HashMap::new();
    for part in cs.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| {
            Error::invalid_argument(format!("connection string part {:?} is not Key=Value", redact(part)))
        })?;
        fields.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
    }
    let get = |k: &str| fields.get(k).map(String::as_str);
    let container = get("container").or(container).unwrap_or(DEFAULT_CONTAINER);
    if get("usedevelopmentstorage").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        let proxy = get("developmentstorageproxyuri").unwrap_or("http://127.0.0.1");
        return Ok(AzureBlobStoreBuilder::default()
            .endpoint(&format!("{}:10000/{DEV_ACCOUNT}", proxy.trim_end_matches('/')))
            .account_key(DEV_ACCOUNT, DEV_ACCOUNT_KEY)
            .container(container));
    }
    let account = get("accountname");
    let endpoint = match (get("blobendpoint"), account) {
        (Some(e), _) => e.to_owned(),
        (None, Some(a)) => format!(
            "{}://{a}.blob.{}",
            get("defaultendpointsprotocol").unwrap_or("https"),
            get("endpointsuffix").unwrap_or("core.windows.net")
        ),
        (None, None) => {
            return Err(Error::invalid_argument("connection string has neither AccountName nor BlobEndpoint"))
        }
    };
    let b = AzureBlobStoreBuilder::default().endpoint(&endpoint).container(container);
    match (get("accountkey"), get("sharedaccesssignature"), account) {
        (Some(key), _, Some(account)) => Ok(b.account_key(account, key)),
        (Some(_), _, None) => Err(Error::invalid_argument("connection string has an AccountKey but no AccountName")),
        (None, Some(sas), _) => Ok(b.sas(sas)),
        (None, None, _) => Err(Error::invalid_argument(
            "connection string carries no AccountKey or SharedAccessSignature; Microsoft Entra ID is available \
             through AzureBlobStore::builder().token_provider(...)",
        )),
    }
}

/// Whether `input` looks like a connection string rather than a URL.
pub(crate) fn is_connection_string(input: &str) -> bool {
    let lower = input.trim_start().to_ascii_lowercase();
    !crate::SCHEMES.iter().any(|s| lower.starts_with(&format!("{s}://")))
}

/// `name=value` pairs, percent-decoded, with `+` kept as `+` (base64 keys contain it).
fn raw_query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let d = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
            (d(k), d(v))
        })
        .collect()
}

fn parse_bool(name: &str, value: &str) -> Result<bool> {
    match value {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(Error::invalid_argument(format!("option {name}={value:?} must be true or false"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(b: AzureBlobStoreBuilder) -> (String, String, String, String) {
        (b.endpoint.unwrap_or_default(), b.container.unwrap_or_default(), b.prefix, format!("{:?}", b.credential))
    }

    #[test]
    fn azurite_url_with_the_well_known_key() {
        let b = builder_from_url("azblob://devstoreaccount1@127.0.0.1:50000/leader-test").unwrap();
        let (endpoint, container, prefix, cred) = parts(b);
        assert_eq!(endpoint, "http://127.0.0.1:50000/devstoreaccount1");
        assert_eq!(container, "leader-test");
        assert_eq!(prefix, "");
        assert!(cred.contains("SharedKey(devstoreaccount1"), "{cred}");
    }

    #[test]
    fn account_and_key_in_the_url() {
        let b = builder_from_url("azure://acct:YWJj%2Bw%3D%3D@acct.blob.core.windows.net/cc1/apps/x/").unwrap();
        let (endpoint, container, prefix, cred) = parts(b.clone());
        assert_eq!(endpoint, "https://acct.blob.core.windows.net");
        assert_eq!((container.as_str(), prefix.as_str()), ("cc1", "apps/x/"));
        assert!(cred.contains("SharedKey(acct"));
        b.build().unwrap();
        let b = builder_from_url("azblob://acct/elections?sas=sv%3D2021%26sig%3Dabc").unwrap();
        let (endpoint, container, _, cred) = parts(b);
        assert_eq!(endpoint, "https://acct.blob.core.windows.net");
        assert_eq!(container, "elections");
        assert!(cred.starts_with("Some(Sas"));
    }

    #[test]
    fn bad_urls_name_the_problem() {
        for (url, needle) in [
            ("azblob://acct/elections", "no credential"),
            ("azblob://devstoreaccount1@127.0.0.1:50000/", "no container"),
            ("azblob://devstoreaccount1@127.0.0.1:50000/Bad_Name", "container name"),
            ("azblob://devstoreaccount1@127.0.0.1:50000/ok-name?bogus=1", "unknown option"),
            ("azblob://devstoreaccount1@127.0.0.1:50000/ok-name?tls=maybe", "true or false"),
            ("redis://x/y", "not an azblob"),
        ] {
            let err = builder_from_url(url).and_then(|b| b.build().map(|_| ())).unwrap_err();
            assert!(err.message().contains(needle), "{url}: {err}");
            assert_eq!(err.kind(), leader_core::ErrorKind::InvalidArgument);
        }
    }

    #[test]
    fn connection_strings() {
        let b = builder_from_connection_string("UseDevelopmentStorage=true", None).unwrap();
        let (endpoint, container, _, _) = parts(b);
        assert_eq!(endpoint, "http://127.0.0.1:10000/devstoreaccount1");
        assert_eq!(container, DEFAULT_CONTAINER);
        let cs = format!(
            "DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_ACCOUNT_KEY};\
             BlobEndpoint=http://127.0.0.1:50000/{DEV_ACCOUNT};Container=abc"
        );
        assert!(is_connection_string(&cs));
        let (endpoint, container, _, cred) = parts(builder_from_connection_string(&cs, None).unwrap());
        assert_eq!(endpoint, "http://127.0.0.1:50000/devstoreaccount1");
        assert_eq!(container, "abc");
        assert!(cred.contains("SharedKey"));
        let (endpoint, _, _, _) =
            parts(builder_from_connection_string("AccountName=a;AccountKey=a2V5;EndpointSuffix=x.cn", None).unwrap());
        assert_eq!(endpoint, "https://a.blob.x.cn");
        assert!(!redact(&cs).contains("Eby8"));
        assert!(builder_from_connection_string("AccountName=a", None).is_err());
    }

    #[test]
    fn container_rules() {
        for ok in ["abc", "a-b-c", "leader-test", "0ab"] {
            assert!(validate_container(ok).is_ok(), "{ok}");
        }
        for bad in ["ab", "-ab", "ab-", "a--b", "ABC", "a_b", &"a".repeat(64)] {
            assert!(validate_container(bad).is_err(), "{bad}");
        }
    }
}
