//! The image config a build produces (Docker's image JSON: OCI fields plus Docker's
//! `Healthcheck`, `OnBuild`, `Shell`), how each instruction changes it, and the history line it
//! leaves, worded as the classic `docker build` words it (`/bin/sh -c #(nop)  ENV A=1`,
//! `/bin/sh -c apt-get update`).
//!
//! Fields rbuild does not know are kept as they came from the base image (`extra`), so an
//! image built FROM another tool's image loses nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::frontend::instructions::{CommandForm, Healthcheck, Instruction};

/// Docker's default PATH, set in every image that has none, as `docker build` does.
pub use crate::frontend::lower::DEFAULT_PATH;

/// The default SHELL.
pub fn default_shell() -> Vec<String> {
    vec!["/bin/sh".to_string(), "-c".to_string()]
}

/// The `config` object of an image config (the container defaults).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerConfig {
    #[serde(rename = "User", default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(rename = "ExposedPorts", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exposed_ports: BTreeMap<String, Map<String, Value>>,
    #[serde(rename = "Env", default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(rename = "Entrypoint", default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "Volumes", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, Map<String, Value>>,
    #[serde(rename = "WorkingDir", default, skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    #[serde(rename = "Labels", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(rename = "StopSignal", default, skip_serializing_if = "String::is_empty")]
    pub stop_signal: String,
    #[serde(rename = "Healthcheck", default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    #[serde(rename = "OnBuild", default, skip_serializing_if = "Vec::is_empty")]
    pub on_build: Vec<String>,
    #[serde(rename = "Shell", default, skip_serializing_if = "Vec::is_empty")]
    pub shell: Vec<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Docker's `Healthcheck` (durations in nanoseconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthConfig {
    #[serde(rename = "Test", default)]
    pub test: Vec<String>,
    #[serde(rename = "Interval", default, skip_serializing_if = "is_zero")]
    pub interval: u64,
    #[serde(rename = "Timeout", default, skip_serializing_if = "is_zero")]
    pub timeout: u64,
    #[serde(rename = "StartPeriod", default, skip_serializing_if = "is_zero")]
    pub start_period: u64,
    #[serde(rename = "StartInterval", default, skip_serializing_if = "is_zero")]
    pub start_interval: u64,
    #[serde(rename = "Retries", default, skip_serializing_if = "is_zero_u32")]
    pub retries: u32,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

/// One history entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs { kind: "layers".into(), diff_ids: Vec::new() }
    }
}

/// A whole image config, as stored in the config blob (its sha256 is the image ID).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageConfigFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: ContainerConfig,
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ImageConfigFile {
    /// The config of `FROM scratch` on `os/arch`.
    pub fn scratch(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        ImageConfigFile {
            created: None,
            author: None,
            architecture: architecture.to_string(),
            os: os.to_string(),
            variant: variant.map(str::to_string),
            config: ContainerConfig::default(),
            rootfs: RootFs::default(),
            history: Vec::new(),
            extra: Map::new(),
        }
    }

    pub fn from_json(bytes: &[u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(bytes)
    }

    /// Canonical bytes: the image ID is the sha256 of exactly these.
    pub fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(self)
    }

    /// The value of an environment variable in the config.
    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.config.env.iter().rev().find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    }

    /// The env as pairs, in order (for expansion and for a RUN's environment).
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        self.config
            .env
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.clone(), String::new()),
            })
            .collect()
    }

    pub fn set_env(&mut self, name: &str, value: &str) {
        let entry = format!("{name}={value}");
        match self.config.env.iter_mut().find(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k) == name) {
            Some(slot) => *slot = entry,
            None => self.config.env.push(entry),
        }
    }

    /// The SHELL in effect for shell-form commands.
    pub fn shell(&self) -> Vec<String> {
        if self.config.shell.is_empty() {
            default_shell()
        } else {
            self.config.shell.clone()
        }
    }

    /// argv for a command in `form`: exec form as is, shell form through the SHELL.
    pub fn argv(&self, form: &CommandForm) -> Vec<String> {
        match form {
            CommandForm::Exec(v) => v.clone(),
            CommandForm::Shell(s) => {
                let mut argv = self.shell();
                argv.push(s.clone());
                argv
            }
        }
    }
}

