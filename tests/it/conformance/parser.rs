//! Conformance of the Dockerfile parser against BuildKit's parser test data in
//! `testdata/conformance/parser` (positive dumps, negatives, line spans, heredoc facts) and
//! the real-world corpus in `testdata/conformance/real-world`. One named trial per case.

use std::fs;
use std::path::{Path, PathBuf};

use crate::cases::{Failed, Trial};
use rbuild::frontend::ast::Dockerfile;
use rbuild::frontend::parser::{chomp_heredoc, heredoc_names_in_line, parse, parse_heredoc_word};
use serde_json::Value;

fn conformance_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/conformance")
}

fn read(path: &Path) -> Result<String, Failed> {
    fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()).into())
}

fn case_dirs(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut cases: Vec<(String, PathBuf)> = fs::read_dir(dir)
        .map(|entries| {
            entries.filter_map(Result::ok).map(|e| (e.file_name().to_string_lossy().into_owned(), e.path())).collect()
        })
        .unwrap_or_default();
    cases.sort();
    cases
}

fn parse_file(path: &Path) -> Result<Dockerfile, Failed> {
    let text = read(path)?;
    parse(&text, "Dockerfile").map_err(|e| format!("parse failed:\n{e}").into())
}

fn rbuild_parse_dump(path: &Path) -> Result<std::process::Output, Failed> {
    crate::fixture::rbuild_command()
        .args(["parse", "--dump", "-f"])
        .arg(path)
        .output()
        .map_err(|e| format!("running rbuild: {e}").into())
}

/// `rbuild parse --dump -f <path>`: its stdout, or the failure with stderr.
fn run_dump(path: &Path) -> Result<String, Failed> {
    let out = rbuild_parse_dump(path)?;
    if !out.status.success() {
        return Err(
            format!("rbuild parse --dump failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr)).into()
        );
    }
    String::from_utf8(out.stdout).map_err(|e| format!("dump is not UTF-8: {e}").into())
}

fn positive_trials(root: &Path) -> Vec<Trial> {
    case_dirs(&root.join("parser/positive"))
        .into_iter()
        .map(|(name, dir)| {
            Trial::test(format!("positive/{name}"), move || {
                let expected = read(&dir.join("result"))?;
                // The acceptance is about the command a user runs: `rbuild parse --dump`.
                let actual = run_dump(&dir.join("Dockerfile"))?;
                if actual == expected {
                    Ok(())
                } else {
                    Err(format!("dump differs\n--- expected\n{expected}--- actual\n{actual}").into())
                }
            })
        })
        .collect()
}

fn negative_trials(root: &Path) -> Vec<Trial> {
    case_dirs(&root.join("parser/negative"))
        .into_iter()
        .map(|(name, dir)| {
            Trial::test(format!("negative/{name}"), move || {
                let text = read(&dir.join("Dockerfile"))?;
                if let Ok(df) = parse(&text, "Dockerfile") {
                    return Err(format!("expected an error, parsed:\n{}", df.dump()).into());
                }
                let out = rbuild_parse_dump(&dir.join("Dockerfile"))?;
                match out.status.code() {
                    Some(1) => Ok(()),
                    other => Err(format!("`rbuild parse --dump` exited {other:?}, expected 1").into()),
                }
            })
        })
        .collect()
}

fn line_trials(root: &Path) -> Vec<Trial> {
    case_dirs(&root.join("parser/lines"))
        .into_iter()
        .map(|(name, dir)| {
            Trial::test(format!("lines/{name}"), move || {
                let df = parse_file(&dir.join("Dockerfile"))?;
                let expected: Value = serde_json::from_str(&read(&dir.join("expected-lines.json"))?)
                    .map_err(|e| format!("bad expected-lines.json: {e}"))?;
                let want = |v: &Value, key: &str| v[key].as_u64().map(|n| n as usize);
                let root_span = (want(&expected["root"], "start_line"), want(&expected["root"], "end_line"));
                if root_span != (Some(df.start_line), Some(df.end_line)) {
                    return Err(format!("root span {:?} != ({}, {})", root_span, df.start_line, df.end_line).into());
                }
                let instructions = expected["instructions"].as_array().cloned().unwrap_or_default();
                if instructions.len() != df.instructions.len() {
                    return Err(
                        format!("{} instructions, expected {}", df.instructions.len(), instructions.len()).into()
                    );
                }
                for (node, exp) in df.instructions.iter().zip(&instructions) {
                    let got = (node.keyword_lower(), node.start_line, node.end_line);
                    let want_span = (
                        exp["instruction"].as_str().unwrap_or_default().to_string(),
                        want(exp, "start_line").unwrap_or_default(),
                        want(exp, "end_line").unwrap_or_default(),
                    );
                    if got != want_span {
                        return Err(format!("got {got:?}, expected {want_span:?}").into());
                    }
                }
                Ok(())
            })
        })
        .collect()
}

fn heredoc_case(case: &Value) -> Result<(), Failed> {
    let kind = case["kind"].as_str().unwrap_or_default();
    let input = case["input"].as_str().unwrap_or_default();
    match kind {
        "dockerfile" => {
            let source = case["dockerfile"].as_str().unwrap_or_default();
            let df = parse(source, "Dockerfile").map_err(|e| format!("parse failed:\n{e}"))?;
            let expected = case["expected_heredocs"].as_array().cloned().unwrap_or_default();
            if expected.len() != df.instructions.len() {
                return Err(format!("{} instructions, expected {}", df.instructions.len(), expected.len()).into());
            }
            for (index, (node, want)) in df.instructions.iter().zip(&expected).enumerate() {
                let got = serde_json::to_value(&node.heredocs).map_err(|e| e.to_string())?;
                let want = if want.is_null() { Value::Array(Vec::new()) } else { want.clone() };
                if got != want {
                    return Err(format!("instruction {index} ({}): got {got}, expected {want}", node.original).into());
                }
            }
            Ok(())
        }
        "chomp" => {
            let got = chomp_heredoc(input);
            if Some(got.as_str()) == case["expected"].as_str() {
                Ok(())
            } else {
                Err(format!("got {got:?}").into())
            }
        }
        "parse-heredoc-word" => {
            let got = match parse_heredoc_word(input) {
                Ok(Some(name)) => serde_json::json!({ "name": name }),
                Ok(None) => Value::Null,
                Err(_) => Value::String("error".into()),
            };
            if got == case["expected"] {
                Ok(())
            } else {
                Err(format!("got {got}, expected {}", case["expected"]).into())
            }
        }
        "heredoc-names-in-line" => {
            let got = serde_json::to_value(heredoc_names_in_line(input, '\\')).map_err(|e| e.to_string())?;
            if got == case["expected"] {
                Ok(())
            } else {
                Err(format!("got {got}, expected {}", case["expected"]).into())
            }
        }
        other => Err(format!("unknown heredoc case kind {other:?}").into()),
    }
}

fn heredoc_trials(root: &Path) -> Vec<Trial> {
    let path = root.join("parser/heredoc.json");
    let data: Value = match fs::read_to_string(&path).map(|t| serde_json::from_str(&t)) {
        Ok(Ok(data)) => data,
        _ => {
            return vec![Trial::test("heredoc/heredoc.json", move || {
                Err(format!("cannot read {}", path.display()).into())
            })]
        }
    };
    data["cases"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|case| {
            let id = case["id"].as_str().unwrap_or("unnamed").to_string();
            let kind = case["kind"].as_str().unwrap_or("unknown").to_string();
            Trial::test(format!("heredoc/{kind}/{id}"), move || heredoc_case(&case))
        })
        .collect()
}

/// An independent count of instructions: non-blank, non-comment physical lines that do not
/// continue a previous line (trailing escape char) and are not heredoc bodies.
fn count_logical_lines(text: &str) -> usize {
    let mut escape = '\\';
    let mut in_directives = true;
    let mut continuing = false;
    let mut pending_heredocs: Vec<(String, bool)> = Vec::new();
    let mut current = String::new();
    let mut count = 0;
    for line in text.lines() {
        if let Some((name, chomp)) = pending_heredocs.first() {
            let candidate = if *chomp { line.trim_start_matches('\t') } else { line };
            if candidate == name {
                pending_heredocs.remove(0);
            }
            continue;
        }
        let trimmed = line.trim();
        if in_directives {
            let lower = trimmed.to_ascii_lowercase().replace(' ', "");
            if let Some(value) = lower.strip_prefix("#escape=") {
                escape = value.chars().next().unwrap_or('\\');
                continue;
            }
            in_directives = lower.starts_with("#syntax=") || lower.starts_with("#check=");
        }
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if !continuing {
            count += 1;
            current.clear();
        }
        current.push_str(trimmed);
        current.push(' ');
        let body = line.trim_end_matches([' ', '\t']);
        continuing = body.ends_with(escape) && !body.ends_with(&format!("{escape}{escape}"));
        if !continuing {
            let lower = current.to_ascii_lowercase();
            if ["run ", "copy ", "add "].iter().any(|k| lower.starts_with(k)) {
                for (position, _) in current.match_indices("<<") {
                    let after = current.get(position + 2..).unwrap_or_default();
                    let chomp = after.starts_with('-');
                    let name: String = after
                        .trim_start_matches('-')
                        .trim_start()
                        .trim_start_matches(['"', '\''])
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        pending_heredocs.push((name, chomp));
                    }
                }
            }
        }
    }
    count
}

