//! [`SqlServerConfig`]: where the server is (URL or ADO.NET connection string), which table holds
//! the leases, TLS and pool settings.

use std::time::Duration;

use leader_core::redact::secrets as redact;
use leader_core::{Error, Result};
use serde::{Deserialize, Serialize};
use tiberius::{AuthMethod, EncryptionLevel};

use crate::sql::{Identifier, DEFAULT_SCHEMA, DEFAULT_TABLE};

/// The default number of pooled connections per store.
pub const DEFAULT_POOL_SIZE: u32 = 4;
/// The default time allowed to open one connection (TCP, TLS, login).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to reach SQL Server and where the lease table lives.
///
/// From a URL:
/// `mssql://USER:PASSWORD@HOST[:PORT]/[DATABASE][?schema=dbo&table=leader_leases&encrypt=required&trust_server_certificate=false&ca=/path/ca.pem&instance=NAME&application_name=NAME&pool_size=4&connect_timeout=10s&ensure_schema=true]`
/// (`sqlserver://` is the same), or from an ADO.NET connection string
/// (`Server=tcp:HOST,1433;User Id=sa;Password=...;Database=...;TrustServerCertificate=true`, parsed
/// by tiberius) with [`schema`](Self::schema) and [`table`](Self::table) set in code.
///
/// ```
/// use leader_sqlserver::SqlServerConfig;
/// let c = SqlServerConfig::parse("mssql://sa:secret@127.0.0.1:1433/master?schema=jobs&trust_server_certificate=true")?;
/// assert_eq!(c.qualified_table(), "[jobs].[leader_leases]");
/// assert!(SqlServerConfig::parse("mssql://sa:x@h/db?table=leases;DROP").is_err());
/// # Ok::<(), leader_core::Error>(())
/// ```
///
/// In configuration files (serde) it is `url` (the URL or the connection string, as
/// [`parse`](Self::parse) takes it) plus optional `schema`, `table`, `pool_size`,
/// `connect_timeout` (written `"10s"`, `"500ms"`) and `ensure_schema`, which win over the URL's
/// parameters; unknown keys are errors. Serialising writes the URL with its password (the file
/// needs it; `Debug` never shows it) and does not capture changes made through
/// [`tiberius_config_mut`](Self::tiberius_config_mut).
///
/// ```
/// use leader_sqlserver::SqlServerConfig;
/// let c: SqlServerConfig = serde_json::from_str(
///     r#"{ "url": "mssql://sa:secret@127.0.0.1:1433/master", "table": "leases", "connect_timeout": "3s" }"#,
/// ).unwrap();
/// assert_eq!(c.qualified_table(), "[dbo].[leases]");
/// ```
#[derive(Clone)]
pub struct SqlServerConfig {
    /// The URL or connection string this was parsed from, for serialising.
    pub(crate) source: String,
    pub(crate) tds: tiberius::Config,
    pub(crate) schema: Identifier,
    pub(crate) table: Identifier,
    pub(crate) pool_size: u32,
    pub(crate) connect_timeout: Duration,
    pub(crate) ensure_schema: bool,
}

impl std::fmt::Debug for SqlServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // tiberius redacts the password in its own Debug.
        f.debug_struct("SqlServerConfig")
            .field("addr", &self.tds.get_addr())
            .field("schema", &self.schema.as_str())
            .field("table", &self.table.as_str())
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("ensure_schema", &self.ensure_schema)
            .finish()
    }
}

impl SqlServerConfig {
    /// A `mssql://`/`sqlserver://` URL, or else an ADO.NET connection string.
    pub fn parse(s: &str) -> Result<Self> {
        let lower = s.trim_start().to_ascii_lowercase();
        if lower.starts_with("mssql://") || lower.starts_with("sqlserver://") {
            Self::from_url(s)
        } else if s.contains("://") {
            Err(Error::invalid_argument(format!(
                "{:?} is not a SQL Server URL; use mssql://, sqlserver:// or an ADO.NET connection string",
                redact(s)
            )))
        } else {
            Self::from_ado(s)
        }
    }

    /// An ADO.NET connection string (`Server=...;User Id=...;Password=...`), parsed by tiberius.
    /// The lease table is `[dbo].[leader_leases]` unless set with [`schema`](Self::schema) and
    /// [`table`](Self::table).
    pub fn from_ado(s: &str) -> Result<Self> {
        let tds = tiberius::Config::from_ado_string(s)
            .map_err(|e| Error::invalid_argument(format!("invalid ADO.NET connection string: {e}")))?;
        Ok(Self::with_tds(s, tds))
    }

