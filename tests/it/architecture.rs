//! The shape the code promises in ARCHITECTURE.md: imports between top-level modules run one
//! way (no cycles; nothing imports `cmd`; only `main` and `cmd` import `cli`); no source file
//! holds more than 500 lines of non-test code, and no function is over 80 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use crate::support::repo;

/// Every `.rs` file below `dir`, as (path relative to `src/`, text).
fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(repo().join("src")).unwrap();
            out.push((
                rel.display().to_string(),
                fs::read_to_string(&path).unwrap(),
            ));
        }
    }
}

/// The code before the first `#[cfg(test)]` (test modules sit at the end of a file).
fn non_test(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or(text)
}

/// Top-level modules named after `crate::` in `code`, including `crate::{a, b::c}` groups.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
    }
    out
}

fn module_of(rel: &str) -> String {
    rel.split('/')
        .next()
        .unwrap()
        .trim_end_matches(".rs")
        .to_string()
}

#[test]
fn imports_between_modules_have_no_cycles() {
    let mut files = Vec::new();
    sources(&repo().join("src"), &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in &files {
        let from = module_of(rel);
        if from == "main" || from == "lib" {
            continue;
        }
        // Doc links (`[`crate::bundle::plan`]`) are not imports.
        let code: String = non_test(text)
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for to in crate_refs(&code) {
            if to != from {
                graph.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    assert!(
        graph.len() >= 10,
        "the scan found too few modules: {graph:?}"
    );
    // Depth-first search for a back edge.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}\n{graph:#?}", cycle.join(" -> "));
        }
    }
    // The command layer is on top: nothing imports it; and only it knows the CLI's types
    // (the library takes its own request types, which `cmd` fills).
    for (from, to) in &graph {
        assert!(!to.contains("cmd"), "`{from}` imports `cmd`");
        assert!(
            from == "cmd" || !to.contains("cli"),
            "`{from}` imports `cli`: only `main` and `cmd` may"
        );
    }
}

/// `code` with comments, string literals and character literals blanked (roughly: enough
/// that braces and blank lines count as the compiler sees them).
fn code_only(code: &str) -> String {
    let (mut out, mut chars) = (String::with_capacity(code.len()), code.chars().peekable());
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                while chars.peek().is_some_and(|&n| n != '\n') {
                    chars.next();
                }
            }
            '"' => {
                out.push('"');
                while let Some(n) = chars.next() {
                    match n {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        '\n' => out.push('\n'),
                        _ => {}
                    }
                }
                out.push('"');
            }
            // A character literal ('{', '\'') but not a lifetime ('a).
            '\'' if code_char_literal(&mut chars) => out.push_str("' '"),
            _ => out.push(c),
        }
    }
    out
}

/// After a `'`: consume a character literal's rest and say so, or leave a lifetime alone.
fn code_char_literal(chars: &mut std::iter::Peekable<std::str::Chars>) -> bool {
    let mut ahead = chars.clone();
    let literal = match ahead.next() {
        Some('\\') => {
            ahead.next();
            ahead.find(|&c| c == '\'').is_some()
        }
        Some(_) => ahead.next() == Some('\''),
        None => false,
    };
    if literal {
        *chars = ahead;
    }
    literal
}

/// Names (a file, a function) with a size in lines.
type Sizes = Vec<(String, usize)>;

/// Each non-test file's code lines (neither blank nor comment), and each function's length
/// in lines from its `fn` to its closing brace.
fn measured() -> (Sizes, Sizes) {
    let (mut files, mut fns) = (Vec::new(), Vec::new());
    let mut sources_found = Vec::new();
    sources(&repo().join("src"), &mut sources_found);
    for (rel, text) in sources_found
        .iter()
        .filter(|(rel, _)| !rel.ends_with("tests.rs"))
    {
        let code = code_only(non_test(text));
        let lines: Vec<&str> = code.lines().collect();
        files.push((
            rel.clone(),
            lines.iter().filter(|l| !l.trim().is_empty()).count(),
        ));
        for (i, line) in lines.iter().enumerate() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let Some(at) = words.iter().position(|w| *w == "fn") else {
                continue;
            };
            let before_ok = words[..at]
                .iter()
                .all(|w| w.starts_with("pub") || ["const", "async", "unsafe"].contains(w));
            if !before_ok {
                continue;
            }
            let mut depth = 0i64;
            for (j, body) in lines.iter().enumerate().skip(i) {
                depth += body.matches('{').count() as i64 - body.matches('}').count() as i64;
                if depth <= 0 && (body.contains('}') || body.trim_end().ends_with(';')) {
                    let name: String = words[at + 1]
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    fns.push((format!("{rel}:{} {name}", i + 1), j - i + 1));
                    break;
                }
            }
        }
    }
    (files, fns)
}

#[test]
fn no_file_over_500_code_lines_and_no_function_over_80_lines() {
    let (files, fns) = measured();
    let big: Vec<String> = files
        .iter()
        .filter(|(_, n)| *n > 500)
        .map(|(rel, n)| format!("{rel}: {n}"))
        .collect();
    assert!(big.is_empty(), "split by idea: {big:?}");
    let long: Vec<String> = fns
        .iter()
        .filter(|(_, n)| *n > 80)
        .map(|(f, n)| format!("{f}: {n} lines"))
        .collect();
    assert!(long.is_empty(), "cut along its phases: {long:?}");
    assert!(
        fns.len() > 500,
        "the function count looks wrong: {}",
        fns.len()
    );
}

/// One module convention: a module with submodules is a folder with `mod.rs`, never `x.rs`
/// beside `x/`.
#[test]
fn folder_modules_use_mod_rs() {
    let mut files = Vec::new();
    sources(&repo().join("src"), &mut files);
    let mixed: Vec<&String> = files
        .iter()
        .map(|(rel, _)| rel)
        .filter(|rel| {
            let stem = rel.trim_end_matches(".rs");
            !rel.ends_with("mod.rs") && repo().join("src").join(stem).is_dir()
        })
        .collect();
    assert!(mixed.is_empty(), "use x/mod.rs instead of x.rs: {mixed:?}");
}
