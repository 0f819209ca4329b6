//! The differential suite: every case under `tests/differential/cases/` is built by rbuild and by
//! Docker (classic and BuildKit, `/usr/bin/docker` against the running dockerd), and the images
//! are compared (config, history, layer count, the flattened root filesystem); every sequence
//! under `tests/differential/sequences/` is built step by step by rbuild and classic Docker, and
//! their "Using cache" decisions compared. One trial per case and per sequence.
//!
//! Needs root, busybox-static and a running dockerd (Debian's docker.io 20.10; `.ci/run` starts
//! it): fails under `CI=true` when any is missing. Case and sequence format: `cases/README.md`.

#[path = "../common/mod.rs"]
mod common;
mod compare;
mod image;
mod sequence;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use libtest_mimic::{Arguments, Failed, Trial};

use compare::{Allowance, Allowed, CaseOptions, Expected};

/// The Docker client of Debian's docker.io (a newer `docker` earlier on PATH may lack the
/// classic builder's flags).
const DOCKER: &str = "/usr/bin/docker";
/// Every Docker image the suite makes is named under this prefix, and removed at the end.
const PREFIX: &str = "rbuild-differential";

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/differential")
}

/// What every trial shares: the suite's temp dir, the busybox base saved from Docker (so both
/// builders start from byte-identical images) and one rbuild store holding it.
struct Suite {
    dir: tempfile::TempDir,
    base_archive: PathBuf,
    store: PathBuf,
    allowlist: Vec<Allowance>,
    /// The busybox sequences build on, by its tag in Docker, and saved for rbuild.
    sequence_base: String,
    sequence_base_archive: PathBuf,
}

static SUITE: OnceLock<Result<Suite, String>> = OnceLock::new();

fn suite() -> Result<&'static Suite, Failed> {
    SUITE.get_or_init(Suite::new).as_ref().map_err(|e| Failed::from(e.clone()))
}

