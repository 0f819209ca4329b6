//! Reading typed instructions: turns a parsed [`Node`] into an [`Instruction`] (the type lives
//! in [`crate::plan::instruction`], with its canonical text) with its flags checked (names,
//! values, repeats), its arguments counted, and the fields that Docker expands marked by
//! [`Instruction::expand`].

use std::time::Duration;

use crate::frontend::ast::Node;
use crate::frontend::Diagnostic;
pub use crate::plan::instruction::{
    go_duration, ArgDecl, CacheSharing, CommandForm, FileCopy, Healthcheck, Instruction, MountSpec, MountType,
    RunInstruction,
};
use crate::plan::NetworkMode;

/// Why a `--mount` value is invalid (shown after `invalid --mount: `, at the RUN's line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountSpecError {
    #[error("unsupported mount type {0:?}")]
    UnsupportedType(String),
    #[error("mount option {key:?} needs a value")]
    MissingValue { key: String },
    #[error("invalid value {value:?} for mount option {key:?}: expected true or false")]
    NotABoolean { key: String, value: String },
    #[error("invalid number {value:?} for mount option {key:?}")]
    NotANumber { key: String, value: String },
    #[error("unsupported sharing value {0:?}")]
    UnsupportedSharing(String),
    #[error("unexpected key {key:?} in mount {mount:?}")]
    UnexpectedKey { key: String, mount: String },
    #[error("mount type {0} requires a target")]
    MissingTarget(&'static str),
}

impl MountSpec {
    /// Parses the value of `--mount` (`type=cache,target=/root/.cache,sharing=locked`).
    pub fn parse(value: &str) -> Result<Self, MountSpecError> {
        let mut spec = MountSpec {
            kind: MountType::Bind,
            target: None,
            source: None,
            from: None,
            readonly: None,
            id: None,
            sharing: None,
            mode: None,
            uid: None,
            gid: None,
            size: None,
            required: None,
            env: None,
        };
        let fields: Vec<&str> = value.split(',').map(str::trim).filter(|f| !f.is_empty()).collect();
        // The type decides the defaults, so find it first wherever it stands.
        for field in &fields {
            if let Some(t) = field.strip_prefix("type=") {
                spec.kind = MountType::parse(t).ok_or_else(|| MountSpecError::UnsupportedType(t.to_string()))?;
            }
        }
        for field in fields {
            let (key, val) = match field.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
                None => (field.to_ascii_lowercase(), None),
            };
            let missing = || MountSpecError::MissingValue { key: key.clone() };
            let text =
                |v: Option<&str>| -> Result<String, MountSpecError> { v.map(str::to_string).ok_or_else(missing) };
            let boolean = |v: Option<&str>| -> Result<bool, MountSpecError> {
                match v.map(|s| s.to_ascii_lowercase()) {
                    None => Ok(true),
                    Some(s) if s == "true" || s == "1" => Ok(true),
                    Some(s) if s == "false" || s == "0" => Ok(false),
                    Some(s) => Err(MountSpecError::NotABoolean { key: key.clone(), value: s }),
                }
            };
            let number = |v: Option<&str>, radix: u32| -> Result<u32, MountSpecError> {
                let s = v.ok_or_else(missing)?;
                u32::from_str_radix(s, radix)
                    .map_err(|_| MountSpecError::NotANumber { key: key.clone(), value: s.to_string() })
            };
            match key.as_str() {
                "type" => {}
                "target" | "dst" | "destination" => spec.target = Some(text(val)?),
                "source" | "src" => spec.source = Some(text(val)?),
                "from" => spec.from = Some(text(val)?),
                "ro" | "readonly" => spec.readonly = Some(boolean(val)?),
                "rw" | "readwrite" => spec.readonly = Some(!boolean(val)?),
                "id" => spec.id = Some(text(val)?),
                "sharing" => {
                    spec.sharing = Some(match text(val)?.to_ascii_lowercase().as_str() {
                        "shared" => CacheSharing::Shared,
                        "private" => CacheSharing::Private,
                        "locked" => CacheSharing::Locked,
                        other => return Err(MountSpecError::UnsupportedSharing(other.to_string())),
                    })
                }
                "mode" => spec.mode = Some(number(val, 8)?),
                "uid" => spec.uid = Some(number(val, 10)?),
                "gid" => spec.gid = Some(number(val, 10)?),
                "size" => spec.size = Some(text(val)?),
                "required" => spec.required = Some(boolean(val)?),
                "env" => spec.env = Some(text(val)?),
                other => {
                    return Err(MountSpecError::UnexpectedKey { key: other.to_string(), mount: value.to_string() })
                }
            }
        }
        // A bind mount without a target lands on the working directory (BuildKit behaviour);
        // cache and tmpfs mounts have no such default.
        let needs_target = matches!(spec.kind, MountType::Cache | MountType::Tmpfs);
        if needs_target && spec.target.as_deref().is_none_or(str::is_empty) {
            return Err(MountSpecError::MissingTarget(spec.kind.as_str()));
        }
        Ok(spec)
    }

    fn fields_mut(&mut self) -> [&mut Option<String>; 6] {
        [&mut self.target, &mut self.source, &mut self.from, &mut self.id, &mut self.size, &mut self.env]
    }
}

