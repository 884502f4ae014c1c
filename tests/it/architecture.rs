//! The shape of the shared crate, read from its sources: no circle among its
//! modules, and no domain folder (`tasks`, `orchestrator`, `reviews`) reaching
//! into another's submodules: other domains import what a folder's `mod.rs`
//! re-exports, nothing else.
//!
//! Edges are the `use` and path references to `crate::…` and `super::…` items
//! (a re-exported item counts as the module that defines it), plus each
//! `pub use` of a module; comments and `#[cfg(test)]` code are not counted.

use regex::Regex;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const DOMAINS: [&str; 3] = ["tasks", "orchestrator", "reviews"];

/// Module path (`tasks::store`, `` for the crate root) → its code without comments and tests.
fn modules(root: &Path) -> BTreeMap<String, String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root).unwrap().with_extension("");
                let mut parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
                    parts.pop();
                }
                let text = std::fs::read_to_string(&path).unwrap();
                let text = text.split("#[cfg(test)]").next().unwrap();
                let code: Vec<&str> = text
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .collect();
                out.insert(parts.join("::"), code.join("\n"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// `a, b::{c, d}, e as f` → `["a", "b::{c, d}", "e as f"]`.
fn split_top(inner: &str) -> Vec<String> {
    let (mut depth, mut current, mut items) = (0, String::new(), Vec::new());
    for ch in inner.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(ch);
    }
    items.push(current);
    items
        .into_iter()
        .map(|i| i.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|i| !i.is_empty())
        .collect()
}

/// Every path a reference names: `crate::a::{b, c::D}` → `a::b`, `a::c::D`.
fn paths(prefix: &str, tail: &str) -> Vec<String> {
    match tail.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        Some(inner) => split_top(inner)
            .iter()
            .flat_map(|item| {
                let item = item.split(" as ").next().unwrap().replace(' ', "");
                match item.find('{') {
                    Some(at) => paths(&format!("{prefix}{}", &item[..at]), &item[at..]),
                    None => vec![format!("{prefix}{item}")],
                }
            })
            .collect(),
        None => vec![format!("{prefix}{tail}")],
    }
}

struct Graph {
    mods: BTreeMap<String, String>,
    /// Per module, the names it re-exports and the module each comes from.
    reexports: BTreeMap<String, BTreeMap<String, String>>,
}

impl Graph {
    fn new(mods: BTreeMap<String, String>) -> Self {
        let re =
            Regex::new(r"pub use (self::|super::|crate::)?([\w:]*?)(\{[^;]*\}|\w+(?: as \w+)?);")
                .unwrap();
        let mut reexports = BTreeMap::new();
        for (module, code) in &mods {
            let mut names = BTreeMap::new();
            for c in re.captures_iter(code) {
                let base = match c.get(1).map(|m| m.as_str()) {
                    None | Some("self::") => module.clone(),
                    Some("super::") => parent(module),
                    _ => String::new(),
                };
                for path in paths(&c[2], &c[3]) {
                    let (target, alias) = match path.split_once(" as ") {
                        Some((t, a)) => (t.to_string(), a.to_string()),
                        None => (path.clone(), path.rsplit("::").next().unwrap().to_string()),
                    };
                    let segments: Vec<&str> = target.split("::").collect();
                    let defining = join(&base, &segments[..segments.len() - 1].join("::"));
                    if mods.contains_key(&defining) {
                        names.insert(alias, defining);
                    }
                }
            }
            reexports.insert(module.clone(), names);
        }
        Self { mods, reexports }
    }

    /// The module that defines what `path` names (the longest module prefix, through re-exports).
    fn resolve(&self, path: &str) -> Option<String> {
        let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        for len in (0..=segments.len()).rev() {
            let candidate = segments[..len].join("::");
            if self.mods.contains_key(&candidate) {
                if let Some(next) = segments.get(len)
                    && let Some(defining) = self.reexports[&candidate].get(*next)
                {
                    return Some(defining.clone());
                }
                return (len > 0).then_some(candidate);
            }
        }
        None
    }

    fn edges(&self) -> BTreeMap<String, BTreeSet<String>> {
        let re = Regex::new(r"\b(crate|super)::((?:\w+::)*)(\{[^;]*?\}|\w+)").unwrap();
        let mut edges = BTreeMap::new();
        for (module, code) in &self.mods {
            let mut deps: BTreeSet<String> = self.reexports[module].values().cloned().collect();
            for c in re.captures_iter(code) {
                let base = if &c[1] == "super" {
                    parent(module)
                } else {
                    String::new()
                };
                for path in paths(&c[2], &c[3]) {
                    let path = path.split(" as ").next().unwrap().to_string();
                    if let Some(target) = self.resolve(&join(&base, &path)) {
                        deps.insert(target);
                    }
                }
            }
            deps.remove(module);
            edges.insert(module.clone(), deps);
        }
        edges
    }
}