fn real_world_trials(root: &Path) -> Vec<Trial> {
    let mut files: Vec<PathBuf> = fs::read_dir(root.join("real-world"))
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "Dockerfile"));
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            Trial::test(format!("real-world/{name}"), move || {
                let text = read(&path)?;
                let df = parse(&text, &name).map_err(|e| format!("parse failed:\n{e}"))?;
                if let Some(node) = df
                    .instructions
                    .iter()
                    .find(|n| !rbuild::frontend::instructions::KEYWORDS.contains(&n.keyword_lower().as_str()))
                {
                    return Err(format!("unknown keyword {:?} at line {}", node.keyword, node.start_line).into());
                }
                let expected = count_logical_lines(&text);
                if df.instructions.len() != expected {
                    return Err(format!("{} instructions, expected {expected}", df.instructions.len()).into());
                }
                Ok(())
            })
        })
        .collect()
}

fn trials() -> Vec<Trial> {
    let root = conformance_dir();
    assert!(
        root.join("parser").is_dir() && root.join("real-world").is_dir(),
        "conformance data not found at {}",
        root.display()
    );
    let mut trials = positive_trials(&root);
    trials.extend(negative_trials(&root));
    trials.extend(line_trials(&root));
    trials.extend(heredoc_trials(&root));
    trials.extend(real_world_trials(&root));
    trials
}

include!(concat!(env!("OUT_DIR"), "/cases_parser.rs"));

#[test]
fn every_case_has_a_test() {
    crate::cases::assert_generated(trials(), CASES);
}