impl CommandForm {
    fn from_node(node: &Node) -> Self {
        if node.json {
            CommandForm::Exec(node.args.clone())
        } else {
            CommandForm::Shell(node.args.join(" "))
        }
    }
}

impl MountType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "bind" => MountType::Bind,
            "cache" => MountType::Cache,
            "tmpfs" => MountType::Tmpfs,
            "secret" => MountType::Secret,
            "ssh" => MountType::Ssh,
            _ => return None,
        })
    }
}

/// Where errors point: the file and its text, for [`Diagnostic`]s.
#[derive(Debug, Clone, Copy)]
pub struct SourceRef<'a> {
    pub file: &'a str,
    pub text: &'a str,
}

impl SourceRef<'_> {
    /// A diagnostic on `node`'s first line, at the column where `needle` first appears on it
    /// (column 1 when it does not).
    pub fn error_at(&self, node: &Node, needle: &str, message: impl Into<String>) -> Diagnostic {
        let line_text = node.start_line.checked_sub(1).and_then(|i| self.text.split('\n').nth(i)).unwrap_or("");
        let column = if needle.is_empty() {
            None
        } else {
            line_text.find(needle).map(|byte| line_text[..byte].chars().count() + 1)
        };
        let column = column.unwrap_or_else(|| line_text.chars().take_while(|c| c.is_whitespace()).count() + 1);
        Diagnostic::at(self.file, self.text, node.start_line, column, message)
    }
}

/// How a flag takes its value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FlagKind {
    Bool,
    Text,
    Repeated,
}

/// The flags an instruction accepts; values as given, in order.
struct FlagSet {
    accepted: &'static [(&'static str, FlagKind)],
    values: Vec<(&'static str, String)>,
}

impl FlagSet {
    fn parse(accepted: &'static [(&'static str, FlagKind)], node: &Node, src: &SourceRef) -> Result<Self, Diagnostic> {
        let mut set = FlagSet { accepted, values: Vec::new() };
        let keyword = node.keyword.to_ascii_uppercase();
        for raw in &node.flags {
            let body = raw.strip_prefix("--").unwrap_or(raw);
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some(&(known, kind)) = accepted.iter().find(|(n, _)| *n == name) else {
                let hint = if accepted.is_empty() {
                    format!("{keyword} takes no flags")
                } else {
                    let names: Vec<String> = accepted.iter().map(|(n, _)| format!("--{n}")).collect();
                    format!("{keyword} accepts {}", names.join(", "))
                };
                return Err(src.error_at(node, raw, format!("unknown flag: --{name} ({hint})")));
            };
            let value = match (kind, value) {
                (FlagKind::Bool, None) => "true".to_string(),
                (FlagKind::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
                    "true" | "false" => v.to_ascii_lowercase(),
                    _ => {
                        return Err(src.error_at(
                            node,
                            raw,
                            format!("invalid boolean value {v:?} for flag --{name}: expected true or false"),
                        ))
                    }
                },
                (_, None) => {
                    return Err(src.error_at(node, raw, format!("missing a value on flag: --{name}")));
                }
                (_, Some(v)) => v.to_string(),
            };
            if kind != FlagKind::Repeated && set.values.iter().any(|(n, _)| *n == known) {
                return Err(src.error_at(node, raw, format!("duplicate flag specified: --{name}")));
            }
            set.values.push((known, value));
        }
        Ok(set)
    }

    fn text(&self, name: &str) -> Option<String> {
        self.values.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone())
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.values.iter().filter(|(n, _)| *n == name).map(|(_, v)| v.clone()).collect()
    }

    fn boolean(&self, name: &str) -> bool {
        self.text(name).is_some_and(|v| v == "true")
    }

    fn optional_bool(&self, name: &str) -> Option<bool> {
        self.text(name).map(|v| v == "true")
    }

    fn is_accepted(&self, name: &str) -> bool {
        self.accepted.iter().any(|(n, _)| *n == name)
    }
}

