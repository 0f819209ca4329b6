//! BuildKit shell-expansion conformance: every case in `testdata/conformance/shell` (`envVarTest`,
//! `wordsTest`, `word-expansion.json`, read as that folder's README specifies) runs as its own
//! named trial, so a failure names its case. Windows-only (`W`) lines are listed as ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::cases::{Failed, Trial};
use rbuild::frontend::shell::{ShellLex, VarLookup};
use serde_json::Value;

fn data_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/conformance/shell"))
}

fn read(dir: &Path, file: &str) -> Result<String, String> {
    let path = dir.join(file);
    std::fs::read_to_string(&path).map_err(|error| format!("cannot read {}: {error}", path.display()))
}

fn owned_env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect()
}

/// `envVarTest`: `PLATFORM|SOURCE|EXPECTED`, one word each, fixed environment.
fn env_var_trials(text: &str) -> Result<Vec<Trial>, String> {
    let mut trials = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('|').map(str::trim).collect();
        let [platform, source, expected] = fields.as_slice() else {
            return Err(format!("envVarTest:{line_number}: expected 3 fields in {line:?}"));
        };
        let (platform, source, expected) = (platform.to_string(), source.to_string(), expected.to_string());
        let name = match platform.as_str() {
            "W" => format!("envVarTest:L{line_number} (W: Windows only, skipped on Linux)"),
            "A" | "U" => format!("envVarTest:L{line_number}"),
            other => return Err(format!("envVarTest:{line_number}: unknown platform {other:?}")),
        };
        let trial = Trial::test(name, move || {
            let env = owned_env(&[("PWD", "/home"), ("SHELL", "bash"), ("KOREAN", "한국어"), ("NULL", "")]);
            let outcome = ShellLex::new('\\').process_word(&source, &env);
            match (expected.as_str(), outcome) {
                ("error", Err(_)) => Ok(()),
                ("error", Ok(value)) => Err(format!("{source:?}: expected an error, got {value:?}").into()),
                (_, Err(error)) => Err(format!("{source:?}: expected {expected:?}, got error {error}").into()),
                (_, Ok(value)) if value == expected => Ok(()),
                (_, Ok(value)) => Err(format!("{source:?}: expected {expected:?}, got {value:?}").into()),
            }
        });
        trials.push(trial.with_ignored_flag(platform == "W"));
    }
    Ok(trials)
}

/// `wordsTest`: `ENV name=value` lines grow the environment; `INPUT|EXPECTED` lines split.
fn words_trials(text: &str) -> Result<Vec<Trial>, String> {
    let mut trials = Vec::new();
    let mut env: Vec<(String, String)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            return Err(format!("wordsTest:{line_number}: blank line"));
        }
        if let Some(definition) = line.strip_prefix("ENV ") {
            let definition = definition.trim_start_matches(' ');
            let (name, value) = definition.split_once('=').unwrap_or((definition, ""));
            env.push((name.to_owned(), value.to_owned()));
            continue;
        }
        let fields: Vec<&str> = line.split('|').collect();
        let [input, expected] = fields.as_slice() else {
            return Err(format!("wordsTest:{line_number}: expected exactly one | in {line:?}"));
        };
        let input = input.trim().to_owned();
        let expected: Vec<String> = expected.trim_start_matches(' ').split(',').map(str::to_owned).collect();
        let env_now = env.clone();
        trials.push(Trial::test(format!("wordsTest:L{line_number}"), move || {
            let words = match ShellLex::new('\\').process_words(&input, &env_now) {
                Ok(words) => words,
                Err(_) => vec!["error".to_owned()],
            };
            if words == expected {
                Ok(())
            } else {
                Err(format!("{input:?}: expected {expected:?}, got {words:?}").into())
            }
        }));
    }
    Ok(trials)
}

