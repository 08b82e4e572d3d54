//! Bounds on a statement's shape, checked on its tokens before it is parsed.
//!
//! A parser's recursion limit sees nesting (parentheses), not chains: `1 + 1 + ... + 1`
//! or `a = 1 OR a = 2 OR ...` parse in a loop into a left-deep tree as deep as the chain
//! is long, and every later walk of that tree (planning, rewriting, even dropping it)
//! recurses once per level. 100 000 additions fit in a few hundred KiB and overflowed a
//! worker's stack, aborting the node. The tokenizer is iterative, so counting on tokens
//! is safe whatever the input.
//!
//! Depth is estimated per nesting level (parentheses, brackets, `CASE ... END`): the
//! operators chained since the last separator (a comma, or a clause keyword such as
//! `WHERE` or `WHEN`), plus the set operations and joins chained at that level, plus one
//! for the level itself; the statement's depth is the largest sum over the open levels.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use super::SqlError;
use crate::limits::{
    EXPRESSION_DEPTH_MAX, IDENTIFIER_LENGTH_MAX_BYTES, IN_LIST_VALUES_MAX,
    QUOTED_IDENTIFIER_LENGTH_MAX_BYTES,
};

#[derive(Default)]
struct Level {
    /// Operators chained since the last separator at this level.
    operators: usize,
    /// UNION / INTERSECT / EXCEPT / JOIN chained at this level (never reset inside it).
    chained: usize,
    /// Opened by `IN (`: its commas count values.
    in_list: bool,
    values: usize,
    /// Opened by `CASE`, closed by `END` (not by a parenthesis).
    case: bool,
    /// In a FROM list or a WITH list at this level: each comma adds a join (`FROM a, b`
    /// plans as a cross join nested one level deeper per table) or a CTE (which may
    /// read the one before it), so commas chain here.
    in_relation_list: bool,
}

impl Level {
    fn depth(&self) -> usize {
        self.operators + self.chained + 1
    }
}

