//! Remote build contexts, as `docker build` takes them: a git repository
//! (`https://host/repo.git#ref:subdir`, `git@host:repo.git`, `git://host/repo#ref:subdir`,
//! `github.com/user/repo`), fetched shallowly at the ref; or an http(s) URL whose body is a
//! tar archive (plain, gzip, bzip2, xz or zstd: the context) or a plain text file (the
//! Dockerfile, with an empty context). [`RemoteContext::parse`] tells a remote context from
//! a path with Docker's rules; [`fetch`] brings it into a directory the caller owns (a work
//! dir in the store's `tmp/`, removed by the caller whatever happens) and reports the
//! context's time (commit time, `Last-Modified` or the newest archive entry) for
//! `SOURCE_DATE_EPOCH=context`. The fetched tree is then opened like a local context
//! ([`crate::context::BuildContext`]), so `.dockerignore` applies to it.
//!
//! Git is the system `git`, not a library such as `gix`: the user's git configuration
//! (credential helpers, `url.*.insteadOf`, proxies, ssh keys for `git@host:` URLs) applies
//! as it does to Docker's and BuildKit's own git fetches (both run `git`), and a shallow
//! fetch of a ref, its submodules and a fallback for a bare commit are a few commands
//! instead of a large dependency. Archives are unpacked by the store's hardened applier
//! ([`crate::layer::apply`], literal mode): an entry that would escape is refused, by name.

use std::ffi::OsStr;
use std::io::{self, BufReader, Read, Seek, Write};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::layer::apply::{ApplyError, LayerApply, WhiteoutMode};
use crate::layer::archive::{decompressed, is_tar_archive, ArchiveCompression};

/// What makes a context a git repository, whatever follows (docker/cli `urlutil.IsGitURL`).
const GIT_PREFIXES: [&str; 3] = ["git://", "git@", "github.com/"];

/// A build context that is not a local path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteContext {
    Git(GitContext),
    /// An http(s) URL of a tar archive or of a Dockerfile.
    Url(String),
}

/// A git repository at a ref, optionally a subdirectory of it (`URL#ref:subdir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitContext {
    /// The context as written (errors name it).
    pub url: String,
    /// What git fetches from: the URL without its fragment (`github.com/…` as `https://`).
    pub remote: String,
    /// A branch, tag or commit; none: the remote's HEAD.
    pub reference: Option<String>,
    /// The directory of the repository that is the context; none: its root.
    pub subdir: Option<String>,
}

/// How a fetch goes.
#[derive(Debug, Clone, Copy)]
pub struct FetchOptions<'a> {
    /// Keep the repository's `.git` directory in the context (BuildKit's
    /// `BUILDKIT_CONTEXT_KEEP_GIT_DIR=1`); by default it is removed, as BuildKit does.
    pub keep_git_dir: bool,
    /// Set (by a signal handler) to stop the fetch: a running git is killed.
    pub cancel: &'a AtomicBool,
}

/// A fetched context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedContext {
    /// The context directory (a repository's subdirectory when one was named).
    pub root: PathBuf,
    /// The URL served a Dockerfile, not an archive: `root` holds only `Dockerfile`.
    pub dockerfile_only: bool,
    /// The context's time in seconds: the commit time, else the `Last-Modified` of the
    /// response, else the newest mtime in the archive.
    pub time: Option<i64>,
    /// The commit checked out (git contexts).
    pub commit: Option<String>,
}

/// Why a remote context could not be fetched. Every variant names the URL and the step.
#[derive(thiserror::Error, Debug)]
pub enum RemoteError {
    #[error("{url}: {step} failed: {detail}")]
    Git { url: String, step: String, detail: String },
    #[error("{url}: cannot run git ({source}); a git build context needs git installed")]
    NoGit { url: String, source: io::Error },
    #[error("{url}: subdirectory {subdir:?} {reason}")]
    Subdir { url: String, subdir: String, reason: String },
    #[error("{url}: download failed: {detail}")]
    Download { url: String, detail: String },
    #[error("{url}: unpacking the context archive failed: {source}")]
    Archive { url: String, source: ApplyError },
    #[error("{url}: the response is compressed but holds no tar archive")]
    NotAnArchive { url: String },
    #[error("{url}: fetching the build context was interrupted")]
    Interrupted { url: String },
    #[error("{url}: {path}: {source}")]
    Io { url: String, path: PathBuf, source: io::Error },
}

