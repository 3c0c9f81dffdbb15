//! The architecture test: the layer table at the top of `HACKING.md` is the truth about
//! `src/`. Every file is listed, every listed file exists, no file imports (`crate::…`,
//! `super::…`) a file of a higher layer or a top-level module its row does not list,
//! and the top-level modules import each other in no cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One row of the table: the file's layer and the top-level modules it may call.
struct Row {
    layer: u32,
    calls: BTreeSet<String>,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The file table of `HACKING.md`: rows `| layer | `path` | owns | may call |`.
fn table() -> BTreeMap<String, Row> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../HACKING.md");
    let text = std::fs::read_to_string(&path).expect("HACKING.md is readable");
    let mut rows = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        if cells.len() != 4 {
            continue;
        }
        let (Ok(layer), Some(file)) = (
            cells[0].parse::<u32>(),
            cells[1].strip_prefix('`').and_then(|c| c.strip_suffix('`')),
        ) else {
            continue;
        };
        if !file.ends_with(".rs") {
            continue;
        }
        let calls = if cells[3] == "nothing" {
            BTreeSet::new()
        } else {
            cells[3]
                .split(',')
                .map(|c| c.trim().trim_matches('`').to_owned())
                .collect()
        };
        let old = rows.insert(file.to_owned(), Row { layer, calls });
        assert!(old.is_none(), "HACKING.md lists {file} twice");
    }
    assert!(!rows.is_empty(), "HACKING.md has no layer table");
    rows
}

/// Every `.rs` file under `dir`, relative to `src/`.
fn sources(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let p = entry.expect("a directory entry").path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p.strip_prefix(src_dir()).expect("under src/");
            out.push(rel.to_string_lossy().into_owned());
        }
    }
}

