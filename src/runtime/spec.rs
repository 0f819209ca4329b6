//! What a container runs and on what: [`ContainerSpec`] and its parts.

use std::fmt;
use std::path::PathBuf;

use crate::runtime::network::{HostEntry, PortMapping};
use crate::runtime::seccomp::SeccompPolicy;

/// Docker's default `PATH`, used when the environment has none.
pub use crate::image::DEFAULT_PATH;

/// The root filesystem of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rootfs {
    /// An overlay of read-only `lower` dirs, **top-most first** (the order of overlayfs's
    /// `lowerdir=`: `lower[0]` hides `lower[1]`), with writes going to `upper`. `work` must be
    /// an empty dir on the same filesystem as `upper`.
    Overlay { lower: Vec<PathBuf>, upper: PathBuf, work: PathBuf },
    /// A plain directory used as the root, written in place.
    Dir(PathBuf),
}

pub use crate::plan::{NetworkMode, OutputStream};

/// An extra filesystem mounted into the container after its root (and its `/proc`, `/dev`,
/// `/etc` files) is set up and before `pivot_root`. Mounts live in the container's mount
/// namespace only, so they go away with it; their targets are made in the overlay's init
/// layer, so a target that did not exist leaves nothing in the upper dir.
#[derive(Clone, PartialEq, Eq)]
pub struct Mount {
    /// Absolute path inside the container. Symlinks in it are resolved inside the container's
    /// root (never on the host).
    pub target: String,
    pub kind: MountKind,
}

/// What is mounted at a [`Mount`]'s target.
#[derive(Clone, PartialEq, Eq)]
pub enum MountKind {
    /// A host file or directory, bind-mounted (recursively); read-only unless `readonly` is
    /// false, in which case writes reach `source`.
    Bind { source: PathBuf, readonly: bool },
    /// A fresh tmpfs (mode 1777, `nosuid,nodev`), `size` bytes at most (the kernel's default,
    /// half of RAM, when `None`).
    Tmpfs { size: Option<u64> },
    /// A read-only file with these bytes, kept on a tmpfs private to the container: the bytes
    /// never touch a disk. For secrets; their `Debug` form never shows them.
    File { contents: Vec<u8>, mode: u32, uid: u32, gid: u32 },
}

impl fmt::Debug for MountKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MountKind::Bind { source, readonly } => {
                f.debug_struct("Bind").field("source", source).field("readonly", readonly).finish()
            }
            MountKind::Tmpfs { size } => f.debug_struct("Tmpfs").field("size", size).finish(),
            MountKind::File { contents, mode, uid, gid } => f
                .debug_struct("File")
                .field("contents", &format_args!("<{} bytes>", contents.len()))
                .field("mode", &format_args!("{mode:o}"))
                .field("uid", uid)
                .field("gid", gid)
                .finish(),
        }
    }
}

impl fmt::Debug for Mount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mount").field("target", &self.target).field("kind", &self.kind).finish()
    }
}

impl MountKind {
    /// Whether the target is a directory (else a file).
    pub fn target_is_dir(&self) -> bool {
        match self {
            MountKind::Bind { source, .. } => source.is_dir(),
            MountKind::Tmpfs { .. } => true,
            MountKind::File { .. } => false,
        }
    }
}

/// Receives output lines (without their `\n`) as the container writes them, and how each
/// ended: a build shows lines, `rbuild run` passes the bytes on exactly as written.
pub type LineSink = Box<dyn FnMut(OutputStream, &[u8], LineEnd) + Send>;

/// How a piece of output handed to a [`LineSink`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnd {
    /// With a newline (not in the piece).
    Newline,
    /// Without one: [`MAX_LINE`] bytes came without a newline, or the stream ended.
    Open,
}

/// Longest piece of output handed to a [`LineSink`] without a newline.
pub const MAX_LINE: usize = 1 << 20;