impl RemoteContext {
    /// The remote context `context` names, or `None` for a local path. Docker's rules
    /// (docker/cli `urlutil`): `git://`, `git@` and `github.com/` are git, so is an http(s)
    /// URL whose path ends in `.git` (before an optional `#fragment`); any other http(s) URL
    /// is an archive or a Dockerfile.
    pub fn parse(context: &str) -> Option<RemoteContext> {
        let is_url = context.starts_with("http://") || context.starts_with("https://");
        let before_fragment = context.split_once('#').map_or(context, |(url, _)| url);
        let git_url = is_url && before_fragment.ends_with(".git");
        let git_prefix = GIT_PREFIXES.iter().any(|p| context.starts_with(p));
        if git_url || git_prefix {
            return Some(RemoteContext::Git(GitContext::parse(context)));
        }
        is_url.then(|| RemoteContext::Url(context.to_string()))
    }

    /// The context as written.
    pub fn url(&self) -> &str {
        match self {
            RemoteContext::Git(git) => &git.url,
            RemoteContext::Url(url) => url,
        }
    }
}

impl GitContext {
    /// `URL[#ref[:subdir]]`; an empty ref or subdir is the default.
    fn parse(context: &str) -> GitContext {
        let (remote, fragment) = context.split_once('#').unwrap_or((context, ""));
        let (reference, subdir) = fragment.split_once(':').unwrap_or((fragment, ""));
        let remote = match remote.strip_prefix("github.com/") {
            Some(path) => format!("https://github.com/{path}"),
            None => remote.to_string(),
        };
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        GitContext { url: context.to_string(), remote, reference: non_empty(reference), subdir: non_empty(subdir) }
    }
}

/// Fetches `context` into `work` (an empty directory the caller removes afterwards).
pub fn fetch(context: &RemoteContext, work: &Path, opts: &FetchOptions) -> Result<FetchedContext, RemoteError> {
    match context {
        RemoteContext::Git(git) => fetch_git(git, work, opts),
        RemoteContext::Url(url) => fetch_url(url, work, opts.cancel),
    }
}

/// Runs `git ARGS` in `dir`, killing it when `cancel` is set; returns its stdout. Output goes
/// to unnamed files in `work`, so a chatty git never blocks on a full pipe.
fn run_git(
    git: &GitContext,
    step: &str,
    dir: &Path,
    args: &[&OsStr],
    work: &Path,
    cancel: &AtomicBool,
) -> Result<String, RemoteError> {
    let io_err = |source| RemoteError::Io { url: git.url.clone(), path: work.to_path_buf(), source };
    let mut stdout = tempfile::tempfile_in(work).map_err(io_err)?;
    let mut stderr = tempfile::tempfile_in(work).map_err(io_err)?;
    let mut child = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        // Never wait for a password on a terminal: a CI job has none.
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .stdout(stdout.try_clone().map_err(io_err)?)
        .stderr(stderr.try_clone().map_err(io_err)?)
        .spawn()
        .map_err(|source| RemoteError::NoGit { url: git.url.clone(), source })?;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(io_err)? {
            break status;
        }
        if cancel.load(Ordering::SeqCst) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(RemoteError::Interrupted { url: git.url.clone() });
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read_all = |file: &mut std::fs::File| -> io::Result<String> {
        let mut text = String::new();
        file.rewind()?;
        file.read_to_string(&mut text)?;
        Ok(text)
    };
    if !status.success() {
        let detail = read_all(&mut stderr).map_err(io_err)?;
        let detail = detail.trim();
        let detail = if detail.is_empty() { status.to_string() } else { detail.replace('\n', "; ") };
        return Err(RemoteError::Git { url: git.url.clone(), step: step.to_string(), detail });
    }
    read_all(&mut stdout).map_err(io_err)
}

