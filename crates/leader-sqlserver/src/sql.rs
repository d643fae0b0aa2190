//! Every T-SQL text this crate sends, in one place.
//!
//! User values travel only as parameters (`@P1`, `@P2`, ... as tiberius numbers them). The only
//! text formatted into SQL is the schema and table name, which [`Identifier::new`] restricts to
//! `[A-Za-z_][A-Za-z0-9_]{0,127}` *and* bracket-quotes (doubling `]`), so a hostile name is refused
//! and a quoting bug alone could not open an injection either.
//!
//! # The lease table
//! One row per election, kept for the life of the election: releasing or cleaning up a lease
//! clears the holder columns but keeps the row, because its `token` column is the election's
//! fencing counter and must never restart. `election` and `instance_id` use a binary collation so
//! that names compare byte for byte (the server default is usually case-insensitive).
//!
//! # Atomicity
//! The acquire batch runs in one transaction and first reads the election's row (or, when it does
//! not exist, the key range where it would be) `WITH (UPDLOCK, HOLDLOCK)`: a second acquirer of the
//! same election waits on that lock until the first commits, so "insert if absent, else take over
//! if free" cannot interleave. No `MERGE` (which is not atomic against concurrent inserts without
//! `HOLDLOCK`). Renew, release, metadata update and cleanup are single `UPDATE` statements, atomic
//! by themselves. Every batch takes the time once (`@now = SYSUTCDATETIME()`), so expiry is judged
//! by the server's clock only.

use std::fmt;

use leader_core::{Error, Result};

/// The default schema.
pub const DEFAULT_SCHEMA: &str = "dbo";
/// The default table.
pub const DEFAULT_TABLE: &str = "leader_leases";

/// A schema or table name: validated, then bracket-quoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identifier(pub(crate) String);

impl Identifier {
    /// Accepts 1-128 characters of `A-Z a-z 0-9 _`, not starting with a digit (a regular T-SQL
    /// identifier without the `@ # $` forms that mean something else).
    pub fn new(what: &str, name: &str) -> Result<Self> {
        let ok_start = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        let ok_rest = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if name.is_empty() || name.len() > 128 || !ok_start || !ok_rest {
            return Err(Error::invalid_argument(format!(
                "SQL Server {what} name {name:?} is not allowed; use 1-128 characters of letters, digits and '_', \
                 not starting with a digit"
            )));
        }
        Ok(Identifier(name.to_owned()))
    }

