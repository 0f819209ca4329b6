//! Unprivileged mode's id mapping: uid/gid 0 in the container's user namespace is the
//! caller; with `newuidmap`/`newgidmap` and ranges in `/etc/subuid` and `/etc/subgid`, ids
//! 1.. map to the caller's range, else only 0 is mapped.

use std::path::{Path, PathBuf};

use crate::layer::diff::{HostIdMap, IdRange};

/// How files an unprivileged build's containers write map back to container ids when their
/// upper dirs are committed; `None` for root, whose containers use host ids as they are.
pub fn unprivileged_host_ids() -> Option<HostIdMap> {
    (!nix::unistd::geteuid().is_root()).then(|| IdMap::for_current_user().host_ids())
}

/// What an unprivileged user is missing for containers whose files can have owners other than
/// root (`/etc/subuid` and `/etc/subgid` ranges, `newuidmap`/`newgidmap` from `uidmap`), said
/// once per command by `build` and `run`; `None` as root or when all is there.
pub fn rootless_setup_warning() -> Option<String> {
    if nix::unistd::geteuid().is_root() {
        return None;
    }
    let uid = nix::unistd::getuid().as_raw();
    let name = nix::unistd::User::from_uid(uid.into()).ok().flatten().map(|u| u.name);
    let who = name.clone().unwrap_or_else(|| uid.to_string());
    let mut missing = Vec::new();
    if find_id_helper("newuidmap").is_none() || find_id_helper("newgidmap").is_none() {
        missing.push("newuidmap/newgidmap (apt-get install uidmap)".to_owned());
    }
    for file in ["/etc/subuid", "/etc/subgid"] {
        if subordinate_range(Path::new(file), name.as_deref(), uid).is_none() {
            missing.push(format!("a range for {who} in {file}"));
        }
    }
    if missing.is_empty() {
        return None;
    }
    Some(format!(
        "[Warning] rootless mode without {}: containers map only root, so a RUN step's chown to \
         another user fails; as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {who}",
        missing.join(" or ")
    ))
}

/// The uid and gid maps written for a container's user namespace.
/// Why the user namespace's id maps could not be written.
#[derive(Debug, thiserror::Error)]
pub enum IdMapError {
    #[error("running {}: {source}", helper.display())]
    Spawn { helper: PathBuf, source: std::io::Error },
    #[error("{} failed: {stderr}", helper.display())]
    Helper { helper: PathBuf, stderr: String },
    #[error("writing {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IdMap {
    /// `0 <uid> 1` and `1 <sub start> <sub count>`, written by the setuid helpers.
    Ranges { uid: u32, gid: u32, sub_uid: (u32, u32), sub_gid: (u32, u32), newuidmap: PathBuf, newgidmap: PathBuf },
    /// `0 <uid> 1` only (setgroups denied).
    Single { uid: u32, gid: u32 },
}

impl IdMap {
    /// The map for the calling user.
    pub fn for_current_user() -> IdMap {
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let name = nix::unistd::User::from_uid(uid.into()).ok().flatten().map(|u| u.name);
        let helpers = (find_id_helper("newuidmap"), find_id_helper("newgidmap"));
        let ranges = (
            subordinate_range(Path::new("/etc/subuid"), name.as_deref(), uid),
            subordinate_range(Path::new("/etc/subgid"), name.as_deref(), uid),
        );
        match (helpers, ranges) {
            ((Some(newuidmap), Some(newgidmap)), (Some(sub_uid), Some(sub_gid))) => {
                IdMap::Ranges { uid, gid, sub_uid, sub_gid, newuidmap, newgidmap }
            }
            _ => IdMap::Single { uid, gid },
        }
    }

    /// The maps read backwards (host id -> container id).
    pub fn host_ids(&self) -> HostIdMap {
        let root = |host| IdRange { container: 0, host, count: 1 };
        let rest = |(host, count)| IdRange { container: 1, host, count };
        match self {
            IdMap::Ranges { uid, gid, sub_uid, sub_gid, .. } => {
                HostIdMap { uids: vec![root(*uid), rest(*sub_uid)], gids: vec![root(*gid), rest(*sub_gid)] }
            }
            IdMap::Single { uid, gid } => HostIdMap { uids: vec![root(*uid)], gids: vec![root(*gid)] },
        }
    }

