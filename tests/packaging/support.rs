//! What tests/packaging.rs needs beside the gateway harness: finding the external
//! validators, reading the Dockerfile and .dockerignore, and pulling metric and label
//! names out of PromQL and the Prometheus text format.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative))
        .unwrap_or_else(|e| panic!("read {relative}: {e}"))
}

/// An external validator: in `$PORTCULLIS_PACKAGING_TOOLS`, in the venv `.ci/run` makes
/// (target/packaging-tools/bin), or on PATH. `None` (and a printed note) when it is
/// missing and `PORTCULLIS_TEST_PACKAGING` is unset; CI sets it, so CI never skips.
pub fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::var_os("PORTCULLIS_PACKAGING_TOOLS")
        .map(PathBuf::from)
        .into_iter()
        .chain([root().join("target/packaging-tools/bin")])
        .chain(std::env::split_paths(&path));
    let found = dirs.map(|d| d.join(name)).find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("PORTCULLIS_TEST_PACKAGING").is_none(),
            "{name} is missing but PORTCULLIS_TEST_PACKAGING is set: .ci/run installs it"
        );
        println!("skipped: {name} not found (.ci/run installs it; set PORTCULLIS_TEST_PACKAGING to require it)");
    }
    found
}

/// Runs `program args`; panics with its output unless it exits 0.
pub fn must_pass(program: &Path, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{} {args:?} failed:\n{text}",
        program.display()
    );
    text
}

/// One `COPY` of the Dockerfile: its stage, whether it copies from another stage, sources, destination.
#[derive(Debug)]
pub struct Copy {
    pub stage: usize,
    pub from_stage: bool,
    pub sources: Vec<String>,
    pub dest: String,
}

/// The Dockerfile's instructions with continuation lines joined and comments dropped.
pub fn instructions(dockerfile: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current).trim().to_owned());
            }
        }
    }
    out
}

pub fn copies(dockerfile: &str) -> Vec<Copy> {
    let mut stage = 0;
    let mut copies = Vec::new();
    for instruction in instructions(dockerfile) {
        let mut words = instruction.split_whitespace();
        match words.next().map(str::to_ascii_uppercase).as_deref() {
            Some("FROM") => stage += 1,
            Some("COPY") => {
                let mut args: Vec<String> = words.map(str::to_owned).collect();
                let from_stage = args.iter().any(|a| a.starts_with("--from="));
                args.retain(|a| !a.starts_with("--"));
                let dest = args.pop().expect("COPY names a destination");
                copies.push(Copy {
                    stage,
                    from_stage,
                    sources: args,
                    dest,
                });
            }
            _ => {}
        }
    }
    copies
}

/// `.dockerignore`'s patterns (plain paths, or `**/` + a file name pattern `*.ext` / `.name`).
pub fn ignored(patterns: &[String], path: &str) -> bool {
    patterns.iter().any(|p| match p.strip_prefix("**/") {
        Some(name) => path.split('/').any(|part| match name.strip_prefix('*') {
            Some(ext) => part.ends_with(ext),
            None => part == name,
        }),
        None => path == p || path.starts_with(&format!("{p}/")),
    })
}

pub fn dockerignore() -> Vec<String> {
    read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/').to_owned())
        .collect()
}

/// Copies `from` (a file or a directory) to `to`, leaving out what `.dockerignore` excludes.
pub fn copy_tree(from: &Path, to: &Path, relative: &str, patterns: &[String]) {
    if ignored(patterns, relative) {
        return;
    }
    if from.is_dir() {
        std::fs::create_dir_all(to).expect("create dir");
        for entry in std::fs::read_dir(from).expect("read dir").flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            copy_tree(
                &entry.path(),
                &to.join(&name),
                &format!("{relative}/{name}"),
                patterns,
            );
        }
    } else {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).expect("create dir");
        }
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {relative}: {e}"));
    }
}

/// Every `portcullis_*` name in a PromQL expression.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("portcullis_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        names.insert(name);
    }
    names
}

/// Label names an expression relies on: in `{...}` matchers and `by (...)` / `on (...)` lists.
pub fn label_names(expr: &str) -> BTreeSet<String> {
    let mut labels = BTreeSet::new();
    let mut rest = expr;
    while let Some(open) = rest.find(['{', '(']) {
        let keyword = rest[..open].trim_end();
        let close = if rest.as_bytes()[open] == b'{' {
            '}'
        } else {
            ')'
        };
        let Some(len) = rest[open..].find(close) else {
            break;
        };
        let inside = &rest[open + 1..open + len];
        let grouping = ["by", "on", "without", "ignoring"]
            .iter()
            .any(|k| keyword.ends_with(k));
        if close == '}' {
            for matcher in inside.split(',') {
                let name = matcher.split(['=', '!']).next().unwrap_or("").trim();
                if !name.is_empty() {
                    labels.insert(name.to_owned());
                }
            }
        } else if grouping {
            labels.extend(inside.split(',').map(|l| l.trim().to_owned()));
        }
        rest = &rest[open + 1..];
    }
    labels
}

/// The Prometheus text exposition: each sample name with the label names it carries.
pub fn exported(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = series.entry(line[..end].to_owned()).or_default();
        if let Some(inside) = line[end..]
            .strip_prefix('{')
            .and_then(|l| l.split_once('}'))
        {
            labels.extend(
                inside
                    .0
                    .split("\",")
                    .filter_map(|pair| pair.split_once('='))
                    .map(|(k, _)| k.trim().to_owned()),
            );
        }
    }
    series
}

#[test]
fn promql_names_and_labels_are_found() {
    let expr = r#"sum by (job, le) (rate(portcullis_request_duration_seconds_bucket{status=~"5..", job!="x"}[5m])) / on(job) portcullis_ready"#;
    assert_eq!(
        metric_names(expr).into_iter().collect::<Vec<_>>(),
        [
            "portcullis_ready",
            "portcullis_request_duration_seconds_bucket"
        ]
    );
    assert_eq!(
        label_names(expr).into_iter().collect::<Vec<_>>(),
        ["job", "le", "status"]
    );
    let scraped = exported(
        "# TYPE x counter\nportcullis_logins_total{result=\"a,b\",x=\"1\"} 3\nportcullis_ready 1\n",
    );
    assert_eq!(
        scraped["portcullis_logins_total"]
            .iter()
            .collect::<Vec<_>>(),
        ["result", "x"]
    );
    assert!(scraped["portcullis_ready"].is_empty());
}
