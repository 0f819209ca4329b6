//! Edit sequences (`sequences/<name>/steps.toml`): the same edits are applied to one context
//! between builds, each build runs with rbuild and classic Docker, and the per-step
//! "Using cache" decisions must agree. Also the rootless check of a case: the same image ID when
//! an unprivileged user builds it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde::Deserialize;

use crate::cases::Failed;

use super::{classic_made_images, docker, docker_ok, load_base, make_context, remove_untagged, run, run_prefix, text};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Steps {
    build: Vec<Edit>,
}

/// The edits made to the context before one build (all optional; the first build usually has
/// none).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Edit {
    /// Context-relative path -> new content (created or replaced).
    #[serde(default)]
    write: BTreeMap<String, String>,
    /// Context-relative paths to delete.
    #[serde(default)]
    delete: Vec<String>,
    /// Replace one Dockerfile line (1-based).
    dockerfile_line: Option<LineEdit>,
    /// `--build-arg`s for this build.
    #[serde(default)]
    build_args: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LineEdit {
    line: usize,
    text: String,
}

fn apply(edit: &Edit, context: &Path) -> Result<(), String> {
    for (path, content) in &edit.write {
        let full = context.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{path}: {e}"))?;
        }
        std::fs::write(&full, content).map_err(|e| format!("{path}: {e}"))?;
    }
    for path in &edit.delete {
        let full = context.join(path);
        let removed = if full.is_dir() { std::fs::remove_dir_all(&full) } else { std::fs::remove_file(&full) };
        removed.map_err(|e| format!("delete {path}: {e}"))?;
    }
    if let Some(LineEdit { line, text }) = &edit.dockerfile_line {
        let path = context.join("Dockerfile");
        let old = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        let mut lines: Vec<&str> = old.lines().collect();
        let slot = lines.get_mut(line.wrapping_sub(1)).ok_or_else(|| format!("Dockerfile has no line {line}"))?;
        *slot = text;
        std::fs::write(&path, format!("{}\n", lines.join("\n"))).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `Step N/M : ...` headers of classic output, each with whether `---> Using cache` followed.
fn cache_decisions(output: &str) -> Vec<(String, bool)> {
    let mut steps: Vec<(String, bool)> = Vec::new();
    for line in output.lines() {
        if line.starts_with("Step ") {
            steps.push((line.to_owned(), false));
        } else if line.trim() == "---> Using cache" {
            if let Some(last) = steps.last_mut() {
                last.1 = true;
            }
        }
    }
    steps
}

fn render(steps: &[(String, bool)]) -> String {
    steps.iter().map(|(s, hit)| format!("  {} {s}\n", if *hit { "cache" } else { "build" })).collect()
}

pub fn check_sequence(name: &str, dir: &Path, suite_dir: &Path, base_tag: &str, base: &Path) -> Result<(), Failed> {
    let steps_path = dir.join("steps.toml");
    let steps_text = std::fs::read_to_string(&steps_path).map_err(|e| format!("{}: {e}", steps_path.display()))?;
    let steps: Steps = toml::from_str(&steps_text).map_err(|e| format!("{}: {e}", steps_path.display()))?;
    let work = suite_dir.join("sequences").join(name);
    let context = work.join("context");
    make_context(dir, &context)?;
    // `FROM busybox` builds on this run's own busybox (see `Suite::new`).
    let dockerfile = context.join("Dockerfile");
    let text_of = std::fs::read_to_string(&dockerfile).map_err(|e| format!("{}: {e}", dockerfile.display()))?;
    let rebased: Vec<String> = text_of
        .lines()
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [from, "busybox", rest @ ..] if from.eq_ignore_ascii_case("FROM") => {
                    [&[*from, base_tag][..], rest].concat().join(" ")
                }
                _ => line.to_owned(),
            }
        })
        .collect();
    std::fs::write(&dockerfile, rebased.join("\n") + "\n").map_err(|e| e.to_string())?;
    // A store of its own, so the cases' builds are not this sequence's cache.
    let store = work.join("store");
    load_base(&store, base)?;
    let mut tags = Vec::new();
    let mut made = Vec::new();
    let result = (|| -> Result<(), Failed> {
        for (index, edit) in steps.build.iter().enumerate() {
            apply(edit, &context).map_err(|e| format!("{}: build {}: {e}", steps_path.display(), index + 1))?;
            let mut flags: Vec<String> = Vec::new();
            for (k, v) in &edit.build_args {
                flags.extend(["--build-arg".to_owned(), format!("{k}={v}")]);
            }
            // The first build must not reuse what earlier runs left in Docker.
            if index == 0 {
                flags.push("--no-cache".to_owned());
            }
            let tag = format!("{}-seq-{name}:{}", run_prefix(), index + 1);
            let mut args: Vec<&str> = vec!["build", "--progress", "plain", "-t", &tag];
            args.extend(flags.iter().map(String::as_str));
            let context_arg = context.to_string_lossy();
            args.push(&context_arg);
            let ours = crate::fixture::rbuild(&store, &args);
            let theirs =
                run(docker(Some(false)).args(["build", "--network", "host", "-t", &tag]).args(&flags).arg(&context))?;
            tags.push(tag);
            made.extend(classic_made_images(&text(&theirs)));
            if ours.status.success() != theirs.status.success() {
                return Err(format!(
                    "{name}: build {}: rbuild {} but docker {}:\n{}\n{}",
                    index + 1,
                    ours.status,
                    theirs.status,
                    text(&ours),
                    text(&theirs)
                )
                .into());
            }
            let (a, b) = (cache_decisions(&text(&ours)), cache_decisions(&text(&theirs)));
            let same = a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x.1 == y.1);
            if !same {
                return Err(format!(
                    "{name}: build {}: cache decisions differ\nrbuild:\n{}docker classic:\n{}",
                    index + 1,
                    render(&a),
                    render(&b)
                )
                .into());
            }
        }
        Ok(())
    })();
    let mut rmi = vec!["rmi", "-f"];
    rmi.extend(tags.iter().map(String::as_str));
    if !tags.is_empty() {
        let _ = docker_ok(&rmi);
    }
    // Other stages' images (no tag keeps them) would be the next run's cache.
    remove_untagged(&made);
    result
}

