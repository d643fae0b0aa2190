//! SQL identifiers (schema and table names): validated against a strict rule, then always quoted,
//! so that no user text is ever formatted into SQL as it is. Also the names derived from them
//! (token sequence, fenced-write function, NOTIFY channel).

use leader_core::{Error, Result};

/// Longest schema name: PostgreSQL's identifier limit (63 bytes).
pub const MAX_SCHEMA_NAME: usize = 63;
/// Longest table name: 63 bytes less the longest suffix of a derived name (`_token_seq`), so that
/// no derived identifier is silently truncated by the server.
pub const MAX_TABLE_NAME: usize = 53;

/// The validated, quoted names one store works with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Names {
    pub schema: String,
    pub table: String,
    /// `"schema"."table"`.
    pub table_q: String,
    /// `"schema"."table_token_seq"`.
    pub sequence_q: String,
    /// `"schema"."table_holds"`: the fenced-write predicate users call.
    pub holds_q: String,
    /// The NOTIFY channel (a plain value, passed as a parameter to `pg_notify`).
    pub channel: String,
}

impl Names {
    pub fn new(schema: &str, table: &str) -> Result<Self> {
        check("schema", schema, MAX_SCHEMA_NAME)?;
        if schema.starts_with("pg_") {
            return Err(Error::invalid_argument(format!(
                "schema name {schema:?} starts with \"pg_\", which PostgreSQL reserves for system schemas"
            )));
        }
        check("table", table, MAX_TABLE_NAME)?;
        let schema_q = quote(schema);
        Ok(Names {
            schema: schema.to_owned(),
            table: table.to_owned(),
            table_q: format!("{schema_q}.{}", quote(table)),
            sequence_q: format!("{schema_q}.{}", quote(&format!("{table}_token_seq"))),
            holds_q: format!("{schema_q}.{}", quote(&format!("{table}_holds"))),
            channel: channel(schema, table),
        })
    }

    /// The name of the fenced-write function, without quotes (`schema.table_holds`).
    pub fn holds_function(&self) -> String {
        format!("{}.{}_holds", self.schema, self.table)
    }
}

/// `^[a-z_][a-z0-9_]*$` up to `max` bytes: lower case so that quoting does not change how the name
/// is written in the user's own (unquoted) SQL, and nothing that needs escaping.
fn check(what: &str, name: &str, max: usize) -> Result<()> {
    let rule = format!("{what} names are 1-{max} characters of a-z, 0-9 and '_', not starting with a digit");
    if name.is_empty() || name.len() > max {
        return Err(Error::invalid_argument(format!("{what} name {name:?} has {} bytes; {rule}", name.len())));
    }
    let ok_first = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_');
    let ok_rest = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok_first || !ok_rest {
        return Err(Error::invalid_argument(format!("{what} name {name:?} is not allowed; {rule}")));
    }
    Ok(())
}

/// Double-quotes an identifier. Validated names hold no `"`, but quoting escapes it anyway.
pub(crate) fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// One channel per lease table, so two tables (or schemas) never wake each other's followers.
/// Channel names are identifiers (at most 63 bytes): a long pair is hashed.
fn channel(schema: &str, table: &str) -> String {
    let plain = format!("leader.{schema}.{table}");
    if plain.len() <= 63 {
        return plain;
    }
    // FNV-1a: stable across processes and versions (std's hasher is not guaranteed to be).
    let hash = plain.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("leader.{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use leader_core::ErrorKind;

    #[test]
    fn accepts_plain_names_and_quotes_them() {
        let n = Names::new("public", "leader_leases").unwrap();
        assert_eq!(n.table_q, r#""public"."leader_leases""#);
        assert_eq!(n.sequence_q, r#""public"."leader_leases_token_seq""#);
        assert_eq!(n.holds_q, r#""public"."leader_leases_holds""#);
        assert_eq!(n.channel, "leader.public.leader_leases");
        assert_eq!(n.holds_function(), "public.leader_leases_holds");
    }

    #[test]
    fn refuses_malicious_and_odd_names() {
        for bad in ["", "Leases", "1abc", "a-b", "a b", "x\"; DROP TABLE y; --", "tab\0le", "é", &"a".repeat(54)] {
            let err = Names::new("public", bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad:?}");
            assert!(err.message().contains("table name"), "{err}");
        }
        let err = Names::new("pg_catalog", "t").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(Names::new("Public", "t").is_err());
        assert!(Names::new(&"s".repeat(63), &"t".repeat(53)).is_ok());
    }

    #[test]
    fn long_names_get_a_hashed_channel() {
        let n = Names::new(&"s".repeat(63), "t").unwrap();
        assert!(n.channel.len() <= 63, "{}", n.channel);
        assert_ne!(n.channel, Names::new(&"s".repeat(62), "t").unwrap().channel);
    }

    #[test]
    fn quote_escapes_quotes() {
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
    }
}