/// `git init`, a shallow fetch of the ref (a full fetch when the ref is a commit the server
/// does not hand out alone), checkout, submodules; then the commit and its time are read and
/// `.git` is removed unless kept.
fn fetch_git(git: &GitContext, work: &Path, opts: &FetchOptions) -> Result<FetchedContext, RemoteError> {
    let repo = work.join("repo");
    let os = |s: &'static str| OsStr::new(s);
    let run = |step: &str, args: &[&OsStr]| run_git(git, step, &repo, args, work, opts.cancel);
    fs_err::create_dir(&repo).map_err(|source| RemoteError::Io { url: git.url.clone(), path: repo.clone(), source })?;
    run("git init", &[os("init"), os("--quiet")])?;
    let remote = OsStr::new(&git.remote);
    let reference = git.reference.as_deref();
    let ref_name = reference.unwrap_or("HEAD");
    let fetch_step = format!("clone (fetching ref {ref_name:?})");
    let mut shallow = vec![os("fetch"), os("--quiet"), os("--depth=1"), os("--no-tags"), os("--"), remote];
    shallow.extend(reference.map(OsStr::new));
    let checkout_rev = match run(&fetch_step, &shallow) {
        Ok(_) => "FETCH_HEAD",
        // A commit that is no branch's or tag's tip: fetch everything, then check it out.
        Err(RemoteError::Git { .. }) if reference.is_some_and(looks_like_commit) => {
            let all = [os("fetch"), os("--quiet"), os("--"), remote, os("+refs/heads/*:refs/remotes/origin/*")];
            run(&fetch_step, &all)?;
            ref_name
        }
        Err(e) => return Err(e),
    };
    let checkout_step = format!("checkout of ref {ref_name:?}");
    let detached = [os("-c"), os("advice.detachedHead=false"), os("checkout"), os("--quiet"), os("--detach")];
    let mut checkout = detached.to_vec();
    checkout.extend([OsStr::new(checkout_rev), os("--")]);
    run(&checkout_step, &checkout)?;
    if repo.join(".gitmodules").exists() {
        let submodules =
            [os("submodule"), os("update"), os("--quiet"), os("--init"), os("--recursive"), os("--depth=1")];
        run("submodule update", &submodules)?;
    }
    let head = run("reading the commit", &[os("log"), os("-1"), os("--format=%H %ct"), os("HEAD")])?;
    let (commit, time) = head.trim().split_once(' ').unwrap_or((head.trim(), ""));
    if !opts.keep_git_dir {
        let dot_git = repo.join(".git");
        fs_err::remove_dir_all(&dot_git).map_err(|source| RemoteError::Io {
            url: git.url.clone(),
            path: dot_git,
            source,
        })?;
    }
    let root = match &git.subdir {
        Some(subdir) => git_subdir(git, &repo, subdir, ref_name)?,
        None => repo,
    };
    Ok(FetchedContext {
        root,
        dockerfile_only: false,
        time: time.parse().ok(),
        commit: Some(commit.to_string()).filter(|c| !c.is_empty()),
    })
}