/// The unprivileged user rootless cases build as, with its own subordinate id range.
const ROOTLESS_USER: &str = "rbuild-differential";

fn sh(script: &str) -> bool {
    Command::new("sh").arg("-c").arg(script).status().is_ok_and(|s| s.success())
}

fn ensure_rootless_user() -> Result<(), String> {
    static READY: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    READY
        .get_or_init(|| {
            if !sh(&format!("id -u {ROOTLESS_USER} >/dev/null 2>&1"))
                && !sh(&format!("useradd --system --no-create-home --shell /usr/sbin/nologin {ROOTLESS_USER}"))
            {
                return Err(format!("useradd {ROOTLESS_USER} failed"));
            }
            for file in ["/etc/subuid", "/etc/subgid"] {
                let old = std::fs::read_to_string(file).unwrap_or_default();
                if !old.lines().any(|l| l.starts_with(&format!("{ROOTLESS_USER}:"))) {
                    let line = format!("{ROOTLESS_USER}:700000:65536\n");
                    let mut new = old.clone();
                    if !new.is_empty() && !new.ends_with('\n') {
                        new.push('\n');
                    }
                    new.push_str(&line);
                    std::fs::write(file, new).map_err(|e| format!("{file}: {e}"))?;
                }
            }
            Ok(())
        })
        .clone()
}

/// Builds the case as root and as [`ROOTLESS_USER`], each in a fresh store with
/// `SOURCE_DATE_EPOCH` fixed, and requires the same image ID.
pub fn check_rootless(name: &str, context: &Path, flags: &[String], base: &Path) -> Result<(), Failed> {
    ensure_rootless_user()?;
    let _tun = crate::fixture::TunForUsers::new();
    let mut ids = Vec::new();
    for user in [None, Some(ROOTLESS_USER)] {
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let store = work.path().join("store");
        let base_copy = work.path().join("base.tar");
        std::fs::copy(base, &base_copy).map_err(|e| e.to_string())?;
        if let Some(user) = user {
            for path in [work.path(), context] {
                if !sh(&format!("chmod 755 '{0}' && chown -R {user}: '{0}'", path.display())) {
                    return Err(format!("{name}: cannot hand {} to {user}", path.display()).into());
                }
            }
        }
        let rbuild = |args: &[&str]| -> Result<std::process::Output, String> {
            let mut cmd = match user {
                Some(user) => {
                    let mut cmd = Command::new("setpriv");
                    cmd.args(["--reuid", user, "--regid", user, "--clear-groups"]).arg(crate::fixture::RBUILD);
                    cmd
                }
                None => crate::fixture::rbuild_command(),
            };
            cmd.args(args)
                .env("RBUILD_ROOT", &store)
                .env("HOME", work.path())
                .env("SOURCE_DATE_EPOCH", "1600000000")
                .env_remove("CI");
            run(&mut cmd)
        };
        let who = user.unwrap_or("root");
        let load = rbuild(&["load", "-q", "-i", &base_copy.to_string_lossy()])?;
        if !load.status.success() {
            return Err(format!("{name}: load as {who}: {}", text(&load)).into());
        }
        let mut args = vec!["build", "--progress", "plain", "-t", "rootless-check"];
        args.extend(flags.iter().map(String::as_str));
        let context_arg = context.to_string_lossy();
        args.push(&context_arg);
        let built = rbuild(&args)?;
        if !built.status.success() {
            return Err(format!("{name}: build as {who} failed:\n{}", text(&built)).into());
        }
        let inspect = rbuild(&["inspect", "--format", "{{.Id}}", "rootless-check"])?;
        ids.push((who, String::from_utf8_lossy(&inspect.stdout).trim().to_owned()));
    }
    if ids[0].1.is_empty() || ids[0].1 != ids[1].1 {
        return Err(format!("{name}: image IDs differ: {ids:?}").into());
    }
    Ok(())
}