/// Refuses `sql` if an expression chains or nests deeper than `EXPRESSION_DEPTH_MAX`, an
/// `IN` list holds more than `IN_LIST_VALUES_MAX` values, or an identifier is longer than
/// `IDENTIFIER_LENGTH_MAX_BYTES` (PostgreSQL's NAMEDATALEN - 1, which PostgreSQL
/// truncates to silently; Domicile refuses). Text the tokenizer cannot read is left to
/// the parser, which reports it.
///
/// Errors: `SqlError::TooLarge` naming the bound. The error never quotes the statement.
pub(crate) fn check(sql: &str) -> Result<(), SqlError> {
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return Ok(());
    };
    let mut levels = vec![Level::default()];
    let mut deepest = 0usize;
    let mut after_in = false;
    for token in tokens {
        let mut operator = false;
        let mut opens: Option<Level> = None;
        let mut closes = false;
        let was_after_in = std::mem::take(&mut after_in);
        match &token {
            Token::Whitespace(_) => {
                after_in = was_after_in;
                continue;
            }
            Token::Word(word) => {
                // Tools generate long quoted aliases (a column's expression as its
                // name); stored names are capped at 63 bytes when tables are made.
                let (max, bound) = if word.quote_style.is_some() {
                    (
                        QUOTED_IDENTIFIER_LENGTH_MAX_BYTES,
                        "quoted_identifier_length_max_bytes",
                    )
                } else {
                    (IDENTIFIER_LENGTH_MAX_BYTES, "identifier_length_max_bytes")
                };
                if word.value.len() > max {
                    return Err(SqlError::TooLarge(format!(
                        "an identifier of {} bytes exceeds {bound} = {max}",
                        word.value.len()
                    )));
                }
                if word.quote_style.is_some() {
                    // A quoted identifier is a name, whatever it spells.
                } else {
                    match word.keyword {
                        Keyword::IN => {
                            operator = true;
                            after_in = true;
                        }
                        Keyword::AND
                        | Keyword::OR
                        | Keyword::NOT
                        | Keyword::IS
                        | Keyword::LIKE
                        | Keyword::ILIKE
                        | Keyword::SIMILAR
                        | Keyword::BETWEEN
                        | Keyword::COLLATE
                        | Keyword::AT
                        | Keyword::ESCAPE
                        | Keyword::XOR => operator = true,
                        Keyword::UNION | Keyword::INTERSECT | Keyword::EXCEPT | Keyword::JOIN => {
                            if let Some(level) = levels.last_mut() {
                                level.chained += 1;
                                level.operators = 0;
                            }
                        }
                        Keyword::FROM | Keyword::WITH => {
                            if let Some(level) = levels.last_mut() {
                                level.operators = 0;
                                level.in_relation_list = true;
                            }
                        }
                        Keyword::CASE => {
                            opens = Some(Level {
                                case: true,
                                ..Level::default()
                            })
                        }
                        Keyword::END if levels.last().is_some_and(|l| l.case) => closes = true,
                        Keyword::SELECT
                        | Keyword::WHERE
                        | Keyword::GROUP
                        | Keyword::HAVING
                        | Keyword::ORDER
                        | Keyword::LIMIT
                        | Keyword::OFFSET
                        | Keyword::WHEN
                        | Keyword::THEN
                        | Keyword::ELSE
                        | Keyword::ON
                        | Keyword::USING
                        | Keyword::AS
                        | Keyword::BY
                        | Keyword::VALUES
                        | Keyword::SET
                        | Keyword::RETURNING => {
                            if let Some(level) = levels.last_mut() {
                                level.operators = 0;
                                // `ON`, `USING` and `AS` belong to the list they are in.
                                if !matches!(
                                    word.keyword,
                                    Keyword::ON | Keyword::USING | Keyword::AS
                                ) {
                                    level.in_relation_list = false;
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            Token::LParen => {
                opens = Some(Level {
                    in_list: was_after_in,
                    ..Level::default()
                })
            }
            // `x['a']['b']...` parses in a loop into one flat access that the planner
            // folds into nested calls, one level per subscript: each counts on the
            // enclosing level as well as opening its own.
            Token::LBracket => {
                operator = true;
                opens = Some(Level::default());
            }
            Token::RParen | Token::RBracket => closes = true,
            Token::Comma => {
                if let Some(level) = levels.last_mut() {
                    level.operators = 0;
                    if level.in_relation_list {
                        level.chained += 1;
                    }
                    if level.in_list {
                        level.values += 1;
                        if level.values >= IN_LIST_VALUES_MAX {
                            return Err(SqlError::TooLarge(format!(
                                "an IN list of more than {IN_LIST_VALUES_MAX} values exceeds \
                                 in_list_values_max"
                            )));
                        }
                    }
                }
            }
            Token::EOF
            | Token::Period
            | Token::SemiColon
            | Token::Colon
            | Token::Number(..)
            | Token::Char(_)
            | Token::Placeholder(_)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_) => {}
            // Every other token is an operator of some dialect (`+`, `||`, `::`, `->`,
            // `~`, ...): each one may add a level to the tree.
            _ => operator = true,
        }
        if operator && let Some(level) = levels.last_mut() {
            level.operators += 1;
        }
        if let Some(level) = opens {
            levels.push(level);
        }
        if closes && levels.len() > 1 {
            levels.pop();
        }
        let depth: usize = levels.iter().map(Level::depth).sum();
        deepest = deepest.max(depth);
        if deepest > EXPRESSION_DEPTH_MAX {
            return Err(SqlError::TooLarge(format!(
                "the statement nests or chains expressions deeper than expression_depth_max = \
                 {EXPRESSION_DEPTH_MAX} (a long chain of OR over one column is better written \
                 as IN (...))"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(op: &str, terms: usize) -> String {
        vec!["a = 1"; terms].join(op)
    }

    fn refused(sql: &str) -> String {
        match check(sql) {
            Err(SqlError::TooLarge(message)) => message,
            other => panic!("{other:?} for a statement of {} bytes", sql.len()),
        }
    }

    #[test]
    fn ordinary_statements_pass() {
        for sql in [
            "SELECT id, name FROM accounts WHERE region = 'eu-central' AND balance > 10",
            "SELECT CASE WHEN a = 1 THEN 'x' WHEN a = 2 THEN 'y' ELSE 'z' END FROM t",
            "SELECT count(*) FROM a JOIN b ON a.id = b.id JOIN c ON c.id = b.id",
            "INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')",
            "SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3",
            "SELECT a::text || '-' || b::text FROM t WHERE x IN (1, 2, 3)",
            "not even sql (((",
        ] {
            check(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        // A CASE of many branches is flat, as are many columns and many rows.
        let branches: Vec<String> = (0..5_000)
            .map(|i| format!("WHEN a = {i} THEN {i}"))
            .collect();
        check(&format!("SELECT CASE {} END FROM t", branches.join(" "))).expect("flat CASE");
        let columns = vec!["a + b + c"; 5_000].join(", ");
        check(&format!("SELECT {columns} FROM t")).expect("many short expressions");
        // Each `a = 1` counts its `=` too: 60 ORs count 120.
        check(&format!("SELECT * FROM t WHERE {}", chain(" OR ", 60))).expect("under the bound");
    }

    #[test]
    fn chains_nesting_in_lists_and_identifiers_are_bounded() {
        assert!(
            refused(&format!("SELECT * FROM t WHERE {}", chain(" OR ", 200)))
                .contains("expression_depth_max")
        );
        let sum = vec!["1"; 100_000].join(" + ");
        assert!(refused(&format!("SELECT {sum}")).contains("expression_depth_max"));
        let negations = "- ".repeat(5_000);
        assert!(refused(&format!("SELECT {negations}1")).contains("expression_depth_max"));
        let casts = "::int".repeat(5_000);
        assert!(refused(&format!("SELECT 1{casts}")).contains("expression_depth_max"));
        let unions = vec!["SELECT 1"; 200].join(" UNION ALL ");
        assert!(refused(&unions).contains("expression_depth_max"));
        let cases = "CASE WHEN a = 1 THEN 1 ELSE ".repeat(200) + "0" + &" END".repeat(200);
        assert!(refused(&format!("SELECT {cases}")).contains("expression_depth_max"));
        let values: Vec<String> = (0..IN_LIST_VALUES_MAX + 1).map(|i| i.to_string()).collect();
        let message = refused(&format!(
            "SELECT * FROM t WHERE id IN ({})",
            values.join(",")
        ));
        assert!(message.contains("in_list_values_max"), "{message}");
        let long = "x".repeat(IDENTIFIER_LENGTH_MAX_BYTES + 1);
        let message = refused(&format!("SELECT 1 AS {long}"));
        assert!(
            message.contains("identifier_length_max_bytes") && !message.contains(&long),
            "{message}"
        );
        check(&format!(
            "SELECT 1 AS {}",
            "x".repeat(IDENTIFIER_LENGTH_MAX_BYTES)
        ))
        .expect("63");
        let tool_alias = format!("SELECT sum(balance) AS \"{}\" FROM t", "s".repeat(200));
        check(&tool_alias).expect("a long quoted alias, as BI tools write them");
        let quoted = format!(
            "SELECT 1 AS \"{}\"",
            "q".repeat(QUOTED_IDENTIFIER_LENGTH_MAX_BYTES + 1)
        );
        assert!(refused(&quoted).contains("quoted_identifier_length_max_bytes"));
        // Comma joins and CTE lists chain like JOIN.
        let tables = vec!["t"; 200].join(", ");
        assert!(refused(&format!("SELECT 1 FROM {tables}")).contains("expression_depth_max"));
        let ctes: Vec<String> = (1..200)
            .map(|i| format!("c{i} AS (SELECT * FROM c{})", i - 1))
            .collect();
        let with = format!(
            "WITH c0 AS (SELECT 1 AS x), {} SELECT * FROM c199",
            ctes.join(", ")
        );
        assert!(refused(&with).contains("expression_depth_max"));
        check("WITH a AS (SELECT 1), b AS (SELECT 2) SELECT x, y, z FROM a, b WHERE x IN (1, 2, 3) ORDER BY x, y")
            .expect("a few CTEs, comma joins and lists");
        // Subscript chains nest without parentheses (one level per subscript).
        let subscripts = "['a']".repeat(500);
        assert!(refused(&format!("SELECT x{subscripts} FROM t")).contains("expression_depth_max"));
        check("SELECT x['a']['b'], y[1] FROM t").expect("a few subscripts");
    }
}
