//! The seccomp filter of a container's workload: Docker's default profile (Moby's
//! `seccomp/default.json` from github.com/moby/profiles, Apache-2.0, copied unchanged as
//! `docker-default.json`; see `NOTICE` beside this file) or a
//! profile file in the same JSON format (`--security-opt seccomp=PROFILE.json`), resolved
//! against the capabilities the workload gets and the host's architecture and kernel, and
//! compiled to a BPF program before the container starts. The workload installs the program
//! as its last step before `execve` ([`SeccompProgram::install`]).
//!
//! Compiling goes through `libseccomp` (the `libseccomp` crate over the C library), the same
//! compiler runc and Docker use: it knows every architecture's syscall table, so one filter
//! covers the native ABI and its compat ones (x86 and x32 on x86_64) as Docker's does, which
//! `seccompiler` (native arch only) cannot. The program is exported as BPF in the parent and
//! loaded with `seccomp(2)` in the workload, so the fork child never runs the compiler and
//! nothing sets `no_new_privs` (Docker does not either).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use serde::{Deserialize, Serialize};

/// Docker's default profile, as stored in the repository.
const DOCKER_DEFAULT: &str = include_str!("docker-default.json");

/// Which seccomp filter a container's workload runs under.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeccompPolicy {
    /// Docker's default profile.
    #[default]
    Default,
    /// No filter (`--security-opt seccomp=unconfined`).
    Unconfined,
    /// A profile in Docker's JSON format, read when the container was created.
    Profile { path: PathBuf, json: String },
}

impl SeccompPolicy {
    /// The value of `--security-opt seccomp=VALUE`: `unconfined`, `builtin` (Docker's word for
    /// the default) or the path of a profile, read now.
    pub fn from_option(value: &str) -> Result<SeccompPolicy, SeccompError> {
        match value {
            "unconfined" => Ok(SeccompPolicy::Unconfined),
            "builtin" => Ok(SeccompPolicy::Default),
            path => {
                let path = PathBuf::from(path);
                let json = std::fs::read_to_string(&path)
                    .map_err(|source| SeccompError::Read { path: path.clone(), source })?;
                // Refuse a bad profile now, not when the container starts.
                Profile::parse(&json, &path)?;
                Ok(SeccompPolicy::Profile { path, json })
            }
        }
    }
}

/// Errors reading or compiling a seccomp profile; each names the profile.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp profile {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("seccomp profile {path}:{line}:{column}: {message}")]
    Parse { path: PathBuf, line: usize, column: usize, message: String },
    #[error("seccomp profile {path}: syscalls[{rule}]: {source}")]
    Rule { path: PathBuf, rule: usize, source: RuleError },
    #[error("seccomp profile {path}: defaultAction: {source}")]
    DefaultAction { path: PathBuf, source: RuleError },
    #[error("seccomp profile {path}: {reason}")]
    Compile { path: PathBuf, reason: String },
}

/// What is wrong with one rule (or the default action) of a profile.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("action {0} is not supported (ALLOW, ERRNO, KILL*, TRAP and LOG are)")]
    UnsupportedAction(String),
    #[error(transparent)]
    Action(libseccomp::error::SeccompError),
    #[error("comparison {0} is not known")]
    UnknownComparison(String),
    #[error("argument index {0} is out of range (0-5)")]
    ArgumentIndex(u32),
    #[error("minKernel {0:?} is not major.minor")]
    MinKernel(String),
}

