//! Dockerfile instructions as plans hold them: typed, after expansion, with the canonical
//! text that enters the cache key ([`Instruction::canonical`]) and Docker's wording of
//! durations. `frontend` reads them from a Dockerfile; `engine` runs them.

use std::time::Duration;

use super::NetworkMode;

/// A heredoc attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Heredoc {
    /// The terminator word after quote removal.
    pub name: String,
    /// The raw body: every line between the opener and the terminator, with its line ending.
    /// For `<<-` the leading tabs are still present (see `chomp_heredoc`).
    pub content: String,
    /// False when any part of the name was quoted.
    pub expand: bool,
    /// Opened with `<<-`.
    pub chomp: bool,
    /// The file descriptor prefix (`3<<EOF`), 0 when absent.
    pub fd: u32,
}

/// Shell form (`RUN echo hi`, run through the SHELL) or exec form (`RUN ["echo", "hi"]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "form", content = "value", rename_all = "snake_case")]
pub enum CommandForm {
    Shell(String),
    Exec(Vec<String>),
}

impl CommandForm {
    /// Docker's rendering: shell form as written, exec form as a JSON array.
    pub fn canonical(&self) -> String {
        match self {
            CommandForm::Shell(s) => s.clone(),
            CommandForm::Exec(v) => json_array(v),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            CommandForm::Shell(s) => s.trim().is_empty(),
            CommandForm::Exec(v) => v.is_empty(),
        }
    }
}

pub(crate) fn json_array(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_string())
}

/// `RUN --mount=type=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

/// Sharing mode of a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheSharing {
    Shared,
    Private,
    Locked,
}

/// The agent id of `--ssh default` and of an ssh mount without `id=`.
pub const DEFAULT_SSH_ID: &str = "default";

/// One `RUN --mount=…` after parsing its comma-separated `key=value` fields.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MountSpec {
    pub kind: MountType,
    pub target: Option<String>,
    pub source: Option<String>,
    pub from: Option<String>,
    pub readonly: Option<bool>,
    pub id: Option<String>,
    pub sharing: Option<CacheSharing>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<String>,
    pub required: Option<bool>,
    pub env: Option<String>,
}

impl MountSpec {
    /// The agent an ssh mount forwards: its `id=`, else [`DEFAULT_SSH_ID`].
    pub fn ssh_id(&self) -> String {
        self.id.clone().filter(|i| !i.is_empty()).unwrap_or_else(|| DEFAULT_SSH_ID.to_string())
    }

    /// Canonical `type=…,key=value` text, fields in a fixed order.
    pub fn canonical(&self) -> String {
        let mut parts = vec![format!("type={}", self.kind.as_str())];
        let text = [
            ("target", &self.target),
            ("source", &self.source),
            ("from", &self.from),
            ("id", &self.id),
            ("size", &self.size),
            ("env", &self.env),
        ];
        for (k, v) in text {
            if let Some(v) = v {
                parts.push(format!("{k}={v}"));
            }
        }
        if let Some(ro) = self.readonly {
            parts.push(format!("readonly={ro}"));
        }
        if let Some(s) = self.sharing {
            let s = match s {
                CacheSharing::Shared => "shared",
                CacheSharing::Private => "private",
                CacheSharing::Locked => "locked",
            };
            parts.push(format!("sharing={s}"));
        }
        if let Some(m) = self.mode {
            parts.push(format!("mode={m:o}"));
        }
        if let Some(u) = self.uid {
            parts.push(format!("uid={u}"));
        }
        if let Some(g) = self.gid {
            parts.push(format!("gid={g}"));
        }
        if let Some(r) = self.required {
            parts.push(format!("required={r}"));
        }
        parts.join(",")
    }
}

/// A `RUN --mount=type=tmpfs,size=…` in Docker's size syntax (`go-units` RAMInBytes): a number with an optional `k`, `m`, `g`,
/// `t` (binary multiples), optionally followed by `b`/`ib`.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_suffix("ib").or_else(|| t.strip_suffix('b')).unwrap_or(&t);
    let (number, shift) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 10),
        'm' => (&t[..t.len() - 1], 20),
        'g' => (&t[..t.len() - 1], 30),
        't' => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let value: f64 = number.trim().parse().ok().filter(|v: &f64| v.is_finite() && *v >= 0.0)?;
    Some((value * (1u64 << shift) as f64) as u64)
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunInstruction {
    pub command: CommandForm,
    pub heredocs: Vec<Heredoc>,
    pub mounts: Vec<MountSpec>,
    pub network: Option<NetworkMode>,
    pub security: Option<String>,
}