    /// Whether `setgroups(2)` works in the namespace (it is denied with a single-id map).
    pub fn allows_setgroups(&self) -> bool {
        matches!(self, IdMap::Ranges { .. })
    }

    /// Writes the maps of the user namespace that process `pid` is in.
    pub fn apply(&self, pid: i32) -> Result<(), IdMapError> {
        match self {
            IdMap::Ranges { uid, gid, sub_uid, sub_gid, newuidmap, newgidmap } => {
                for (helper, id, (start, count)) in [(newuidmap, uid, sub_uid), (newgidmap, gid, sub_gid)] {
                    let out = std::process::Command::new(helper)
                        .args([pid.to_string(), "0".into(), id.to_string(), "1".into()])
                        .args(["1".to_string(), start.to_string(), count.to_string()])
                        .output()
                        .map_err(|source| IdMapError::Spawn { helper: helper.clone(), source })?;
                    if !out.status.success() {
                        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
                        return Err(IdMapError::Helper { helper: helper.clone(), stderr });
                    }
                }
                Ok(())
            }
            IdMap::Single { uid, gid } => {
                let proc = PathBuf::from(format!("/proc/{pid}"));
                let write = |file: &str, text: String| {
                    let path = proc.join(file);
                    std::fs::write(&path, text).map_err(|source| IdMapError::Write { path, source })
                };
                write("uid_map", format!("0 {uid} 1\n"))?;
                write("setgroups", "deny\n".into())?;
                write("gid_map", format!("0 {gid} 1\n"))
            }
        }
    }
}

/// An executable file `program` on the host's `PATH`.
pub(crate) fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| is_executable(p))
}

/// newuidmap or newgidmap: on `PATH`, else in `/usr/bin` or `/usr/sbin`, where they live even
/// when `PATH` lacks them.
fn find_id_helper(program: &str) -> Option<PathBuf> {
    find_in_path(program)
        .or_else(|| ["/usr/bin", "/usr/sbin"].iter().map(|d| Path::new(d).join(program)).find(|p| is_executable(p)))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The first `name:start:count` (or `uid:start:count`) line of a subordinate id file.
fn subordinate_range(file: &Path, name: Option<&str>, uid: u32) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string(file).ok()?;
    parse_subordinate(&text, name, uid)
}

fn parse_subordinate(text: &str, name: Option<&str>, uid: u32) -> Option<(u32, u32)> {
    text.lines().find_map(|line| {
        let mut f = line.trim().split(':');
        let (who, start, count) = (f.next()?, f.next()?, f.next()?);
        let matches = Some(who) == name || who.parse::<u32>().ok() == Some(uid);
        let range = (start.parse().ok()?, count.parse().ok()?);
        (matches && range.1 > 0).then_some(range)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_ranges_match_by_name_or_uid() {
        let text = "alice:100000:65536\n1001:200000:1000\nbob:0:0\n";
        assert_eq!(parse_subordinate(text, Some("alice"), 1000), Some((100000, 65536)));
        assert_eq!(parse_subordinate(text, Some("carol"), 1001), Some((200000, 1000)));
        assert_eq!(parse_subordinate(text, Some("bob"), 1002), None);
    }

    #[test]
    fn host_ids_map_back_to_container_ids() {
        let ranges = IdMap::Ranges {
            uid: 1001,
            gid: 1002,
            sub_uid: (100_000, 65536),
            sub_gid: (200_000, 65536),
            newuidmap: PathBuf::new(),
            newgidmap: PathBuf::new(),
        }
        .host_ids();
        assert_eq!((ranges.uid(1001), ranges.gid(1002)), (0, 0));
        assert_eq!((ranges.uid(100_999), ranges.gid(200_999)), (1000, 1000));
        assert_eq!(ranges.uid(0), crate::layer::diff::OVERFLOW_ID);
        let single = IdMap::Single { uid: 1001, gid: 1001 }.host_ids();
        assert_eq!((single.uid(1001), single.uid(100_999)), (0, crate::layer::diff::OVERFLOW_ID));
    }
}
