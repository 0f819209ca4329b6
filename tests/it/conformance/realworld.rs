//! Every real-world Dockerfile in `testdata/conformance/real-world/` must parse and lower
//! (no build args, no context), each file its own named case.

use std::path::{Path, PathBuf};

use crate::cases::{Failed, Trial};
use rbuild::frontend::lower::{parse_and_lower, LowerOptions};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/conformance/real-world")
}

fn check(path: &Path) -> Result<(), Failed> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let plan = parse_and_lower(&text, &name, &LowerOptions::default()).map_err(|e| e.render())?;
    if plan.step_count() == 0 {
        return Err("no steps planned".into());
    }
    for stage in &plan.stages {
        for step in &stage.steps {
            if step.cache_key.hex().len() != 64 {
                return Err(format!("step at line {} has a malformed key {}", step.line, step.cache_key).into());
            }
        }
    }
    Ok(())
}

fn trials() -> Vec<Trial> {
    let dir = corpus();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "Dockerfile"))
            .collect(),
        Err(e) => {
            panic!("conformance data missing at {}: {e} (testdata/conformance in this repository)", dir.display())
        }
    };
    files.sort();
    assert!(!files.is_empty(), "no real-world Dockerfiles in {}", dir.display());
    files
        .into_iter()
        .map(|path| {
            let name = format!(
                "real-world:lower:{}",
                path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
            );
            Trial::test(name, move || check(&path))
        })
        .collect()
}

include!(concat!(env!("OUT_DIR"), "/cases_realworld.rs"));

#[test]
fn every_case_has_a_test() {
    crate::cases::assert_generated(trials(), CASES);
}