/// COPY and ADD share one shape; the flags that only one of them takes are checked when the
/// instruction is read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileCopy {
    /// Sources as written (a heredoc source is its `<<NAME` word).
    pub sources: Vec<String>,
    pub dest: String,
    pub heredocs: Vec<Heredoc>,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
    /// ADD only.
    pub checksum: Option<String>,
    /// ADD only.
    pub keep_git_dir: bool,
    /// ADD only: `--unpack` (None: Docker's default, unpack local archives).
    pub unpack: Option<bool>,
    /// The sources were written as a JSON array.
    pub json: bool,
}

impl FileCopy {
    /// The heredoc a source word names, if it is one (`<<EOF` or `<<-EOF`).
    pub fn heredoc_for(&self, source: &str) -> Option<&Heredoc> {
        let name = source.trim_start_matches(|c: char| c.is_ascii_digit()).strip_prefix("<<")?;
        let name = name.strip_prefix('-').unwrap_or(name);
        let name = name.trim_matches(|c| c == '"' || c == '\'');
        self.heredocs.iter().find(|h| h.name == name)
    }
}

/// HEALTHCHECK.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Healthcheck {
    None,
    Cmd {
        test: CommandForm,
        interval: Option<Duration>,
        timeout: Option<Duration>,
        start_period: Option<Duration>,
        start_interval: Option<Duration>,
        retries: Option<u32>,
    },
}

/// One `ARG name[=default]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

/// A Dockerfile instruction with its flags and arguments checked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "instruction", rename_all = "snake_case")]
pub enum Instruction {
    From { image: String, stage_name: Option<String>, platform: Option<String> },
    Run(RunInstruction),
    Cmd { command: CommandForm },
    Entrypoint { command: CommandForm },
    Shell { shell: Vec<String> },
    Env { pairs: Vec<(String, String)> },
    Label { pairs: Vec<(String, String)> },
    Maintainer { name: String },
    Expose { ports: Vec<String> },
    Copy(FileCopy),
    Add(FileCopy),
    Volume { paths: Vec<String> },
    User { user: String },
    Workdir { path: String },
    Arg { args: Vec<ArgDecl> },
    Onbuild { trigger: Box<Instruction>, expression: String },
    Stopsignal { signal: String },
    Healthcheck(Healthcheck),
}

/// Go's `time.Duration.String()`: `0s`, `1.5s`, `1m30s`, `500ms`, `1h0m0s` (up to nine
/// fractional digits, trailing zeros dropped).
pub fn go_duration(d: Duration) -> String {
    fn fraction(value: u128, unit: u128) -> String {
        let (whole, rest) = (value / unit, value % unit);
        if rest == 0 {
            return whole.to_string();
        }
        let digits = unit.ilog10() as usize;
        let text = format!("{rest:0digits$}");
        format!("{whole}.{}", text.trim_end_matches('0'))
    }
    const SECOND: u128 = 1_000_000_000;
    match d.as_nanos() {
        0 => "0s".to_string(),
        n if n < 1_000 => format!("{n}ns"),
        n if n < 1_000_000 => format!("{}\u{b5}s", fraction(n, 1_000)),
        n if n < SECOND => format!("{}ms", fraction(n, 1_000_000)),
        n => {
            let (hours, minutes) = (n / (3600 * SECOND), n / (60 * SECOND) % 60);
            let seconds = format!("{}s", fraction(n % (60 * SECOND), SECOND));
            match (hours, minutes) {
                (0, 0) => seconds,
                (0, m) => format!("{m}m{seconds}"),
                (h, m) => format!("{h}h{m}m{seconds}"),
            }
        }
    }
}