use FlagKind::{Bool, Repeated, Text};

const FROM_FLAGS: &[(&str, FlagKind)] = &[("platform", Text)];
const RUN_FLAGS: &[(&str, FlagKind)] = &[("mount", Repeated), ("network", Text), ("security", Text)];
const COPY_FLAGS: &[(&str, FlagKind)] =
    &[("from", Text), ("chown", Text), ("chmod", Text), ("link", Bool), ("parents", Bool), ("exclude", Repeated)];
const ADD_FLAGS: &[(&str, FlagKind)] = &[
    ("chown", Text),
    ("chmod", Text),
    ("link", Bool),
    ("exclude", Repeated),
    ("checksum", Text),
    ("keep-git-dir", Bool),
    ("unpack", Bool),
];
const HEALTHCHECK_FLAGS: &[(&str, FlagKind)] =
    &[("interval", Text), ("timeout", Text), ("start-period", Text), ("start-interval", Text), ("retries", Text)];
const NO_FLAGS: &[(&str, FlagKind)] = &[];

/// Every instruction keyword, lower-case.
pub const KEYWORDS: &[&str] = &[
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// The closest keyword to an unknown word, for "did you mean".
fn suggest_keyword(word: &str) -> Option<&'static str> {
    let word = word.to_ascii_lowercase();
    KEYWORDS
        .iter()
        .map(|k| (edit_distance(&word, k), *k))
        .filter(|(d, k)| *d <= 2 && *d < k.len())
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Reads one node. ONBUILD children are read recursively, with Docker's restrictions.
pub fn read_instruction(node: &Node, src: &SourceRef) -> Result<Instruction, Diagnostic> {
    let keyword = node.keyword_lower();
    let upper = keyword.to_ascii_uppercase();
    let one = |what: &str| -> Result<String, Diagnostic> {
        match node.args.as_slice() {
            [only] if !only.is_empty() => Ok(only.clone()),
            _ => Err(src.error_at(node, &node.keyword, format!("{upper} requires exactly one argument{what}"))),
        }
    };
    let flags = match keyword.as_str() {
        "from" => FROM_FLAGS,
        "run" => RUN_FLAGS,
        "copy" => COPY_FLAGS,
        "add" => ADD_FLAGS,
        "healthcheck" => HEALTHCHECK_FLAGS,
        _ => NO_FLAGS,
    };
    let known = KEYWORDS.contains(&keyword.as_str());
    if !known {
        let hint = suggest_keyword(&keyword)
            .map(|k| format!(" (did you mean {}?)", k.to_ascii_uppercase()))
            .unwrap_or_default();
        return Err(src.error_at(node, &node.keyword, format!("unknown instruction: {}{hint}", node.keyword)));
    }
    let flags = FlagSet::parse(flags, node, src)?;
    let instruction = match keyword.as_str() {
        "from" => read_from(node, &flags, src)?,
        "run" => read_run(node, &flags, src)?,
        "cmd" => Instruction::Cmd { command: CommandForm::from_node(node) },
        "entrypoint" => Instruction::Entrypoint { command: CommandForm::from_node(node) },
        "shell" => {
            if !node.json {
                return Err(src.error_at(
                    node,
                    &node.keyword,
                    "SHELL requires the arguments to be in JSON form, e.g. SHELL [\"/bin/sh\", \"-c\"]",
                ));
            }
            if node.args.is_empty() {
                return Err(src.error_at(node, &node.keyword, "SHELL requires at least one argument"));
            }
            Instruction::Shell { shell: node.args.clone() }
        }
        "env" | "label" => {
            let pairs = key_value_triples(node, src)?;
            if keyword == "env" {
                Instruction::Env { pairs }
            } else {
                Instruction::Label { pairs }
            }
        }
        "maintainer" => Instruction::Maintainer { name: one("")? },
        "expose" => {
            if node.args.is_empty() {
                return Err(src.error_at(node, &node.keyword, "EXPOSE requires at least one argument"));
            }
            Instruction::Expose { ports: node.args.clone() }
        }
        "copy" | "add" => read_copy(node, &flags, src, keyword == "add")?,
        "volume" => {
            if node.args.is_empty() {
                return Err(src.error_at(node, &node.keyword, "VOLUME requires at least one argument"));
            }
            if node.args.iter().any(|a| a.trim().is_empty()) {
                return Err(src.error_at(node, &node.keyword, "VOLUME specified can not be an empty string"));
            }
            Instruction::Volume { paths: node.args.clone() }
        }
        "user" => Instruction::User { user: one("")? },
        "workdir" => Instruction::Workdir { path: one(" (a path)")? },
        "stopsignal" => Instruction::Stopsignal { signal: one(" (a signal)")? },
        "arg" => Instruction::Arg { args: read_args(node, src)? },
        "onbuild" => read_onbuild(node, src)?,
        "healthcheck" => read_healthcheck(node, &flags, src)?,
        _ => unreachable_keyword(node, src)?,
    };
    Ok(instruction)
}

/// `FROM [--platform=…] <image> [AS <name>]`.
fn read_from(node: &Node, flags: &FlagSet, src: &SourceRef) -> Result<Instruction, Diagnostic> {
    let (image, stage_name) = match node.args.as_slice() {
        [image] => (image.clone(), None),
        [image, as_word, name] if as_word.eq_ignore_ascii_case("as") => {
            (image.clone(), Some(name.to_ascii_lowercase()))
        }
        [_, other, _] => {
            return Err(src.error_at(node, other, format!("FROM expects AS before the stage name, found {other:?}")))
        }
        _ => {
            return Err(src.error_at(
                node,
                &node.keyword,
                "FROM requires either one or three arguments: FROM <image> [AS <name>]",
            ))
        }
    };
    if let (Some(name), Some(written)) = (&stage_name, node.args.get(2)) {
        if !valid_stage_name(name) {
            // The user's spelling, not the lower-cased name.
            let hint = if written.contains('$') {
                "; stage names are not expanded, so a variable cannot name a stage"
            } else {
                ""
            };
            return Err(src.error_at(
                node,
                written,
                format!("invalid stage name {written:?}: it must start with a letter and contain only letters, digits, '-', '_' and '.'{hint}"),
            ));
        }
    }
    Ok(Instruction::From { image, stage_name, platform: flags.text("platform") })
}

/// `RUN [--mount=…] [--network=…] [--security=…] <command>`.
fn read_run(node: &Node, flags: &FlagSet, src: &SourceRef) -> Result<Instruction, Diagnostic> {
    let command = CommandForm::from_node(node);
    if command.is_empty() && node.heredocs.is_empty() {
        return Err(src.error_at(node, &node.keyword, "RUN requires a command to run"));
    }
    let mut mounts = Vec::new();
    for raw in flags.all("mount") {
        mounts.push(MountSpec::parse(&raw).map_err(|e| src.error_at(node, &raw, format!("invalid --mount: {e}")))?);
    }
    let network = match flags.text("network") {
        None => None,
        Some(n) => Some(NetworkMode::parse(&n).ok_or_else(|| {
            src.error_at(node, "--network", format!("unsupported network mode {n:?}: expected default, none or host"))
        })?),
    };
    let security = flags.text("security");
    if let Some(s) = &security {
        if s != "sandbox" && s != "insecure" {
            return Err(src.error_at(
                node,
                "--security",
                format!("unsupported security mode {s:?}: expected sandbox or insecure"),
            ));
        }
    }
    Ok(Instruction::Run(RunInstruction { command, heredocs: node.heredocs.clone(), mounts, network, security }))
}

/// `COPY`/`ADD [flags] <src>... <dest>` (flags only one of them takes were refused already).
fn read_copy(node: &Node, flags: &FlagSet, src: &SourceRef, is_add: bool) -> Result<Instruction, Diagnostic> {
    let upper = if is_add { "ADD" } else { "COPY" };
    let min = if node.heredocs.is_empty() { 2 } else { 1 };
    if node.args.len() < min {
        return Err(src.error_at(
            node,
            &node.keyword,
            format!("{upper} requires at least two arguments, but only {} was provided: the destination could not be determined", node.args.len()),
        ));
    }
    let (dest, sources) = match node.args.split_last() {
        Some((dest, sources)) => (dest.clone(), sources.to_vec()),
        None => return Err(src.error_at(node, &node.keyword, format!("{upper} requires a destination"))),
    };
    let fc = FileCopy {
        sources,
        dest,
        heredocs: node.heredocs.clone(),
        from: flags.text("from"),
        chown: flags.text("chown"),
        chmod: flags.text("chmod"),
        link: flags.boolean("link"),
        parents: flags.is_accepted("parents") && flags.boolean("parents"),
        exclude: flags.all("exclude"),
        checksum: flags.text("checksum"),
        keep_git_dir: flags.boolean("keep-git-dir"),
        unpack: flags.optional_bool("unpack"),
        json: node.json,
    };
    if let Some(sum) = &fc.checksum {
        if !sum.starts_with("sha256:") && !sum.starts_with("sha384:") && !sum.starts_with("sha512:") {
            return Err(src.error_at(node, "--checksum", format!("invalid --checksum {sum:?}: expected sha256:<hex>")));
        }
    }
    Ok(if is_add { Instruction::Add(fc) } else { Instruction::Copy(fc) })
}

/// `ONBUILD <instruction>`: the trigger is read now (and refused if it cannot be one).
fn read_onbuild(node: &Node, src: &SourceRef) -> Result<Instruction, Diagnostic> {
    let Some(child) = &node.child else {
        return Err(src.error_at(node, &node.keyword, "ONBUILD requires an instruction to run later"));
    };
    match child.keyword_lower().as_str() {
        "onbuild" => {
            return Err(src.error_at(node, &child.keyword, "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"))
        }
        k @ ("from" | "maintainer") => {
            return Err(src.error_at(
                node,
                &child.keyword,
                format!("{} isn't allowed as an ONBUILD trigger", k.to_ascii_uppercase()),
            ))
        }
        _ => {}
    }
    let trigger = read_instruction(child, src)?;
    Ok(Instruction::Onbuild { trigger: Box::new(trigger), expression: child.original.trim().to_string() })
}

/// KEYWORDS and the match above list the same words; this keeps the match total without a
/// panic if they ever disagree.
fn unreachable_keyword(node: &Node, src: &SourceRef) -> Result<Instruction, Diagnostic> {
    Err(src.error_at(node, &node.keyword, format!("unknown instruction: {}", node.keyword)))
}

fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// ENV and LABEL arguments come as `key, value, separator` triples.
fn key_value_triples(node: &Node, src: &SourceRef) -> Result<Vec<(String, String)>, Diagnostic> {
    let upper = node.keyword.to_ascii_uppercase();
    if node.args.is_empty() {
        return Err(src.error_at(node, &node.keyword, format!("{upper} requires at least one argument")));
    }
    if !node.args.len().is_multiple_of(3) {
        return Err(src.error_at(node, &node.keyword, format!("{upper} requires key=value pairs")));
    }
    let mut pairs = Vec::new();
    for triple in node.args.chunks(3) {
        if let [key, value, _sep] = triple {
            if key.is_empty() {
                return Err(src.error_at(node, "=", format!("{upper} names can not be blank")));
            }
            pairs.push((key.clone(), value.clone()));
        }
    }
    Ok(pairs)
}

fn read_args(node: &Node, src: &SourceRef) -> Result<Vec<ArgDecl>, Diagnostic> {
    if node.args.is_empty() {
        return Err(src.error_at(
            node,
            &node.keyword,
            "ARG requires at least one argument: ARG <name>[=<default value>]",
        ));
    }
    let mut decls = Vec::new();
    for word in &node.args {
        let (name, default) = match word.split_once('=') {
            Some((n, d)) => (n.to_string(), Some(d.to_string())),
            None => (word.clone(), None),
        };
        if name.is_empty() {
            return Err(src.error_at(node, word, "ARG names can not be blank"));
        }
        if !name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == '.') {
            return Err(src.error_at(node, &name, format!("invalid ARG name {name:?}")));
        }
        decls.push(ArgDecl { name, default });
    }
    Ok(decls)
}

