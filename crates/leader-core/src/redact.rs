//! Credentials out of store URLs and connection strings, for every error message, `Debug` output
//! and log line: one function, [`secrets`], used by the facade and every provider.
//!
//! ```
//! use leader_core::redact;
//! assert_eq!(redact::secrets("postgres://app:hunter2@db:5432/app"), "postgres://app:***@db:5432/app");
//! assert_eq!(
//!     redact::secrets("azblob://acct@host/c?sas=sv%3D1%26sig%3Dabc&tls=true"),
//!     "azblob://acct@host/c?sas=***&tls=true"
//! );
//! assert_eq!(
//!     redact::secrets("AccountName=acct;AccountKey=c2VjcmV0;BlobEndpoint=https://acct.blob.core.windows.net"),
//!     "AccountName=acct;AccountKey=***;BlobEndpoint=https://acct.blob.core.windows.net"
//! );
//! assert_eq!(redact::secrets("Server=tcp:db,1433;User Id=sa;Password={a;b}"), "Server=tcp:db,1433;User Id=sa;Password=***");
//! ```

/// Names (compared without case, `_`, `-` or spaces) of URL query parameters and
/// connection-string keys whose value is a secret.
const SECRET_KEYS: &[&str] = &[
    "password",
    "pwd",
    "pass",
    "passwd",
    "key",
    "accountkey",
    "sharedaccesssignature",
    "sas",
    "sig",
    "signature",
    "token",
    "accesstoken",
    "authtoken",
    "apikey",
    "secret",
    "clientsecret",
    "sslpassword",
    "sslkey",
    "credential",
    "credentials",
];

/// What replaces a secret.
pub const MASK: &str = "***";

/// The input with every credential replaced by `***`, whatever its form:
///
/// - a URL (`scheme://user:password@host/...?k=v`): the password of the user information and the
///   value of every query parameter that names a secret (`key`, `sas`, `sig`, `token`,
///   `password`, ...); the rest is kept, so that the message still names the host, port and path;
/// - a connection string (`Key=Value;Key=Value`, Azure's or ADO.NET's, with `"..."`, `'...'` or
///   `{...}` quoting): the value of every key that names a secret (`AccountKey`,
///   `SharedAccessSignature`, `Password`, `Pwd`, ...), and secrets inside any value that is a URL
///   (a `BlobEndpoint` with a SAS).
///
/// Input that is neither is returned as it is. It never fails and never panics, for any input.
pub fn secrets(input: &str) -> String {
    match url_scheme_end(input) {
        Some(end) => url(input, end),
        None if input.contains('=') => connection_string(input),
        None => input.to_owned(),
    }
}

/// `text` (an error message, a log line) with every secret that `input` (a store URL or
/// connection string) carries replaced by `***`: for messages a driver made from the input
/// without redacting it. Secrets shorter than 4 characters are replaced only where they appear
/// as `:SECRET@` or `=SECRET` (elsewhere they would match ordinary words).
///
/// ```
/// use leader_core::redact;
/// let url = "zk://app:hunter2@zk1:2181/x";
/// assert_eq!(redact::scrub("server \"app:hunter2@zk1:2181\" is bad", url), "server \"app:***@zk1:2181\" is bad");
/// ```
pub fn scrub(text: &str, input: &str) -> String {
    let mut out = text.to_owned();
    let mut found = Vec::new();
    collect_secrets(input, &mut found);
    // Longest first, so that a secret containing another is replaced whole.
    found.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for secret in found {
        if secret.len() >= 4 {
            out = out.replace(&secret, MASK);
        } else if !secret.is_empty() {
            out = out.replace(&format!(":{secret}@"), &format!(":{MASK}@"));
            out = out.replace(&format!("={secret}"), &format!("={MASK}"));
        }
    }
    out
}

/// The secret values `input` carries, as written and percent-decoded.
fn collect_secrets(input: &str, found: &mut Vec<String>) {
    let mut push = |v: &str| {
        for v in [v.to_owned(), percent_decode(v)] {
            if !v.is_empty() && !found.contains(&v) {
                found.push(v);
            }
        }
    };
    match url_scheme_end(input) {
        Some(start) => {
            let rest = &input[start..];
            let query_at = rest.find(['?', '#']).unwrap_or(rest.len());
            if let Some(at) = rest[..query_at].rfind('@') {
                if let Some((_, password)) = rest[..at].split_once(':') {
                    push(password);
                }
            }
            let query = rest[query_at..].strip_prefix('?').unwrap_or("");
            let query = query.split('#').next().unwrap_or("");
            for pair in query.split('&') {
                if let Some((k, v)) = pair.split_once('=') {
                    if is_secret_key(&percent_decode(k)) {
                        push(v);
                    }
                }
            }
            if input.contains(';') {
                collect_connection_string_secrets(input, &mut push);
            }
        }
        None => collect_connection_string_secrets(input, &mut push),
    }
}

