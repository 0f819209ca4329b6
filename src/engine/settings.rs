//! [`BuildSettings`]: what a build takes from its environment, read once (uv's settings
//! pattern) when the build's options are made and passed down, so nothing in the engine,
//! `layer` or `registry` reads the environment while a build runs.

use std::collections::BTreeMap;

use crate::frontend::lower::PROXY_ARGS;
use crate::layer::diff::LayerError;

/// The variable (and build arg) that fixes every timestamp a build writes.
const EPOCH: &str = "SOURCE_DATE_EPOCH";
/// `SOURCE_DATE_EPOCH=context`: the remote context's own time.
const CONTEXT_EPOCH: &str = "context";

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
            source_date_epoch: var(EPOCH).filter(|v| !v.is_empty()),
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

    /// BuildKit's build-arg spellings of the epoch: `--build-arg SOURCE_DATE_EPOCH=N` sets it
    /// (over the environment), and the value `context` (a build arg or the environment; BuildKit's
    /// Dockerfile 1.24) takes `context_time`, the time of a remote context (commit time,
    /// `Last-Modified`, newest archive entry), or leaves the epoch unset for a local context
    /// (`None`). A resolved `context` build arg becomes the number, as ARGs then see it.
    pub fn resolve_epoch_arg(&mut self, build_args: &mut BTreeMap<String, String>, context_time: Option<i64>) {
        if let Some(value) = build_args.get(EPOCH).filter(|v| !v.is_empty()) {
            self.source_date_epoch = Some(value.clone());
        }
        if self.source_date_epoch.as_deref().map(str::trim) != Some(CONTEXT_EPOCH) {
            return;
        }
        self.source_date_epoch = context_time.map(|t| t.to_string());
        match &self.source_date_epoch {
            Some(time) if build_args.contains_key(EPOCH) => {
                build_args.insert(EPOCH.to_string(), time.clone());
            }
            Some(_) => {}
            None => {
                build_args.remove(EPOCH);
            }
        }
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

    #[test]
    fn the_epoch_build_arg_wins_and_context_takes_the_context_time() {
        let args = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let mut s = settings(&[("SOURCE_DATE_EPOCH", "100")]);
        let mut build_args = args(&[("SOURCE_DATE_EPOCH", "200")]);
        s.resolve_epoch_arg(&mut build_args, Some(300));
        assert_eq!(s.source_date_epoch.as_deref(), Some("200"));

        let mut build_args = args(&[("SOURCE_DATE_EPOCH", "context"), ("A", "b")]);
        s.resolve_epoch_arg(&mut build_args, Some(300));
        assert_eq!(s.source_date_epoch.as_deref(), Some("300"));
        assert_eq!(build_args, args(&[("SOURCE_DATE_EPOCH", "300"), ("A", "b")]));

        let mut s = settings(&[("SOURCE_DATE_EPOCH", "context")]);
        let mut build_args = args(&[]);
        s.resolve_epoch_arg(&mut build_args, Some(300));
        assert_eq!((s.source_date_epoch.as_deref(), build_args.len()), (Some("300"), 0));

        let mut build_args = args(&[("SOURCE_DATE_EPOCH", "context")]);
        s.resolve_epoch_arg(&mut build_args, None);
        assert_eq!((s.source_date_epoch, build_args.len()), (None, 0), "a local context leaves it unset");
    }
}