fn read_healthcheck(node: &Node, flags: &FlagSet, src: &SourceRef) -> Result<Instruction, Diagnostic> {
    let Some(kind) = node.args.first() else {
        return Err(src.error_at(
            node,
            &node.keyword,
            "HEALTHCHECK requires an argument: HEALTHCHECK NONE or HEALTHCHECK [OPTIONS] CMD command",
        ));
    };
    match kind.to_ascii_uppercase().as_str() {
        "NONE" => {
            if node.args.len() > 1 {
                return Err(src.error_at(node, kind, "HEALTHCHECK NONE takes no arguments"));
            }
            if !flags.values.is_empty() {
                return Err(src.error_at(node, "--", "HEALTHCHECK NONE takes no flags"));
            }
            Ok(Instruction::Healthcheck(Healthcheck::None))
        }
        "CMD" => {
            let rest = node.args.get(1..).unwrap_or_default();
            let test = if node.json { CommandForm::Exec(rest.to_vec()) } else { CommandForm::Shell(rest.join(" ")) };
            if test.is_empty() {
                return Err(src.error_at(node, kind, "HEALTHCHECK CMD requires a command"));
            }
            let duration = |name: &str| -> Result<Option<Duration>, Diagnostic> {
                match flags.text(name) {
                    None => Ok(None),
                    Some(v) => {
                        let d = parse_go_duration(&v).map_err(|e| {
                            src.error_at(node, &format!("--{name}"), format!("invalid --{name} {v:?}: {e}"))
                        })?;
                        if !d.is_zero() && d < Duration::from_millis(1) {
                            return Err(src.error_at(
                                node,
                                &format!("--{name}"),
                                format!("--{name} cannot be less than 1ms"),
                            ));
                        }
                        Ok(Some(d))
                    }
                }
            };
            let retries = match flags.text("retries") {
                None => None,
                Some(v) => Some(v.parse::<u32>().map_err(|_| {
                    src.error_at(
                        node,
                        "--retries",
                        format!("invalid --retries {v:?}: expected a whole number of 0 or more"),
                    )
                })?),
            };
            Ok(Instruction::Healthcheck(Healthcheck::Cmd {
                test,
                interval: duration("interval")?,
                timeout: duration("timeout")?,
                start_period: duration("start-period")?,
                start_interval: duration("start-interval")?,
                retries,
            }))
        }
        other => Err(src.error_at(node, kind, format!("unknown type {other:?} in HEALTHCHECK (try CMD)"))),
    }
}