/// A profile in Docker's format (the fields rbuild applies; others are ignored as Docker's
/// own loader ignores unknown ones).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<i32>,
    #[serde(default)]
    arch_map: Option<Vec<ArchEntry>>,
    #[serde(default)]
    architectures: Option<Vec<String>>,
    #[serde(default)]
    syscalls: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchEntry {
    architecture: String,
    #[serde(default)]
    sub_architectures: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    name: Option<String>,
    action: String,
    #[serde(default)]
    errno_ret: Option<i32>,
    #[serde(default)]
    args: Vec<ArgCondition>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArgCondition {
    index: u32,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

/// A rule's `includes` / `excludes`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
}

impl Profile {
    fn parse(json: &str, path: &Path) -> Result<Profile, SeccompError> {
        serde_json::from_str(json).map_err(|e| SeccompError::Parse {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            // serde_json's message ends with "at line L column C", said already.
            message: {
                let text = e.to_string();
                text.rfind(" at line ").map_or(text.clone(), |i| text[..i].to_string())
            },
        })
    }
}

/// What the rules' conditions are resolved against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// Capability names (`CAP_CHOWN`...) the workload gets.
    pub caps: Vec<String>,
    /// The architecture in Docker's (Go's) words: `amd64`, `arm64`...
    pub arch: String,
    /// The host kernel's `major.minor`.
    pub kernel: (u32, u32),
}

impl Target {
    /// This host, for a workload with the capabilities numbered `caps`.
    pub(crate) fn host(caps: &[u32]) -> Target {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "powerpc64" => "ppc64le",
            other => other,
        };
        let release =
            nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
        Target {
            caps: caps.iter().filter_map(|c| CAPABILITY_NAMES.get(*c as usize)).map(|n| n.to_string()).collect(),
            arch: arch.to_string(),
            kernel: parse_kernel_version(&release).unwrap_or((0, 0)),
        }
    }
}

/// Capability names by number (`linux/capability.h`).
pub(crate) const CAPABILITY_NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// `6.1.0-18-amd64` -> `(6, 1)`.
fn parse_kernel_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// One syscall rule after its conditions were resolved: what goes into the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ResolvedRule {
    name: String,
    action: ScmpAction,
    /// All must hold (distinct argument indexes).
    args: Vec<ScmpArgCompare>,
}

fn action_of(name: &str, errno: Option<i32>, default_errno: Option<i32>) -> Result<ScmpAction, RuleError> {
    match name {
        "SCMP_ACT_ERRNO" => Ok(ScmpAction::Errno(errno.or(default_errno).unwrap_or(libc::EPERM))),
        "SCMP_ACT_ALLOW"
        | "SCMP_ACT_KILL"
        | "SCMP_ACT_KILL_THREAD"
        | "SCMP_ACT_KILL_PROCESS"
        | "SCMP_ACT_TRAP"
        | "SCMP_ACT_LOG" => ScmpAction::from_str(name, None).map_err(RuleError::Action),
        other => Err(RuleError::UnsupportedAction(other.to_string())),
    }
}

fn compare_of(arg: &ArgCondition) -> Result<ScmpArgCompare, RuleError> {
    let op = match arg.op.as_str() {
        "SCMP_CMP_NE" => ScmpCompareOp::NotEqual,
        "SCMP_CMP_LT" => ScmpCompareOp::Less,
        "SCMP_CMP_LE" => ScmpCompareOp::LessOrEqual,
        "SCMP_CMP_EQ" => ScmpCompareOp::Equal,
        "SCMP_CMP_GE" => ScmpCompareOp::GreaterEqual,
        "SCMP_CMP_GT" => ScmpCompareOp::Greater,
        // Docker's format: `value` is the mask, `valueTwo` what the masked argument equals.
        "SCMP_CMP_MASKED_EQ" => {
            return Ok(ScmpArgCompare::new(arg.index, ScmpCompareOp::MaskedEqual(arg.value), arg.value_two))
        }
        other => return Err(RuleError::UnknownComparison(other.to_string())),
    };
    if arg.index > 5 {
        return Err(RuleError::ArgumentIndex(arg.index));
    }
    Ok(ScmpArgCompare::new(arg.index, op, arg.value))
}

