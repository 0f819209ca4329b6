//! [`BuildSettings`]: what a build takes from its environment, read once (uv's settings
//! pattern) when the build's options are made and passed down, so nothing in the engine,
//! `layer` or `registry` reads the environment while a build runs.

use std::collections::BTreeMap;

use crate::frontend::lower::PROXY_ARGS;
use crate::layer::diff::LayerError;

/// The environment's part of a build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildSettings {
    /// `SOURCE_DATE_EPOCH` as set (not empty): the `created` time of everything the build
    /// writes and the clamp of layer timestamps. Checked by [`BuildSettings::source_date_epoch`].
    pub source_date_epoch: Option<String>,
    /// The proxy variables (`HTTP_PROXY`, ...) of the builder's environment: every RUN sees
    /// them unless a `--build-arg` sets the same name.
    pub proxy_env: BTreeMap<String, String>,
}

impl BuildSettings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `var` (the environment, or a table in tests).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Self {
        BuildSettings {
            source_date_epoch: var("SOURCE_DATE_EPOCH").filter(|v| !v.is_empty()),
            proxy_env: PROXY_ARGS.iter().filter_map(|name| Some((name.to_string(), var(name)?))).collect(),
        }
    }

    /// `SOURCE_DATE_EPOCH` in seconds; an error when it is not a whole number.
    pub fn source_date_epoch(&self) -> Result<Option<i64>, LayerError> {
        self.source_date_epoch
            .as_ref()
            .map(|text| text.trim().parse::<i64>().map_err(|_| LayerError::SourceDateEpoch { value: text.clone() }))
            .transpose()
    }

    /// The `created` time (RFC 3339) of everything the build writes: `SOURCE_DATE_EPOCH`, else now.
    pub fn created(&self) -> String {
        match self.source_date_epoch.as_ref().and_then(|v| v.trim().parse::<i64>().ok()) {
            Some(secs) => chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default(),
            None => chrono::Utc::now(),
        }
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> BuildSettings {
        let vars: BTreeMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        BuildSettings::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn the_environment_is_read_once_into_settings() {
        let s = settings(&[("SOURCE_DATE_EPOCH", " 1700000000 "), ("HTTP_PROXY", "http://p:3128"), ("PATH", "/bin")]);
        assert_eq!(s.source_date_epoch().expect("epoch"), Some(1_700_000_000));
        assert_eq!(s.created(), "2023-11-14T22:13:20.000000000Z");
        assert_eq!(s.proxy_env.into_iter().collect::<Vec<_>>(), [("HTTP_PROXY".into(), "http://p:3128".into())]);
    }

    #[test]
    fn an_empty_epoch_is_unset_and_a_bad_one_an_error() {
        assert_eq!(settings(&[("SOURCE_DATE_EPOCH", "")]).source_date_epoch().expect("empty"), None);
        let err = settings(&[("SOURCE_DATE_EPOCH", "soon")]).source_date_epoch().unwrap_err();
        assert_eq!(err.to_string(), "SOURCE_DATE_EPOCH=\"soon\" is not a whole number of seconds");
    }
}
