//! `build --dry-run` plans as a build does: its cache keys equal the ones the build computed
//! (FROM keyed on the base's manifest digest from the store, not its name), and a base image
//! missing from the store is named in a warning.
//!
//! The build half needs root and busybox (see `fixture`); the missing-image half needs
//! neither.

use std::path::Path;

use crate::fixture::{rbuild, rbuild_ok, Fixture};
use serde_json::Value;

const DOCKERFILE: &str = "ARG TAG=latest\nFROM busybox:${TAG} AS base\nARG V=1\nENV A=b\n\
                          COPY app/ /app/\nRUN echo $V > /v\nFROM base\nWORKDIR /w\nRUN cat /v\n";

/// The `cache key:` lines of a dry run, in step order.
fn dry_run_keys(root: &Path, context: &Path) -> (Vec<String>, String) {
    let out = rbuild(root, &["build", "--dry-run", context.to_str().expect("utf-8 path")]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "dry run failed: {stderr}\n{stdout}");
    let keys = stdout.lines().filter_map(|l| l.strip_prefix("  cache key: ")).map(str::to_string).collect();
    (keys, stderr)
}

#[test]
fn dry_run_keys_equal_the_keys_a_build_computed() {
    let Some(fx) = Fixture::new() else { return };
    let context = fx.context("ctx", DOCKERFILE, &[("app/main.py", "print(1)\n")]);
    let (before, warnings) = dry_run_keys(&fx.root, &context);
    assert!(!warnings.contains("not in the local store"), "busybox is in the store: {warnings}");
    let out = rbuild_ok(&fx.root, &["build", "--progress=json", context.to_str().expect("utf-8 path")]);
    let built: Vec<String> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "step_started")
        .filter_map(|e| e["cache_key"].as_str().map(str::to_string))
        .filter(|k| !k.is_empty())
        .collect();
    assert_eq!(built.len(), 8, "{out}");
    assert_eq!(before, built, "a dry run before the build computes the build's keys");
    let (after, _) = dry_run_keys(&fx.root, &context);
    assert_eq!(after, built, "and so does one after it");
}

#[test]
fn a_base_missing_from_the_store_is_named_and_keyed_by_its_reference() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("Dockerfile"), "FROM busybox\nRUN true\n").expect("write");
    // No store at all: nothing is created either.
    let root = dir.path().join("no-store");
    let (keys, warnings) = dry_run_keys(&root, dir.path());
    assert_eq!(keys.len(), 2);
    assert!(
        warnings.contains("[Warning] busybox is not in the local store: its cache keys name the reference"),
        "{warnings}"
    );
    assert!(!root.exists(), "a dry run creates no store");
}
