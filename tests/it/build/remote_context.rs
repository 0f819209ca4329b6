//! Remote build contexts through the binary: a git repository served by `git daemon` on
//! 127.0.0.1 (`git://127.0.0.1:PORT/repo#ref:subdir`) and tar archives and a Dockerfile served
//! by a tiny HTTP server thread. Each remote build must give the image ID of the build of the
//! same directory on disk (every build `--no-cache`, so no build reuses another's image, and
//! with the same `SOURCE_DATE_EPOCH`); bad refs, subdirs and archive entries fail naming the
//! URL and the step; the fetch's work dir in the store's `tmp/` is gone afterwards, after a
//! failure and after Ctrl-C too.
//!
//! Needs root, /bin/busybox (the build fixture) and git with `git daemon`; skips with a message
//! otherwise, fails under CI=true.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::fixture::{have_tool, raw_tar, require, Fixture, Raw};

/// The two commits of the test repository: `v1` (tagged) and `main`'s tip.
const V1_TIME: i64 = 1_700_000_000;
const MAIN_TIME: i64 = 1_700_001_000;

const DOCKERFILE: &str = "FROM busybox\nCOPY . /app\n";

/// Runs `git ARGS` in `dir` with fixed identities and commit times; returns stdout.
fn git(dir: &Path, args: &[&str], time: i64) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main"])
        .args(args)
        .env("GIT_AUTHOR_DATE", format!("@{time} +0000"))
        .env("GIT_COMMITTER_DATE", format!("@{time} +0000"))
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// `git daemon` serving `base` on a free port of 127.0.0.1, killed on drop.
struct GitDaemon {
    child: Child,
    port: u16,
}