/// Whether a rule applies to `target` (Docker's rules: every included capability present,
/// no excluded one; the architecture listed in `includes.arches` when it has any and not in
/// `excludes.arches`; the kernel at least `includes.minKernel`).
fn applies(rule: &Rule, target: &Target) -> Result<bool, RuleError> {
    let has = |cap: &String| target.caps.iter().any(|c| c.eq_ignore_ascii_case(cap));
    if !rule.includes.caps.iter().all(has) || rule.excludes.caps.iter().any(has) {
        return Ok(false);
    }
    if !rule.includes.arches.is_empty() && !rule.includes.arches.contains(&target.arch) {
        return Ok(false);
    }
    if rule.excludes.arches.contains(&target.arch) {
        return Ok(false);
    }
    if let Some(min) = &rule.includes.min_kernel {
        let min = parse_kernel_version(min).ok_or_else(|| RuleError::MinKernel(min.clone()))?;
        if target.kernel < min {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The rules of `profile` that apply to `target`, with their actions and conditions; rules
/// whose action is the default one are dropped (libseccomp refuses them, and they change
/// nothing). A condition list that compares one argument twice becomes one rule per
/// condition (either may hold), as runc does.
fn resolve(profile: &Profile, target: &Target, path: &Path) -> Result<(ScmpAction, Vec<ResolvedRule>), SeccompError> {
    let rule_err = |rule: usize| move |source| SeccompError::Rule { path: path.to_path_buf(), rule, source };
    let default = action_of(&profile.default_action, None, profile.default_errno_ret)
        .map_err(|source| SeccompError::DefaultAction { path: path.to_path_buf(), source })?;
    let mut out = Vec::new();
    for (n, rule) in profile.syscalls.iter().enumerate() {
        if !applies(rule, target).map_err(rule_err(n))? {
            continue;
        }
        let action = action_of(&rule.action, rule.errno_ret, profile.default_errno_ret).map_err(rule_err(n))?;
        if action == default {
            continue;
        }
        let args = rule.args.iter().map(compare_of).collect::<Result<Vec<_>, _>>().map_err(rule_err(n))?;
        let mut indexes: Vec<u32> = rule.args.iter().map(|a| a.index).collect();
        indexes.sort_unstable();
        indexes.dedup();
        let groups: Vec<Vec<ScmpArgCompare>> =
            if indexes.len() == args.len() { vec![args] } else { args.into_iter().map(|a| vec![a]).collect() };
        for name in rule.names.iter().chain(rule.name.iter()) {
            for group in &groups {
                out.push(ResolvedRule { name: name.clone(), action, args: group.clone() });
            }
        }
    }
    Ok((default, out))
}

/// The architectures a filter covers: the native one and, per the profile's `archMap`, its
/// compat ones (or the profile's older `architectures` list).
fn architectures(profile: &Profile, path: &Path) -> Result<Vec<ScmpArch>, SeccompError> {
    let native = ScmpArch::native();
    let parse = |name: &str| {
        name.parse::<ScmpArch>().map_err(|_| SeccompError::Compile {
            path: path.to_path_buf(),
            reason: format!("unknown architecture {name}"),
        })
    };
    let mut arches = vec![native];
    if let Some(map) = &profile.arch_map {
        for entry in map {
            if parse(&entry.architecture)? == native {
                for sub in entry.sub_architectures.iter().flatten() {
                    arches.push(parse(sub)?);
                }
            }
        }
    } else if let Some(list) = &profile.architectures {
        for name in list {
            arches.push(parse(name)?);
        }
    }
    arches.dedup();
    Ok(arches)
}

/// A compiled filter, ready to install.
#[derive(Clone)]
pub(crate) struct SeccompProgram(Vec<libc::sock_filter>);

impl std::fmt::Debug for SeccompProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SeccompProgram({} instructions)", self.0.len())
    }
}

impl SeccompProgram {
    /// Compiles `policy` for a workload with the capabilities numbered `caps`; `None` when
    /// unconfined. Docker's default for the default capability set is compiled once per
    /// process.
    pub(crate) fn for_policy(policy: &SeccompPolicy, caps: &[u32]) -> Result<Option<SeccompProgram>, SeccompError> {
        static DEFAULT: OnceLock<(Vec<u32>, SeccompProgram)> = OnceLock::new();
        match policy {
            SeccompPolicy::Unconfined => Ok(None),
            SeccompPolicy::Default => {
                if let Some((for_caps, program)) = DEFAULT.get() {
                    if for_caps == caps {
                        return Ok(Some(program.clone()));
                    }
                }
                let program = compile(DOCKER_DEFAULT, Path::new("<docker default>"), &Target::host(caps))?;
                let _ = DEFAULT.set((caps.to_vec(), program.clone()));
                Ok(Some(program))
            }
            SeccompPolicy::Profile { path, json } => compile(json, path, &Target::host(caps)).map(Some),
        }
    }

    /// Installs the filter on the calling thread (`seccomp(2)`, no flags). Needs
    /// `no_new_privs` or `CAP_SYS_ADMIN` in the current user namespace: call it before
    /// giving up root. Async-signal-safe (one system call), for a fork child.
    pub(crate) fn install(&self) -> Result<(), nix::errno::Errno> {
        let prog = libc::sock_fprog { len: self.0.len() as u16, filter: self.0.as_ptr().cast_mut() };
        // SAFETY: `prog` points at `len` instructions that outlive the call; the kernel copies
        // them.
        let rc = unsafe {
            libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &prog as *const libc::sock_fprog)
        };
        if rc < 0 {
            Err(nix::errno::Errno::last())
        } else {
            Ok(())
        }
    }
}