fn parent(module: &str) -> String {
    module
        .rsplit_once("::")
        .map_or(String::new(), |(p, _)| p.to_string())
}

fn join(base: &str, path: &str) -> String {
    match (base.is_empty(), path.is_empty()) {
        (true, _) => path.to_string(),
        (_, true) => base.to_string(),
        _ => format!("{base}::{path}"),
    }
}

/// The modules on a circle, if any (depth-first search for a back edge).
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            return Some(path[at..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|n| visit(n, edges, &mut done, &mut Vec::new()))
}

fn shared_graph() -> Graph {
    Graph::new(modules(
        &neuraforge_tests::workspace_root().join("shared/src"),
    ))
}

#[test]
fn no_module_of_the_shared_crate_imports_itself_round_a_circle() {
    let edges = shared_graph().edges();
    assert!(
        edges["tasks::status"].contains("tasks::runs") && edges["http"].contains("audit"),
        "the reader sees the imports it is meant to see: {:?}",
        edges["tasks::status"]
    );
    assert_eq!(find_cycle(&edges), None);
}

#[test]
fn a_domain_folder_uses_only_what_another_re_exports() {
    let graph = shared_graph();
    let mut reaching = Vec::new();
    for (module, deps) in graph.edges() {
        let Some(domain) = DOMAINS
            .iter()
            .find(|d| module.split("::").next() == Some(**d))
        else {
            continue;
        };
        for dep in deps {
            let top = dep.split("::").next().unwrap();
            if DOMAINS.contains(&top) && top != *domain {
                // Through the facade is fine; naming the submodule is not.
                let code = &graph.mods[&module];
                let named = Regex::new(&format!(r"crate::{top}::(\w+)::")).unwrap();
                for c in named.captures_iter(code) {
                    if graph.mods.contains_key(&format!("{top}::{}", &c[1])) {
                        reaching.push(format!("{module} names {}", &c[0]));
                    }
                }
                let braced = Regex::new(&format!(r"crate::{top}::\{{[^;]*?\b(\w+)::")).unwrap();
                for c in braced.captures_iter(code) {
                    if graph.mods.contains_key(&format!("{top}::{}", &c[1])) {
                        reaching.push(format!("{module} names {top}::{}::", &c[1]));
                    }
                }
            }
        }
    }
    reaching.sort();
    reaching.dedup();
    assert_eq!(reaching, Vec::<String>::new());
}

#[test]
fn no_line_of_the_shared_crate_is_wider_than_rustfmt_keeps_code() {
    // rustfmt wraps code at 100 columns but leaves macro bodies (`json!`, `metrics::counter!`)
    // and strings alone: those are wrapped by hand.
    let root = neuraforge_tests::workspace_root().join("shared/src");
    let mut wide = Vec::new();
    fn walk(dir: &Path, wide: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, wide);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for (i, line) in text.lines().enumerate() {
                    if line.chars().count() > 120 {
                        wide.push(format!("{}:{}", path.display(), i + 1));
                    }
                }
            }
        }
    }
    walk(&root, &mut wide);
    assert_eq!(wide, Vec::<String>::new());
}

#[test]
fn the_checks_find_a_circle_and_a_reach_when_there_is_one() {
    // The same reader on a crate made up here: it must see what the real crate avoids.
    let mods = BTreeMap::from([
        (String::new(), "pub mod a; pub mod b;".to_string()),
        (
            "a".to_string(),
            "pub mod inner;\npub use inner::Thing;".to_string(),
        ),
        ("a::inner".to_string(), "use crate::b::Other;".to_string()),
        (
            "b".to_string(),
            "use crate::a::{Thing, inner::Hidden};\npub struct Other;".to_string(),
        ),
    ]);
    let graph = Graph::new(mods);
    let edges = graph.edges();
    assert_eq!(graph.resolve("a::Thing").as_deref(), Some("a::inner"));
    let cycle = find_cycle(&edges).expect("a → inner → b → inner is a circle");
    assert!(cycle.contains(&"a::inner".to_string()) && cycle.contains(&"b".to_string()));
}
