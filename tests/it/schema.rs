//! docs/schema.md documents exactly the columns the migrations create.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::TestDb;

/// Every `### \`name\`` section's documented columns: the backticked names in the first
/// cell of its table rows (a row "every column of `t`" stands for `t`'s columns).
fn documented(doc: &str) -> BTreeMap<String, (BTreeSet<String>, Vec<String>)> {
    let mut sections = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        if let Some(rest) = line.strip_prefix("### `") {
            let name = rest.split('`').next().unwrap().to_owned();
            sections.insert(name.clone(), (BTreeSet::new(), Vec::new()));
            current = Some(name);
        } else if line.starts_with("## ") {
            current = None;
        } else if let (Some(name), Some(row)) = (&current, line.strip_prefix("| ")) {
            let cell = row.split(" |").next().unwrap();
            let (cols, includes) = sections.get_mut(name).unwrap();
            let names: Vec<&str> = cell.split('`').skip(1).step_by(2).collect();
            if cell.contains("every column of") {
                includes.extend(names.iter().map(|n| (*n).to_owned()));
            } else {
                cols.extend(names.iter().map(|n| (*n).to_owned()));
            }
        }
    }
    sections
}

#[tokio::test]
async fn every_table_and_column_is_documented_and_nothing_else() {
    let db = TestDb::new().await;
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/schema.md")).unwrap();
    let sections = documented(&doc);
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let mut actual: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (table, column) in rows {
        actual.entry(table).or_default().insert(column);
    }
    let tables: BTreeSet<&String> = actual.keys().collect();
    let documented_tables: BTreeSet<&String> = sections.keys().collect();
    assert_eq!(
        documented_tables, tables,
        "tables and views in docs/schema.md vs the database"
    );
    for (table, (cols, includes)) in &sections {
        let mut cols = cols.clone();
        for other in includes {
            cols.extend(actual[other].iter().cloned());
        }
        assert_eq!(
            &cols, &actual[table],
            "columns of {table} in docs/schema.md vs the database"
        );
    }
}
