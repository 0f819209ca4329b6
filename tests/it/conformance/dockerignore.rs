//! Conformance of the build-context module against the shared `.dockerignore` data
//! (`vectors.tsv`, `ignorefile.json`, `context-walk.json`): one named trial per row/case.

use std::path::{Path, PathBuf};

use crate::cases::{Failed, Trial};
use rbuild::context::{read_ignore_file, BuildContext, ContextEntry, EntryKind};
use serde_json::Value;

const DATA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/conformance/dockerignore");

fn read_data(name: &str) -> String {
    let path = Path::new(DATA_DIR).join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) => {
            panic!("conformance data missing: {}: {err} (testdata/conformance in this repository)", path.display())
        }
    }
}

fn read_json(name: &str) -> Value {
    serde_json::from_str(&read_data(name)).unwrap_or_else(|err| panic!("{name}: bad JSON: {err}"))
}

fn string_list(value: &Value) -> Result<Vec<String>, Failed> {
    value
        .as_array()
        .ok_or_else(|| Failed::from(format!("expected a JSON array, got {value}")))?
        .iter()
        .map(|item| {
            item.as_str().map(str::to_string).ok_or_else(|| Failed::from(format!("expected a string, got {item}")))
        })
        .collect()
}

fn vector_trials() -> Vec<Trial> {
    let text = read_data("vectors.tsv");
    let mut trials = Vec::new();
    for (line_no, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<String> = line.split('\t').map(str::to_string).collect();
        let id = fields.first().cloned().unwrap_or_else(|| format!("line-{}", line_no + 1));
        trials.push(Trial::test(format!("vectors:{id}"), move || {
            let [_, _, patterns, path, expected, ..] = fields.as_slice() else {
                return Err(format!("row has {} fields, want 6", fields.len()).into());
            };
            let patterns: Value = serde_json::from_str(patterns).map_err(|e| e.to_string())?;
            let patterns = string_list(&patterns)?;
            let path: String = serde_json::from_str(path).map_err(|e| e.to_string())?;
            let got = match rbuild::context::PatternMatcher::new(&patterns).and_then(|matcher| matcher.matches(&path)) {
                Ok(m) if m.excluded => "excluded".to_string(),
                Ok(_) => "included".to_string(),
                Err(err) => format!("error ({err})"),
            };
            let got_class = got.split(' ').next().unwrap_or_default();
            if got_class == expected {
                Ok(())
            } else {
                Err(format!("patterns {patterns:?} path {path:?}: want {expected}, got {got}").into())
            }
        }));
    }
    trials
}

fn ignorefile_trials() -> Vec<Trial> {
    let data = read_json("ignorefile.json");
    let cases = data["cases"].as_array().cloned().unwrap_or_default();
    assert!(!cases.is_empty(), "ignorefile.json has no cases");
    cases
        .into_iter()
        .map(|case| {
            let id = case["id"].as_str().unwrap_or("?").to_string();
            Trial::test(format!("ignorefile:{id}"), move || {
                let content = case["content"].as_str().ok_or_else(|| Failed::from("case has no content"))?;
                let expected = string_list(&case["expected"])?;
                let got = read_ignore_file(content);
                if got == expected {
                    Ok(())
                } else {
                    Err(format!("content {content:?}: want {expected:?}, got {got:?}").into())
                }
            })
        })
        .collect()
}

fn build_tree(root: &Path, tree: &Value) -> Result<(), Failed> {
    for item in tree.as_array().ok_or_else(|| Failed::from("tree is not an array"))? {
        let path = item["path"].as_str().ok_or_else(|| Failed::from("tree entry without path"))?;
        let full = root.join(path);
        match item["type"].as_str() {
            Some("dir") => std::fs::create_dir_all(&full).map_err(|e| e.to_string())?,
            Some("file") => {
                if let Some(parent) = full.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                let content = item["content"].as_str().unwrap_or("");
                std::fs::write(&full, content).map_err(|e| e.to_string())?;
            }
            other => return Err(format!("unknown tree entry type {other:?}").into()),
        }
    }
    Ok(())
}

