//! Splitting a script into statements with the SQL tokenizer DataFusion parses with
//! (sqlparser, PostgreSQL dialect): a `;` ends a statement only where the parser would
//! see one, never inside a string, a quoted identifier, a dollar-quoted body or a
//! comment (`SELECT 1 /* a; b */ AS x;` is one statement).

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

/// A script the tokenizer cannot read (an unterminated string or comment, ...).
#[derive(Debug, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ScriptError {
    pub line: u64,
    pub column: u64,
    pub message: String,
}

fn tokens(script: &str) -> Result<Vec<TokenWithSpan>, ScriptError> {
    Tokenizer::new(&PostgreSqlDialect {}, script)
        .tokenize_with_location()
        .map_err(|e| ScriptError {
            line: e.location.line,
            column: e.location.column,
            message: e.message,
        })
}

/// Whether `token` is only layout (spaces, newlines, comments).
fn is_layout(token: &Token) -> bool {
    matches!(token, Token::Whitespace(_) | Token::EOF)
}

/// The statements of `script`, as written (comments inside a statement kept), trimmed;
/// empty statements and comment-only remainders dropped.
pub fn split_statements(script: &str) -> Result<Vec<String>, ScriptError> {
    let tokens = tokens(script)?;
    // Byte offset of each line's start: the tokenizer locates tokens by line and
    // column (in characters).
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(script.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let offset = |line: u64, column: u64| -> usize {
        let start = line_starts
            .get(usize::try_from(line.saturating_sub(1)).unwrap_or(usize::MAX))
            .copied()
            .unwrap_or(script.len());
        let column = usize::try_from(column.saturating_sub(1)).unwrap_or(usize::MAX);
        script[start..]
            .char_indices()
            .nth(column)
            .map_or(script.len(), |(i, _)| start + i)
    };
    let mut statements = Vec::new();
    let mut from = 0;
    let mut substance = false;
    for token in &tokens {
        match &token.token {
            Token::SemiColon => {
                let at = offset(token.span.start.line, token.span.start.column);
                if substance {
                    statements.push(script[from..at].trim().to_string());
                }
                from = at + 1;
                substance = false;
            }
            other if !is_layout(other) && !substance => {
                // A statement starts at its first token: comments before it are not
                // part of it.
                from = offset(token.span.start.line, token.span.start.column);
                substance = true;
            }
            _ => {}
        }
    }
    if substance {
        statements.push(script[from..].trim().to_string());
    }
    Ok(statements)
}

/// Whether `buffer` ends a statement: it reads as SQL and its last token other than
/// layout is a `;` (an open string or comment continues on the next line).
pub fn ends_statement(buffer: &str) -> bool {
    tokens(buffer).is_ok_and(|tokens| {
        tokens
            .iter()
            .rev()
            .find(|t| !is_layout(&t.token))
            .is_some_and(|t| t.token == Token::SemiColon)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_semicolons_the_parser_sees() {
        let script = "CREATE TABLE t (a TEXT PRIMARY KEY); -- done; really\n\
                      INSERT INTO t VALUES ('x;y', 'it''s; fine');\n\n\
                      SELECT 1 /* a; b */ AS x;\n\
                      SELECT \"odd;name\" FROM t;;\n\
                      SELECT $$a;b$$, 'ü;é' AS é;\n\
                      SELECT 2 -- trailing; comment";
        assert_eq!(
            split_statements(script).expect("reads"),
            vec![
                "CREATE TABLE t (a TEXT PRIMARY KEY)",
                "INSERT INTO t VALUES ('x;y', 'it''s; fine')",
                "SELECT 1 /* a; b */ AS x",
                "SELECT \"odd;name\" FROM t",
                "SELECT $$a;b$$, 'ü;é' AS é",
                "SELECT 2 -- trailing; comment",
            ]
        );
        assert_eq!(
            split_statements("  -- only a comment;\n/* and; another */ ").expect("reads"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn an_unterminated_string_is_an_error_with_its_place() {
        let error = split_statements("SELECT 1;\nSELECT 'open; ").expect_err("unterminated");
        assert_eq!(error.line, 2, "{error}");
    }

    #[test]
    fn a_statement_ends_at_a_semicolon_outside_strings_and_comments() {
        assert!(ends_statement("SELECT 1;"));
        assert!(ends_statement("SELECT 1; -- done\n"));
        assert!(!ends_statement("SELECT 'a;"));
        assert!(!ends_statement("SELECT 1 /* ; */"));
        assert!(!ends_statement("SELECT 1 /* ;"));
        assert!(!ends_statement(""));
    }
}
