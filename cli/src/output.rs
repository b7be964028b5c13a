//! Human tables and `--output json`. The table writer is a few lines of aligned columns: a table
//! crate would add compile time for nothing the admin commands need.

use serde_json::Value;

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
}

/// A cell: strings as they are, `-` for nothing, other values as compact JSON.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

/// Columns aligned on the widest cell; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        let last = cells.len().saturating_sub(1);
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            out.push_str(c);
            if i < last {
                out.push_str(&" ".repeat(w - c.chars().count() + 2));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// A list of objects: `columns` are (header, field).
pub fn list(items: &[Value], columns: &[(&str, &str)], format: Format) -> String {
    match format {
        Format::Json => json(&Value::Array(items.to_vec())),
        Format::Table => {
            let headers: Vec<&str> = columns.iter().map(|(h, _)| *h).collect();
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|i| columns.iter().map(|(_, f)| cell(&i[*f])).collect())
                .collect();
            table(&headers, &rows)
        }
    }
}

/// One object: a FIELD/VALUE table, or the JSON.
pub fn object(value: &Value, format: Format) -> String {
    match (format, value) {
        (Format::Table, Value::Object(map)) => {
            let rows: Vec<Vec<String>> =
                map.iter().map(|(k, v)| vec![k.clone(), cell(v)]).collect();
            table(&["FIELD", "VALUE"], &rows)
        }
        (Format::Table, Value::Null) => String::new(),
        _ => json(value),
    }
}

pub fn json(value: &Value) -> String {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_line_up() {
        let items = [
            json!({"name": "deploy", "credential_type": "assumed_role"}),
            json!({"name": "ci", "credential_type": null}),
        ];
        let t = list(
            &items,
            &[("NAME", "name"), ("TYPE", "credential_type")],
            Format::Table,
        );
        assert_eq!(t, "NAME    TYPE\ndeploy  assumed_role\nci      -\n");
        let j: Value = serde_json::from_str(&list(&items, &[], Format::Json)).unwrap();
        assert_eq!(j[0]["name"], "deploy");
    }

    #[test]
    fn objects_are_field_value_rows() {
        let t = object(&json!({"a": "x", "bb": [1, 2]}), Format::Table);
        assert_eq!(t, "FIELD  VALUE\na      x\nbb     [1,2]\n");
    }
}
