//! The per-container state dir (`<state_dir>/<id>/`) and its record, the RAII guard that
//! removes it, and [`cleanup_stale`], which removes what a killed rbuild left behind.
//!
//! A state dir is created under a temporary name (`.tmp-<pid>-<id>`) with its record and
//! renamed into place, so every `<id>` dir has a record naming the rbuild process that owns it
//! (pid and start time, so a reused pid is not mistaken for it).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::runtime::error::RuntimeError;
use crate::store::atomic::{write_atomic, Durability};

const RECORD: &str = "container.json";

/// What a live container's dir records about it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct StateRecord {
    pub id: String,
    pub rbuild_pid: i32,
    pub rbuild_start: u64,
    /// The container's setup process (parent of its PID 1), once started.
    pub setup_pid: Option<i32>,
    pub setup_start: Option<u64>,
    /// The network stack (pasta) serving the container's network namespace, once started.
    #[serde(default)]
    pub network_pid: Option<i32>,
    #[serde(default)]
    pub network_start: Option<u64>,
}

/// What [`cleanup_stale`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Container ids whose state dirs were removed.
    pub removed: Vec<String>,
    /// Mount points unmounted on the way.
    pub unmounted: Vec<PathBuf>,
    /// Container processes that were still running and were killed.
    pub killed: Vec<i32>,
}

/// A container's state dir; unmounts what is mounted under it and removes it on drop.
pub(crate) struct ContainerDir {
    path: PathBuf,
    record: StateRecord,
}

