//! How the CLI prints lists: a table for people, JSON for scripts (`-o json`), and a
//! sentence instead of nothing when a list is empty.

/// `--output` of the commands that print lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// A table with a header (or a sentence when there is nothing to list).
    #[default]
    Table,
    /// A JSON array of objects keyed by the table's column names (`[]` when empty).
    Json,
}

/// `rows` (each as long as `columns`) in `format`; `empty` is what a table prints for
/// no rows (e.g. `no sagas`).
pub fn render(format: OutputFormat, columns: &[&str], rows: &[Vec<String>], empty: &str) -> String {
    match format {
        OutputFormat::Json => {
            let objects: Vec<serde_json::Map<String, serde_json::Value>> = rows
                .iter()
                .map(|row| {
                    columns
                        .iter()
                        .zip(row)
                        .map(|(c, v)| ((*c).to_string(), serde_json::Value::String(v.clone())))
                        .collect()
                })
                .collect();
            serde_json::to_string_pretty(&objects).unwrap_or_else(|_| "[]".into())
        }
        OutputFormat::Table if rows.is_empty() => empty.to_string(),
        OutputFormat::Table => {
            let mut table = comfy_table::Table::new();
            table
                .load_preset(comfy_table::presets::UTF8_FULL_CONDENSED)
                .set_header(columns.to_vec());
            for row in rows {
                table.add_row(row.clone());
            }
            table.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_list_says_so_or_is_an_empty_array() {
        assert_eq!(
            render(OutputFormat::Table, &["id"], &[], "no sagas"),
            "no sagas"
        );
        assert_eq!(render(OutputFormat::Json, &["id"], &[], "no sagas"), "[]");
    }

    #[test]
    fn rows_are_a_table_or_objects() {
        let rows = vec![vec!["s-1".to_string(), "stuck".to_string()]];
        let table = render(OutputFormat::Table, &["id", "state"], &rows, "none");
        assert!(table.contains("id") && table.contains("state") && table.contains("s-1"));
        let json: serde_json::Value =
            serde_json::from_str(&render(OutputFormat::Json, &["id", "state"], &rows, "none"))
                .expect("JSON");
        assert_eq!(json[0]["state"], "stuck");
    }
}