/// Cuts one output stream into the pieces a [`LineSink`] takes: each line, and bounded pieces
/// of output that does not end a line.
#[derive(Debug)]
pub struct LineSplitter {
    stream: OutputStream,
    partial: Vec<u8>,
}

impl LineSplitter {
    pub fn new(stream: OutputStream) -> Self {
        LineSplitter { stream, partial: Vec::new() }
    }

    /// Hands the complete lines `bytes` finishes to `sink`, keeping the rest.
    pub fn push(&mut self, bytes: &[u8], sink: &mut LineSink) {
        self.partial.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(pos) = self.partial[start..].iter().position(|b| *b == b'\n') {
            sink(self.stream, &self.partial[start..start + pos], LineEnd::Newline);
            start += pos + 1;
        }
        self.partial.drain(..start);
        if self.partial.len() >= MAX_LINE {
            sink(self.stream, &self.partial, LineEnd::Open);
            self.partial.clear();
        }
    }

    /// The stream ended: hands on what is left of its last line.
    pub fn finish(&mut self, sink: &mut LineSink) {
        if !self.partial.is_empty() {
            sink(self.stream, &self.partial, LineEnd::Open);
            self.partial.clear();
        }
    }
}

/// How the container's stdin, stdout and stderr are connected.
pub enum StdioMode {
    /// The container uses rbuild's own stdin, stdout and stderr.
    Inherit,
    /// stdin is `/dev/null`; stdout and stderr are read line by line and handed to the sink.
    Lines(LineSink),
    /// A new pseudo-terminal is the container's stdin/stdout/stderr and controlling terminal;
    /// rbuild copies its own stdin and stdout to and from it, puts its terminal in raw mode
    /// (restored on exit) and passes window size changes on.
    Pty,
    /// stdin, stdout and stderr are `/dev/null`.
    Null,
}

impl fmt::Debug for StdioMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StdioMode::Inherit => "Inherit",
            StdioMode::Lines(_) => "Lines(..)",
            StdioMode::Pty => "Pty",
            StdioMode::Null => "Null",
        })
    }
}

/// How privileges are obtained (`--isolation`; see [`crate::runtime::isolation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Root mode when rbuild runs as root, else a user namespace.
    #[default]
    Auto,
    /// `namespaces`: no user namespace; needs root.
    Root,
    /// `rootless`: a new user namespace: uid 0 inside is the caller, and with
    /// `newuidmap`/`newgidmap` and an `/etc/subuid` range, uids 1.. map to that range.
    UserNamespace,
    /// `chroot`: no namespace and no mount at all: the root is a [`Rootfs::Dir`] the workload
    /// runs in under proot (or chroot(2)), with the host's network; see `runtime::chroot`.
    Chroot,
}

/// Which overlay implementation mounts a [`Rootfs::Overlay`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverlayDriver {
    /// The kernel overlay; in a user namespace, `fuse-overlayfs` if the kernel refuses.
    #[default]
    Auto,
    /// The kernel overlay only.
    Kernel,
    /// `fuse-overlayfs` only.
    Fuse,
}