impl ContainerDir {
    pub fn create(state_dir: &Path, id: &str) -> Result<Self, RuntimeError> {
        fs_err::create_dir_all(state_dir).map_err(RuntimeError::io("creating state dir", state_dir))?;
        let pid = std::process::id() as i32;
        let tmp = state_dir.join(format!(".tmp-{pid}-{id}"));
        let path = state_dir.join(id);
        if path.exists() {
            return Err(RuntimeError::AlreadyExists { id: id.to_string(), path });
        }
        fs_err::create_dir(&tmp).map_err(RuntimeError::io("creating state dir", &tmp))?;
        let record = StateRecord {
            id: id.to_string(),
            rbuild_pid: pid,
            rbuild_start: process_start_time(pid).unwrap_or(0),
            setup_pid: None,
            setup_start: None,
            network_pid: None,
            network_start: None,
        };
        let guard = ContainerDir { path: tmp, record };
        guard.write_record()?;
        nix::fcntl::renameat2(
            nix::fcntl::AT_FDCWD,
            &guard.path,
            nix::fcntl::AT_FDCWD,
            &path,
            nix::fcntl::RenameFlags::RENAME_NOREPLACE,
        )
        .map_err(|e| match e {
            nix::errno::Errno::EEXIST | nix::errno::Errno::ENOTEMPTY => {
                RuntimeError::AlreadyExists { id: id.to_string(), path: path.clone() }
            }
            e => RuntimeError::os("renaming state dir")(e),
        })?;
        let mut guard = guard;
        guard.path = path;
        Ok(guard)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn set_setup_pid(&mut self, pid: i32) -> Result<(), RuntimeError> {
        self.record.setup_pid = Some(pid);
        self.record.setup_start = process_start_time(pid);
        self.write_record()
    }

    pub fn set_network_pid(&mut self, pid: i32) -> Result<(), RuntimeError> {
        self.record.network_pid = Some(pid);
        self.record.network_start = process_start_time(pid);
        self.write_record()
    }

    /// Temp name and rename (a reader never sees half a record); never synced: the state dir
    /// does not outlive a crash's cleanup.
    fn write_record(&self) -> Result<(), RuntimeError> {
        let dest = self.path.join(RECORD);
        let text = serde_json::to_vec_pretty(&self.record)
            .map_err(|e| RuntimeError::StateRecord { path: dest.clone(), reason: e.to_string() })?;
        write_atomic(&self.path, &dest, &text, Durability::Unsynced)
            .map_err(RuntimeError::io("writing state record", &dest))
    }
}

impl Drop for ContainerDir {
    fn drop(&mut self) {
        unmount_under(&self.path);
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Removes the state dirs of containers whose rbuild process is gone: kills their processes
/// if any still run, unmounts whatever `/proc/self/mountinfo` shows mounted under them, and
/// deletes them. Live containers (their rbuild still runs) are left alone. Call it when
/// rbuild starts.
pub fn cleanup_stale(state_dir: &Path) -> Result<CleanupReport, RuntimeError> {
    let mut report = CleanupReport::default();
    let entries = match std::fs::read_dir(state_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
        Err(source) => return Err(RuntimeError::Io { op: "reading state dir", path: state_dir.to_path_buf(), source }),
    };
    for entry in entries {
        let entry = entry.map_err(RuntimeError::io("reading state dir", state_dir))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        if let Some(rest) = name.strip_prefix(".tmp-") {
            let pid = rest.split('-').next().and_then(|p| p.parse::<i32>().ok());
            if pid.is_some_and(|p| process_start_time(p).is_some()) {
                continue;
            }
        } else if let Some(record) = read_record(&path) {
            if is_alive(record.rbuild_pid, record.rbuild_start) {
                continue;
            }
            let network = match record.network_pid {
                Some(pid) => (Some(pid), record.network_start),
                None => unrecorded_pasta(&path),
            };
            let processes = [(record.setup_pid, record.setup_start), network];
            for (pid, start) in processes.into_iter().filter_map(|(p, s)| Some((p?, s?))) {
                if is_alive(pid, start) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                    report.killed.push(pid);
                    for _ in 0..200 {
                        if !is_alive(pid, start) {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                }
            }
        }
        report.unmounted.extend(unmount_under(&path));
        match fs_err::remove_dir_all(&path) {
            // Its owner, finishing meanwhile (a `.tmp-` dir renamed, a container's guard),
            // removed it first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            result => result.map_err(RuntimeError::io("removing stale state dir", &path))?,
        }
        report.removed.push(name);
    }
    Ok(report)
}

/// A pasta that wrote its pid file into the state dir `dir` but that rbuild was killed before
/// recording; its command line names the pid file, so a reused pid is not mistaken for it.
fn unrecorded_pasta(dir: &Path) -> (Option<i32>, Option<u64>) {
    let pid_file = dir.join("pasta.pid");
    let Some(pid) = std::fs::read_to_string(&pid_file).ok().and_then(|t| t.trim().parse::<i32>().ok()) else {
        return (None, None);
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let names_it = String::from_utf8_lossy(&cmdline).contains(&*pid_file.to_string_lossy());
    if !names_it {
        return (None, None);
    }
    (Some(pid), process_start_time(pid))
}

fn read_record(dir: &Path) -> Option<StateRecord> {
    let text = std::fs::read(dir.join(RECORD)).ok()?;
    serde_json::from_slice(&text).ok()
}

fn is_alive(pid: i32, start: u64) -> bool {
    process_start_time(pid).is_some_and(|s| s == start) && !is_zombie(pid)
}

fn is_zombie(pid: i32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().map(String::as_str) == Some("Z"))
}

/// Fields of `/proc/<pid>/stat` after the command name (field 3 onwards).
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// The start time (clock ticks since boot) of a process, `None` if it does not exist.
pub fn process_start_time(pid: i32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Mount points under `dir` in this process's mount namespace, deepest first.
pub(crate) fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = text
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    out
}

fn unmount_under(dir: &Path) -> Vec<PathBuf> {
    let mut done = Vec::new();
    for mount in mounts_under(dir) {
        if nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH).is_ok() {
            done.push(mount);
        }
    }
    done
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&field[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The init (PID 1 inside) of the container `id` whose state dir is under `state_dir`, if it
/// runs: the child of the setup process its record names.
pub fn container_init_pid(state_dir: &Path, id: &str) -> Option<i32> {
    let path = state_dir.join(id).join(RECORD);
    let state: StateRecord = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    children_of(state.setup_pid?).into_iter().next()
}

/// Pids whose parent is `parent`.
pub(crate) fn children_of(parent: i32) -> Vec<i32> {
    let listed = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"));
    if let Ok(text) = listed {
        return text.split_whitespace().filter_map(|p| p.parse().ok()).collect();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().nth(1)?.parse::<i32>().ok());
            ppid == Some(parent)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }

    /// A record in `dir` (named after it) whose rbuild is gone and that names no process.
    fn write_dead_owners_record(dir: &Path) {
        let record = StateRecord {
            id: dir.file_name().expect("name").to_string_lossy().into_owned(),
            rbuild_pid: i32::MAX,
            rbuild_start: 1,
            setup_pid: None,
            setup_start: None,
            network_pid: None,
            network_start: None,
        };
        fs_err::write(dir.join(RECORD), serde_json::to_vec(&record).expect("json")).expect("write");
    }

    #[test]
    fn a_pasta_the_dead_owner_did_not_record_is_killed_through_its_pid_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let stale = tmp.path().join("netns-1-0");
        fs_err::create_dir_all(&stale).expect("mkdir");
        let pid_file = stale.join("pasta.pid");
        // A stand-in for pasta whose command line names the pid file, as pasta's `-P` does.
        let mut stand_in = std::process::Command::new("bash")
            .args(["-c", &format!("exec -a 'pasta -P {}' sleep 60", pid_file.display())])
            .spawn()
            .expect("spawn");
        let pid = stand_in.id() as i32;
        for _ in 0..200 {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains("pasta -P") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        fs_err::write(&pid_file, format!("{pid}\n")).expect("write");
        write_dead_owners_record(&stale);
        let report = cleanup_stale(tmp.path()).expect("cleanup");
        assert_eq!(report.killed, vec![pid]);
        assert!(stand_in.wait().expect("wait").code().is_none(), "killed by a signal");
        assert!(!stale.exists());
    }

    #[test]
    fn a_dead_owner_makes_a_state_dir_stale_and_a_live_one_does_not() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let live = ContainerDir::create(tmp.path(), "live").expect("create");
        let stale = tmp.path().join("stale");
        fs_err::create_dir_all(stale.join("rootfs")).expect("mkdir");
        write_dead_owners_record(&stale);
        let report = cleanup_stale(tmp.path()).expect("cleanup");
        assert_eq!(report.removed, vec!["stale".to_string()]);
        assert!(live.path().exists());
        assert!(!stale.exists());
        assert!(matches!(ContainerDir::create(tmp.path(), "live"), Err(RuntimeError::AlreadyExists { .. })));
        let path = live.path().to_path_buf();
        drop(live);
        assert!(!path.exists());
    }
}