    /// The bare name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `[name]`, with `]` doubled (none can occur after validation; quoted anyway).
    pub fn quoted(&self) -> String {
        format!("[{}]", self.0.replace(']', "]]"))
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `N'text'` with `'` doubled: for the object names that `SCHEMA_ID`, `OBJECT_ID` and `EXEC` take
/// as strings.
fn nstring(text: &str) -> String {
    format!("N'{}'", text.replace('\'', "''"))
}

/// The columns every lease-returning statement yields, in this order, from a row source `src`
/// (`inserted` in an `OUTPUT` clause, or the table alias `l`). Times come back as milliseconds
/// (since the Unix epoch, and remaining), so no date type crosses the wire.
fn lease_columns(src: &str) -> String {
    format!(
        "{src}.election, {src}.participant_id, {src}.instance_id, {src}.token, \
         DATEDIFF_BIG(MILLISECOND, @epoch, {src}.acquired_at) AS acquired_ms, \
         DATEDIFF_BIG(MILLISECOND, @epoch, {src}.expires_at) AS expires_ms, \
         DATEDIFF_BIG(MILLISECOND, @now, {src}.expires_at) AS expires_in_ms, \
         {src}.metadata"
    )
}

/// Every statement, for one schema and table.
#[derive(Debug, Clone)]
pub struct Statements {
    schema: Identifier,
    table: Identifier,
    /// `[schema].[table]`
    qualified: String,
    /// The batch prologue: `@now` once, by the server's clock, and the epoch for `DATEDIFF_BIG`.
    clock: &'static str,
}

const CLOCK: &str = "DECLARE @now DATETIME2(7) = SYSUTCDATETIME();\n\
DECLARE @epoch DATETIME2(7) = CAST('1970-01-01T00:00:00' AS DATETIME2(7));\n";

impl Statements {
    /// Statements for `[schema].[table]`.
    pub fn new(schema: Identifier, table: Identifier) -> Self {
        let qualified = format!("{}.{}", schema.quoted(), table.quoted());
        Statements { schema, table, qualified, clock: CLOCK }
    }

    /// `[schema].[table]`.
    pub fn qualified_table(&self) -> &str {
        &self.qualified
    }

    /// Creates the schema (if missing) and the table (if missing). Idempotent; two processes racing
    /// may see "already exists" once, which the caller answers by running it again.
    pub fn ensure_schema(&self) -> String {
        let create_schema = format!("CREATE SCHEMA {}", self.schema.quoted());
        let object = format!("{}.{}", self.schema.quoted(), self.table.quoted());
        format!(
            "IF SCHEMA_ID({schema}) IS NULL EXEC({create_schema});\n\
             IF OBJECT_ID({object}, N'U') IS NULL\n\
             CREATE TABLE {qualified} (\n  \
               election NVARCHAR(128) COLLATE Latin1_General_BIN2 NOT NULL PRIMARY KEY,\n  \
               participant_id NVARCHAR(256) NULL,\n  \
               instance_id NVARCHAR(128) COLLATE Latin1_General_BIN2 NULL,\n  \
               token BIGINT NOT NULL,\n  \
               acquired_at DATETIME2(7) NOT NULL,\n  \
               expires_at DATETIME2(7) NOT NULL,\n  \
               metadata NVARCHAR(MAX) NULL\n\
             );",
            schema = nstring(self.schema.as_str()),
            create_schema = nstring(&create_schema),
            object = nstring(&object),
            qualified = self.qualified,
        )
    }

    /// Acquire, or refresh our own lease. `@P1` election, `@P2` participant id, `@P3` instance id,
    /// `@P4` TTL in milliseconds (INT), `@P5` metadata JSON.
    ///
    /// Yields exactly one row: ours (inserted or updated, `OUTPUT`) or, when another instance holds
    /// an unexpired lease, that holder's row (the final `SELECT`).
    pub fn acquire(&self) -> String {
        let t = &self.qualified;
        let out = lease_columns("inserted");
        let cols = lease_columns("l");
        format!(
            "SET NOCOUNT ON;\n\
             SET XACT_ABORT ON;\n\
             {clock}\
             BEGIN TRANSACTION;\n\
             IF NOT EXISTS (SELECT 1 FROM {t} WITH (UPDLOCK, HOLDLOCK) WHERE election = @P1)\n\
             BEGIN\n\
               INSERT INTO {t} (election, participant_id, instance_id, token, acquired_at, expires_at, metadata)\n\
               OUTPUT {out}\n\
               VALUES (@P1, @P2, @P3, 1, @now, DATEADD(MILLISECOND, @P4, @now), @P5);\n\
             END\n\
             ELSE\n\
             BEGIN\n\
               UPDATE {t} SET\n\
                 token = CASE WHEN instance_id = @P3 AND expires_at > @now THEN token ELSE token + 1 END,\n\
                 acquired_at = CASE WHEN instance_id = @P3 AND expires_at > @now THEN acquired_at ELSE @now END,\n\
                 participant_id = @P2,\n\
                 instance_id = @P3,\n\
                 expires_at = DATEADD(MILLISECOND, @P4, @now),\n\
                 metadata = @P5\n\
               OUTPUT {out}\n\
               WHERE election = @P1 AND (instance_id IS NULL OR instance_id = @P3 OR expires_at <= @now);\n\
               IF @@ROWCOUNT = 0\n\
                 SELECT {cols} FROM {t} AS l WHERE l.election = @P1;\n\
             END;\n\
             COMMIT TRANSACTION;",
            clock = self.clock,
        )
    }

    /// Extends our lease. `@P1` election, `@P2` instance id, `@P3` token, `@P4` TTL ms (INT).
    /// One row if it was ours and unexpired, none otherwise.
    pub fn renew(&self) -> String {
        format!(
            "SET NOCOUNT ON;\n{clock}\
             UPDATE {t} SET expires_at = DATEADD(MILLISECOND, @P4, @now)\n\
             OUTPUT {out}\n\
             WHERE election = @P1 AND instance_id = @P2 AND token = @P3 AND expires_at > @now;",
            clock = self.clock,
            t = self.qualified,
            out = lease_columns("inserted"),
        )
    }

    /// Replaces our lease's metadata. `@P1` election, `@P2` instance id, `@P3` token, `@P4` JSON.
    pub fn update_metadata(&self) -> String {
        format!(
            "SET NOCOUNT ON;\n{clock}\
             UPDATE {t} SET metadata = @P4\n\
             OUTPUT {out}\n\
             WHERE election = @P1 AND instance_id = @P2 AND token = @P3 AND expires_at > @now;",
            clock = self.clock,
            t = self.qualified,
            out = lease_columns("inserted"),
        )
    }

    /// Gives up our lease: clears the holder, keeps the row (and its token counter).
    /// `@P1` election, `@P2` instance id, `@P3` token. One row if it was ours.
    pub fn release(&self) -> String {
        format!(
            "SET NOCOUNT ON;\n{clock}\
             UPDATE {t} SET participant_id = NULL, instance_id = NULL, metadata = NULL, expires_at = @now\n\
             OUTPUT inserted.election\n\
             WHERE election = @P1 AND instance_id = @P2 AND token = @P3 AND expires_at > @now;",
            clock = self.clock,
            t = self.qualified,
        )
    }

    /// The unexpired holder of `@P1`, if any.
    pub fn current(&self) -> String {
        format!(
            "SET NOCOUNT ON;\n{clock}\
             SELECT {cols} FROM {t} AS l\n\
             WHERE l.election = @P1 AND l.instance_id IS NOT NULL AND l.expires_at > @now;",
            clock = self.clock,
            t = self.qualified,
            cols = lease_columns("l"),
        )
    }

    /// Unexpired holders whose election starts with `@P1` (`@P2` = its length in characters, INT),
    /// sorted by election (binary collation: byte order, as the other providers sort). `LEFT` rather
    /// than `LIKE`, so `_` in a prefix is not a wildcard.
    pub fn list(&self) -> String {
        format!(
            "SET NOCOUNT ON;\n{clock}\
             SELECT {cols} FROM {t} AS l\n\
             WHERE LEFT(l.election, @P2) = @P1 AND l.instance_id IS NOT NULL AND l.expires_at > @now\n\
             ORDER BY l.election;",
            clock = self.clock,
            t = self.qualified,
            cols = lease_columns("l"),
        )
    }

    /// Clears the holder of every expired lease (rows and tokens stay); one output row per lease.
    pub fn cleanup_expired(&self) -> String {
        format!(
            "SET NOCOUNT ON;\n{clock}\
             UPDATE {t} SET participant_id = NULL, instance_id = NULL, metadata = NULL\n\
             OUTPUT inserted.election\n\
             WHERE instance_id IS NOT NULL AND expires_at <= @now;",
            clock = self.clock,
            t = self.qualified,
        )
    }

    /// A fenced-write predicate for users' own statements: true while token `@P2` still holds
    /// election `@P1` (use inside the same transaction as the write it guards).
    pub fn token_holds(&self) -> String {
        format!(
            "EXISTS (SELECT 1 FROM {t} WITH (UPDLOCK, HOLDLOCK) \
             WHERE election = @P1 AND token = @P2 AND instance_id IS NOT NULL AND expires_at > SYSUTCDATETIME())",
            t = self.qualified,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use sqlparser::dialect::MsSqlDialect;
    use sqlparser::parser::Parser;

    use super::*;

    fn statements(schema: &str, table: &str) -> Statements {
        Statements::new(
            Identifier::new("schema", schema).expect("valid schema"),
            Identifier::new("table", table).expect("valid table"),
        )
    }

    /// (name, text, parameters it must use, statements it must parse into)
    fn all(s: &Statements) -> Vec<(&'static str, String, usize, usize)> {
        vec![
            ("ensure_schema", s.ensure_schema(), 0, 2),
            ("acquire", s.acquire(), 5, 7),
            ("renew", s.renew(), 4, 4),
            ("update_metadata", s.update_metadata(), 4, 4),
            ("release", s.release(), 3, 4),
            ("current", s.current(), 1, 4),
            ("list", s.list(), 2, 4),
            ("cleanup_expired", s.cleanup_expired(), 0, 4),
            // A predicate: parsed inside a SELECT.
            ("token_holds", format!("SELECT CASE WHEN {} THEN 1 ELSE 0 END", s.token_holds()), 2, 1),
        ]
    }

    /// `@name` tokens outside string literals: parameters, locals and `@@` functions.
    fn variables(sql: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut in_string = false;
        let chars: Vec<char> = sql.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '\'' {
                in_string = !in_string;
            } else if c == '@' && !in_string {
                let start = i;
                while i + 1 < chars.len()
                    && (chars[i + 1] == '@' || chars[i + 1].is_ascii_alphanumeric() || chars[i + 1] == '_')
                {
                    i += 1;
                }
                out.insert(chars[start..=i].iter().collect());
            }
            i += 1;
        }
        out
    }

    #[test]
    fn every_statement_parses_as_tsql() {
        for (schema, table) in [("dbo", "leader_leases"), ("_x", "T1"), ("leader", &*"t".repeat(128))] {
            let s = statements(schema, table);
            for (name, sql, _, count) in all(&s) {
                let parsed = Parser::parse_sql(&MsSqlDialect {}, &sql)
                    .unwrap_or_else(|e| panic!("{name} does not parse as T-SQL: {e}\n{sql}"));
                assert_eq!(parsed.len(), count, "{name}: statement count\n{sql}");
            }
        }
    }

    #[test]
    fn parameters_are_numbered_from_one_without_gaps_and_nothing_else_is_a_variable() {
        let s = statements("dbo", "leader_leases");
        let locals: BTreeSet<String> = ["@now", "@epoch", "@@ROWCOUNT"].iter().map(|v| v.to_string()).collect();
        for (name, sql, params, _) in all(&s) {
            let vars = variables(&sql);
            let expected: BTreeSet<String> = (1..=params).map(|i| format!("@P{i}")).collect();
            let found: BTreeSet<String> = vars.iter().filter(|v| v.starts_with("@P")).cloned().collect();
            assert_eq!(found, expected, "{name}: parameters");
            for v in vars.iter().filter(|v| !v.starts_with("@P")) {
                assert!(locals.contains(v), "{name}: unexpected variable {v}");
            }
            if sql.contains("@now") && name != "token_holds" {
                assert!(sql.contains("DECLARE @now DATETIME2(7) = SYSUTCDATETIME();"), "{name}: @now declared");
            }
        }
    }

    #[test]
    fn table_names_appear_only_bracket_quoted() {
        let s = statements("Sch_1", "Leases_2");
        for (name, sql, _, _) in all(&s) {
            if name == "ensure_schema" {
                // The names also appear inside N'...' strings for SCHEMA_ID/OBJECT_ID/EXEC.
                assert!(sql.contains("SCHEMA_ID(N'Sch_1')"), "{sql}");
                assert!(sql.contains("EXEC(N'CREATE SCHEMA [Sch_1]')"), "{sql}");
                assert!(sql.contains("OBJECT_ID(N'[Sch_1].[Leases_2]', N'U')"), "{sql}");
                assert!(sql.contains("CREATE TABLE [Sch_1].[Leases_2]"), "{sql}");
                continue;
            }
            let bare = sql.replace("[Sch_1].[Leases_2]", "");
            assert!(sql.contains("[Sch_1].[Leases_2]"), "{name} names the table");
            assert!(!bare.contains("Sch_1") && !bare.contains("Leases_2"), "{name}: unquoted name\n{sql}");
        }
    }

    #[test]
    fn hostile_names_are_refused_before_any_sql_exists() {
        for name in [
            "x]; DROP TABLE users; --",
            "x'); DROP TABLE users; --",
            "dbo].[users",
            "a b",
            "a.b",
            "ab\u{0}",
            "ｘ",
            "",
            &"a".repeat(129),
        ] {
            let err = Identifier::new("table", name).expect_err(name);
            assert_eq!(err.kind(), leader_core::ErrorKind::InvalidArgument);
            assert!(err.message().contains(&format!("{name:?}")), "message names the value: {err}");
        }
    }

    #[test]
    fn quoting_doubles_closing_brackets_and_quotes() {
        // Unreachable with validated names; the quoting is still right on its own.
        assert_eq!(Identifier("a]b".into()).quoted(), "[a]]b]");
        assert_eq!(nstring("it's"), "N'it''s'");
    }

    #[test]
    fn acquire_is_one_locked_transaction_without_merge() {
        let sql = statements("dbo", "leader_leases").acquire();
        assert!(!sql.to_ascii_uppercase().contains("MERGE"));
        let begin = sql.find("BEGIN TRANSACTION").expect("begins a transaction");
        let lock = sql.find("WITH (UPDLOCK, HOLDLOCK) WHERE election = @P1").expect("locks the key range");
        let insert = sql.find("INSERT INTO").expect("inserts");
        let commit = sql.find("COMMIT TRANSACTION").expect("commits");
        assert!(begin < lock && lock < insert && insert < commit);
        assert!(sql.contains("SET XACT_ABORT ON"), "an error rolls the whole batch back");
        assert_eq!(sql.matches("OUTPUT inserted.election").count(), 2, "insert and update both return the row");
        // The token only moves on a change of holder; a refresh by the same instance keeps it.
        assert!(sql.contains("token = CASE WHEN instance_id = @P3 AND expires_at > @now THEN token ELSE token + 1 END"));
    }

    #[test]
    fn guarded_statements_check_instance_token_and_expiry() {
        let s = statements("dbo", "leader_leases");
        for sql in [s.renew(), s.update_metadata(), s.release()] {
            assert!(sql.contains("WHERE election = @P1 AND instance_id = @P2 AND token = @P3 AND expires_at > @now"));
        }
        // Release keeps the row (and its token counter): it never deletes.
        for (name, sql, _, _) in all(&s) {
            assert!(!sql.to_ascii_uppercase().contains("DELETE"), "{name} deletes");
        }
    }

    #[test]
    fn round_trip_through_the_parser_keeps_the_lock_hints() {
        let sql = statements("dbo", "leader_leases").acquire();
        let parsed = Parser::parse_sql(&MsSqlDialect {}, &sql).expect("parses");
        let text: Vec<String> = parsed.iter().map(ToString::to_string).collect();
        let joined = text.join("\n");
        assert!(joined.contains("WITH (UPDLOCK, HOLDLOCK)"), "{joined}");
        assert!(joined.contains("OUTPUT inserted.election"), "{joined}");
    }
}
