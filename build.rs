//! Generates one `#[test]` per case of the integration tests' data-driven suites (conformance
//! vectors in `testdata/conformance/`, differential cases and sequences in
//! `tests/it/differential/`), so each case runs, passes or fails by its own name under the
//! normal harness in the one test binary. Only names are made here: each generated test calls
//! its suite's `trials()` (tests/it), which reads the data and names the cases the same way;
//! every suite checks that its cases and these names agree. The library does not use the output.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// A case's name as its suite's trial calls it, and whether it is ignored (Windows-only).
type Case = (String, bool);

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for watched in
        ["build.rs", "testdata/conformance", "tests/it/differential/cases", "tests/it/differential/sequences"]
    {
        println!("cargo:rerun-if-changed={watched}");
    }
    let conformance = manifest.join("testdata/conformance");
    let differential = manifest.join("tests/it/differential");
    let suites: [(&str, Vec<Case>); 5] = [
        ("shell", shell_cases(&conformance.join("shell"))),
        ("dockerignore", dockerignore_cases(&conformance.join("dockerignore"))),
        ("parser", parser_cases(&conformance)),
        ("realworld", files_with_extension(&conformance.join("real-world"), "Dockerfile", "real-world:lower:")),
        ("differential", differential_cases(&differential)),
    ];
    for (suite, cases) in suites {
        let path = out.join(format!("cases_{suite}.rs"));
        std::fs::write(&path, generate(&cases)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json_cases(path: &Path) -> Vec<Value> {
    json(path)["cases"].as_array().cloned().unwrap_or_default()
}

fn field<'a>(case: &'a Value, key: &str, default: &'a str) -> &'a str {
    case[key].as_str().unwrap_or(default)
}

/// `envVarTest` (one per line, `W` lines ignored), `wordsTest` (one per non-`ENV` line) and
/// `word-expansion.json` (one per case).
fn shell_cases(dir: &Path) -> Vec<Case> {
    let mut cases = Vec::new();
    for (index, line) in read(&dir.join("envVarTest")).lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let windows = line.split('|').next().is_some_and(|p| p.trim() == "W");
        let name = if windows {
            format!("envVarTest:L{} (W: Windows only, skipped on Linux)", index + 1)
        } else {
            format!("envVarTest:L{}", index + 1)
        };
        cases.push((name, windows));
    }
    for (index, line) in read(&dir.join("wordsTest")).lines().enumerate() {
        if !line.starts_with('#') && !line.starts_with("ENV ") {
            cases.push((format!("wordsTest:L{}", index + 1), false));
        }
    }
    for (index, case) in json_cases(&dir.join("word-expansion.json")).iter().enumerate() {
        let id = case["id"].as_str().map_or_else(|| format!("case-{index}"), str::to_owned);
        cases.push((format!("word-expansion:{id}"), false));
    }
    cases
}

/// `vectors.tsv` (one per row after the header), `ignorefile.json` and `context-walk.json`.
fn dockerignore_cases(dir: &Path) -> Vec<Case> {
    let mut cases = Vec::new();
    for line in read(&dir.join("vectors.tsv")).lines().skip(1) {
        if !line.trim().is_empty() {
            cases.push((format!("vectors:{}", line.split('\t').next().unwrap_or_default()), false));
        }
    }
    for case in json_cases(&dir.join("ignorefile.json")) {
        cases.push((format!("ignorefile:{}", field(&case, "id", "?")), false));
    }
    for case in json_cases(&dir.join("context-walk.json")) {
        cases.push((format!("context-walk:{}", field(&case, "id", "?")), false));
    }
    cases
}

/// The parser's positive, negative and line-span case folders, `heredoc.json`, and the
/// real-world corpus.
fn parser_cases(root: &Path) -> Vec<Case> {
    let mut cases = Vec::new();
    for kind in ["positive", "negative", "lines"] {
        for name in entry_names(&root.join("parser").join(kind)) {
            cases.push((format!("{kind}/{name}"), false));
        }
    }
    for case in json_cases(&root.join("parser/heredoc.json")) {
        cases.push((format!("heredoc/{}/{}", field(&case, "kind", "unknown"), field(&case, "id", "unnamed")), false));
    }
    cases.extend(files_with_extension(&root.join("real-world"), "Dockerfile", "real-world/"));
    cases
}

/// The differential cases and sequences: folders holding a Dockerfile.
fn differential_cases(dir: &Path) -> Vec<Case> {
    let mut cases = Vec::new();
    for (under, prefix) in [("cases", "case:"), ("sequences", "sequence:")] {
        for name in entry_names(&dir.join(under)) {
            if dir.join(under).join(&name).join("Dockerfile").is_file() {
                cases.push((format!("{prefix}{name}"), false));
            }
        }
    }
    cases
}

/// The names in `dir`, sorted.
fn entry_names(dir: &Path) -> Vec<String> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut names: Vec<String> =
        entries.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn files_with_extension(dir: &Path, extension: &str, prefix: &str) -> Vec<Case> {
    entry_names(dir)
        .into_iter()
        .filter(|name| Path::new(name).extension().is_some_and(|e| e == extension))
        .map(|name| (format!("{prefix}{name}"), false))
        .collect()
}

/// The suite's tests (module `case`, one function per case) and `CASES`, the names it covers.
fn generate(cases: &[Case]) -> String {
    let mut code = String::from(
        "/// One test per case of this suite's data, generated by build.rs.\nmod case {\n    use super::trials;\n",
    );
    let mut used = BTreeSet::new();
    for (name, ignored) in cases {
        let mut function = identifier(name);
        let mut n = 2;
        while !used.insert(function.clone()) {
            function = format!("{}_{n}", identifier(name));
            n += 1;
        }
        code.push_str("\n    #[test]\n");
        if *ignored {
            code.push_str("    #[ignore = \"Windows only\"]\n");
        }
        let _ = writeln!(code, "    fn {function}() {{\n        crate::cases::run(trials(), {name:?});\n    }}");
    }
    code.push_str(
        "}\n\n/// The cases the tests in `case` run, and whether each is ignored.\nconst CASES: &[(&str, bool)] = &[\n",
    );
    for (name, ignored) in cases {
        let _ = writeln!(code, "    ({name:?}, {ignored}),");
    }
    code.push_str("];\n");
    code
}

/// A snake_case function name for a case name.
fn identifier(name: &str) -> String {
    let mut ident = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            ident.push(c);
        } else if !ident.ends_with('_') {
            ident.push('_');
        }
    }
    let ident = ident.trim_matches('_').to_owned();
    const KEYWORDS: &[&str] = &[
        "as", "async", "await", "box", "break", "const", "continue", "crate", "do", "dyn", "else", "enum", "extern",
        "false", "final", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "macro", "match", "mod", "move",
        "mut", "override", "priv", "pub", "ref", "return", "self", "static", "struct", "super", "trait", "true", "try",
        "type", "typeof", "unsafe", "unsized", "use", "virtual", "where", "while", "yield", "trials",
    ];
    if ident.is_empty() || ident.starts_with(|c: char| c.is_ascii_digit()) || KEYWORDS.contains(&ident.as_str()) {
        format!("case_{ident}")
    } else {
        ident
    }
}