/// 4 to 64 hex digits: what git may take as an abbreviated or full commit (sha1 or sha256).
fn looks_like_commit(reference: &str) -> bool {
    (4..=64).contains(&reference.len()) && reference.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `path` is relative and has no `..`: a name inside the directory it is joined to
/// (a repository's subdir, `-f` in a remote context), symlinks aside.
pub fn stays_inside(path: &Path) -> bool {
    path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// `relative` under `root` with every symlink resolved, if that stays inside `root` (`None`:
/// it leads out, as a hostile repository's `Dockerfile -> /etc/shadow` would); an error when
/// it does not exist.
pub fn resolve_inside(root: &Path, relative: &Path) -> io::Result<Option<PathBuf>> {
    let resolved = root.join(relative).canonicalize()?;
    Ok(resolved.starts_with(root.canonicalize()?).then_some(resolved))
}

/// The context directory `subdir` of the checked-out `repo`: relative, without `..`, a
/// directory, and (through its symlinks) inside the repository.
fn git_subdir(git: &GitContext, repo: &Path, subdir: &str, ref_name: &str) -> Result<PathBuf, RemoteError> {
    let fail = |reason: String| RemoteError::Subdir { url: git.url.clone(), subdir: subdir.to_string(), reason };
    let relative = Path::new(subdir);
    if !stays_inside(relative) {
        return Err(fail("must be a relative path inside the repository (no '/' prefix, no '..')".into()));
    }
    let resolved = match resolve_inside(repo, relative) {
        Ok(Some(resolved)) => resolved,
        Ok(None) => return Err(fail("leaves the repository through a symlink".into())),
        Err(_) => return Err(fail(format!("does not exist in the repository at ref {ref_name:?}"))),
    };
    if !resolved.is_dir() {
        return Err(fail(format!("is not a directory in the repository at ref {ref_name:?}")));
    }
    Ok(resolved)
}

/// Downloads `url` into `work` and unpacks it when it is a tar archive; otherwise the body
/// is the Dockerfile of an empty context, as `docker build URL` does.
fn fetch_url(url: &str, work: &Path, cancel: &AtomicBool) -> Result<FetchedContext, RemoteError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RemoteError::Io { url: url.to_string(), path, source }
    };
    let download = work.join("download");
    let last_modified = download_to(url, &download, cancel)?;
    let root = work.join("context");
    fs_err::create_dir(&root).map_err(io_err(&root))?;
    if !is_tar_archive(&download) {
        let mut head = [0u8; 8];
        let read = fs_err::File::open(&download).and_then(|mut f| f.read(&mut head)).map_err(io_err(&download))?;
        if ArchiveCompression::detect(&head[..read]) != ArchiveCompression::None {
            return Err(RemoteError::NotAnArchive { url: url.to_string() });
        }
        fs_err::rename(&download, root.join("Dockerfile")).map_err(io_err(&download))?;
        return Ok(FetchedContext { root, dockerfile_only: true, time: last_modified, commit: None });
    }
    let file = fs_err::File::open(&download).map_err(io_err(&download))?;
    let tar = decompressed(BufReader::new(file), Some(work), None)
        .map_err(|e| RemoteError::Download { url: url.to_string(), detail: format!("decompressing: {e}") })?;
    let archive_err = |source| RemoteError::Archive { url: url.to_string(), source };
    let mut apply = LayerApply::new(&root, WhiteoutMode::Literal).map_err(archive_err)?;
    apply.apply(tar).map_err(archive_err)?;
    fs_err::remove_file(&download).map_err(io_err(&download))?;
    let time = last_modified.or_else(|| newest_mtime(&root));
    Ok(FetchedContext { root, dockerfile_only: false, time, commit: None })
}

/// GETs `url` into the file `dest`, checking `cancel` between reads; returns the response's
/// `Last-Modified` time.
fn download_to(url: &str, dest: &Path, cancel: &AtomicBool) -> Result<Option<i64>, RemoteError> {
    let fail = |detail: String| RemoteError::Download { url: url.to_string(), detail };
    let response = ureq::get(url).call().map_err(|e| fail(e.to_string()))?;
    let last_modified = last_modified(response.headers());
    let io_err = |source| RemoteError::Io { url: url.to_string(), path: dest.to_path_buf(), source };
    let mut file = fs_err::File::create(dest).map_err(io_err)?;
    let mut body = response.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        if cancel.load(Ordering::SeqCst) {
            return Err(RemoteError::Interrupted { url: url.to_string() });
        }
        let read = body.read(&mut buf).map_err(|e| fail(format!("reading the response: {e}")))?;
        if read == 0 {
            break;
        }
        file.write_all(&buf[..read]).map_err(io_err)?;
    }
    Ok(last_modified)
}