impl Instruction {
    /// The keyword, upper-case.
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::From { .. } => "FROM",
            Instruction::Run(_) => "RUN",
            Instruction::Cmd { .. } => "CMD",
            Instruction::Entrypoint { .. } => "ENTRYPOINT",
            Instruction::Shell { .. } => "SHELL",
            Instruction::Env { .. } => "ENV",
            Instruction::Label { .. } => "LABEL",
            Instruction::Maintainer { .. } => "MAINTAINER",
            Instruction::Expose { .. } => "EXPOSE",
            Instruction::Copy(_) => "COPY",
            Instruction::Add(_) => "ADD",
            Instruction::Volume { .. } => "VOLUME",
            Instruction::User { .. } => "USER",
            Instruction::Workdir { .. } => "WORKDIR",
            Instruction::Arg { .. } => "ARG",
            Instruction::Onbuild { .. } => "ONBUILD",
            Instruction::Stopsignal { .. } => "STOPSIGNAL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
        }
    }

    /// Whether the step changes the filesystem (and so may make a layer).
    pub fn touches_filesystem(&self) -> bool {
        matches!(self, Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_))
    }

    /// The canonical text: keyword, flags in a fixed order, arguments after expansion, heredoc
    /// bodies appended. Two instructions with the same canonical text do the same thing given
    /// the same parent and sources.
    pub fn canonical(&self) -> String {
        let kw = self.keyword();
        let quote = |s: &str| shell_quote(s);
        match self {
            Instruction::From { image, platform, .. } => match platform {
                Some(p) => format!("FROM --platform={p} {image}"),
                None => format!("FROM {image}"),
            },
            Instruction::Run(run) => {
                let mut parts = vec![kw.to_string()];
                for m in &run.mounts {
                    parts.push(format!("--mount={}", m.canonical()));
                }
                if let Some(n) = run.network {
                    parts.push(format!("--network={}", n.as_str()));
                }
                if let Some(s) = &run.security {
                    parts.push(format!("--security={s}"));
                }
                parts.push(run.command.canonical());
                with_heredocs(parts.join(" "), &run.heredocs)
            }
            Instruction::Cmd { command } | Instruction::Entrypoint { command } => {
                format!("{kw} {}", command.canonical())
            }
            Instruction::Shell { shell } => format!("{kw} {}", json_array(shell)),
            Instruction::Env { pairs } | Instruction::Label { pairs } => {
                let body: Vec<String> = pairs.iter().map(|(k, v)| format!("{}={}", quote(k), quote(v))).collect();
                format!("{kw} {}", body.join(" "))
            }
            Instruction::Maintainer { name } => format!("{kw} {name}"),
            Instruction::Expose { ports } => format!("{kw} {}", ports.join(" ")),
            Instruction::Copy(fc) | Instruction::Add(fc) => {
                let mut parts = vec![kw.to_string()];
                let text_flags =
                    [("from", &fc.from), ("chown", &fc.chown), ("chmod", &fc.chmod), ("checksum", &fc.checksum)];
                for (name, value) in text_flags {
                    if let Some(v) = value {
                        parts.push(format!("--{name}={v}"));
                    }
                }
                for (name, on) in [("link", fc.link), ("parents", fc.parents), ("keep-git-dir", fc.keep_git_dir)] {
                    if on {
                        parts.push(format!("--{name}"));
                    }
                }
                if let Some(u) = fc.unpack {
                    parts.push(format!("--unpack={u}"));
                }
                for e in &fc.exclude {
                    parts.push(format!("--exclude={e}"));
                }
                let mut words = fc.sources.clone();
                words.push(fc.dest.clone());
                if fc.json {
                    parts.push(json_array(&words));
                } else {
                    parts.extend(words);
                }
                with_heredocs(parts.join(" "), &fc.heredocs)
            }
            Instruction::Volume { paths } => format!("{kw} {}", json_array(paths)),
            Instruction::User { user } => format!("{kw} {user}"),
            Instruction::Workdir { path } => format!("{kw} {path}"),
            Instruction::Arg { args } => {
                let body: Vec<String> = args
                    .iter()
                    .map(|a| match &a.default {
                        Some(d) => format!("{}={}", a.name, quote(d)),
                        None => a.name.clone(),
                    })
                    .collect();
                format!("{kw} {}", body.join(" "))
            }
            Instruction::Onbuild { expression, .. } => format!("{kw} {expression}"),
            Instruction::Stopsignal { signal } => format!("{kw} {signal}"),
            Instruction::Healthcheck(Healthcheck::None) => format!("{kw} NONE"),
            Instruction::Healthcheck(Healthcheck::Cmd {
                test,
                interval,
                timeout,
                start_period,
                start_interval,
                retries,
            }) => {
                let mut parts = vec![kw.to_string()];
                let durations = [
                    ("interval", interval),
                    ("timeout", timeout),
                    ("start-period", start_period),
                    ("start-interval", start_interval),
                ];
                for (name, d) in durations {
                    if let Some(d) = d {
                        parts.push(format!("--{name}={}", go_duration(*d)));
                    }
                }
                if let Some(r) = retries {
                    parts.push(format!("--retries={r}"));
                }
                parts.push(format!("CMD {}", test.canonical()));
                parts.join(" ")
            }
        }
    }
}

fn with_heredocs(mut text: String, heredocs: &[Heredoc]) -> String {
    for h in heredocs {
        text.push('\n');
        text.push_str(&h.content);
        text.push_str(&h.name);
    }
    text
}

/// Quotes a value the way Docker's history shows ENV and LABEL values: bare when it has no
/// space, quote or backslash, else double-quoted with `"` and `\` escaped.
fn shell_quote(s: &str) -> String {
    if !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '\\' || c == '$') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' || c == '$' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}
