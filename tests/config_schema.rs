//! `portcullis schema` and the config files around it: the schema it prints is the
//! committed `gateway.schema.json` that editors read; every config the repository ships and
//! every gateway.yaml example in the docs passes it under a real validator (check-jsonschema,
//! which `.ci/run` installs), which does refuse a misspelt key; every key the schema lists is
//! one `check` accepts, and an unknown one is refused in every section; and `check` reports a
//! misspelt section once, with its hint. (The loader reading exactly the keys the schema
//! lists is held by a unit test, `config::tests`, which sees what the readers ask for.)

mod common;
#[allow(dead_code)] // packaging.rs uses the rest
#[path = "packaging/support.rs"]
mod support;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use support::{must_pass, read, root, tool};
use yaml_rust2::YamlLoader;

const REGENERATE: &str = "cargo run -- schema > gateway.schema.json";

fn schema_text() -> String {
    let (code, stdout, stderr) = portcullis(&["schema"], &[]);
    assert_eq!(code, 0, "{stderr}");
    stdout
}

fn schema() -> Value {
    serde_json::from_str(&schema_text()).expect("schema prints JSON")
}

#[test]
fn the_printed_schema_is_the_committed_one_editors_read() {
    let printed = schema_text();
    assert!(
        printed == read("gateway.schema.json"),
        "gateway.schema.json is out of date: run `{REGENERATE}`"
    );
    let schema = schema();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["additionalProperties"], false);
    let first = read("gateway.yaml").lines().next().unwrap_or("").to_owned();
    assert_eq!(first, "# yaml-language-server: $schema=gateway.schema.json");
}

/// Every file under `dir` (recursively) that `wanted` picks.
fn files(dir: &Path, wanted: &dyn Fn(&Path) -> bool, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, wanted, found);
        } else if wanted(&path) {
            found.push(path);
        }
    }
}

fn named(dir: &Path, name: &str, found: &mut Vec<PathBuf>) {
    files(dir, &|p| p.file_name().is_some_and(|n| n == name), found);
}

fn with_extension(dir: &Path, ext: &str, found: &mut Vec<PathBuf>) {
    files(dir, &|p| p.extension().is_some_and(|e| e == ext), found);
}

/// The ```yaml blocks of a Markdown file that are gateway.yaml examples: those with a
/// top-level key of the schema (Kubernetes or Prometheus snippets have none).
fn examples(markdown: &str, top_keys: &[String]) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut rest = markdown;
    while let Some(start) = rest.find("```yaml\n") {
        let body = &rest[start + 8..];
        let end = body.find("```").expect("a closed code block");
        let block = &body[..end];
        let is_gateway = block.lines().any(|l| {
            let name = l.split(':').next().unwrap_or("");
            l.contains(':') && top_keys.iter().any(|k| k == name)
        });
        if is_gateway {
            blocks.push(block.to_owned());
        }
        rest = &body[end + 3..];
    }
    blocks
}

/// `schema` with no key required anywhere, for examples that show a part of a file.
fn without_required(schema: &mut Value) {
    match schema {
        Value::Object(o) => {
            o.remove("required");
            o.values_mut().for_each(without_required);
        }
        Value::Array(items) => items.iter_mut().for_each(without_required),
        _ => {}
    }
}