    /// A `mssql://` or `sqlserver://` URL (see the type's docs for the query parameters).
    pub fn from_url(s: &str) -> Result<Self> {
        let url = url::Url::parse(s)
            .map_err(|e| Error::invalid_argument(format!("invalid SQL Server URL {:?}: {e}", redact(s))))?;
        if !crate::SCHEMES.contains(&url.scheme()) {
            return Err(Error::invalid_argument(format!(
                "URL scheme {:?} is not SQL Server's; use mssql:// or sqlserver://",
                url.scheme()
            )));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| Error::invalid_argument(format!("SQL Server URL {:?} has no host", redact(s))))?;
        let mut tds = tiberius::Config::new();
        // IPv6 hosts come bracketed from the URL; the TCP connect wants them bare.
        tds.host(host.trim_start_matches('[').trim_end_matches(']'));
        tds.port(url.port().unwrap_or(1433));
        let user = decode(url.username(), "user name")?;
        let password = decode(url.password().unwrap_or(""), "password")?;
        if user.is_empty() {
            return Err(Error::invalid_argument(
                "SQL Server URL has no user name; write mssql://USER:PASSWORD@HOST:PORT/DATABASE",
            ));
        }
        tds.authentication(AuthMethod::sql_server(user, password));
        let database = decode(url.path().trim_start_matches('/'), "database")?;
        if !database.is_empty() {
            tds.database(database);
        }
        tds.application_name("leader");

        let mut config = Self::with_tds(s, tds);
        let mut trust_cert = false;
        let mut ca = None;
        for (key, value) in url.query_pairs() {
            let value = value.as_ref();
            match key.as_ref() {
                "schema" => config.schema = Identifier::new("schema", value)?,
                "table" => config.table = Identifier::new("table", value)?,
                "encrypt" => config.tds.encryption(parse_encryption(value)?),
                "trust_server_certificate" => trust_cert = parse_bool(&key, value)?,
                "ca" => ca = Some(value.to_owned()),
                "instance" => config.tds.instance_name(value),
                "application_name" => config.tds.application_name(value),
                "pool_size" => config.pool_size = parse_pool_size(value)?,
                "connect_timeout" => config.connect_timeout = parse_duration(&key, value)?,
                "ensure_schema" => config.ensure_schema = parse_bool(&key, value)?,
                other => {
                    return Err(Error::invalid_argument(format!(
                        "unknown SQL Server URL parameter {other:?}; known are schema, table, encrypt, \
                         trust_server_certificate, ca, instance, application_name, pool_size, connect_timeout, \
                         ensure_schema"
                    )))
                }
            }
        }
        match (trust_cert, ca) {
            (true, Some(_)) => {
                return Err(Error::invalid_argument(
                    "trust_server_certificate=true and ca=... exclude each other; give one",
                ))
            }
            (true, None) => config.tds.trust_cert(),
            (false, Some(path)) => config.tds.trust_cert_ca(path),
            (false, None) => {}
        }
        Ok(config)
    }

    fn with_tds(source: &str, mut tds: tiberius::Config) -> Self {
        tds.handshake_timeout(Some(DEFAULT_CONNECT_TIMEOUT));
        SqlServerConfig {
            source: source.to_owned(),
            tds,
            schema: Identifier(DEFAULT_SCHEMA.to_owned()),
            table: Identifier(DEFAULT_TABLE.to_owned()),
            pool_size: DEFAULT_POOL_SIZE,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            ensure_schema: true,
        }
    }

    /// Sets the schema of the lease table (validated: letters, digits, `_`).
    pub fn schema(mut self, name: &str) -> Result<Self> {
        self.schema = Identifier::new("schema", name)?;
        Ok(self)
    }

    /// Sets the lease table's name (validated: letters, digits, `_`).
    pub fn table(mut self, name: &str) -> Result<Self> {
        self.table = Identifier::new("table", name)?;
        Ok(self)
    }

    /// Sets the number of pooled connections (1-100).
    pub fn pool_size(mut self, size: u32) -> Result<Self> {
        self.pool_size = parse_pool_size(&size.to_string())?;
        Ok(self)
    }

    /// Whether [`SqlServerStore::connect`](crate::SqlServerStore::connect) creates the table when it
    /// is missing (default true). Turn it off where the login may not run DDL; then run
    /// [`SqlServerStore::ensure_schema`](crate::SqlServerStore::ensure_schema) once elsewhere.
    pub fn ensure_schema(mut self, yes: bool) -> Self {
        self.ensure_schema = yes;
        self
    }

    /// `[schema].[table]`.
    pub fn qualified_table(&self) -> String {
        format!("{}.{}", self.schema.quoted(), self.table.quoted())
    }

    /// The driver's configuration, for settings this type does not expose.
    pub fn tiberius_config_mut(&mut self) -> &mut tiberius::Config {
        &mut self.tds
    }
}

/// The serialised form; see the type's docs.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlServerConfigData {
    url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    table: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pool_size: Option<u32>,
    #[serde(with = "humantime_serde", default, skip_serializing_if = "Option::is_none")]
    connect_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ensure_schema: Option<bool>,
}

