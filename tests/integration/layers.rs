//! The layer map of docs/architecture.md, checked against the source: which top-level module may
//! name which, and no dependency cycle between the files of one module. Reads `src/` as text
//! (comments skipped), so a new `use crate::...` that breaks the map fails here with the path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each module directory under src/ and the modules it may name (docs/architecture.md).
const ALLOWED: &[(&str, &[&str])] = &[
    ("engine", &[]),
    ("auth", &[]),
    ("capture", &[]),
    ("explain", &[]),
    ("contract", &["engine"]),
    ("monitoring", &["auth", "capture", "engine"]),
    (
        "repository",
        &["capture", "contract", "engine", "explain", "monitoring"],
    ),
    (
        "inference",
        &[
            "auth",
            "capture",
            "contract",
            "engine",
            "explain",
            "monitoring",
            "repository",
        ],
    ),
    (
        "api",
        &[
            "auth",
            "capture",
            "contract",
            "engine",
            "inference",
            "monitoring",
            "repository",
        ],
    ),
];

/// Every name a `crate::` path can start with (module directories and top-level files).
const TOP: &[&str] = &[
    "api",
    "auth",
    "capture",
    "cli",
    "config",
    "contract",
    "engine",
    "explain",
    "inference",
    "listener",
    "memory",
    "monitoring",
    "repository",
    "server",
    "telemetry",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its comment lines.
fn code(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Identifiers that follow `prefix` in `text` (`crate::` -> `repository`, ...).
fn after(text: &str, prefix: &str) -> BTreeSet<String> {
    text.match_indices(prefix)
        .filter(|(i, _)| {
            // `super::super::x` must not also count as `super::x`.
            !text[..*i].ends_with("super::")
        })
        .map(|(i, _)| {
            text[i + prefix.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|s| !s.is_empty())
        .collect()
}

#[test]
fn modules_name_only_the_layers_below_them() {
    let mut broken = Vec::new();
    for (module, allowed) in ALLOWED {
        let mut files = Vec::new();
        rust_files(&src().join(module), &mut files);
        assert!(!files.is_empty(), "src/{module} has no files");
        for file in files {
            for used in after(&code(&file), "crate::") {
                let is_module = TOP.contains(&used.as_str());
                if is_module && used != *module && !allowed.contains(&used.as_str()) {
                    broken.push(format!("{} names crate::{used}", file.display()));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "layer map broken:\n{}",
        broken.join("\n")
    );
}

/// The first-level submodule a file belongs to (`src/engine/ml/tree.rs` -> `ml`).
fn submodule(module_dir: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(module_dir).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.trim_end_matches(".rs").to_string();
    (name != "mod").then_some(name)
}

/// Dependencies between the first-level files of `module`.
fn file_graph(module: &str) -> BTreeMap<String, BTreeSet<String>> {
    let dir = src().join(module);
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    let names: BTreeSet<String> = files.iter().filter_map(|f| submodule(&dir, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(from) = submodule(&dir, file) else {
            continue;
        };
        let depth = file.strip_prefix(&dir).unwrap().components().count();
        let nested = (depth > 1 && !file.ends_with("mod.rs")) || depth > 2;
        let text = code(file);
        let mut used = after(&text, &format!("crate::{module}::"));
        let sibling = if nested { "super::super::" } else { "super::" };
        used.extend(after(&text, sibling));
        let entry = graph.entry(from.clone()).or_default();
        entry.extend(used.into_iter().filter(|u| *u != from && names.contains(u)));
    }
    graph
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
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
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_depends_on_itself_through_its_files() {
    for (module, _) in ALLOWED {
        let graph = file_graph(module);
        if let Some(cycle) = find_cycle(&graph) {
            panic!(
                "src/{module}: files depend on each other: {}",
                cycle.join(" -> ")
            );
        }
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(find_cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
    let mut acyclic = graph.clone();
    acyclic.get_mut("c").unwrap().clear();
    assert_eq!(find_cycle(&acyclic), None);
}
