//! How each Dockerfile instruction changes an image's config ([`crate::image::ImageConfig`],
//! the one image model) and the history line it leaves, worded as the classic `docker build`
//! words it (`/bin/sh -c #(nop)  ENV A=1`, `/bin/sh -c apt-get update`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Map;

use crate::frontend::instructions::{go_duration, CommandForm, Healthcheck, Instruction};
pub use crate::image::{clean_path, resolve_workdir};
use crate::image::{HealthConfig, ImageConfig, Platform, DEFAULT_PATH};

/// argv for a command in `form`: exec form as is, shell form through the image's SHELL.
pub fn command_argv(image: &ImageConfig, form: &CommandForm) -> Vec<String> {
    match form {
        CommandForm::Exec(v) => v.clone(),
        CommandForm::Shell(s) => image.shell_argv(s),
    }
}

/// The config a `FROM scratch` stage starts from: empty, for `platform`, with the default PATH.
pub fn scratch_stage_config(platform: &Platform) -> ImageConfig {
    let mut config = ImageConfig::for_platform(platform);
    config.set_env("PATH", DEFAULT_PATH);
    config
}

/// What a stage keeps of an earlier stage it builds on: everything but the MAINTAINER, as in
/// Docker.
pub fn inherit_stage_config(config: &mut ImageConfig) {
    config.author = None;
}

/// What a stage keeps of its base image's config: the base's ONBUILD triggers run in this
/// stage (lowering put them after the FROM) and are not carried on, as Docker clears them; nor
/// is its MAINTAINER; a base without PATH gets the default one.
pub fn inherit_image_config(config: &mut ImageConfig) {
    config.config.on_build.clear();
    config.author = None;
    if config.env_var("PATH").is_none() {
        config.set_env("PATH", DEFAULT_PATH);
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
    image: &mut ImageConfig,
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
            let argv = command_argv(image, command);
            image.config.cmd = Some(argv);
            state.observe(instruction);
        }
        Instruction::Entrypoint { command } => {
            // `ENTRYPOINT []` clears it: Docker stores null.
            let argv = command_argv(image, command);
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

/// Go's `%q` of a string slice, as classic docker prints CMD in history: `["a" "b"]`.
fn go_quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| crate::frontend::parser::dump::go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `%v` of a string slice, as classic docker prints VOLUME and SHELL: `[/a /b]`.
fn go_plain_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// Go's `%q` of an int (a quoted rune), as classic docker prints HEALTHCHECK's retries.
fn go_quoted_rune(value: u32) -> String {
    match char::from_u32(value) {
        Some('\\') => "'\\\\'".to_string(),
        Some('\'') => "'\\''".to_string(),
        Some('\x07') => "'\\a'".to_string(),
        Some('\x08') => "'\\b'".to_string(),
        Some('\t') => "'\\t'".to_string(),
        Some('\n') => "'\\n'".to_string(),
        Some('\x0b') => "'\\v'".to_string(),
        Some('\x0c') => "'\\f'".to_string(),
        Some('\r') => "'\\r'".to_string(),
        Some(c) if (' '..='~').contains(&c) => format!("'{c}'"),
        _ if value < 0x80 => format!("'\\x{value:02x}'"),
        Some(c) if !c.is_control() => format!("'{c}'"),
        _ if value < 0x10000 => format!("'\\u{value:04x}'"),
        _ => format!("'\\U{value:08x}'"),
    }
}

/// Classic docker's `HEALTHCHECK %q` of its (20.10) health config:
/// `&{["CMD-SHELL" "curl -f x"] "5s" "0s" "0s" '\x03'}`.
fn go_healthcheck(health: &HealthConfig) -> String {
    format!(
        "&{{{} \"{}\" \"{}\" \"{}\" {}}}",
        go_quoted_list(&health.test),
        go_duration(Duration::from_nanos(health.interval)),
        go_duration(Duration::from_nanos(health.timeout)),
        go_duration(Duration::from_nanos(health.start_period)),
        go_quoted_rune(health.retries)
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
    image: &ImageConfig,
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
            nop(format!("{} {}", instruction.keyword(), go_quoted_list(&command_argv(image, command))))
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
    use crate::image::DEFAULT_PATH;
    use serde_json::Value;

    /// The instructions of a one-stage Dockerfile after FROM, lowered.
    fn instructions(text: &str) -> Vec<Instruction> {
        let plan = parse_and_lower(text, "Dockerfile", &LowerOptions::default()).expect("lowers");
        plan.stages[0].steps.iter().skip(1).map(|s| s.instruction.clone()).collect()
    }

    fn apply(text: &str) -> ImageConfig {
        let mut image = ImageConfig::scratch("linux", "amd64", None);
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
    fn history_lines_read_like_classic_docker() {
        let text = "FROM x\nENV REFRESHED_AT 2016-11-09\nCMD [\"/bin/sh\", \"/opt/app/start.sh\"]\n\
                    EXPOSE 443/udp 80 8000-8002 53/UDP\nWORKDIR app\nWORKDIR ../srv\nRUN apt-get update\n\
                    VOLUME /data\nVOLUME [\"/a\", \"/b\"]\nSHELL [\"/bin/sh\", \"-xc\"]\nENV A=1\nCMD []\n\
                    COPY f1 /dst/\nMAINTAINER Jane Doe <jane@example.com>\n";
        let mut image = ImageConfig::scratch("linux", "amd64", None);
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

    /// Each step's history line, the config applied step by step as the executor does.
    fn history(text: &str, run_argv: Option<&[String]>, args: &BTreeMap<String, String>) -> Vec<String> {
        let mut image = ImageConfig::scratch("linux", "amd64", None);
        let mut state = StageConfigState::default();
        instructions(text)
            .iter()
            .map(|i| {
                apply_config_instruction(&mut image, &mut state, i);
                history_created_by(i, &image, run_argv, args, None)
            })
            .collect()
    }

    #[test]
    fn metadata_history_uses_the_current_shell_and_go_formats() {
        let lines = history(
            "FROM x\nSHELL [\"/bin/sh\", \"-ec\"]\nCMD echo hi\nHEALTHCHECK --interval=90s --timeout=1500ms --retries=4 CMD wget x || exit 1\nHEALTHCHECK NONE\n",
            None,
            &BTreeMap::new(),
        );
        assert_eq!(
            lines,
            [
                "/bin/sh -ec #(nop)  SHELL [/bin/sh -ec]",
                "/bin/sh -ec #(nop)  CMD [\"/bin/sh\" \"-ec\" \"echo hi\"]",
                "/bin/sh -ec #(nop)  HEALTHCHECK &{[\"CMD-SHELL\" \"wget x || exit 1\"] \"1m30s\" \"1.5s\" \"0s\" '\\x04'}",
                "/bin/sh -ec #(nop)  HEALTHCHECK &{[\"NONE\"] \"0s\" \"0s\" \"0s\" '\\x00'}",
            ]
        );
        assert_eq!(go_quoted_rune(10), "'\\n'");
        assert_eq!(go_quoted_rune(65), "'A'");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn workdir_resolution() {
        assert_eq!(resolve_workdir("", "app"), "/app");
        assert_eq!(resolve_workdir("/a/b", "../c/./d/"), "/a/c/d");
        assert_eq!(resolve_workdir("/a", "/x"), "/x");
    }
}