/// Why a HEALTHCHECK duration is invalid (shown after `invalid --interval "…": `).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("durations cannot be negative")]
    Negative,
    #[error("expected a number")]
    ExpectedNumber,
    #[error("invalid number {0:?}")]
    InvalidNumber(String),
    #[error("missing unit in duration {0:?}")]
    MissingUnit(String),
    #[error("unknown unit {unit:?} in duration {text:?}")]
    UnknownUnit { unit: String, text: String },
    #[error("duration {0:?} is too large")]
    TooLarge(String),
}

/// Go's `time.ParseDuration` syntax: a sequence of decimal numbers with units
/// (`ns us µs ms s m h`), e.g. `30s`, `1m30s`, `1.5h`; a bare `0` is allowed.
pub fn parse_go_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.starts_with('-') {
        return Err(DurationError::Negative);
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let mut total_ns: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return Err(DurationError::ExpectedNumber);
        }
        let (num, after) = rest.split_at(num_len);
        let value: f64 = num.parse().map_err(|_| DurationError::InvalidNumber(num.to_string()))?;
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(DurationError::MissingUnit(text.to_string())),
            other => return Err(DurationError::UnknownUnit { unit: other.to_string(), text: text.to_string() }),
        };
        total_ns += value * scale;
        rest = after;
    }
    if !total_ns.is_finite() || total_ns > u64::MAX as f64 {
        return Err(DurationError::TooLarge(text.to_string()));
    }
    Ok(Duration::from_nanos(total_ns.round() as u64))
}

