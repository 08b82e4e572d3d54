//! The one sanitizer for texts that leave the node (statuses to clients and peers, log
//! lines, error texts in system tables and the audit log). DataFusion, Arrow and plugins
//! quote a failing value, repeat it double-quoted or print it bare; names of tables and
//! columns are not values and stay. A leaf: depends on `catalog` and `storage` only.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::RwLock;

use domicile_model::catalog::{ColumnType, TableDef};
use domicile_storage::Value;

/// What a withheld value becomes.
pub const WITHHELD: &str = "<value withheld>";

/// Names of every table and column this process has resolved; only grows. A quoted span
/// that is one of them (or a dotted path of them) is a name, not a value.
static NAMES: RwLock<BTreeSet<String>> = RwLock::new(BTreeSet::new());
const FIXED_NAMES: &[&str] = &["domicile", "public", "global", "system", "mesh"];

/// Arrow's cast texts: the value is what lies between the two parts, quotes and all
/// (`O'Brien`), so the template decides where it ends, not the quotes.
const CAST_TEMPLATES: &[(&str, &str)] = &[
    ("Cannot cast string '", "' to value of "),
    ("Cannot cast value '", "' to value of "),
];

/// Who wrote a text, which decides what in it is suspect.
#[derive(Clone, Copy, Debug)]
pub enum Origin<'a> {
    /// Domicile, here or on a peer: values only in quotes; its numbers are limits.
    Domicile,
    /// DataFusion or Arrow: also every word with a digit or `@` that is no type or name.
    Engine,
    /// A plugin's free text: also every value the call was shown.
    Plugin { seen: &'a [String] },
}

/// Records the names of `def` (see [`NAMES`]).
pub fn learn_table(def: &TableDef) {
    let columns = def.columns.iter().map(|c| c.name.as_str());
    learn_names(
        &std::iter::once(def.name.as_str())
            .chain(columns)
            .collect::<Vec<_>>(),
    );
}

/// Takes the write lock only for a name not seen yet (this runs for every statement).
pub fn learn_names(new: &[&str]) {
    if NAMES.read().is_ok_and(|names| knows_all(&names, new)) {
        return;
    }
    // Poisoned: learn nothing, so unknown names stay withheld (fail closed).
    if let Ok(mut names) = NAMES.write() {
        names.extend(new.iter().map(|name| (*name).to_string()));
    }
}

fn knows_all(names: &BTreeSet<String>, new: &[&str]) -> bool {
    new.iter().all(|name| names.contains(*name))
}

fn is_known_name(text: &str) -> bool {
    let Ok(names) = NAMES.read() else {
        return false;
    };
    let known = |part: &str| FIXED_NAMES.contains(&part) || names.contains(part);
    !text.is_empty() && text.split('.').all(known)
}

/// `text` without the values it may carry.
pub fn withhold_values(text: &str, origin: Origin<'_>) -> String {
    withhold_with(text, origin, &is_known_name)
}

/// An error as a status, a log line or a table shows it: Domicile's text, whose foreign
/// parts were withheld where they entered, checked once more at the edge.
pub fn shown(error: &dyn fmt::Display) -> String {
    withhold_values(&error.to_string(), Origin::Domicile)
}

/// [`withhold_values`] with the names given (tests).
pub fn withhold_with(text: &str, origin: Origin<'_>, is_name: &dyn Fn(&str) -> bool) -> String {
    let mut text = text.to_string();
    for (start, end) in CAST_TEMPLATES {
        let mut from = 0;
        while let Some(found) = text[from..].find(start) {
            let at = from + found + start.len();
            let until = text[at..].find(end).map_or(text.len(), |n| at + n);
            text.replace_range(at..until, WITHHELD);
            from = at + WITHHELD.len();
        }
    }
    let text = withhold_quoted(&text, is_name);
    match origin {
        Origin::Domicile => text,
        Origin::Engine => withhold_data_words(&text, is_name),
        Origin::Plugin { seen } => {
            let mut values: Vec<&str> = seen.iter().map(String::as_str).collect();
            values.retain(|&value| value.chars().count() >= 3 && !is_name(value));
            values.sort_by_key(|value| std::cmp::Reverse(value.len()));
            values
                .iter()
                .fold(text, |text, value| text.replace(value, WITHHELD))
        }
    }
}