impl Serialize for SqlServerConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        SqlServerConfigData {
            url: self.source.clone(),
            schema: Some(self.schema.as_str().to_owned()),
            table: Some(self.table.as_str().to_owned()),
            pool_size: Some(self.pool_size),
            connect_timeout: Some(self.connect_timeout),
            ensure_schema: Some(self.ensure_schema),
        }
        .serialize(serializer)
    }
}

/// Parses `url` as [`SqlServerConfig::parse`] does, then applies the other keys with the same
/// rules as the URL parameters; a refused value is an error naming the key.
impl<'de> Deserialize<'de> for SqlServerConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let data = SqlServerConfigData::deserialize(deserializer)?;
        let build = || -> Result<Self> {
            let mut config = Self::parse(&data.url)?;
            if let Some(schema) = &data.schema {
                config = config.schema(schema)?;
            }
            if let Some(table) = &data.table {
                config = config.table(table)?;
            }
            if let Some(size) = data.pool_size {
                config = config.pool_size(size)?;
            }
            if let Some(timeout) = data.connect_timeout {
                if timeout.is_zero() {
                    return Err(Error::invalid_argument("connect_timeout is 0s; it must be above zero, such as 10s"));
                }
                config.connect_timeout = timeout;
            }
            if let Some(yes) = data.ensure_schema {
                config = config.ensure_schema(yes);
            }
            Ok(config)
        };
        build().map_err(serde::de::Error::custom)
    }
}

fn decode(s: &str, what: &str) -> Result<String> {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| Error::invalid_argument(format!("SQL Server URL {what} cannot be decoded")))
}

fn parse_encryption(value: &str) -> Result<EncryptionLevel> {
    match value.to_ascii_lowercase().as_str() {
        "required" | "true" | "yes" | "mandatory" => Ok(EncryptionLevel::Required),
        "on" => Ok(EncryptionLevel::On),
        "off" | "false" | "no" | "optional" => Ok(EncryptionLevel::Off),
        "not_supported" => Ok(EncryptionLevel::NotSupported),
        "strict" => Ok(EncryptionLevel::Strict),
        other => Err(Error::invalid_argument(format!(
            "encrypt={other:?} is not known; use required, on, off, not_supported or strict"
        ))),
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        other => Err(Error::invalid_argument(format!("{key}={other:?} is not a boolean; use true or false"))),
    }
}

fn parse_pool_size(value: &str) -> Result<u32> {
    match value.parse::<u32>() {
        Ok(n @ 1..=100) => Ok(n),
        _ => Err(Error::invalid_argument(format!("pool_size={value:?} must be a whole number from 1 to 100"))),
    }
}