/// One `word-expansion.json` case, checked against the single-word API.
fn check_word_expansion_case(case: &Value) -> Result<(), Failed> {
    let field = |key: &str| case.get(key).ok_or_else(|| Failed::from(format!("case has no {key:?}")));
    let input = field("input")?.as_str().ok_or("input is not a string")?;
    let api = field("api")?.as_str().ok_or("api is not a string")?;
    let mut env = BTreeMap::new();
    for (name, value) in field("env")?.as_object().ok_or("env is not an object")? {
        env.insert(name.clone(), value.as_str().ok_or("env value is not a string")?.to_owned());
    }
    let lex = ShellLex::new('\\');
    let lookup: &dyn VarLookup = &env;
    let outcome = match api {
        "ProcessWordWithMatches" => lex.process_word_with_matches(input, lookup),
        "ProcessWord" => lex
            .process_word(input, lookup)
            .map(|value| rbuild::frontend::shell::Expansion { value, ..Default::default() }),
        other => return Err(format!("unknown api {other:?}").into()),
    };
    let wants_error = field("error")?.as_bool().ok_or("error is not a bool")?;
    let expansion = match (wants_error, outcome) {
        (true, Ok(expansion)) => return Err(format!("{input:?}: expected an error, got {:?}", expansion.value).into()),
        (true, Err(error)) => {
            if let Some(needle) = case.get("error_contains").and_then(Value::as_str) {
                if !error.message.contains(needle) {
                    return Err(format!("{input:?}: error {:?} does not contain {needle:?}", error.message).into());
                }
            }
            return Ok(());
        }
        (false, Err(error)) => return Err(format!("{input:?}: unexpected error {error}").into()),
        (false, Ok(expansion)) => expansion,
    };
    let expected = field("result")?.as_str().ok_or("result is not a string")?;
    if expansion.value != expected {
        return Err(format!("{input:?}: expected {expected:?}, got {:?}", expansion.value).into());
    }
    for (key, actual) in [("matched", &expansion.matched), ("unmatched", &expansion.unmatched)] {
        let Some(list) = case.get(key) else { continue };
        let wanted: BTreeSet<String> = list
            .as_array()
            .ok_or_else(|| format!("{key} is not a list"))?
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        if &wanted != actual {
            return Err(format!("{input:?}: {key} expected {wanted:?}, got {actual:?}").into());
        }
    }
    Ok(())
}

fn word_expansion_trials(text: &str) -> Result<Vec<Trial>, String> {
    let document: Value = serde_json::from_str(text).map_err(|error| format!("word-expansion.json: {error}"))?;
    if let Some(escape) = document.get("escape").and_then(Value::as_str) {
        if escape != "\\" {
            return Err(format!("word-expansion.json: unexpected escape {escape:?}"));
        }
    }
    let cases = document.get("cases").and_then(Value::as_array).ok_or("word-expansion.json: no cases list")?;
    let mut trials = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        let id = case.get("id").and_then(Value::as_str).map_or_else(|| format!("case-{index}"), str::to_owned);
        let case = case.clone();
        trials.push(Trial::test(format!("word-expansion:{id}"), move || check_word_expansion_case(&case)));
    }
    Ok(trials)
}

fn all_trials() -> Result<Vec<Trial>, String> {
    let dir = data_dir();
    if !dir.is_dir() {
        return Err(format!("conformance data folder {} is missing", dir.display()));
    }
    let mut trials = env_var_trials(&read(&dir, "envVarTest")?)?;
    trials.extend(words_trials(&read(&dir, "wordsTest")?)?);
    trials.extend(word_expansion_trials(&read(&dir, "word-expansion.json")?)?);
    Ok(trials)
}

fn trials() -> Vec<Trial> {
    all_trials().unwrap_or_else(|problem| panic!("conformance shell: {problem}"))
}

include!(concat!(env!("OUT_DIR"), "/cases_shell.rs"));

#[test]
fn every_case_has_a_test() {
    crate::cases::assert_generated(trials(), CASES);
}
