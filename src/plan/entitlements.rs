//! Entitlements: what a build may do beyond an ordinary sandboxed step, granted by whoever
//! runs the build (`rbuild build --allow …`, buildx's flag), never by the Dockerfile. As in
//! dockerd's builder, `network.host` (`RUN --network=host`) is granted by default;
//! `security.insecure` (`RUN --security=insecure`: every capability, no seccomp filter, `/proc`
//! and `/sys` unmasked) only when asked for, so a Dockerfile from a pull request cannot give
//! itself a privileged step. The check runs on the whole plan before any step does.

use std::fmt;
use std::str::FromStr;

use crate::plan::instruction::Instruction;
use crate::plan::BuildPlan;

/// One entitlement, as buildx's `--allow` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Entitlement {
    NetworkHost,
    SecurityInsecure,
}

impl Entitlement {
    pub fn name(self) -> &'static str {
        match self {
            Entitlement::NetworkHost => "network.host",
            Entitlement::SecurityInsecure => "security.insecure",
        }
    }

    /// Every `--allow` value, each a name or comma-separated names (as buildx takes them).
    pub fn parse_all(values: &[String]) -> Result<Vec<Entitlement>, UnknownEntitlement> {
        let mut out = Vec::new();
        for name in values.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|n| !n.is_empty()) {
            let entitlement = name.parse()?;
            if !out.contains(&entitlement) {
                out.push(entitlement);
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Entitlement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An `--allow` value that names no entitlement.
#[derive(Debug, thiserror::Error)]
#[error("--allow {0:?}: unknown entitlement (network.host, security.insecure)")]
pub struct UnknownEntitlement(pub String);

impl FromStr for Entitlement {
    type Err = UnknownEntitlement;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "network.host" => Ok(Entitlement::NetworkHost),
            "security.insecure" => Ok(Entitlement::SecurityInsecure),
            other => Err(UnknownEntitlement(other.to_string())),
        }
    }
}

/// A step of the plan needs an entitlement the build was not given.
#[derive(Debug, thiserror::Error)]
#[error(
    "{file}:{line}: {instruction}: needs --allow {entitlement} (the step would run with every capability and no seccomp filter; rbuild grants it only when the build is started with that flag, never from the Dockerfile)"
)]
pub struct NotEntitled {
    pub file: String,
    pub line: usize,
    pub instruction: String,
    pub entitlement: Entitlement,
}

/// The entitlement a RUN with `security` (its `--security=` value) needs, if any.
pub fn needed_by_security(security: Option<&str>) -> Option<Entitlement> {
    (security == Some("insecure")).then_some(Entitlement::SecurityInsecure)
}

/// The first step of the stages the build runs that needs an entitlement not in `allowed`
/// (`network.host` is always granted).
pub fn check(plan: &BuildPlan, allowed: &[Entitlement]) -> Result<(), NotEntitled> {
    for stage in plan.planned_stages() {
        for step in &stage.steps {
            let Instruction::Run(run) = &step.instruction else { continue };
            let Some(needed) = needed_by_security(run.security.as_deref()) else { continue };
            if !allowed.contains(&needed) {
                return Err(NotEntitled {
                    file: plan.file.clone(),
                    line: step.line,
                    instruction: step.original.clone(),
                    entitlement: needed,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_takes_names_and_comma_lists_as_buildx_does() {
        let values = ["network.host,security.insecure".to_string(), " security.insecure ".to_string()];
        assert_eq!(
            Entitlement::parse_all(&values).expect("known"),
            [Entitlement::NetworkHost, Entitlement::SecurityInsecure]
        );
        let err = Entitlement::parse_all(&["device".to_string()]).expect_err("unknown");
        assert!(err.to_string().contains("--allow \"device\": unknown entitlement"), "{err}");
        assert_eq!(needed_by_security(Some("sandbox")), None);
        assert_eq!(needed_by_security(Some("insecure")), Some(Entitlement::SecurityInsecure));
    }
}