fn parse_duration(key: &str, value: &str) -> Result<Duration> {
    match humantime::parse_duration(value) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(Error::invalid_argument(format!("{key}={value:?} is not a positive duration such as 10s"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leader_core::ErrorKind;

    fn err(s: &str) -> String {
        let e = SqlServerConfig::parse(s).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{s}");
        e.to_string()
    }

    #[test]
    fn url_defaults() -> Result<()> {
        let c = SqlServerConfig::parse("mssql://sa:pw@db.example:1444/leases")?;
        assert_eq!(c.tds.get_addr(), "db.example:1444");
        assert_eq!(c.qualified_table(), "[dbo].[leader_leases]");
        assert_eq!(c.pool_size, DEFAULT_POOL_SIZE);
        assert!(c.ensure_schema);
        let c = SqlServerConfig::parse("sqlserver://sa:pw@127.0.0.1")?;
        assert_eq!(c.tds.get_addr(), "127.0.0.1:1433");
        Ok(())
    }

    #[test]
    fn url_parameters() -> Result<()> {
        let c = SqlServerConfig::parse(
            "mssql://sa:p%40ss%3Bw@h/master?schema=jobs&table=leases_v2&encrypt=off&trust_server_certificate=true\
             &pool_size=8&connect_timeout=3s&ensure_schema=false",
        )?;
        assert_eq!(c.qualified_table(), "[jobs].[leases_v2]");
        assert_eq!(c.pool_size, 8);
        assert_eq!(c.connect_timeout, Duration::from_secs(3));
        assert!(!c.ensure_schema);
        // The password is percent-decoded and never shown.
        let debug = format!("{c:?}");
        assert!(!debug.contains("p@ss;w"), "{debug}");
        Ok(())
    }

    #[test]
    fn bad_urls_are_refused_with_the_rule() {
        assert!(err("mssql://sa:pw@h/db?table=leases;DROP").contains("letters, digits and '_'"));
        assert!(err("mssql://sa:pw@h/db?schema=[dbo]").contains("\"[dbo]\""));
        assert!(err("mssql://sa:pw@h/db?table=a]b").contains("not allowed"));
        assert!(err("mssql://sa:pw@h/db?table=1abc").contains("not starting with a digit"));
        assert!(err("mssql://sa:pw@h/db?frobnicate=1").contains("unknown SQL Server URL parameter"));
        assert!(err("mssql://sa:pw@h/db?encrypt=maybe").contains("encrypt"));
        assert!(err("mssql://sa:pw@h/db?pool_size=0").contains("1 to 100"));
        assert!(err("mssql://sa:pw@h/db?connect_timeout=soon").contains("connect_timeout"));
        assert!(err("mssql://sa:pw@h/db?trust_server_certificate=true&ca=/x.pem").contains("exclude each other"));
        assert!(err("mssql://h/db").contains("no user name"));
        assert!(err("postgres://sa:pw@h/db").contains("not a SQL Server URL"));
        let e = err("mssql://sa:topsecret@h/db?frobnicate=1");
        assert!(!e.contains("topsecret"), "{e}");
        let long = "a".repeat(129);
        assert!(err(&format!("mssql://sa:pw@h/db?table={long}")).contains("1-128"));
    }

    #[test]
    fn ado_strings() -> Result<()> {
        let c = SqlServerConfig::parse("Server=tcp:127.0.0.1,1433;User Id=sa;Password=pw;TrustServerCertificate=true")?
            .schema("leader")?
            .table("leases")?;
        assert_eq!(c.tds.get_addr(), "127.0.0.1:1433");
        assert_eq!(c.qualified_table(), "[leader].[leases]");
        assert!(SqlServerConfig::from_ado("Server=tcp:h,1433").and_then(|c| c.table("x y")).is_err());
        Ok(())
    }

    fn from_json(text: &str) -> std::result::Result<SqlServerConfig, String> {
        let mut de = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(&mut de).map_err(|e| e.to_string())
    }

    #[test]
    fn serde_round_trip_with_durations_as_text() -> Result<()> {
        let c = SqlServerConfig::parse("mssql://sa:s3cret@h:1444/db?encrypt=off")?
            .schema("jobs")?
            .table("leases")?
            .pool_size(8)?
            .ensure_schema(false);
        let text = serde_json::to_string(&c).map_err(|e| Error::invalid_argument(e.to_string()))?;
        assert!(text.contains(r#""connect_timeout":"10s""#), "{text}");
        let back = from_json(&text).map_err(Error::invalid_argument)?;
        assert_eq!(serde_json::to_string(&back).ok(), Some(text));
        assert_eq!(back.tds.get_addr(), "h:1444");
        assert_eq!((back.qualified_table(), back.pool_size, back.ensure_schema), ("[jobs].[leases]".into(), 8, false));
        assert!(!format!("{back:?}").contains("s3cret"));
        // Keys win over the URL's parameters; an ADO.NET string works too.
        let c = from_json(
            r#"{"url": "Server=tcp:127.0.0.1,1433;User Id=sa;Password=pw", "table": "t2", "connect_timeout": "500ms"}"#,
        )
        .map_err(Error::invalid_argument)?;
        assert_eq!((c.qualified_table(), c.connect_timeout), ("[dbo].[t2]".into(), Duration::from_millis(500)));
        let c = from_json(r#"{"url": "mssql://sa:pw@h/db?pool_size=2", "pool_size": 3}"#)
            .map_err(Error::invalid_argument)?;
        assert_eq!(c.pool_size, 3);
        Ok(())
    }

    #[test]
    fn serde_errors_name_the_key() {
        let e = from_json(r#"{"url": "mssql://sa:pw@h/db", "tabel": "x"}"#).unwrap_err();
        assert!(e.contains("tabel"), "{e}");
        let e = from_json(r#"{"url": "mssql://sa:pw@h/db", "connect_timeout": "soon"}"#).unwrap_err();
        assert!(e.contains("connect_timeout"), "{e}");
        let e = from_json(r#"{"url": "mssql://sa:pw@h/db", "table": "a;DROP"}"#).unwrap_err();
        assert!(e.contains("table"), "{e}");
        let e = from_json(r#"{"url": "mssql://sa:topsecret@h/db?frob=1"}"#).unwrap_err();
        assert!(e.contains("frob") && !e.contains("topsecret"), "{e}");
    }

    #[test]
    fn hostile_identifiers() {
        for name in ["", "a b", "a]b", "a'b", "a;b", "a--b", "a.b", "[a]", "a\"b", "é", "1a", "a\0b", "@a", "#a"] {
            assert!(Identifier::new("table", name).is_err(), "{name:?} accepted");
        }
        for name in ["a", "_a", "leader_leases", "A1_b2", &"x".repeat(128)] {
            assert!(Identifier::new("table", name).is_ok(), "{name:?} refused");
        }
    }
}