/// Everything needed to run one container.
#[derive(Debug)]
pub struct ContainerSpec {
    /// Unique among live containers of `state_dir`; names `<state_dir>/<id>/`. Letters,
    /// digits, `-`, `_` and `.` only.
    pub id: String,
    pub rootfs: Rootfs,
    /// The command; `args[0]` is looked up in the container's `PATH` unless it has a `/`.
    pub args: Vec<String>,
    /// `KEY=VALUE` entries. `PATH` defaults to [`DEFAULT_PATH`], `HOME` to the user's home,
    /// `HOSTNAME` to the hostname.
    pub env: Vec<String>,
    /// Absolute path inside the container, created if missing; `/` when `None`.
    pub working_dir: Option<String>,
    /// `name`, `uid`, `uid:gid`, `name:group`... looked up in the container's `/etc/passwd`
    /// and `/etc/group`; root when `None`.
    pub user: Option<String>,
    pub hostname: String,
    pub network: NetworkMode,
    /// Ports published on the host (with [`NetworkMode::Default`] only), host ports chosen.
    pub ports: Vec<PortMapping>,
    /// `--add-host` entries of `/etc/hosts`.
    pub extra_hosts: Vec<HostEntry>,
    pub stdio: StdioMode,
    /// With [`StdioMode::Pty`]: a copy of everything the terminal shows is appended here (the
    /// container's log, for `logs` of a `-t` container).
    pub pty_log: Option<PathBuf>,
    /// Holds one dir per live container; see [`crate::runtime::cleanup_stale`].
    pub state_dir: PathBuf,
    pub isolation: Isolation,
    pub overlay: OverlayDriver,
    /// Mount the kernel overlay with `volatile`: its upper dir is not synced to disk when the
    /// container ends (saving a filesystem sync per container). The content is complete for
    /// anyone reading it afterwards (a commit), but not crash-safe: sync it (`syncfs`) before
    /// keeping it as a layer across reboots. After a clean exit the runtime removes the
    /// overlay's `incompat/volatile` marker so the work dir can be mounted again.
    pub volatile_upper: bool,
    /// Keep every capability and leave `/proc` and `/sys` unmasked. Otherwise the workload
    /// gets Docker's default capability set (the bounding set is cut down to it) and cannot
    /// see `/proc/kcore` and friends nor write `/proc/sys`.
    pub privileged: bool,
    /// Extra mounts, made in order of target depth (a parent before what is mounted inside it).
    pub mounts: Vec<Mount>,
    /// The workload's seccomp filter (none when `privileged`, as in Docker).
    pub seccomp: SeccompPolicy,
}

impl ContainerSpec {
    /// A spec with Docker's defaults: host network, no env, root, cwd `/`, hostname = id
    /// (its first 12 characters), output inherited, auto isolation and overlay, volatile upper,
    /// Docker's default seccomp profile.
    pub fn new(id: &str, rootfs: Rootfs, args: Vec<String>, state_dir: PathBuf) -> Self {
        ContainerSpec {
            id: id.to_string(),
            rootfs,
            args,
            env: Vec::new(),
            working_dir: None,
            user: None,
            hostname: id.chars().take(12).collect(),
            network: NetworkMode::Host,
            ports: Vec::new(),
            extra_hosts: Vec::new(),
            stdio: StdioMode::Inherit,
            pty_log: None,
            state_dir,
            isolation: Isolation::Auto,
            overlay: OverlayDriver::Auto,
            volatile_upper: true,
            privileged: false,
            mounts: Vec::new(),
            seccomp: SeccompPolicy::Default,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(chunks: &[&[u8]]) -> Vec<(Vec<u8>, LineEnd)> {
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let into = std::sync::Arc::clone(&got);
        let mut sink: LineSink = Box::new(move |_, bytes, end| {
            if let Ok(mut v) = into.lock() {
                v.push((bytes.to_vec(), end));
            }
        });
        let mut splitter = LineSplitter::new(OutputStream::Stdout);
        for chunk in chunks {
            splitter.push(chunk, &mut sink);
        }
        splitter.finish(&mut sink);
        let taken = got.lock().map(|v| v.clone()).unwrap_or_default();
        taken
    }

    #[test]
    fn lines_keep_how_they_ended_across_reads() {
        use LineEnd::{Newline, Open};
        assert_eq!(
            pieces(&[b"a\nb", b"c\n\nd"]),
            vec![(b"a".to_vec(), Newline), (b"bc".to_vec(), Newline), (Vec::new(), Newline), (b"d".to_vec(), Open)]
        );
        assert_eq!(pieces(&[b"x\n"]), vec![(b"x".to_vec(), Newline)], "no empty piece after a last newline");
        let long = vec![b'y'; MAX_LINE + 10];
        let got = pieces(&[&long, b"\n"]);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].0.len(), got[0].1), (MAX_LINE + 10, Open), "a long line is handed on in one piece per read");
        assert_eq!(got[1], (Vec::new(), Newline));
    }
}