impl GitDaemon {
    fn serve(base: &Path) -> GitDaemon {
        let port = free_port();
        let child = Command::new("git")
            .args(["daemon", "--export-all", "--reuseaddr", "--listen=127.0.0.1"])
            .arg(format!("--base-path={}", base.display()))
            .arg(format!("--port={port}"))
            .arg(base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start git daemon");
        let daemon = GitDaemon { child, port };
        wait_for_port(port);
        daemon
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on 127.0.0.1:{port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The test repository, bare at `<dir>/git/repo`: commit `v1` (tagged) and then `main`, each
/// with `sub/` holding a Dockerfile, files and a `.dockerignore`; `top.txt` outside `sub/`.
/// Returns the bare repository and v1's commit.
fn make_repository(dir: &Path) -> (PathBuf, String) {
    let work = dir.join("git-work");
    std::fs::create_dir_all(&work).expect("mkdir");
    git(&work, &["init", "--quiet"], V1_TIME);
    write(&work.join("top.txt"), "outside the context\n");
    write(&work.join("sub/Dockerfile"), DOCKERFILE);
    write(&work.join("sub/app.txt"), "v1\n");
    write(&work.join("sub/lib/nested.txt"), "nested\n");
    write(&work.join("sub/secret.key"), "must not reach the image\n");
    write(&work.join("sub/.dockerignore"), "*.key\n");
    // Hostile: a Dockerfile and a directory that lead out of the repository.
    std::fs::create_dir_all(work.join("escape")).expect("mkdir");
    std::os::unix::fs::symlink("/etc/passwd", work.join("escape/Dockerfile")).expect("symlink");
    std::os::unix::fs::symlink("/", work.join("outside")).expect("symlink");
    git(&work, &["add", "-A"], V1_TIME);
    git(&work, &["commit", "--quiet", "-m", "v1"], V1_TIME);
    git(&work, &["tag", "v1"], V1_TIME);
    let v1 = git(&work, &["rev-parse", "HEAD"], V1_TIME).trim().to_string();
    write(&work.join("sub/app.txt"), "main\n");
    git(&work, &["commit", "--quiet", "-am", "main"], MAIN_TIME);
    let bare = dir.join("git/repo");
    let out = Command::new("git").args(["clone", "--quiet", "--bare"]).arg(&work).arg(&bare).output().expect("clone");
    assert!(out.status.success(), "git clone --bare: {}", String::from_utf8_lossy(&out.stderr));
    (bare, v1)
}

/// `rbuild build --no-cache -q ARGS` with `SOURCE_DATE_EPOCH` set as given (or unset).
fn build(fx: &Fixture, epoch: Option<i64>, args: &[&str]) -> Output {
    let mut command = crate::fixture::rbuild_command();
    command.env("RBUILD_ROOT", &fx.root).env_remove("CI").env_remove("SOURCE_DATE_EPOCH");
    if let Some(epoch) = epoch {
        command.env("SOURCE_DATE_EPOCH", epoch.to_string());
    }
    command.args(["build", "--no-cache", "-q"]).args(args).output().expect("run rbuild")
}

/// The image ID of a build that must succeed.
fn build_id(fx: &Fixture, epoch: Option<i64>, args: &[&str]) -> String {
    let out = build(fx, epoch, args);
    assert!(out.status.success(), "rbuild build {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8(out.stdout).expect("utf-8").trim().to_string();
    assert!(id.starts_with("sha256:"), "{args:?}: {id}");
    id
}

/// The stderr of a build that must fail.
fn build_error(fx: &Fixture, args: &[&str]) -> String {
    let out = build(fx, None, args);
    assert!(!out.status.success(), "rbuild build {args:?} succeeded");
    String::from_utf8(out.stderr).expect("utf-8")
}

/// What the build left in the store's `tmp/` (work dirs of fetched contexts, among others).
fn leftovers(fx: &Fixture) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(fx.root.join("tmp")) else { return Vec::new() };
    entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with("work-")).collect()
}

/// A build fixture and the test repository served by `git daemon`, with the bare
/// repository and v1's commit; None (skipped) without root, busybox or git daemon.
fn served_repository() -> Option<(Fixture, GitDaemon, PathBuf, String)> {
    if !require(have_tool("git") && Path::new("/usr/lib/git-core/git-daemon").exists(), "git and git daemon") {
        return None;
    }
    let fx = Fixture::new()?;
    let (bare, v1) = make_repository(fx.dir.path());
    let daemon = GitDaemon::serve(bare.parent().expect("base"));
    Some((fx, daemon, bare, v1))
}

#[test]
fn a_git_context_equals_the_checked_out_directory() {
    let Some((fx, daemon, bare, _)) = served_repository() else { return };
    let url = format!("git://127.0.0.1:{}/repo#main:sub", daemon.port);

    // SOURCE_DATE_EPOCH=context takes main's commit time, as BuildKit does.
    let dry_run = crate::fixture::rbuild_ok(&fx.root, &["build", "--dry-run", &url]);
    assert!(dry_run.contains(&format!("Build context {url}: 4 files")), "{dry_run}");
    assert!(dry_run.contains("(after .dockerignore)"), "{dry_run}");
    let remote = build_id(&fx, None, &["--build-arg", "SOURCE_DATE_EPOCH=context", &url]);
    let checkout = fx.dir.path().join("checkout");
    let out = Command::new("git").args(["clone", "--quiet", "-b", "main"]).arg(&bare).arg(&checkout).output();
    assert!(out.expect("git clone").status.success());
    let local_dir = checkout.join("sub");
    let local = build_id(&fx, Some(MAIN_TIME), &[local_dir.to_str().expect("utf-8")]);
    assert_eq!(remote, local, "the git context builds the image of its checked-out directory");

    let rootfs = fx.rootfs(&remote);
    assert_eq!(std::fs::read_to_string(rootfs.join("app/app.txt")).expect("app.txt"), "main\n");
    assert_eq!(std::fs::read_to_string(rootfs.join("app/lib/nested.txt")).expect("nested"), "nested\n");
    assert!(!rootfs.join("app/secret.key").exists(), ".dockerignore applies to the fetched tree");
    assert!(!rootfs.join("app/.git").exists() && !rootfs.join("app/top.txt").exists(), "only sub/ is the context");
    assert_eq!(leftovers(&fx), Vec::<String>::new(), "the fetch's work dir is removed");

    // Without a subdir the repository is the context and -f is a path inside it; its .git
    // is dropped unless BUILDKIT_CONTEXT_KEEP_GIT_DIR=1.
    let root_url = format!("git://127.0.0.1:{}/repo", daemon.port);
    let whole = build_id(&fx, Some(MAIN_TIME), &["-f", "sub/Dockerfile", &root_url]);
    let whole_root = fx.rootfs(&whole);
    assert!(whole_root.join("app/top.txt").exists() && whole_root.join("app/sub/app.txt").exists());
    assert!(!whole_root.join("app/.git").exists(), "no .git by default");
    let kept = build_id(
        &fx,
        Some(MAIN_TIME),
        &["--build-arg", "BUILDKIT_CONTEXT_KEEP_GIT_DIR=1", "-f", "sub/Dockerfile", &root_url],
    );
    assert!(fx.rootfs(&kept).join("app/.git/HEAD").is_file(), "BUILDKIT_CONTEXT_KEEP_GIT_DIR=1 keeps .git");

    // A new commit: the rebuild's miss is explained against the earlier builds of the URL,
    // though each fetch lands in a new directory.
    let work = fx.dir.path().join("git-work");
    write(&work.join("sub/app.txt"), "newer\n");
    git(&work, &["commit", "--quiet", "-am", "newer"], MAIN_TIME + 1);
    git(&work, &["push", "--quiet", bare.to_str().expect("utf-8"), "main"], MAIN_TIME + 1);
    let rebuild = crate::fixture::rbuild_ok(&fx.root, &["build", &url]);
    assert!(rebuild.contains("Cache miss: source changed: app.txt"), "{rebuild}");
}

#[test]
fn a_tag_or_a_commit_is_checked_out_and_a_bad_ref_fails_clearly() {
    let Some((fx, daemon, _, v1)) = served_repository() else { return };
    let repo = format!("git://127.0.0.1:{}/repo", daemon.port);

    let by_tag = build_id(&fx, None, &["--build-arg", "SOURCE_DATE_EPOCH=context", &format!("{repo}#v1:sub")]);
    assert_eq!(std::fs::read_to_string(fx.rootfs(&by_tag).join("app/app.txt")).expect("app.txt"), "v1\n");
    // v1 is not a branch tip: a commit the server may not hand out alone.
    for commit in [v1.as_str(), &v1[..12]] {
        let arg = format!("{repo}#{commit}:sub");
        let by_commit = build_id(&fx, None, &["--build-arg", "SOURCE_DATE_EPOCH=context", &arg]);
        assert_eq!(by_commit, by_tag, "commit {commit} is the tagged commit, with its commit time");
    }
    let epoch = build_id(&fx, Some(V1_TIME), &[&format!("{repo}#v1:sub")]);
    assert_eq!(epoch, by_tag, "SOURCE_DATE_EPOCH=context is v1's commit time");

    let err = build_error(&fx, &[&format!("{repo}#no-such-branch:sub")]);
    assert!(
        err.contains(&format!("{repo}#no-such-branch:sub: clone (fetching ref \"no-such-branch\") failed"))
            && err.contains("no-such-branch"),
        "{err}"
    );
    let err = build_error(&fx, &[&format!("{repo}#main:missing")]);
    assert!(err.contains("subdirectory \"missing\" does not exist in the repository at ref \"main\""), "{err}");
    let err = build_error(&fx, &[&format!("{repo}#main:../..")]);
    assert!(err.contains("subdirectory \"../..\" must be a relative path inside the repository"), "{err}");
    let err = build_error(&fx, &["-f", "../Dockerfile", &format!("{repo}#main:sub")]);
    assert!(
        err.contains("-f ../Dockerfile: with a remote context the Dockerfile is a path inside the context"),
        "{err}"
    );
    let err = build_error(&fx, &[&format!("{repo}#main:outside")]);
    assert!(err.contains("subdirectory \"outside\" leaves the repository through a symlink"), "{err}");
    let err = build_error(&fx, &[&format!("{repo}#main:escape")]);
    assert!(err.contains("#main:escape: the Dockerfile Dockerfile leads out of the context"), "{err}");
    assert!(!err.contains("root:"), "nothing of the host's /etc/passwd is read: {err}");
    let err = build_error(&fx, &[&format!("git://127.0.0.1:{}/nothing-here", daemon.port)]);
    assert!(err.contains("nothing-here: clone (fetching ref \"HEAD\") failed"), "{err}");
    assert_eq!(leftovers(&fx), Vec::<String>::new(), "failed fetches leave no work dir");
}

/// What one path of the test server answers.
#[derive(Clone)]
enum Route {
    /// A body, with a `Last-Modified` header when given.
    Body(Vec<u8>, Option<&'static str>),
    /// Headers and a few bytes, then a byte every 100 ms: a download that never ends, to
    /// interrupt. Each request is announced on the channel.
    Trickle(mpsc::Sender<()>),
}

/// An HTTP/1.0 server thread on 127.0.0.1 answering GETs from `routes` (404 otherwise); it
/// lives as long as the test binary.
fn serve_http(routes: Vec<(&'static str, Route)>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let routes = routes.clone();
            std::thread::spawn(move || answer(stream, &routes));
        }
    });
    port
}

fn answer(mut stream: TcpStream, routes: &[(&str, Route)]) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
        header.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("");
    match routes.iter().find(|(p, _)| *p == path).map(|(_, r)| r) {
        Some(Route::Body(body, modified)) => {
            let modified = modified.map(|m| format!("Last-Modified: {m}\r\n")).unwrap_or_default();
            let length = body.len();
            let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {length}\r\n{modified}Connection: close\r\n\r\n");
            let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body));
        }
        Some(Route::Trickle(requested)) => {
            let _ = stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 100000000\r\n\r\n");
            let _ = requested.send(());
            while stream.write_all(&[0]).is_ok() {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        None => {
            let _ = stream.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        }
    }
}

/// The newest mtime (seconds) of anything below `dir`.
fn newest_mtime_below(dir: &Path) -> i64 {
    use std::os::unix::fs::MetadataExt;
    let mut newest = 0;
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let meta = entry.path().symlink_metadata().expect("stat");
        newest = newest.max(meta.mtime());
        if meta.is_dir() {
            newest = newest.max(newest_mtime_below(&entry.path()));
        }
    }
    newest
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).expect("gzip");
    gz.finish().expect("gzip")
}

