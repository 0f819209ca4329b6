//! The vocabulary a step's container shares with everything that asks for one or reports on
//! it: the network it gets (`RUN --network`, `build --network`, `run --network`, the runtime's
//! spec) and which output stream a line came from (the runtime's line sink, build events).

/// The network a container gets, as Docker names it (`RUN --network=default|none|host`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// A network namespace of its own, connected to the outside through a userspace stack
    /// (pasta), with the host's loopback out of reach; for a `RUN`, whatever the build chose
    /// (`RUN` without `--network`, or with `--network=default`).
    #[default]
    Default,
    /// A new network namespace with only the loopback interface, up.
    None,
    /// The host's network namespace (an explicit choice: `--network host`).
    Host,
}

impl NetworkMode {
    /// The mode a `--network` value names: `default`, `none` or `host`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "default" => Some(NetworkMode::Default),
            "none" => Some(NetworkMode::None),
            "host" => Some(NetworkMode::Host),
            _ => None,
        }
    }

    /// The `--network` value (`default`, `none`, `host`).
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Default => "default",
            NetworkMode::None => "none",
            NetworkMode::Host => "host",
        }
    }

    /// `self`, or `fallback` when `self` is [`NetworkMode::Default`] (a step's own choice over
    /// the build's).
    pub fn or(self, fallback: NetworkMode) -> NetworkMode {
        if self == NetworkMode::Default {
            fallback
        } else {
            self
        }
    }

    /// Whether the container gets a network namespace of its own.
    pub fn is_isolated(self) -> bool {
        self != NetworkMode::Host
    }
}

/// Which of the container's output streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_modes_read_and_print_as_docker_names_them() {
        for mode in [NetworkMode::Default, NetworkMode::None, NetworkMode::Host] {
            assert_eq!(NetworkMode::parse(mode.as_str()), Some(mode));
        }
        assert_eq!(NetworkMode::parse("bridge"), None);
        assert_eq!(NetworkMode::Default.or(NetworkMode::None), NetworkMode::None);
        assert_eq!(NetworkMode::Host.or(NetworkMode::None), NetworkMode::Host);
        assert_eq!(serde_json::to_string(&NetworkMode::Default).expect("json"), "\"default\"");
        assert_eq!(serde_json::to_string(&OutputStream::Stderr).expect("json"), "\"stderr\"");
    }
}