/// Compiles the profile `json` (named `path` in errors) for `target`.
fn compile(json: &str, path: &Path, target: &Target) -> Result<SeccompProgram, SeccompError> {
    let profile = Profile::parse(json, path)?;
    let (default, rules) = resolve(&profile, target, path)?;
    let compile_err = |what: &str| {
        let what = what.to_string();
        move |e: libseccomp::error::SeccompError| SeccompError::Compile {
            path: path.to_path_buf(),
            reason: format!("{what}: {e}"),
        }
    };
    let mut ctx = ScmpFilterContext::new(default).map_err(compile_err("creating the filter"))?;
    for arch in architectures(&profile, path)? {
        if !ctx.is_arch_present(arch).map_err(compile_err("architecture"))? {
            ctx.add_arch(arch).map_err(compile_err(&format!("adding architecture {arch:?}")))?;
        }
    }
    for rule in &rules {
        // A name this libseccomp does not know (a syscall newer than it) is skipped, as runc
        // does: the default action covers it.
        let Ok(syscall) = ScmpSyscall::from_name(&rule.name) else {
            continue;
        };
        ctx.add_rule_conditional(rule.action, syscall, &rule.args)
            .map_err(compile_err(&format!("rule for {}", rule.name)))?;
    }
    let mut file = tempfile::tempfile()
        .map_err(|e| SeccompError::Compile { path: path.to_path_buf(), reason: format!("temp file: {e}") })?;
    ctx.export_bpf(&file).map_err(compile_err("exporting BPF"))?;
    let mut bytes = Vec::new();
    {
        use std::io::{Read, Seek};
        file.rewind()
            .and_then(|_| file.read_to_end(&mut bytes))
            .map_err(|e| SeccompError::Compile { path: path.to_path_buf(), reason: format!("reading BPF: {e}") })?;
    }
    let instructions: Vec<libc::sock_filter> = bytes
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    if instructions.is_empty() || instructions.len() > usize::from(u16::MAX) {
        return Err(SeccompError::Compile {
            path: path.to_path_buf(),
            reason: format!("BPF program of {} instructions", instructions.len()),
        });
    }
    Ok(SeccompProgram(instructions))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(caps: &[&str]) -> Target {
        Target { caps: caps.iter().map(|c| c.to_string()).collect(), arch: "amd64".into(), kernel: (6, 1) }
    }

    fn default_rules(caps: &[&str]) -> Vec<ResolvedRule> {
        let profile = Profile::parse(DOCKER_DEFAULT, Path::new("d")).expect("parse");
        resolve(&profile, &target(caps), Path::new("d")).expect("resolve").1
    }

    fn names(rules: &[ResolvedRule]) -> Vec<&str> {
        rules.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn default_profile_without_sys_admin_denies_unshare_and_mount_and_guards_clone() {
        let rules = default_rules(&["CAP_CHOWN", "CAP_MKNOD", "CAP_SYS_CHROOT"]);
        let names = names(&rules);
        for denied in ["unshare", "mount", "setns", "reboot", "bpf", "kexec_load"] {
            assert!(!names.contains(&denied), "{denied} allowed");
        }
        for allowed in ["read", "mknod", "chroot", "arch_prctl", "ptrace"] {
            assert!(names.contains(&allowed), "{allowed} missing");
        }
        let clone: Vec<&ResolvedRule> = rules.iter().filter(|r| r.name == "clone").collect();
        assert_eq!(clone.len(), 1, "{clone:?}");
        assert_eq!(clone[0].args, [ScmpArgCompare::new(0, ScmpCompareOp::MaskedEqual(0x7E02_0000), 0)]);
        let clone3: Vec<&ResolvedRule> = rules.iter().filter(|r| r.name == "clone3").collect();
        assert_eq!(clone3[0].action, ScmpAction::Errno(libc::ENOSYS));
    }

    #[test]
    fn capabilities_unlock_their_syscalls() {
        let names_admin = names(&default_rules(&["CAP_SYS_ADMIN"])).into_iter().map(String::from).collect::<Vec<_>>();
        assert!(names_admin.iter().any(|n| n == "unshare"));
        assert!(names_admin.iter().any(|n| n == "mount"));
        // With CAP_SYS_ADMIN clone is allowed outright, without the flag mask.
        let rules = default_rules(&["CAP_SYS_ADMIN"]);
        assert!(rules.iter().filter(|r| r.name == "clone").all(|r| r.args.is_empty()));
        assert!(!names(&default_rules(&[])).contains(&"chroot"));
    }

    #[test]
    fn arch_and_kernel_conditions() {
        let profile = Profile::parse(DOCKER_DEFAULT, Path::new("d")).expect("parse");
        let mut arm = target(&[]);
        arm.arch = "arm64".into();
        let rules = resolve(&profile, &arm, Path::new("d")).expect("resolve").1;
        assert!(!names(&rules).contains(&"arch_prctl"));
        assert!(names(&rules).contains(&"set_tls"));
        let mut old = target(&[]);
        old.kernel = (4, 4);
        let rules = resolve(&profile, &old, Path::new("d")).expect("resolve").1;
        assert!(!names(&rules).contains(&"ptrace"));
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel_version("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(parse_kernel_version("4.8"), Some((4, 8)));
        assert_eq!(parse_kernel_version("six"), None);
    }

    #[test]
    fn the_default_profile_compiles_for_this_host() {
        let caps = crate::runtime::init::DEFAULT_CAPABILITIES;
        let program = SeccompProgram::for_policy(&SeccompPolicy::Default, &caps).expect("compile").expect("program");
        assert!(program.0.len() > 100, "{program:?}");
        assert!(SeccompProgram::for_policy(&SeccompPolicy::Unconfined, &caps).expect("ok").is_none());
    }

    #[test]
    fn bad_profiles_name_the_file_and_the_place() {
        let path = Path::new("/p/prof.json");
        let err = compile("{\"defaultAction\": \"SCMP_ACT_ERRNO\",\n \"syscalls\": [}", path, &target(&[]))
            .expect_err("syntax");
        assert!(matches!(err, SeccompError::Parse { line: 2, .. }), "{err}");
        assert!(err.to_string().starts_with("seccomp profile /p/prof.json:2:"), "{err}");
        let json = r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["write"], "action": "SCMP_ACT_NOTIFY"}]}"#;
        let err = compile(json, path, &target(&[])).expect_err("action");
        assert!(
            err.to_string().starts_with("seccomp profile /p/prof.json: syscalls[1]: action SCMP_ACT_NOTIFY"),
            "{err}"
        );
        let json = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#;
        let err = compile(json, path, &target(&[])).expect_err("index");
        assert!(err.to_string().contains("argument index 9"), "{err}");
    }

    #[test]
    fn repeated_argument_index_means_either_condition() {
        let json = r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [
              {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]}"#;
        let profile = Profile::parse(json, Path::new("p")).expect("parse");
        let rules = resolve(&profile, &target(&[]), Path::new("p")).expect("resolve").1;
        assert_eq!(rules.len(), 2);
        assert!(rules.iter().all(|r| r.args.len() == 1));
    }
}