fn collect_connection_string_secrets(input: &str, push: &mut impl FnMut(&str)) {
    let mut rest = input;
    while !rest.is_empty() {
        let Some(eq) = rest.find('=').filter(|&eq| !rest[..eq].contains(';')) else {
            let end = rest.find(';').map_or(rest.len(), |i| i + 1);
            rest = &rest[end..];
            continue;
        };
        let key = &rest[..eq];
        let value_and_more = &rest[eq + 1..];
        let value_len = quoted_value_len(value_and_more);
        let value = value_and_more[..value_len].trim();
        if is_secret_key(key.trim()) {
            push(value);
            let unquoted = value.trim_matches(|c| matches!(c, '"' | '\'' | '{' | '}'));
            push(unquoted);
        } else if url_scheme_end(value).is_some() {
            let mut inner = Vec::new();
            collect_secrets(value, &mut inner);
            for v in &inner {
                push(v);
            }
        }
        rest = value_and_more[value_len..].strip_prefix(';').unwrap_or(&value_and_more[value_len..]);
    }
}

/// Whether a key names a secret (case, `_`, `-`, `.` and spaces ignored), or its last word does
/// (`... password=x` in free text).
fn is_secret_key(key: &str) -> bool {
    let norm = |k: &str| -> String {
        k.chars().filter(|c| !matches!(c, '_' | '-' | ' ' | '.')).flat_map(char::to_lowercase).collect()
    };
    SECRET_KEYS.contains(&norm(key).as_str())
        || key.split_whitespace().last().is_some_and(|word| SECRET_KEYS.contains(&norm(word).as_str()))
}

/// The index just past `://` when the input starts with `scheme://`.
fn url_scheme_end(input: &str) -> Option<usize> {
    let idx = input.find("://")?;
    let scheme = &input[..idx];
    let ok = !scheme.is_empty()
        && scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    ok.then_some(idx + 3)
}

fn url(input: &str, rest_start: usize) -> String {
    let (head, rest) = input.split_at(rest_start);
    // The user information ends at the last '@' before the query: a password with an unencoded
    // '/' or '@' must not leak its tail into the "path".
    let query_at = rest.find(['?', '#']).unwrap_or(rest.len());
    let (before_query, after) = rest.split_at(query_at);
    let mut out = String::with_capacity(input.len());
    out.push_str(head);
    match before_query.rfind('@') {
        Some(at) => {
            let userinfo = &before_query[..at];
            match userinfo.split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(MASK);
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&before_query[at..]);
        }
        None => out.push_str(before_query),
    }
    // A connection-string-like tail (`jdbc:...;password=...`) inside the path.
    if out.contains(';') {
        out = connection_string(&out);
    }
    if let Some(query) = after.strip_prefix('?') {
        let (query, fragment) = match query.split_once('#') {
            Some((q, f)) => (q, Some(f)),
            None => (query, None),
        };
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_key(&percent_decode(k)) => format!("{k}={MASK}"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
        if let Some(fragment) = fragment {
            out.push('#');
            out.push_str(fragment);
        }
    } else {
        out.push_str(after);
    }
    out
}

/// `%XX` sequences decoded, for comparing key names; invalid sequences are kept.
fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn connection_string(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while !rest.is_empty() {
        // One `key=value` part, up to the next ';' outside quotes.
        let Some(eq) = rest.find('=').filter(|&eq| !rest[..eq].contains(';')) else {
            // A part without '=': kept up to the next ';'.
            let end = rest.find(';').map_or(rest.len(), |i| i + 1);
            out.push_str(&rest[..end]);
            rest = &rest[end..];
            continue;
        };
        let key = &rest[..eq];
        let value_and_more = &rest[eq + 1..];
        let value_len = quoted_value_len(value_and_more);
        let value = &value_and_more[..value_len];
        out.push_str(key);
        out.push('=');
        if is_secret_key(key.trim()) {
            out.push_str(MASK);
        } else if url_scheme_end(value.trim()).is_some() {
            out.push_str(&secrets(value.trim()));
        } else {
            out.push_str(value);
        }
        rest = &value_and_more[value_len..];
        if let Some(stripped) = rest.strip_prefix(';') {
            out.push(';');
            rest = stripped;
        }
    }
    out
}

