//! [`ImageConfig`]: the image config blob (Docker's image JSON: the OCI fields plus Docker's
//! `Healthcheck`, `OnBuild`, `Shell`), read from what Docker, BuildKit, registries and rbuild
//! write, and written back byte for byte as rbuild has always written it (the image ID is the
//! sha256 of these bytes, so field order and omission rules are part of the format).
//!
//! Fields rbuild does not know (`container_config`, `docker_version`, `Hostname`,
//! `ArgsEscaped`, ...) are kept as they came (`extra`), so an image built FROM another tool's
//! image loses nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The default SHELL.
pub fn default_shell() -> Vec<String> {
    vec!["/bin/sh".to_string(), "-c".to_string()]
}

/// The `config` object of an image config (the container defaults).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerConfig {
    #[serde(rename = "User", default, deserialize_with = "null_as_default", skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(
        rename = "ExposedPorts",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub exposed_ports: BTreeMap<String, Map<String, Value>>,
    #[serde(rename = "Env", default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(rename = "Entrypoint", default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(
        rename = "Volumes",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub volumes: BTreeMap<String, Map<String, Value>>,
    #[serde(
        rename = "WorkingDir",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub working_dir: String,
    #[serde(
        rename = "Labels",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(
        rename = "StopSignal",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub stop_signal: String,
    #[serde(rename = "Healthcheck", default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    #[serde(rename = "OnBuild", default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub on_build: Vec<String>,
    #[serde(rename = "Shell", default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub shell: Vec<String>,
    /// Everything else (`Hostname`, `ArgsEscaped`, `Image`, ...), in the order it came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Docker writes `null` for an unset list, map or string (`"Env": null`, `"OnBuild": null` in
/// what `docker save` and registries serve): read it as the empty value.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
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
pub struct ImageConfig {
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
    /// Everything else (`docker_version`, `container_config`, ...), in the order it came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ImageConfig {
    /// The config of `FROM scratch` on `os/arch`.
    pub fn scratch(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        ImageConfig {
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

    /// The config of `FROM scratch` on `platform`.
    pub fn for_platform(platform: &super::Platform) -> Self {
        Self::scratch(&platform.os, &platform.arch, platform.variant.as_deref())
    }

    /// Reads a config blob as Docker, BuildKit, a registry or rbuild wrote it.
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

    /// Sets `name=value`, in place when `name` is set already (as Docker keeps ENV order).
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

    /// argv of a shell-form command: the SHELL, then the command text as one word.
    pub fn shell_argv(&self, command: &str) -> Vec<String> {
        let mut argv = self.shell();
        argv.push(command.to_string());
        argv
    }

    /// The comment of the newest history entry (what `inspect` shows as `Comment`).
    pub fn last_comment(&self) -> Option<&str> {
        self.history.last().and_then(|h| h.comment.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config exactly as `DOCKER_BUILDKIT=0 docker build` (20.10) wrote it, nulls and
    /// Docker-only fields included (`docker save`, reindented onto one line).
    const DOCKER_MADE: &str = r##"{"architecture":"amd64","config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","A=1"],"Cmd":["sh"],"Image":"sha256:3f57d9401f8d42f986df300f0c69192fc41da28ccc8d797829467780db3dd741","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null},"container":"e0b1a1c0","container_config":{"Hostname":"e0b1a1c0","Cmd":["/bin/sh","-c","#(nop) ","ENV A=1"]},"created":"2023-05-19T20:19:20.123456789Z","docker_version":"20.10.24","history":[{"created":"2023-05-19T20:19:20.000000000Z","created_by":"/bin/sh -c #(nop) ADD file:1234 in / "},{"created":"2023-05-19T20:19:20.123456789Z","created_by":"/bin/sh -c #(nop)  ENV A=1","empty_layer":true}],"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"##;

    /// What rbuild writes: its own field order and omissions.
    const RBUILD_MADE: &str = r#"{"created":"2024-01-02T03:04:05Z","author":"Me <me@x>","architecture":"arm","os":"linux","variant":"v7","config":{"User":"app","ExposedPorts":{"80/tcp":{}},"Env":["PATH=/bin"],"Entrypoint":["/app"],"Cmd":["--help"],"Volumes":{"/data":{}},"WorkingDir":"/srv","Labels":{"a":"b"},"StopSignal":"SIGTERM","Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":30000000000,"Retries":3},"OnBuild":["RUN make"],"Shell":["/bin/bash","-c"],"ArgsEscaped":true},"rootfs":{"type":"layers","diff_ids":["sha256:aa","sha256:bb"]},"history":[{"created":"2024-01-02T03:04:05Z","created_by":"/bin/sh -c #(nop)  USER app","empty_layer":true},{"created_by":"x","comment":"buildkit.dockerfile.v0"}]}"#;

    /// What BuildKit pushes (OCI config, no Docker-only fields): alpine's.
    const OCI_MADE: &str = r#"{"architecture":"amd64","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/sh"],"WorkingDir":"/","ArgsEscaped":true},"created":"2024-01-27T00:00:00Z","history":[{"created":"2024-01-27T00:00:00Z","created_by":"ADD alpine-minirootfs.tar.gz / # buildkit","comment":"buildkit.dockerfile.v0"},{"created":"2024-01-27T00:00:00Z","created_by":"CMD [\"/bin/sh\"]","comment":"buildkit.dockerfile.v0","empty_layer":true}],"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:cc"]}}"#;

    #[test]
    fn an_rbuild_config_round_trips_byte_for_byte() {
        let image = ImageConfig::from_json(RBUILD_MADE.as_bytes()).expect("parses");
        assert_eq!(String::from_utf8(image.to_json().expect("json")).expect("utf-8"), RBUILD_MADE);
        assert_eq!(image.variant.as_deref(), Some("v7"));
        assert_eq!(image.config.healthcheck.as_ref().map(|h| h.retries), Some(3));
        assert_eq!(image.last_comment(), Some("buildkit.dockerfile.v0"));
        assert_eq!(image.config.extra.get("ArgsEscaped"), Some(&Value::Bool(true)));
    }

    #[test]
    fn a_docker_made_config_reads_its_nulls_and_keeps_docker_fields() {
        let image = ImageConfig::from_json(DOCKER_MADE.as_bytes()).expect("docker's nulls are valid");
        assert!(image.config.volumes.is_empty() && image.config.on_build.is_empty() && image.config.labels.is_empty());
        assert_eq!(image.config.entrypoint, None);
        assert_eq!(image.env_var("A"), Some("1"));
        assert_eq!(image.history.len(), 2);
        assert!(image.history[1].empty_layer);
        assert_eq!(image.extra.get("docker_version"), Some(&Value::String("20.10.24".into())));
        assert_eq!(image.config.extra.get("Hostname"), Some(&Value::String(String::new())));
        // Written back: the known fields in rbuild's order, nulls dropped, the rest as it came.
        let written = String::from_utf8(image.to_json().expect("json")).expect("utf-8");
        assert!(written.starts_with(
            r#"{"created":"2023-05-19T20:19:20.123456789Z","architecture":"amd64","os":"linux","config":{"Env":"#
        ));
        assert!(!written.contains("null"), "{written}");
        assert!(
            written.ends_with(
                r##""container":"e0b1a1c0","container_config":{"Hostname":"e0b1a1c0","Cmd":["/bin/sh","-c","#(nop) ","ENV A=1"]},"docker_version":"20.10.24"}"##
            ),
            "{written}"
        );
        // And that is stable: reading rbuild's bytes gives them again.
        let again = ImageConfig::from_json(written.as_bytes()).expect("parses");
        assert_eq!(again, image);
        assert_eq!(String::from_utf8(again.to_json().expect("json")).expect("utf-8"), written);
    }

    #[test]
    fn an_oci_config_reads_into_the_same_model_and_converts_to_docker_order() {
        let image = ImageConfig::from_json(OCI_MADE.as_bytes()).expect("parses");
        assert_eq!(image.config.working_dir, "/");
        assert_eq!(image.config.cmd, Some(vec!["/bin/sh".into()]));
        assert_eq!(image.rootfs, RootFs { kind: "layers".into(), diff_ids: vec!["sha256:cc".into()] });
        let written = String::from_utf8(image.to_json().expect("json")).expect("utf-8");
        assert_eq!(
            written,
            r#"{"created":"2024-01-27T00:00:00Z","architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/sh"],"WorkingDir":"/","ArgsEscaped":true},"rootfs":{"type":"layers","diff_ids":["sha256:cc"]},"history":[{"created":"2024-01-27T00:00:00Z","created_by":"ADD alpine-minirootfs.tar.gz / # buildkit","comment":"buildkit.dockerfile.v0"},{"created":"2024-01-27T00:00:00Z","created_by":"CMD [\"/bin/sh\"]","comment":"buildkit.dockerfile.v0","empty_layer":true}]}"#
        );
    }

    #[test]
    fn scratch_is_minimal_and_env_edits_keep_order() {
        let mut image = ImageConfig::for_platform(&crate::image::Platform::parse("linux/amd64").expect("parses"));
        assert_eq!(
            String::from_utf8(image.to_json().expect("json")).expect("utf-8"),
            r#"{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#
        );
        image.set_env("PATH", crate::image::DEFAULT_PATH);
        image.set_env("A", "1");
        image.set_env("PATH", "/bin");
        assert_eq!(image.config.env, ["PATH=/bin", "A=1"]);
        assert_eq!(image.env_pairs()[1], ("A".to_string(), "1".to_string()));
        assert_eq!(image.shell_argv("echo hi"), ["/bin/sh", "-c", "echo hi"]);
        image.config.shell = vec!["/bin/bash".into(), "-ec".into()];
        assert_eq!(image.shell_argv("x"), ["/bin/bash", "-ec", "x"]);
    }

    #[test]
    fn an_invalid_config_is_an_error_not_a_default() {
        assert!(ImageConfig::from_json(br#"{"os":"linux"}"#).is_err(), "architecture is required");
        assert!(ImageConfig::from_json(b"[]").is_err());
    }
}
