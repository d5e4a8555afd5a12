//! Splitting a migration file into its statements.
//!
//! Citus propagates DDL on a distributed table (a constraint, a trigger) to the shards using the
//! *whole* query string the statement arrived in; when a migration is sent as one
//! multi-statement string, the workers get every statement of the file in a prepared statement
//! and refuse it ("cannot insert multiple commands into a prepared statement"). So migrations run
//! one statement per query string, on plain PostgreSQL too (one path, tested by both suites).
//!
//! The split is lexical, by sqlparser's PostgreSQL tokenizer: a `;` inside a string, a quoted
//! identifier, a comment or a dollar-quoted function body is not a boundary.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

/// The statements of `sql`, each as the exact source text between two top-level `;` (without
/// it); statements holding nothing but whitespace and comments are left out.
pub fn split(sql: &str) -> anyhow::Result<Vec<&str>> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| anyhow::anyhow!("tokenizing SQL: {e}"))?;
    let offsets = LineStarts::new(sql);
    let mut out = Vec::new();
    let mut start = 0;
    let mut has_code = false;
    for t in &tokens {
        match &t.token {
            Token::SemiColon => {
                let at = offsets.byte_offset(sql, t.span.start.line, t.span.start.column)?;
                if has_code {
                    out.push(sql[start..at].trim());
                }
                start = at + 1;
                has_code = false;
            }
            Token::Whitespace(
                Whitespace::Space
                | Whitespace::Newline
                | Whitespace::Tab
                | Whitespace::SingleLineComment { .. }
                | Whitespace::MultiLineComment(_),
            )
            | Token::EOF => {}
            _ => has_code = true,
        }
    }
    if has_code {
        out.push(sql[start..].trim());
    }
    Ok(out)
}

/// Byte offsets of line starts, to turn the tokenizer's (line, column in characters) into a
/// byte offset.
struct LineStarts(Vec<usize>);

impl LineStarts {
    fn new(sql: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
        Self(starts)
    }

    fn byte_offset(&self, sql: &str, line: u64, column: u64) -> anyhow::Result<usize> {
        let line_start = usize::try_from(line)
            .ok()
            .and_then(|l| l.checked_sub(1))
            .and_then(|l| self.0.get(l))
            .copied()
            .ok_or_else(|| anyhow::anyhow!("tokenizer reported line {line}, out of range"))?;
        let skip = usize::try_from(column.saturating_sub(1))?;
        sql[line_start..]
            .char_indices()
            .nth(skip)
            .map(|(i, _)| line_start + i)
            .ok_or_else(|| anyhow::anyhow!("tokenizer reported column {column}, out of range"))
    }
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn splits_at_top_level_semicolons_only() {
        let sql = "-- a; comment\nCREATE TABLE a (x text DEFAULT ';');\n\
                   /* b; */ CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;\n\
                   DO $x$ BEGIN RAISE NOTICE 'é;'; END $x$;\n\
                   SELECT \"we;ird\" FROM t  \n";
        let parts = split(sql).unwrap();
        assert_eq!(
            parts,
            vec![
                "-- a; comment\nCREATE TABLE a (x text DEFAULT ';')",
                "/* b; */ CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$",
                "DO $x$ BEGIN RAISE NOTICE 'é;'; END $x$",
                "SELECT \"we;ird\" FROM t",
            ]
        );
    }

    #[test]
    fn comments_and_blank_statements_are_dropped() {
        assert!(split("  -- nothing\n;;\n/* here */").unwrap().is_empty());
        assert_eq!(split("SELECT 1;;").unwrap(), vec!["SELECT 1"]);
    }

    #[test]
    fn every_migration_splits_into_statements_that_end_where_the_file_says() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        for entry in std::fs::read_dir(dir).unwrap() {
            for file in ["up.sql", "down.sql"] {
                let path = entry.as_ref().unwrap().path().join(file);
                let sql = std::fs::read_to_string(&path).unwrap();
                let parts = split(&sql).unwrap();
                assert!(!parts.is_empty(), "{}", path.display());
                for p in parts {
                    assert!(!p.ends_with(';'), "{}: {p}", path.display());
                }
            }
        }
    }
}
