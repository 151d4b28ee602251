//! The top-level modules import one way: each from the layers below its own only. The layers
//! are the table in `src/lib.rs`'s opening comment; this test reads that table, so the
//! documentation and the check cannot drift apart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `(layer, module)` rows of the table in `src/lib.rs`: lines `//! | N | `a`, `b` | … |`.
fn layers(lib_rs: &str) -> BTreeMap<String, u32> {
    let mut layer_of = BTreeMap::new();
    for line in lib_rs.lines() {
        let Some(row) = line.strip_prefix("//! | ") else {
            continue;
        };
        let mut cells = row.split(" | ");
        let Some(Ok(layer)) = cells.next().map(str::parse::<u32>) else {
            continue;
        };
        let modules = cells.next().expect("a row names its modules");
        for module in modules.split(',') {
            let module = module.trim().trim_matches('`');
            let before = layer_of.insert(module.to_string(), layer);
            assert!(before.is_none(), "{module} is in two layers of src/lib.rs");
        }
    }
    layer_of
}

/// The top-level modules `src/lib.rs` declares (`pub mod x;`).
fn declared(lib_rs: &str) -> BTreeSet<String> {
    lib_rs
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod ")?.strip_suffix(';'))
        .map(str::to_string)
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a file names as `crate::x` or in `use crate::{x, y::{z}}` (over any
/// number of lines), outside comment lines (doc comments may point anywhere).
fn imports(source: &str) -> BTreeSet<String> {
    let code: String = source
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let Some(group) = rest.strip_prefix('{') else {
            found.insert(ident(rest));
            continue;
        };
        // The group's items at depth 0: `a`, `b::{c, d}`, `e`.
        let (mut depth, mut item_start) = (0, true);
        for (i, c) in group.char_indices() {
            if item_start && depth == 0 {
                found.insert(ident(&group[i..]));
            }
            item_start = false;
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => item_start = true,
                _ => {}
            }
        }
    }
    found.retain(|m| !m.is_empty());
    found
}

/// Which top-level module a file under `src/` belongs to; `None` for the crate root and the
/// binaries.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).expect("under src/");
    let first = relative.components().next()?.as_os_str().to_str()?;
    if first == "bin" || first == "lib.rs" || first == "main.rs" {
        return None;
    }
    Some(first.trim_end_matches(".rs").to_string())
}

#[test]
fn every_top_level_module_imports_only_from_the_layers_below_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let lib_rs = std::fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    let layer_of = layers(&lib_rs);
    let declared = declared(&lib_rs);
    let listed: BTreeSet<String> = layer_of.keys().cloned().collect();
    assert_eq!(
        declared, listed,
        "src/lib.rs: every `pub mod` is in the layer table, and only those"
    );

    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut wrong = Vec::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let own = layer_of[&module];
        let source = std::fs::read_to_string(file).expect("read a source file");
        for imported in imports(&source) {
            if imported == module || imported == "self" || imported == "super" {
                continue;
            }
            let Some(&theirs) = layer_of.get(&imported) else {
                wrong.push(format!(
                    "{}: crate::{imported} is no module",
                    file.display()
                ));
                continue;
            };
            if theirs >= own {
                wrong.push(format!(
                    "{}: {module} (layer {own}) imports {imported} (layer {theirs})",
                    file.strip_prefix(root).unwrap_or(file).display()
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers of src/lib.rs:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_check_sees_imports_in_every_form_it_must() {
    let source = "use crate::config::Settings;\n\
                  use crate::{demo, store::{x, y},\n    tables};\n\
                  // crate::cli in a comment is no import\n\
                  let m = crate::metrics::Metrics::new();\n";
    let got: Vec<String> = imports(source).into_iter().collect();
    assert_eq!(got, ["config", "demo", "metrics", "store", "tables"]);
    let lib = "//! | 2 | `metrics`, `retry` | x |\n//! | 0 | `text` | y |\npub mod text;\n";
    assert_eq!(layers(lib)["retry"], 2);
    assert_eq!(layers(lib)["text"], 0);
    assert_eq!(declared(lib), BTreeSet::from(["text".to_string()]));
}