fn describe(entry: &ContextEntry) -> String {
    let kind = match entry.kind {
        EntryKind::Dir => "dir",
        EntryKind::File => "file",
        EntryKind::Symlink { .. } => "symlink",
        EntryKind::Other => "other",
    };
    format!("{kind} {}", entry.path)
}

/// The filtered context of a case: either its pattern list, or for `build` cases the ignore
/// file chosen for the Dockerfile, with `COPY . .` selecting the whole filtered context.
fn filtered_context(root: &Path, case: &Value) -> Result<Vec<ContextEntry>, String> {
    if let Some(build) = case.get("build") {
        let dockerfile = build["dockerfile"].as_str().ok_or("build case without dockerfile")?;
        let dockerfile: PathBuf = root.join(dockerfile);
        let context = BuildContext::open(root, Some(&dockerfile)).map_err(|e| e.to_string())?;
        context.select(&[".".to_string()], &[]).map_err(|e| e.to_string())
    } else {
        let patterns = string_list(&case["exclude_patterns"]).map_err(|e| format!("{e:?}"))?;
        let context = BuildContext::with_patterns(root, &patterns).map_err(|e| e.to_string())?;
        context.walk().map_err(|e| e.to_string())
    }
}

fn check_walk_case(case: &Value) -> Result<(), Failed> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let root = dir.path();
    build_tree(root, &case["tree"])?;
    let expect = &case["expect"];
    let result = filtered_context(root, case);
    if expect["error"].as_bool() == Some(true) {
        return match result {
            Err(_) => Ok(()),
            Ok(entries) => {
                Err(format!("want an error, got {:?}", entries.iter().map(describe).collect::<Vec<_>>()).into())
            }
        };
    }
    let entries = result.map_err(|err| format!("unexpected error: {err}"))?;
    let listed: Vec<String> = entries.iter().map(describe).collect();
    if let Some(walk) = expect.get("walk") {
        let want = string_list(walk)?;
        if listed != want {
            return Err(format!("walk: want {want:?}, got {listed:?}").into());
        }
    }
    let has = |path: &str| entries.iter().any(|entry| entry.path == path);
    if let Some(present) = expect.get("present") {
        for path in string_list(present)? {
            if !has(&path) {
                return Err(format!("{path} must be present; got {listed:?}").into());
            }
        }
    }
    if let Some(absent) = expect.get("absent") {
        for path in string_list(absent)? {
            if has(&path) {
                return Err(format!("{path} must be absent; got {listed:?}").into());
            }
        }
    }
    if let Some(contents) = expect.get("contents").and_then(Value::as_object) {
        for (path, want) in contents {
            if !has(path) {
                return Err(format!("{path} must be present for its contents").into());
            }
            let got = std::fs::read_to_string(root.join(path)).map_err(|e| e.to_string())?;
            if Some(got.as_str()) != want.as_str() {
                return Err(format!("{path}: want contents {want}, got {got:?}").into());
            }
        }
    }
    Ok(())
}

fn walk_trials() -> Vec<Trial> {
    let data = read_json("context-walk.json");
    let cases = data["cases"].as_array().cloned().unwrap_or_default();
    assert!(!cases.is_empty(), "context-walk.json has no cases");
    cases
        .into_iter()
        .map(|case| {
            let id = case["id"].as_str().unwrap_or("?").to_string();
            Trial::test(format!("context-walk:{id}"), move || check_walk_case(&case))
        })
        .collect()
}

fn trials() -> Vec<Trial> {
    let mut trials = vector_trials();
    trials.extend(ignorefile_trials());
    trials.extend(walk_trials());
    trials
}

include!(concat!(env!("OUT_DIR"), "/cases_dockerignore.rs"));

#[test]
fn every_case_has_a_test() {
    crate::cases::assert_generated(trials(), CASES);
}