fn read(path: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).expect("read");
    bytes
}

#[test]
fn a_tarball_url_equals_the_local_directory_and_hostile_entries_are_refused() {
    let Some(fx) = Fixture::new() else { return };
    let files = [
        ("app.txt", "from the tarball\n"),
        ("lib/nested.txt", "nested\n"),
        ("secret.key", "ignored\n"),
        (".dockerignore", "*.key\n"),
        ("alt/Dockerfile", "FROM busybox\nCOPY app.txt /only/\n"),
    ];
    let ctx = fx.context("tarball-ctx", DOCKERFILE, &files);
    let tar = fx.dir.path().join("ctx.tar");
    crate::fixture::tar_of(&ctx, &tar);
    let evil = raw_tar(&[Raw::File("Dockerfile", DOCKERFILE.as_bytes()), Raw::File("../evil", b"x")]);
    let dockerfile_only = fx.context("dockerfile-only", "FROM busybox\nLABEL from=url\n", &[]);
    let port = serve_http(vec![
        ("/ctx.tar.gz", Route::Body(gzip(&read(&tar)), None)),
        // V1_TIME.
        ("/ctx.tar", Route::Body(read(&tar), Some("Tue, 14 Nov 2023 22:13:20 GMT"))),
        ("/evil.tar", Route::Body(evil, None)),
        ("/Dockerfile", Route::Body(b"FROM busybox\nLABEL from=url\n".to_vec(), None)),
    ]);
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let epoch = Some(V1_TIME);

    let local = build_id(&fx, epoch, &[ctx.to_str().expect("utf-8")]);
    assert_eq!(build_id(&fx, epoch, &[&url("/ctx.tar.gz")]), local, "a gzipped tarball URL");
    assert_eq!(build_id(&fx, epoch, &[&url("/ctx.tar")]), local, "a plain tarball URL");
    assert!(!fx.rootfs(&local).join("app/secret.key").exists(), ".dockerignore applies");
    // SOURCE_DATE_EPOCH=context: the Last-Modified time, else the newest entry of the archive.
    let context_epoch = ["--build-arg", "SOURCE_DATE_EPOCH=context"];
    assert_eq!(build_id(&fx, None, &[&context_epoch[..], &[&url("/ctx.tar")]].concat()), local, "Last-Modified");
    let newest = Some(newest_mtime_below(&ctx));
    assert_eq!(
        build_id(&fx, None, &[&context_epoch[..], &[&url("/ctx.tar.gz")]].concat()),
        build_id(&fx, newest, &[ctx.to_str().expect("utf-8")]),
        "the newest archive entry"
    );
    let alt_file = ctx.join("alt/Dockerfile");
    let local_alt = build_id(&fx, epoch, &["-f", alt_file.to_str().expect("utf-8"), ctx.to_str().expect("utf-8")]);
    assert_eq!(
        build_id(&fx, epoch, &["-f", "alt/Dockerfile", &url("/ctx.tar.gz")]),
        local_alt,
        "-f inside the archive"
    );

    // A plain text body is the Dockerfile of an empty context, as `docker build URL` reads it.
    let local_df = build_id(&fx, epoch, &[dockerfile_only.to_str().expect("utf-8")]);
    assert_eq!(build_id(&fx, epoch, &[&url("/Dockerfile")]), local_df, "a Dockerfile URL");

    let err = build_error(&fx, &[&url("/evil.tar")]);
    assert!(
        err.contains(&format!(
            "{}: unpacking the context archive failed: refused tar entry \"../evil\"",
            url("/evil.tar")
        )),
        "{err}"
    );
    assert!(!fx.dir.path().join("evil").exists() && !fx.root.join("tmp/evil").exists());
    let err = build_error(&fx, &[&url("/missing.tar.gz")]);
    assert!(err.contains(&format!("{}: download failed", url("/missing.tar.gz"))) && err.contains("404"), "{err}");
    assert_eq!(leftovers(&fx), Vec::<String>::new(), "no work dir is left behind");
}

#[test]
fn ctrl_c_during_a_fetch_exits_130_and_removes_the_work_dir() {
    let Some(fx) = Fixture::new() else { return };
    let (requested, announced) = mpsc::channel();
    let port = serve_http(vec![("/slow.tar.gz", Route::Trickle(requested))]);
    let mut child = crate::fixture::rbuild_command()
        .env("RBUILD_ROOT", &fx.root)
        .args(["build", &format!("http://127.0.0.1:{port}/slow.tar.gz")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rbuild");
    announced.recv_timeout(Duration::from_secs(60)).expect("rbuild asked for the archive");
    assert_eq!(leftovers(&fx).len(), 1, "the download goes to a work dir in the store's tmp/");
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = child.wait().expect("wait");
    let mut stderr = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("stderr");
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("fetching the build context was interrupted"), "{stderr}");
    assert_eq!(leftovers(&fx), Vec::<String>::new(), "Ctrl-C removes the work dir");
}