/// What a stage tracks besides the config while it applies instructions.
#[derive(Debug, Clone, Default)]
pub struct StageConfigState {
    /// CMD was set by this stage (an ENTRYPOINT resets an inherited CMD only).
    pub cmd_set_here: bool,
}

impl StageConfigState {
    /// Records what later instructions depend on (a CMD set in this stage survives a later
    /// ENTRYPOINT), for steps whose config comes from the cache instead of being applied.
    pub fn observe(&mut self, instruction: &Instruction) {
        if matches!(instruction, Instruction::Cmd { .. }) {
            self.cmd_set_here = true;
        }
    }
}

/// Applies a config-only instruction to `image`. Returns false for instructions that need the
/// filesystem (RUN, COPY, ADD) or change nothing in the config (FROM, ARG).
pub fn apply_config_instruction(
    image: &mut ImageConfigFile,
    state: &mut StageConfigState,
    instruction: &Instruction,
) -> bool {
    let config = &mut image.config;
    match instruction {
        Instruction::Env { pairs } => {
            for (k, v) in pairs {
                image.set_env(k, v);
            }
        }
        Instruction::Label { pairs } => {
            for (k, v) in pairs {
                config.labels.insert(k.clone(), v.clone());
            }
        }
        Instruction::Maintainer { name } => image.author = Some(name.clone()),
        Instruction::Expose { ports } => {
            for port in ports {
                for p in expand_port(port) {
                    config.exposed_ports.insert(p, Map::new());
                }
            }
        }
        Instruction::Cmd { command } => {
            let argv = image.argv(command);
            image.config.cmd = Some(argv);
            state.observe(instruction);
        }
        Instruction::Entrypoint { command } => {
            // `ENTRYPOINT []` clears it: Docker stores null.
            let argv = image.argv(command);
            image.config.entrypoint = (!argv.is_empty()).then_some(argv);
            if !state.cmd_set_here {
                image.config.cmd = None;
            }
        }
        Instruction::Volume { paths } => {
            for p in paths {
                config.volumes.insert(p.clone(), Map::new());
            }
        }
        Instruction::User { user } => config.user = user.clone(),
        Instruction::Workdir { path } => config.working_dir = resolve_workdir(&config.working_dir, path),
        Instruction::Stopsignal { signal } => config.stop_signal = signal.clone(),
        Instruction::Healthcheck(Healthcheck::None) => {
            config.healthcheck = Some(HealthConfig { test: vec!["NONE".into()], ..HealthConfig::default() })
        }
        Instruction::Healthcheck(Healthcheck::Cmd {
            test,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        }) => {
            let test = match test {
                CommandForm::Exec(v) => std::iter::once("CMD".to_string()).chain(v.iter().cloned()).collect(),
                CommandForm::Shell(s) => vec!["CMD-SHELL".to_string(), s.clone()],
            };
            let nanos = |d: &Option<std::time::Duration>| d.map_or(0, |d| d.as_nanos().min(u64::MAX as u128) as u64);
            config.healthcheck = Some(HealthConfig {
                test,
                interval: nanos(interval),
                timeout: nanos(timeout),
                start_period: nanos(start_period),
                start_interval: nanos(start_interval),
                retries: retries.unwrap_or(0),
            });
        }
        Instruction::Onbuild { expression, .. } => config.on_build.push(expression.clone()),
        Instruction::Shell { shell } => config.shell = shell.clone(),
        Instruction::Arg { .. } => {}
        Instruction::From { .. } | Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) => return false,
    }
    true
}

/// `80` -> `80/tcp`; `8000-8002/udp` -> each port of the range, as Docker records them.
pub fn expand_port(port: &str) -> Vec<String> {
    let (range, proto) = port.split_once('/').unwrap_or((port, "tcp"));
    let proto = proto.to_ascii_lowercase();
    match range.split_once('-').and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?))) {
        Some((lo, hi)) if lo <= hi => (lo..=hi).map(|p| format!("{p}/{proto}")).collect(),
        _ => vec![format!("{range}/{proto}")],
    }
}

/// WORKDIR: an absolute path replaces, a relative one is joined to the current one; `.` and
/// `..` are resolved lexically, as Docker does.
pub fn resolve_workdir(current: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        let base = if current.is_empty() { "/" } else { current };
        format!("{}/{path}", base.trim_end_matches('/'))
    };
    clean_path(&joined)
}