/// How a plugin might print a stored value: what its texts may not repeat.
pub fn renderings(value: &Value, column_type: ColumnType) -> Vec<String> {
    match (value, column_type) {
        (Value::Text(text), _) => vec![text.clone()],
        (Value::Int(v), _) => vec![v.to_string()],
        (Value::BigInt(v), _) => vec![v.to_string()],
        (Value::Double(v), _) => vec![v.to_string()],
        (Value::Uuid(bytes), _) => vec![uuid::Uuid::from_bytes(*bytes).to_string()],
        (Value::Decimal(v), ColumnType::Decimal { scale, .. }) if scale > 0 => {
            let scale = scale.unsigned_abs() as usize;
            let digits = format!("{:0>width$}", v.unsigned_abs(), width = scale + 1);
            let (whole, fraction) = digits.split_at(digits.len() - scale);
            let sign = if *v < 0 { "-" } else { "" };
            vec![v.to_string(), format!("{sign}{whole}.{fraction}")]
        }
        (Value::Decimal(v), _) => vec![v.to_string()],
        _ => Vec::new(),
    }
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Every span in `'…'`, `"…"` (`\"` escaped) or `` `…` `` that is not a name. A quote
/// opens after a non-word character and closes before one (`can't` opens nothing); an
/// unclosed span runs to the end.
fn withhold_quoted(text: &str, is_name: &dyn Fn(&str) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut rest, mut after_word) = (text, false);
    while let Some(quote) = rest.chars().next() {
        rest = &rest[quote.len_utf8()..];
        if after_word || !matches!(quote, '\'' | '"' | '`') {
            after_word = is_word(quote);
            out.push(quote);
            continue;
        }
        let end = closing(rest, quote).unwrap_or(rest.len());
        out.push(quote);
        out.push_str(if is_name(&rest[..end]) {
            &rest[..end]
        } else {
            WITHHELD
        });
        rest = &rest[end..];
        if let Some(close) = rest.chars().next() {
            out.push(close);
            rest = &rest[close.len_utf8()..];
        }
    }
    out
}

/// Where the span opened by `quote` ends in `rest`: at a `quote` before a non-word.
fn closing(rest: &str, quote: char) -> Option<usize> {
    let mut chars = rest.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c == '\\' && quote == '"' {
            chars.next();
        } else if c == quote && chars.peek().is_none_or(|&(_, next)| !is_word(next)) {
            return Some(at);
        }
    }
    None
}

/// `Int32`, `UInt64`, `Float64`, `Decimal128`, `Date32`, `Time64`, `Utf8`, `i64`, ...
fn is_type_word(word: &str) -> bool {
    let stem = word.trim_end_matches(|c: char| c.is_ascii_digit());
    let types = [
        "Int", "UInt", "Float", "Decimal", "Date", "Time", "Utf", "i", "u", "f",
    ];
    (stem.len() < word.len() && types.contains(&stem)) || matches!(word, "LargeUtf8" | "Utf8View")
}