#[test]
fn every_shipped_config_and_docs_example_passes_the_schema_and_a_misspelt_key_does_not() {
    let dir = fresh_temp_dir();
    let schema = schema();
    let schema_file = write_file(&dir, "schema.json", &schema.to_string());
    let mut fragment = schema.clone();
    without_required(&mut fragment);
    let fragment_file = write_file(&dir, "fragment.json", &fragment.to_string());

    let mut configs = vec![root().join("gateway.yaml")];
    let mut bench: Vec<PathBuf> = std::fs::read_dir(root().join("bench"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    bench.sort();
    configs.extend(bench);
    named(&root().join("deploy"), "gateway.yaml", &mut configs);
    let configmap = YamlLoader::load_from_str(&read("deploy/kubernetes/configmap.yaml")).unwrap();
    let in_configmap = configmap[0]["data"]["gateway.yaml"]
        .as_str()
        .expect("the ConfigMap holds gateway.yaml");
    configs.push(write_file(&dir, "configmap-gateway.yaml", in_configmap));
    assert!(configs.len() >= 7, "{configs:?}");

    let top_keys: Vec<String> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let mut docs = vec![root().join("README.md")];
    if root().join("docs").is_dir() {
        let mut markdown = Vec::new();
        with_extension(&root().join("docs"), "md", &mut markdown);
        markdown.sort();
        docs.extend(markdown);
    }
    let mut snippets = Vec::new();
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        let stem = doc.file_stem().unwrap().to_string_lossy().into_owned();
        for block in examples(&text, &top_keys) {
            // Named after the document, so a failure says where the example is.
            let name = format!("{stem}-example-{}.yaml", snippets.len());
            snippets.push(write_file(&dir, &name, &block));
        }
    }
    assert!(!snippets.is_empty(), "no gateway.yaml example in {docs:?}");

    let misspelt = read("gateway.yaml").replace("\nupstreams:", "\nupstream:");
    let misspelt = write_file(&dir, "misspelt.yaml", &misspelt);

    let Some(validator) = tool("check-jsonschema") else {
        return;
    };
    let with = |schema: &Path, files: &[PathBuf]| {
        let mut args = vec!["--schemafile".to_owned(), path_str(schema)];
        args.extend(files.iter().map(|f| path_str(f)));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        must_pass(&validator, &args);
    };
    with(&schema_file, &configs);
    with(&fragment_file, &snippets);
    let out = std::process::Command::new(&validator)
        .arg("--schemafile")
        .arg(&schema_file)
        .arg(&misspelt)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success() && said.contains("upstream"),
        "check-jsonschema accepted `upstream:` for `upstreams:`:\n{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("a UTF-8 path").to_owned()
}

/// A file with every key of the schema (values of roughly the right type, not necessarily
/// valid) and `zz_unknown` beside them in every section; returns the loader's paths of the
/// `zz_unknown`s.
fn every_key(schema: &Value, indent: usize, path: &str, out: &mut String) -> Vec<String> {
    let pad = " ".repeat(indent);
    let child = |key: &str| match path {
        "" => key.to_owned(),
        _ => format!("{path}.{key}"),
    };
    let mut unknown = vec![child("zz_unknown")];
    out.push_str(&format!("{pad}zz_unknown: 1\n"));
    for (key, value) in schema["properties"].as_object().unwrap() {
        out.push_str(&format!("{pad}{key}:"));
        unknown.extend(value_of(value, indent, &child(key), out));
    }
    unknown
}

fn value_of(schema: &Value, indent: usize, path: &str, out: &mut String) -> Vec<String> {
    let pad = " ".repeat(indent + 2);
    if let Some(options) = schema["anyOf"].as_array() {
        let pick = options.iter().find(|o| o["properties"].is_object());
        return value_of(pick.unwrap_or(&options[0]), indent, path, out);
    }
    if schema["properties"].is_object() {
        out.push('\n');
        return every_key(schema, indent + 2, path, out);
    }
    if schema["additionalProperties"].is_object() {
        out.push_str(&format!("\n{pad}sample:\n"));
        let named = format!("{path}.sample");
        return every_key(&schema["additionalProperties"], indent + 4, &named, out);
    }
    let items = &schema["items"];
    if items["properties"].is_object() {
        out.push_str(&format!("\n{pad}-\n"));
        return every_key(items, indent + 4, &format!("{path}[0]"), out);
    }
    let scalar = |s: &Value| match s["enum"].as_array() {
        Some(values) => values[0].to_string(),
        None if s["type"] == "boolean" || s["type"][0] == "boolean" => "true".to_owned(),
        None => "\"1s\"".to_owned(),
    };
    match items.is_object() {
        true => out.push_str(&format!(" [{}]\n", scalar(items))),
        false => out.push_str(&format!(" {}\n", scalar(schema))),
    }
    Vec::new()
}

#[test]
fn every_key_in_the_schema_is_accepted_by_check_and_an_unknown_one_refused_in_every_section() {
    let mut text = String::new();
    let mut expected = every_key(&schema(), 0, "", &mut text);
    expected.sort();
    let dir = fresh_temp_dir();
    let path = write_file(&dir, "gateway.yaml", &text);
    let (code, _, stderr) = portcullis(&["check", "-c", &path_str(&path)], &[]);
    assert_eq!(code, 2, "{stderr}");
    let mut refused: Vec<String> = stderr
        .lines()
        .filter(|l| l.contains(": unknown key"))
        .filter_map(|l| l.split(": ").nth(1).map(str::to_owned))
        .collect();
    refused.sort();
    assert_eq!(refused, expected, "in:\n{text}\nall errors:\n{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_reports_a_misspelt_section_once_with_its_hint_and_not_the_references_to_it() {
    let text = read("gateway.yaml");
    let line = text
        .lines()
        .position(|l| l.starts_with("upstreams:"))
        .expect("gateway.yaml declares upstreams")
        + 1;
    let dir = fresh_temp_dir();
    let path = write_file(
        &dir,
        "gateway.yaml",
        &text.replace("\nupstreams:", "\nupstream:"),
    );
    let path = path_str(&path);
    let (code, stdout, stderr) = portcullis(&["check", "-c", &path], &[]);
    assert_eq!((code, stdout.as_str()), (2, ""), "{stderr}");
    let hint = format!(
        "{path}:{line}:1: upstream: unknown key; did you mean `upstreams`? (allowed: listen, admin_listen, "
    );
    assert!(
        stderr.starts_with(&hint) && stderr.lines().count() == 1,
        "expected one line starting {hint:?}, got:\n{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