/// Runs a command, naming it in the error.
fn run(cmd: &mut Command) -> Result<Output, String> {
    cmd.output().map_err(|e| format!("{cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn docker(buildkit: Option<bool>) -> Command {
    let mut cmd = Command::new(DOCKER);
    if let Some(on) = buildkit {
        cmd.env("DOCKER_BUILDKIT", if on { "1" } else { "0" });
    }
    cmd.env_remove("DOCKER_HOST");
    cmd
}

fn docker_ok(args: &[&str]) -> Result<String, String> {
    let out = run(docker(None).args(args))?;
    if !out.status.success() {
        return Err(format!("docker {args:?}: {}", text(&out)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether dockerd answers (`docker version` reaches the server).
fn docker_available() -> bool {
    Path::new(DOCKER).exists()
        && docker(None).args(["version", "--format", "{{.Server.Version}}"]).output().is_ok_and(|o| o.status.success())
}

impl Suite {
    fn new() -> Result<Suite, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let allowlist = compare::read_allowlist(&suite_dir().join("allowlist.toml"))?;
        // The busybox tarball from the repo's script, imported into Docker unless busybox:latest
        // there already is exactly it (same single diff_id), then saved for rbuild to load.
        let rootfs = dir.path().join("busybox-rootfs.tar");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/busybox-rootfs.sh");
        let out = run(Command::new("bash").arg(&script))?;
        if !out.status.success() {
            return Err(format!("{}: {}", script.display(), text(&out)));
        }
        std::fs::write(&rootfs, &out.stdout).map_err(|e| e.to_string())?;
        let want = format!("[\"sha256:{}\"]", image::sha256_hex(&out.stdout));
        let have = docker_ok(&["image", "inspect", "busybox:latest", "--format", "{{json .RootFS.Layers}}"]);
        if have.as_deref().map(str::trim) != Ok(want.as_str()) {
            docker_ok(&["import", &rootfs.to_string_lossy(), "busybox:latest"])?;
        }
        let base_archive = dir.path().join("busybox-docker.tar");
        docker_ok(&["save", "-o", &base_archive.to_string_lossy(), "busybox:latest"])?;
        let store = dir.path().join("store");
        load_base(&store, &base_archive)?;
        remove_docker_images();
        // Sequences start from a busybox imported anew (a new image ID), so no classic cache
        // from earlier runs (their other stages' images, say) matches their steps.
        let sequence_base = format!("{PREFIX}-base:{}", std::process::id());
        docker_ok(&["import", &rootfs.to_string_lossy(), &sequence_base])?;
        let sequence_base_archive = dir.path().join("sequence-base.tar");
        docker_ok(&["save", "-o", &sequence_base_archive.to_string_lossy(), &sequence_base])?;
        Ok(Suite { dir, base_archive, store, allowlist, sequence_base, sequence_base_archive })
    }
}

/// Loads the busybox base into the rbuild store at `store`.
fn load_base(store: &Path, archive: &Path) -> Result<(), String> {
    let out = common::rbuild(store, &["load", "-q", "-i", &archive.to_string_lossy()]);
    if !out.status.success() {
        return Err(format!("rbuild load {}: {}", archive.display(), text(&out)));
    }
    Ok(())
}

/// Removes every image the suite tagged in Docker (also what an interrupted run left), which
/// also drops the classic builder's intermediate images and so its cache of them.
fn remove_docker_images() {
    let listed = docker_ok(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]).unwrap_or_default();
    let ours: Vec<&str> = listed.lines().filter(|l| l.starts_with(PREFIX)).collect();
    if !ours.is_empty() {
        let mut args = vec!["rmi", "-f"];
        args.extend(ours);
        let _ = docker_ok(&args);
    }
}

/// A fresh build context for a case or sequence: its `context/` copied, then `setup.sh` run in it.
fn make_context(case_dir: &Path, into: &Path) -> Result<(), String> {
    std::fs::create_dir_all(into).map_err(|e| e.to_string())?;
    // A umask-002 checkout's mode, so what a copy takes from the context root shows.
    std::fs::set_permissions(into, std::os::unix::fs::PermissionsExt::from_mode(0o775)).map_err(|e| e.to_string())?;
    let context = case_dir.join("context");
    if context.is_dir() {
        let out = run(Command::new("cp").arg("-a").arg(format!("{}/.", context.display())).arg(into))?;
        if !out.status.success() {
            return Err(format!("copying {}: {}", context.display(), text(&out)));
        }
    }
    std::fs::copy(case_dir.join("Dockerfile"), into.join("Dockerfile"))
        .map_err(|e| format!("{}/Dockerfile: {e}", case_dir.display()))?;
    let setup = case_dir.join("setup.sh");
    if setup.exists() {
        let out = run(Command::new("sh").arg(&setup).current_dir(into))?;
        if !out.status.success() {
            return Err(format!("{}: {}", setup.display(), text(&out)));
        }
    }
    Ok(())
}

fn read_options(case_dir: &Path) -> Result<CaseOptions, String> {
    let path = case_dir.join("case.toml");
    if !path.exists() {
        return Ok(CaseOptions::default());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The build flags a case's options mean, the same for rbuild and Docker.
fn build_flags(options: &CaseOptions) -> Vec<String> {
    let mut flags = Vec::new();
    for (name, value) in &options.build_args {
        flags.extend(["--build-arg".to_owned(), format!("{name}={value}")]);
    }
    if let Some(target) = &options.target {
        flags.extend(["--target".to_owned(), target.clone()]);
    }
    flags
}

/// The outcome of one build: the image when it succeeded, else the exit code and output.
enum Built {
    Image(image::Image),
    Failed(Option<i32>, String),
}

fn rbuild_build(store: &Path, context: &Path, tag: &str, flags: &[String], out_dir: &Path) -> Result<Built, String> {
    let mut args: Vec<&str> = vec!["build", "--progress", "plain", "-t", tag];
    args.extend(flags.iter().map(String::as_str));
    let context_arg = context.to_string_lossy();
    args.push(&context_arg);
    let out = common::rbuild(store, &args);
    if !out.status.success() {
        return Ok(Built::Failed(out.status.code(), text(&out)));
    }
    let archive = out_dir.join("rbuild.tar");
    let save = common::rbuild(store, &["save", "-o", &archive.to_string_lossy(), tag]);
    if !save.status.success() {
        return Err(format!("rbuild save {tag}: {}", text(&save)));
    }
    Ok(Built::Image(image::read_archive(&archive)?))
}

/// The images a classic build made (` ---> <id>` after a step that neither was FROM nor used
/// the cache): intermediate images, some of which (other stages') no tag keeps.
fn classic_made_images(output: &str) -> Vec<String> {
    let mut made = Vec::new();
    let (mut from, mut cached) = (false, false);
    for line in output.lines() {
        if let Some(step) = line.strip_prefix("Step ") {
            from = step.split_once(" : ").is_some_and(|(_, i)| i.to_ascii_uppercase().starts_with("FROM "));
            cached = false;
        } else if line.trim() == "---> Using cache" {
            cached = true;
        } else if let Some(id) = line.strip_prefix(" ---> ") {
            if !from && !cached && id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                made.push(id.to_owned());
            }
        }
    }
    made
}

/// Removes the images a classic build made that nothing tags any more (newest first, so
/// children go before parents); tagged or still used ones stay.
fn remove_untagged(ids: &[String]) {
    for id in ids.iter().rev() {
        let tags = docker_ok(&["image", "inspect", "--format", "{{len .RepoTags}}", id]);
        if tags.as_deref().map(str::trim) == Ok("0") {
            let _ = docker_ok(&["rmi", id]);
        }
    }
}

fn docker_build(buildkit: bool, context: &Path, tag: &str, flags: &[String], out_dir: &Path) -> Result<Built, String> {
    let mut cmd = docker(Some(buildkit));
    cmd.args(["build", "--network", "host", "-t", tag]).args(flags).arg(context);
    if buildkit {
        cmd.env("BUILDKIT_PROGRESS", "plain");
    }
    let out = run(&mut cmd)?;
    let made = if buildkit { Vec::new() } else { classic_made_images(&text(&out)) };
    // Once saved (below) and untagged by the caller, the tagged image goes with its parents;
    // other stages' images are removed here.
    let result = save_built(&out, buildkit, tag, out_dir);
    let _ = docker_ok(&["rmi", "-f", tag]);
    remove_untagged(&made);
    result
}

fn save_built(out: &Output, buildkit: bool, tag: &str, out_dir: &Path) -> Result<Built, String> {
    if !out.status.success() {
        return Ok(Built::Failed(out.status.code(), text(out)));
    }
    let archive = out_dir.join(if buildkit { "buildkit.tar" } else { "classic.tar" });
    docker_ok(&["save", "-o", &archive.to_string_lossy(), tag])?;
    Ok(Built::Image(image::read_archive(&archive)?))
}

fn check_case(name: &str, case_dir: &Path) -> Result<(), Failed> {
    let suite = suite()?;
    let options = read_options(case_dir)?;
    let builders = options.builders.clone().unwrap_or_else(|| vec!["classic".into(), "buildkit".into()]);
    if builders.iter().any(|b| b != "classic" && b != "buildkit") {
        return Err(format!("{name}: builders must be \"classic\" and/or \"buildkit\", not {builders:?}").into());
    }
    if builders.is_empty() != options.documented.is_some() {
        return Err(
            format!("{name}: `documented` files go with `builders = []` (what Docker 20.10 cannot build)").into()
        );
    }
    let mut allowed = Vec::new();
    for id in &options.allow {
        let entry = suite.allowlist.iter().find(|a| &a.id == id);
        allowed.push(entry.ok_or_else(|| format!("{name}: allow names {id}, which allowlist.toml does not have"))?);
    }
    allowed.extend(suite.allowlist.iter().filter(|a| a.everywhere));
    let work = suite.dir.path().join("cases").join(name);
    let context = work.join("context");
    make_context(case_dir, &context)?;
    let outcome = build_and_compare(name, suite, &options, &builders, allowed, &work, &context);
    // The case's archives and context are not needed any more, whatever the outcome.
    let _ = std::fs::remove_dir_all(&work);
    outcome
}

/// Builds one case with rbuild and the Docker builders it names and compares the images.
fn build_and_compare(
    name: &str,
    suite: &Suite,
    options: &CaseOptions,
    builders: &[String],
    allowed: Vec<&Allowance>,
    work: &Path,
    context: &Path,
) -> Result<(), Failed> {
    let flags = build_flags(options);
    let tag = |builder: &str| format!("{PREFIX}-{name}:{builder}");
    let ours = rbuild_build(&suite.store, context, &tag("rbuild"), &flags, work)?;
    let mut theirs: BTreeMap<&str, Built> = BTreeMap::new();
    for builder in builders {
        let built = docker_build(builder == "buildkit", context, &tag(builder), &flags, work);
        theirs.insert(builder.as_str(), built?);
    }
    if options.expect_fail {
        let Built::Failed(code, output) = ours else {
            return Err(format!("{name}: rbuild built it, but it must fail").into());
        };
        for (builder, built) in &theirs {
            if let Built::Image(_) = built {
                return Err(format!("{name}: docker ({builder}) built it: the case says it must fail").into());
            }
        }
        if let Some(want) = options.exit_code {
            if code != Some(want) {
                return Err(format!("{name}: rbuild exited {code:?}, want {want}:\n{output}").into());
            }
            // rbuild's exit code is classic docker's (BuildKit's CLI always exits 1).
            if let Some(Built::Failed(classic, _)) = theirs.get("classic") {
                if *classic != Some(want) {
                    return Err(
                        format!("{name}: classic docker exited {classic:?}: exit_code = {want} is wrong").into()
                    );
                }
            }
        }
        return Ok(());
    }
    let ours = match ours {
        Built::Image(image) => image,
        Built::Failed(code, output) => return Err(format!("{name}: rbuild build failed ({code:?}):\n{output}").into()),
    };
    let mut images = BTreeMap::new();
    for (builder, built) in theirs {
        match built {
            Built::Image(image) => {
                images.insert(builder, image);
            }
            Built::Failed(code, output) => {
                return Err(format!("{name}: docker ({builder}) failed ({code:?}):\n{output}").into())
            }
        }
    }
    let problems = match &options.documented {
        Some(documented) => compare::documented_differences(&ours, documented),
        None => {
            let expected = Expected { classic: images.get("classic"), buildkit: images.get("buildkit") };
            compare::differences(&ours, &expected, &Allowed(allowed))
        }
    };
    if !problems.is_empty() {
        return Err(format!("{name}: rbuild differs from docker:\n{}", problems.join("\n")).into());
    }
    if options.rootless {
        sequence::check_rootless(name, context, &flags, &suite.base_archive)?;
    }
    Ok(())
}

fn dirs(under: &str) -> Vec<(String, PathBuf)> {
    let root = suite_dir().join(under);
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(&root)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join("Dockerfile").is_file())
                .map(|p| (p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), p))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

fn main() {
    let arguments = Arguments::from_args();
    let ready = common::require(common::is_root(), "root (rbuild's RUN containers need overlay mounts)")
        && common::require(Path::new("/bin/busybox").exists(), "/bin/busybox (Debian package busybox-static)")
        && common::require(docker_available(), "dockerd with the client at /usr/bin/docker (Debian docker.io)");
    let mut trials = Vec::new();
    for (name, dir) in dirs("cases") {
        trials.push(Trial::test(format!("case:{name}"), move || check_case(&name, &dir)).with_ignored_flag(!ready));
    }
    for (name, dir) in dirs("sequences") {
        trials.push(
            Trial::test(format!("sequence:{name}"), move || {
                let suite = suite()?;
                sequence::check_sequence(
                    &name,
                    &dir,
                    suite.dir.path(),
                    &suite.sequence_base,
                    &suite.sequence_base_archive,
                )
            })
            .with_ignored_flag(!ready),
        );
    }
    let conclusion = libtest_mimic::run(&arguments, trials);
    if let Some(suite) = SUITE.get() {
        remove_docker_images();
        // A static is never dropped: its temp dir (stores, contexts, archives) goes here.
        if let Ok(suite) = suite {
            let _ = std::fs::remove_dir_all(suite.dir.path());
        }
    }
    conclusion.exit();
}