/// `src` with comments, string and character literals blanked out, and with the
/// bodies of test modules (`#[cfg(test)]`, `#[cfg(all(test, ...))]`) removed.
fn code_of(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !ident_before(&b, i) {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                i += if b[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && (next == Some('\\') || b.get(i + 2) == Some(&'\'')) {
            // A character literal (not a lifetime).
            i += 1;
            while i < b.len() && b[i] != '\'' {
                i += if b[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    strip_test_modules(&out)
}

fn ident_before(b: &[char], i: usize) -> bool {
    i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_')
}

/// Removes `#[cfg(test)] mod x { ... }` and `#[cfg(all(test, ...))] mod x { ... }`.
fn strip_test_modules(code: &str) -> String {
    let mut out = String::new();
    let mut rest = code;
    loop {
        let at = ["#[cfg(test)]", "#[cfg(all(test"]
            .iter()
            .filter_map(|m| rest.find(m))
            .min();
        let Some(at) = at else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let attr_end = after.find(']').map_or(after.len(), |e| e + 1);
        let item = after[attr_end..].trim_start();
        if !(item.starts_with("mod ") || item.starts_with("pub(crate) mod ")) {
            out.push_str(&after[..attr_end]);
            rest = &after[attr_end..];
            continue;
        }
        let Some(open) = after.find('{') else {
            return out;
        };
        let mut depth = 0;
        let mut end = after.len();
        for (k, ch) in after[open..].char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
}

/// The module paths a piece of code names after `crate::` or `super::`, with `{..}`
/// groups expanded: `crate::a::{b, c::d}` gives `a::b` and `a::c::d`. `super::`
/// paths are made absolute from `module`, the file's own module path.
fn imports(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (start, root) in [("crate::", None), ("super::", Some(()))] {
        let mut from = 0;
        while let Some(k) = code[from..].find(start) {
            let at = from + k;
            from = at + start.len();
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let base: Vec<String> = match root {
                None => Vec::new(),
                Some(()) => {
                    // `super::super::x` climbs twice.
                    let mut base = module[..module.len().saturating_sub(1)].to_vec();
                    let mut tail = &code[from..];
                    while let Some(t) = tail.strip_prefix("super::") {
                        base.pop();
                        tail = t;
                        from += "super::".len();
                    }
                    base
                }
            };
            expand(&code[from..], base, &mut out);
        }
    }
    out
}

/// Expands the path tree at the start of `s` (after a `::`) onto `prefix`.
fn expand(s: &str, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let s = s.trim_start();
    if let Some(group) = s.strip_prefix('{') {
        let mut depth = 0;
        let mut item = String::new();
        for ch in group.chars() {
            match ch {
                '{' => {
                    depth += 1;
                    item.push(ch);
                }
                '}' if depth == 0 => {
                    expand(&item, prefix.clone(), out);
                    return;
                }
                '}' => {
                    depth -= 1;
                    item.push(ch);
                }
                ',' if depth == 0 => {
                    expand(&item, prefix.clone(), out);
                    item.clear();
                }
                _ => item.push(ch),
            }
        }
        return;
    }
    let ident: String = s
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if ident.is_empty() || ident == "self" {
        out.push(prefix);
        return;
    }
    let mut path = prefix;
    path.push(ident.clone());
    let rest = &s[ident.len()..];
    match rest.strip_prefix("::") {
        Some(more) => expand(more, path, out),
        None => out.push(path),
    }
}

/// The file a module path lands in: its longest prefix that is a file of `files`.
fn resolve(path: &[String], files: &BTreeSet<String>) -> Option<String> {
    (1..=path.len()).rev().find_map(|k| {
        let p = path[..k].join("/");
        [format!("{p}.rs"), format!("{p}/mod.rs")]
            .into_iter()
            .find(|f| files.contains(f))
    })
}

/// The module path of a file: `sched/core.rs` is `sched::core`, `sched/mod.rs` is
/// `sched`, `lib.rs` is the root.
fn module_of(file: &str) -> Vec<String> {
    let trimmed = file.trim_end_matches(".rs");
    let mut parts: Vec<String> = trimmed.split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The top-level module of a file (`sched/core.rs` → `sched`, `lib.rs` → `lib.rs`).
fn top_of(file: &str) -> String {
    match file.split_once('/') {
        Some((top, _)) => top.to_owned(),
        None if file == "lib.rs" => file.to_owned(),
        None => file.trim_end_matches(".rs").to_owned(),
    }
}

#[test]
fn the_layer_table_matches_the_source_tree() {
    let rows = table();
    let mut files = Vec::new();
    sources(&src_dir(), &mut files);
    let files: BTreeSet<String> = files.into_iter().collect();
    let listed: BTreeSet<String> = rows.keys().cloned().collect();
    let missing: Vec<_> = files.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&files).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "HACKING.md's layer table is out of date: add a row for {missing:?} (layer, what \
         the file owns, what it may call); remove the rows of {stale:?}"
    );
}

#[test]
fn no_file_imports_a_higher_layer_or_an_unlisted_module() {
    let rows = table();
    let files: BTreeSet<String> = rows.keys().cloned().collect();
    let mut errors = Vec::new();
    for (file, row) in &rows {
        let Ok(src) = std::fs::read_to_string(src_dir().join(file)) else {
            continue;
        };
        let module = module_of(file);
        let mine = top_of(file);
        for path in imports(&code_of(&src), &module) {
            let Some(target) = resolve(&path, &files) else {
                continue;
            };
            if &target == file {
                continue;
            }
            let to = &rows[&target];
            let shown = format!("crate::{}", path.join("::"));
            if to.layer > row.layer {
                errors.push(format!(
                    "{file} (layer {}) imports {shown}, in {target} (layer {}): move the code \
                     down, or hand the fact down from above at start",
                    row.layer, to.layer
                ));
            }
            let top = top_of(&target);
            if top != mine && !row.calls.contains(&top) {
                errors.push(format!(
                    "{file} imports {shown} ({top}), which its row in HACKING.md does not list \
                     under \"may call\""
                ));
            }
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn the_top_level_modules_form_no_cycle() {
    let rows = table();
    let files: BTreeSet<String> = rows.keys().cloned().collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let src = std::fs::read_to_string(src_dir().join(file)).expect("a listed file");
        for path in imports(&code_of(&src), &module_of(file)) {
            if let Some(target) = resolve(&path, &files) {
                let (a, b) = (top_of(file), top_of(&target));
                if a != b {
                    edges.entry(a).or_default().insert(b);
                }
            }
        }
    }
    // Depth-first search with colours: grey on the stack, black done.
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        colour: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        colour.insert(n.to_owned(), 1);
        stack.push(n.to_owned());
        for m in edges.get(n).into_iter().flatten() {
            match colour.get(m) {
                Some(1) => {
                    let at = stack.iter().position(|s| s == m).expect("on the stack");
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(m, edges, colour, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        colour.insert(n.to_owned(), 2);
        None
    }
    let mut colour = BTreeMap::new();
    for n in edges.keys() {
        if !colour.contains_key(n) {
            let cycle = visit(n, &edges, &mut colour, &mut Vec::new());
            assert!(
                cycle.is_none(),
                "module cycle: {}",
                cycle.unwrap().join(" → ")
            );
        }
    }
}

#[test]
fn the_checker_sees_imports_through_groups_and_super() {
    let code = code_of(
        "use crate::a::{b, c::{d, e}};\nuse super::f::g; // crate::not_this\nlet s = \"crate::nor_this\";\n#[cfg(test)]\nmod tests { use crate::hidden; }\n",
    );
    let got = imports(&code, &["m".to_owned(), "n".to_owned()]);
    let got: Vec<String> = got.iter().map(|p| p.join("::")).collect();
    assert_eq!(got, ["a::b", "a::c::d", "a::c::e", "m::f::g"]);
}