/// Lexical cleaning of an absolute path (`/a/./b/../c/` -> `/a/c`).
pub fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Go's `%q` of a string slice, as classic docker prints CMD in history: `["a" "b"]`.
fn go_quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| crate::frontend::parser::dump::go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `%v` of a string slice, as classic docker prints VOLUME and SHELL: `[/a /b]`.
fn go_plain_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// Go's `%q` of Docker 20.10's `*HealthConfig`, as classic docker prints HEALTHCHECK in
/// history: `&{["CMD-SHELL" "curl x"] "30s" "0s" "0s" '\x03'}` (durations through their
/// `String()`, the retry count as a quoted rune).
fn go_healthcheck(hc: &HealthConfig) -> String {
    use crate::frontend::instructions::go_duration;
    let duration = |ns: u64| crate::frontend::parser::dump::go_quote(&go_duration(std::time::Duration::from_nanos(ns)));
    let retries = char::from_u32(hc.retries).unwrap_or(char::REPLACEMENT_CHARACTER);
    let quoted = crate::frontend::parser::dump::go_quote(&retries.to_string());
    let rune = match retries {
        '"' => "\"".to_string(),
        '\'' => "\\'".to_string(),
        _ => quoted[1..quoted.len() - 1].to_string(),
    };
    format!(
        "&{{{} {} {} {} '{rune}'}}",
        go_quoted_list(&hc.test),
        duration(hc.interval),
        duration(hc.timeout),
        duration(hc.start_period)
    )
}