/// The length of a connection-string value: up to the next `;`, or past a closing quote or brace
/// (doubled quotes and `}}` are escapes inside them). An unterminated quote runs to the end.
fn quoted_value_len(s: &str) -> usize {
    let lead = s.len() - s.trim_start().len();
    let t = &s[lead..];
    let close = match t.chars().next() {
        Some('"') => '"',
        Some('\'') => '\'',
        Some('{') => '}',
        _ => return s.find(';').unwrap_or(s.len()),
    };
    let bytes = t.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        if bytes[i] == close as u8 {
            if bytes.get(i + 1) == Some(&(close as u8)) {
                i += 2;
                continue;
            }
            // Past the closing quote, the value runs to the next ';'.
            let after = lead + i + 1;
            return after + s[after..].find(';').unwrap_or(s.len() - after);
        }
        i += 1;
    }
    s.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_everything_but_the_secret() {
        for (input, want) in [
            ("postgres://u:secret@h:5432/db", "postgres://u:***@h:5432/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("redis://:secret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
            ("postgres://u:se/cr@et@h/db?sslmode=require", "postgres://u:***@h/db?sslmode=require"),
            ("consul://127.0.0.1:8500?token=abc&dc=x", "consul://127.0.0.1:8500?token=***&dc=x"),
            ("azblob://a:S3CR3T%2B@h/c?key=K&sas=S&tls=1#f", "azblob://a:***@h/c?key=***&sas=***&tls=1#f"),
            ("memory://", "memory://"),
            ("file:///var/lib/x", "file:///var/lib/x"),
            ("mssql://sa:pw@h/db?Password=x", "mssql://sa:***@h/db?Password=***"),
            ("x://h/p?%6Bey=v", "x://h/p?%6Bey=***"),
        ] {
            assert_eq!(secrets(input), want, "{input}");
        }
    }

    #[test]
    fn connection_strings_lose_their_keys() {
        for (input, want) in [
            (
                "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02x==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;",
                "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=***;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;",
            ),
            (
                "BlobEndpoint=https://a.blob.core.windows.net/?sv=1&sig=abc;SharedAccessSignature=sv=1&sig=abc",
                "BlobEndpoint=https://a.blob.core.windows.net/?sv=1&sig=***;SharedAccessSignature=***",
            ),
            ("UseDevelopmentStorage=true", "UseDevelopmentStorage=true"),
            ("Server=h;User Id=sa;Password=\"a;b\"\"c\";Database=d", "Server=h;User Id=sa;Password=***;Database=d"),
            ("Server=h;PWD={x;}}y};Encrypt=true", "Server=h;PWD=***;Encrypt=true"),
            ("Server=h;Password='unterminated;x=y", "Server=h;Password=***"),
            ("jdbc:sqlserver://h;user=sa;password=x", "jdbc:sqlserver://h;user=sa;password=***"),
            ("garbage;AccountKey=k", "garbage;AccountKey=***"),
            ("free text with password=x", "free text with password=***"),
            ("no secret here", "no secret here"),
        ] {
            assert_eq!(secrets(input), want, "{input}");
        }
    }

    #[test]
    fn scrub_removes_what_the_input_carries() {
        let url = "zk://u:S3cretPw@127.0.0.1:1/x?token=T0kenValue";
        assert_eq!(
            scrub("server u:S3cretPw@127.0.0.1:1 refused T0kenValue", url),
            "server u:***@127.0.0.1:1 refused ***"
        );
        let cs = "AccountName=a;AccountKey=S3cr3tK3y==;BlobEndpoint=http://h/?sig=S1gnature";
        assert_eq!(scrub("key S3cr3tK3y== sig S1gnature", cs), "key *** sig ***");
        assert_eq!(scrub("user a:pw@h and a word pw", "x://a:pw@h"), "user a:***@h and a word pw");
        assert_eq!(scrub("S3cret%2B and S3cret+", "x://a:S3cret%2B@h"), "*** and ***");
    }

    #[test]
    fn never_panics() {
        for input in [
            "",
            "=",
            ";",
            "://",
            "a://",
            "a://@",
            "a://:@?",
            "k=\"",
            "k={",
            "%",
            "x://h?%",
            "x://h?%4",
            "é://ü:ß@h",
            "a=%zz",
        ] {
            let _ = secrets(input);
            let _ = scrub(input, input);
        }
    }
}