/// Every word with a digit or an `@` that is not a type or a name (`1225.50`,
/// `DE89370400440532013000`, `ana@x.eu`); a type's numbers (`Decimal128(18, 2)`) stay.
fn withhold_data_words(text: &str, is_name: &dyn Fn(&str) -> bool) -> String {
    let in_word = |c: char| is_word(c) || matches!(c, '.' | '-' | '+' | '@');
    let mut out = String::with_capacity(text.len());
    let (mut rest, mut previous, mut type_args) = (text, "", false);
    while let Some(c) = rest.chars().next() {
        if !in_word(c) {
            if c == '(' || c == ')' {
                type_args = c == '('
                    && (previous.starts_with("Decimal") || previous.starts_with("FixedSize"));
            }
            previous = "";
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let len = rest.find(|c: char| !in_word(c)).unwrap_or(rest.len());
        let word = rest[..len].trim_end_matches(['.', '-', '+']);
        let data = word.contains(|c: char| c.is_ascii_digit() || c == '@');
        let type_arg = type_args && word.chars().all(|c| c.is_ascii_digit());
        let keep = !data || type_arg || is_type_word(word) || is_name(word);
        out.push_str(if keep { word } else { WITHHELD });
        out.push_str(&rest[word.len()..len]);
        (previous, rest) = (word, &rest[len..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Origin (Engine, Domicile, Plugin) | text | expected, where `<>` is `WITHHELD`.
    const CASES: &str = r#"E|Cannot cast string 'ana@x.eu' to value of Decimal128(18, 2) type|Cannot cast string '<>' to value of Decimal128(18, 2) type
E|Cannot cast string 'a@x.eu' to value of Decimal128(18, 2) type: Invalid argument error: Invalid decimal format: "a@x.eu"|Cannot cast string '<>' to value of Decimal128(18, 2) type: Invalid argument error: Invalid decimal format: "<>"
E|Cannot cast string 'O'Brien' to value of Int64 type|Cannot cast string '<>' to value of Int64 type
E|Column 'balance' is declared as non-nullable|Column 'balance' is declared as non-nullable
E|Column 'Ana' is declared as non-nullable|Column '<>' is declared as non-nullable
E|error: 1225.50 is too large to store in a Decimal128 of precision 5. Max is 999.99|error: <> is too large to store in a Decimal128 of precision <>. Max is <>
E|Overflow happened on: 9223372036854775807 + -1225|Overflow happened on: <> + <>
E|Can't cast value 3000000000 to type Int32|Can't cast value <> to type Int32
E|column t2 of accounts saw a.b@x.eu and DE89370400440532013000|column t2 of accounts saw <> and <>
D|more than statement_rows_max = 10000 rows|more than statement_rows_max = 10000 rows
D|invalid type: string "a\"b", expected u64|invalid type: string "<>", expected u64
D|the node's peers' rows; dangling 'abc|the node's peers' rows; dangling '<>
P|balance 1225.50 of Ana Lopez in EU|balance <> of <> in EU
P|GDPR Art. 44: EU personal data stays|GDPR Art. 44: EU personal data stays
"#;

    #[test]
    fn values_are_withheld_and_names_types_and_limits_kept() {
        let seen = ["1225.50", "Ana Lopez", "EU"].map(String::from);
        let is_name = |s: &str| ["balance", "t2"].contains(&s);
        for case in CASES.lines() {
            let parts: Vec<&str> = case.split('|').collect();
            let origin = match parts[0] {
                "E" => Origin::Engine,
                "D" => Origin::Domicile,
                _ => Origin::Plugin { seen: &seen },
            };
            let once = withhold_with(parts[1], origin, &is_name);
            assert_eq!(once, parts[2].replace("<>", WITHHELD), "{case}");
            let twice = withhold_with(&once, origin, &is_name);
            assert_eq!(twice, once, "idempotent: {case}");
        }
    }

    #[test]
    fn learned_names_stay_and_decimals_render_as_printed() {
        learn_names(&["redact_text_test_column"]);
        let text = "No field named 'public.redact_text_test_column'.";
        assert_eq!(withhold_values(text, Origin::Engine), text);
        let money = ColumnType::Decimal {
            precision: 18,
            scale: 2,
        };
        let shown = renderings(&Value::Decimal(-122_550), money);
        assert_eq!(shown, ["-122550", "-1225.50"]);
        assert_eq!(renderings(&Value::Decimal(5), money), ["5", "0.05"]);
    }
}