/// Any error an expansion callback returns, carried back to the caller untouched.
pub type ExpandResult<T> = Result<T, Diagnostic>;

impl Instruction {
    /// Applies `word` to every field Docker expands in this instruction (BuildKit's
    /// single-word expansion): ADD/COPY sources, dest and `--from/--chown/--chmod/--exclude/
    /// --checksum`, ENV and LABEL keys and values, EXPOSE, USER, VOLUME, WORKDIR, STOPSIGNAL,
    /// ARG defaults, RUN `--mount` values. RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK,
    /// MAINTAINER and ONBUILD are left alone (the shell or a later build expands them). FROM
    /// is expanded by the caller with the global scope, not the stage's.
    pub fn expand(&mut self, word: &mut dyn FnMut(&str) -> ExpandResult<String>) -> ExpandResult<()> {
        let mut field = |s: &mut String| -> ExpandResult<()> {
            *s = word(s)?;
            Ok(())
        };
        match self {
            Instruction::Env { pairs } | Instruction::Label { pairs } => {
                for (k, v) in pairs {
                    field(k)?;
                    field(v)?;
                }
            }
            Instruction::Expose { ports } | Instruction::Volume { paths: ports } => {
                for p in ports {
                    field(p)?;
                }
            }
            Instruction::User { user: s }
            | Instruction::Workdir { path: s }
            | Instruction::Stopsignal { signal: s } => field(s)?,
            Instruction::Arg { args } => {
                for a in args {
                    if let Some(d) = &mut a.default {
                        field(d)?;
                    }
                }
            }
            Instruction::Copy(fc) | Instruction::Add(fc) => {
                for s in &mut fc.sources {
                    // Heredoc sources name a heredoc, not a path.
                    if !s.starts_with("<<") {
                        field(s)?;
                    }
                }
                field(&mut fc.dest)?;
                for f in [&mut fc.from, &mut fc.chown, &mut fc.chmod, &mut fc.checksum].into_iter().flatten() {
                    field(f)?;
                }
                for e in &mut fc.exclude {
                    field(e)?;
                }
            }
            Instruction::Run(run) => {
                for m in &mut run.mounts {
                    for f in m.fields_mut().into_iter().flatten() {
                        field(f)?;
                    }
                }
            }
            Instruction::From { .. }
            | Instruction::Cmd { .. }
            | Instruction::Entrypoint { .. }
            | Instruction::Shell { .. }
            | Instruction::Maintainer { .. }
            | Instruction::Onbuild { .. }
            | Instruction::Healthcheck(_) => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(keyword: &str, flags: &[&str], args: &[&str], json: bool) -> Node {
        Node {
            keyword: keyword.into(),
            flags: flags.iter().map(|s| s.to_string()).collect(),
            args: args.iter().map(|s| s.to_string()).collect(),
            json,
            heredocs: vec![],
            original: String::new(),
            start_line: 1,
            end_line: 1,
            child: None,
        }
    }

    fn read(n: &Node, text: &str) -> Result<Instruction, Diagnostic> {
        read_instruction(n, &SourceRef { file: "Dockerfile", text })
    }

    #[test]
    fn unknown_instruction_names_line_and_suggests() {
        let err = read(&node("FORM", &[], &["x"], false), "FORM x\n").unwrap_err();
        assert_eq!(err.headline(), "Dockerfile:1:1: unknown instruction: FORM (did you mean FROM?)");
    }

    #[test]
    fn bad_flag_is_reported_at_its_column() {
        let text = "COPY --chwon=1 a b\n";
        let err = read(&node("COPY", &["--chwon=1"], &["a", "b"], false), text).unwrap_err();
        assert_eq!(err.line, 1);
        assert_eq!(err.column, 6);
        assert!(err.message.starts_with("unknown flag: --chwon"), "{}", err.message);
    }

    #[test]
    fn add_rejects_from_and_copy_rejects_checksum() {
        assert!(read(&node("ADD", &["--from=x"], &["a", "b"], false), "ADD --from=x a b").is_err());
        assert!(read(&node("COPY", &["--checksum=sha256:aa"], &["a", "b"], false), "COPY --checksum=sha256:aa a b")
            .is_err());
    }

    #[test]
    fn flag_values_are_checked() {
        let dup = read(&node("COPY", &["--from=a", "--from=b"], &["x", "y"], false), "").unwrap_err();
        assert!(dup.message.contains("duplicate flag"), "{}", dup.message);
        let missing = read(&node("COPY", &["--from"], &["x", "y"], false), "").unwrap_err();
        assert!(missing.message.contains("missing a value"), "{}", missing.message);
        let boolean = read(&node("COPY", &["--link=maybe"], &["x", "y"], false), "").unwrap_err();
        assert!(boolean.message.contains("invalid boolean"), "{}", boolean.message);
        let ok = read(&node("COPY", &["--link", "--exclude=*.md", "--exclude=*.txt"], &["x", "y"], false), "").unwrap();
        let Instruction::Copy(fc) = ok else { panic!("not a copy") };
        assert!(fc.link);
        assert_eq!(fc.exclude, ["*.md", "*.txt"]);
    }

    #[test]
    fn arg_without_name_is_an_error() {
        let err = read(&node("ARG", &[], &[], false), "ARG\n").unwrap_err();
        assert!(err.message.contains("ARG requires at least one argument"), "{}", err.message);
        let err = read(&node("ARG", &[], &["=x"], false), "ARG =x\n").unwrap_err();
        assert!(err.message.contains("ARG names can not be blank"), "{}", err.message);
    }

    #[test]
    fn from_forms() {
        let i = read(&node("from", &["--platform=linux/amd64"], &["alpine", "AS", "Build"], false), "").unwrap();
        assert_eq!(
            i,
            Instruction::From {
                image: "alpine".into(),
                stage_name: Some("build".into()),
                platform: Some("linux/amd64".into())
            }
        );
        assert!(read(&node("FROM", &[], &["a", "b"], false), "").is_err());
        assert!(read(&node("FROM", &[], &["a", "as", "1x"], false), "").is_err());
    }

    #[test]
    fn mounts_parse_and_validate() {
        let m = MountSpec::parse("type=cache,target=/root/.cache,sharing=locked,id=pip").unwrap();
        assert_eq!(m.kind, MountType::Cache);
        assert_eq!(m.canonical(), "type=cache,target=/root/.cache,id=pip,sharing=locked");
        assert!(MountSpec::parse("type=tmpfs").is_err());
        assert_eq!(MountSpec::parse("from=binaries").unwrap().target, None);
        assert!(MountSpec::parse("type=nfs,target=/x").is_err());
        assert!(MountSpec::parse("type=secret,id=tok,bogus=1").is_err());
        let s = MountSpec::parse("type=secret,id=tok,required").unwrap();
        assert_eq!(s.required, Some(true));
    }

    #[test]
    fn healthcheck_flags_and_durations() {
        let i = read(
            &node("HEALTHCHECK", &["--interval=1m30s", "--retries=3"], &["CMD", "curl -f http://localhost/"], false),
            "",
        )
        .unwrap();
        assert_eq!(i.canonical(), "HEALTHCHECK --interval=1m30s --retries=3 CMD curl -f http://localhost/");
        assert!(read(&node("HEALTHCHECK", &["--interval=5x"], &["CMD", "true"], false), "").is_err());
        assert!(read(&node("HEALTHCHECK", &[], &["NONE", "x"], false), "").is_err());
        assert!(read(&node("HEALTHCHECK", &[], &["CHECK", "x"], false), "").is_err());
        assert_eq!(parse_go_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_go_duration("300ms").unwrap(), Duration::from_millis(300));
        assert!(parse_go_duration("10").is_err());
    }

    #[test]
    fn shell_needs_json_and_onbuild_restrictions() {
        let e = read(&node("SHELL", &[], &["/bin/bash -c"], false), "").unwrap_err();
        assert!(e.message.contains("JSON form"), "{}", e.message);
        let mut ob = node("ONBUILD", &[], &[], false);
        ob.child = Some(Box::new(node("ONBUILD", &[], &[], false)));
        assert!(read(&ob, "").unwrap_err().message.contains("chaining ONBUILD"));
        ob.child = Some(Box::new(node("FROM", &[], &["x"], false)));
        assert!(read(&ob, "").unwrap_err().message.contains("FROM isn't allowed"));
    }

    #[test]
    fn canonical_forms() {
        let env = Instruction::Env { pairs: vec![("A".into(), "x y".into()), ("B".into(), "1".into())] };
        assert_eq!(env.canonical(), "ENV A=\"x y\" B=1");
        let cmd = Instruction::Cmd { command: CommandForm::Exec(vec!["sh".into(), "-c".into()]) };
        assert_eq!(cmd.canonical(), "CMD [\"sh\",\"-c\"]");
    }

    #[test]
    fn expansion_touches_only_expanded_fields() {
        let mut run = read(&node("RUN", &["--mount=type=cache,target=$D"], &["echo $X"], false), "").unwrap();
        run.expand(&mut |w| Ok(w.replace("$D", "/cache").replace("$X", "no"))).unwrap();
        assert_eq!(run.canonical(), "RUN --mount=type=cache,target=/cache echo $X");
    }
}