/// A response's `Last-Modified` time in seconds, if it has a valid one (the time of a
/// fetched context, and of a file `ADD` downloads).
pub fn last_modified(headers: &http::HeaderMap) -> Option<i64> {
    let value = headers.get(http::header::LAST_MODIFIED)?.to_str().ok()?;
    Some(chrono::DateTime::parse_from_rfc2822(value).ok()?.timestamp())
}

/// The newest mtime (seconds) of anything under `dir`, the directory itself excluded.
fn newest_mtime(dir: &Path) -> Option<i64> {
    use std::os::unix::fs::MetadataExt;
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let Ok(meta) = entry.path().symlink_metadata() else { continue };
        let below = if meta.is_dir() { newest_mtime(&entry.path()) } else { None };
        newest = newest.max(Some(meta.mtime())).max(below);
    }
    newest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(url: &str, remote: &str, reference: Option<&str>, subdir: Option<&str>) -> Option<RemoteContext> {
        Some(RemoteContext::Git(GitContext {
            url: url.to_string(),
            remote: remote.to_string(),
            reference: reference.map(str::to_string),
            subdir: subdir.map(str::to_string),
        }))
    }

    #[test]
    fn contexts_are_told_apart_as_docker_does() {
        let cases = [
            ("git://h/repo#main:sub", git("git://h/repo#main:sub", "git://h/repo", Some("main"), Some("sub"))),
            ("git://h:9418/repo", git("git://h:9418/repo", "git://h:9418/repo", None, None)),
            ("https://h/r.git#v1", git("https://h/r.git#v1", "https://h/r.git", Some("v1"), None)),
            ("https://h/r.git#:docs", git("https://h/r.git#:docs", "https://h/r.git", None, Some("docs"))),
            ("git@h:u/r.git", git("git@h:u/r.git", "git@h:u/r.git", None, None)),
            ("github.com/u/r#dev", git("github.com/u/r#dev", "https://github.com/u/r", Some("dev"), None)),
            ("https://h/ctx.tar.gz", Some(RemoteContext::Url("https://h/ctx.tar.gz".into()))),
            ("http://h/Dockerfile", Some(RemoteContext::Url("http://h/Dockerfile".into()))),
            (".", None),
            ("dir/sub.git", None),
            ("./git@x", None),
        ];
        for (context, want) in cases {
            assert_eq!(RemoteContext::parse(context), want, "{context}");
        }
    }

    #[test]
    fn commits_are_hex() {
        assert!(looks_like_commit("a1b2c3d"));
        assert!(!looks_like_commit("main"));
        assert!(!looks_like_commit("abc"));
    }

    #[test]
    fn a_subdir_must_stay_inside_the_repository() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join("sub")).expect("mkdir");
        std::fs::write(repo.join("file"), "x").expect("write");
        std::os::unix::fs::symlink("..", repo.join("up")).expect("symlink");
        let ctx = GitContext { url: "git://h/r".into(), remote: "git://h/r".into(), reference: None, subdir: None };
        assert!(git_subdir(&ctx, &repo, "sub", "HEAD").is_ok());
        for (subdir, reason) in [
            ("../x", "relative path"),
            ("/etc", "relative path"),
            ("up", "leaves the repository"),
            ("nope", "does not exist"),
            ("file", "not a directory"),
        ] {
            let err = git_subdir(&ctx, &repo, subdir, "HEAD").expect_err(subdir).to_string();
            assert!(err.starts_with(&format!("git://h/r: subdirectory {subdir:?}")), "{err}");
            assert!(err.contains(reason), "{subdir}: {err}");
        }
    }
}