/// The history line classic `docker build` writes for an instruction.
///
/// `image` is the config after the instruction was applied: its SHELL prefixes every
/// `#(nop)` line and its WORKDIR is the resolved one. `run_argv` is the command a RUN
/// executed and `build_args` the build args it saw (classic docker prefixes them:
/// `|1 V=1 /bin/sh -c …`); `copy_summary` names COPY/ADD sources (`dir:<hex> in /dest/`).
pub fn history_created_by(
    instruction: &Instruction,
    image: &ImageConfigFile,
    run_argv: Option<&[String]>,
    build_args: &BTreeMap<String, String>,
    copy_summary: Option<&str>,
) -> String {
    let shell = image.shell().join(" ");
    // Classic docker appends "#(nop) " and the text as two argv words (two spaces), except
    // for COPY/ADD and WORKDIR, whose text is one word with the marker.
    let nop = |text: String| format!("{shell} #(nop)  {text}");
    match instruction {
        Instruction::Run(_) => {
            let argv = run_argv.map(|a| a.join(" ")).unwrap_or_default();
            if build_args.is_empty() {
                argv
            } else {
                let args: Vec<String> = build_args.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("|{} {} {argv}", args.len(), args.join(" "))
            }
        }
        // Classic docker's, to the byte: `--chown` glued to the sources, a trailing space.
        Instruction::Copy(fc) | Instruction::Add(fc) => {
            let chown = fc.chown.as_deref().map(|c| format!("--chown={c}")).unwrap_or_default();
            format!("{shell} #(nop) {} {chown}{} ", instruction.keyword(), copy_summary.unwrap_or_default())
        }
        Instruction::Workdir { .. } => format!("{shell} #(nop) WORKDIR {}", image.config.working_dir),
        Instruction::Cmd { command } | Instruction::Entrypoint { command } => {
            nop(format!("{} {}", instruction.keyword(), go_quoted_list(&image.argv(command))))
        }
        Instruction::Env { pairs } | Instruction::Label { pairs } => {
            let body: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            nop(format!("{} {}", instruction.keyword(), body.join(" ")))
        }
        // As written, sorted as Go's sort.Strings sorts them.
        Instruction::Expose { ports } => {
            let mut sorted = ports.clone();
            sorted.sort_unstable();
            nop(format!("EXPOSE {}", sorted.join(" ")))
        }
        Instruction::Volume { paths } => nop(format!("VOLUME {}", go_plain_list(paths))),
        Instruction::Shell { shell } => nop(format!("SHELL {}", go_plain_list(shell))),
        Instruction::Healthcheck(_) => match &image.config.healthcheck {
            Some(hc) => nop(format!("HEALTHCHECK {}", go_healthcheck(hc))),
            None => nop(instruction.canonical()),
        },
        other => nop(other.canonical()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::lower::{parse_and_lower, LowerOptions};

    /// The instructions of a one-stage Dockerfile after FROM, lowered.
    fn instructions(text: &str) -> Vec<Instruction> {
        let plan = parse_and_lower(text, "Dockerfile", &LowerOptions::default()).expect("lowers");
        plan.stages[0].steps.iter().skip(1).map(|s| s.instruction.clone()).collect()
    }

    fn apply(text: &str) -> ImageConfigFile {
        let mut image = ImageConfigFile::scratch("linux", "amd64", None);
        image.set_env("PATH", DEFAULT_PATH);
        image.config.cmd = Some(vec!["sh".into()]);
        let mut state = StageConfigState::default();
        for i in instructions(text) {
            apply_config_instruction(&mut image, &mut state, &i);
        }
        image
    }

    #[test]
    fn env_replaces_in_place_and_cmd_uses_the_shell() {
        let image = apply("FROM x\nENV A=1 B=2\nENV A=3\nSHELL [\"/bin/bash\", \"-c\"]\nCMD echo $A\n");
        assert_eq!(image.config.env, [format!("PATH={DEFAULT_PATH}"), "A=3".into(), "B=2".into()]);
        assert_eq!(image.config.cmd, Some(vec!["/bin/bash".into(), "-c".into(), "echo $A".into()]));
        assert_eq!(image.env_var("A"), Some("3"));
    }

    #[test]
    fn entrypoint_resets_an_inherited_cmd_only() {
        let image = apply("FROM x\nENTRYPOINT [\"/app\"]\n");
        assert_eq!(image.config.cmd, None);
        let image = apply("FROM x\nCMD [\"--help\"]\nENTRYPOINT [\"/app\"]\n");
        assert_eq!(image.config.cmd, Some(vec!["--help".into()]));
        assert_eq!(image.config.entrypoint, Some(vec!["/app".into()]));
    }

    #[test]
    fn every_config_instruction_lands_where_docker_puts_it() {
        let image = apply(
            "FROM x\nMAINTAINER Me <me@x>\nLABEL a=b \"c d\"=e\nEXPOSE 80 53/udp 8000-8001\nVOLUME /data [\"/logs\"]\nUSER app:app\nWORKDIR /opt\nWORKDIR app/../srv\nSTOPSIGNAL SIGTERM\nHEALTHCHECK --interval=30s --retries=3 CMD curl -f http://localhost/\nONBUILD RUN make\n",
        );
        assert_eq!(image.author.as_deref(), Some("Me <me@x>"));
        assert_eq!(image.config.labels.get("c d").map(String::as_str), Some("e"));
        let ports: Vec<&str> = image.config.exposed_ports.keys().map(String::as_str).collect();
        assert_eq!(ports, ["53/udp", "80/tcp", "8000/tcp", "8001/tcp"]);
        assert!(image.config.volumes.contains_key("/data"));
        assert_eq!(image.config.user, "app:app");
        assert_eq!(image.config.working_dir, "/opt/srv");
        assert_eq!(image.config.stop_signal, "SIGTERM");
        let hc = image.config.healthcheck.expect("healthcheck");
        assert_eq!(hc.test, ["CMD-SHELL", "curl -f http://localhost/"]);
        assert_eq!(hc.interval, 30_000_000_000);
        assert_eq!(hc.retries, 3);
        assert_eq!(image.config.on_build, ["RUN make"]);
    }

    #[test]
    fn config_json_round_trips_and_keeps_unknown_fields() {
        let json = br#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Hostname":"x","ArgsEscaped":true},"rootfs":{"type":"layers","diff_ids":["sha256:aa"]},"history":[{"created_by":"x","empty_layer":true}],"container":"abc"}"#;
        let image = ImageConfigFile::from_json(json).expect("parses");
        assert_eq!(image.config.extra.get("Hostname"), Some(&Value::String("x".into())));
        let back: Value = serde_json::from_slice(&image.to_json().expect("json")).expect("json");
        assert_eq!(back["container"], "abc");
        assert_eq!(back["config"]["ArgsEscaped"], true);
        assert_eq!(back["rootfs"]["diff_ids"][0], "sha256:aa");
    }

    /// What `DOCKER_BUILDKIT=0 docker build` (20.10) wrote for each (`docker history --no-trunc`).
    #[test]
    fn history_lines_read_like_classic_docker() {
        let text = "FROM x\nENV REFRESHED_AT 2016-11-09\nCMD [\"/bin/sh\", \"/opt/app/start.sh\"]\n\
                    EXPOSE 443/udp 80 8000-8002 53/UDP\nWORKDIR app\nWORKDIR ../srv\nRUN apt-get update\n\
                    VOLUME /data\nVOLUME [\"/a\", \"/b\"]\nSHELL [\"/bin/sh\", \"-xc\"]\nENV A=1\nCMD []\n\
                    COPY f1 /dst/\nMAINTAINER Jane Doe <jane@example.com>\n";
        let mut image = ImageConfigFile::scratch("linux", "amd64", None);
        let mut state = StageConfigState::default();
        let none = BTreeMap::new();
        let mut lines = Vec::new();
        for i in instructions(text) {
            apply_config_instruction(&mut image, &mut state, &i);
            let argv =
                matches!(i, Instruction::Run(_)).then(|| vec!["/bin/sh".into(), "-c".into(), "apt-get update".into()]);
            let summary = matches!(i, Instruction::Copy(_)).then_some("file:503d in /dst/");
            lines.push(history_created_by(&i, &image, argv.as_deref(), &none, summary));
        }
        assert_eq!(
            lines,
            [
                "/bin/sh -c #(nop)  ENV REFRESHED_AT=2016-11-09",
                "/bin/sh -c #(nop)  CMD [\"/bin/sh\" \"/opt/app/start.sh\"]",
                "/bin/sh -c #(nop)  EXPOSE 443/udp 53/UDP 80 8000-8002",
                "/bin/sh -c #(nop) WORKDIR /app",
                "/bin/sh -c #(nop) WORKDIR /srv",
                "/bin/sh -c apt-get update",
                "/bin/sh -c #(nop)  VOLUME [/data]",
                "/bin/sh -c #(nop)  VOLUME [/a /b]",
                "/bin/sh -xc #(nop)  SHELL [/bin/sh -xc]",
                "/bin/sh -xc #(nop)  ENV A=1",
                "/bin/sh -xc #(nop)  CMD []",
                "/bin/sh -xc #(nop) COPY file:503d in /dst/ ",
                "/bin/sh -xc #(nop)  MAINTAINER Jane Doe <jane@example.com>",
            ]
        );
        let mut hc_image = image.clone();
        let hc =
            instructions("FROM x\nHEALTHCHECK --interval=30s --retries=3 CMD wget -q localhost || exit 1\n").remove(0);
        apply_config_instruction(&mut hc_image, &mut state, &hc);
        assert_eq!(
            history_created_by(&hc, &hc_image, None, &none, None),
            "/bin/sh -xc #(nop)  HEALTHCHECK &{[\"CMD-SHELL\" \"wget -q localhost || exit 1\"] \"30s\" \"0s\" \"0s\" '\\x03'}"
        );
        let chown = instructions("FROM x\nCOPY --chown=1000:1000 app.conf /tmp/\n").remove(0);
        assert_eq!(
            history_created_by(&chown, &image, None, &none, Some("file:f591 in /tmp/")),
            "/bin/sh -xc #(nop) COPY --chown=1000:1000file:f591 in /tmp/ "
        );
        let argv = vec!["/bin/sh".to_string(), "-c".to_string(), "apt-get update".to_string()];
        let run = instructions("FROM x\nRUN apt-get update\n").remove(0);
        let args = BTreeMap::from([("V".to_string(), "1".to_string())]);
        assert_eq!(history_created_by(&run, &image, Some(&argv), &args, None), "|1 V=1 /bin/sh -c apt-get update");
    }

    #[test]
    fn an_empty_entrypoint_is_null() {
        let image = apply("FROM x\nENTRYPOINT [\"/app\"]\nENTRYPOINT []\n");
        assert_eq!(image.config.entrypoint, None);
        let json: Value = serde_json::from_slice(&image.to_json().expect("json")).expect("json");
        assert!(json["config"].get("Entrypoint").is_none_or(Value::is_null), "{json}");
    }

    #[test]
    fn workdir_resolution() {
        assert_eq!(resolve_workdir("", "app"), "/app");
        assert_eq!(resolve_workdir("/a/b", "../c/./d/"), "/a/c/d");
        assert_eq!(resolve_workdir("/a", "/x"), "/x");
    }
}
