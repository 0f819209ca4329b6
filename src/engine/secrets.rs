//! Build secrets (`rbuild build --secret id=…,src=…|env=…`): where each one's bytes come from,
//! read only when a `RUN --mount=type=secret` needs them. The bytes go straight to the
//! container (a tmpfs-backed file mount) and never into a cache key, a layer, the image
//! config or its history.

use std::path::PathBuf;

/// BuildKit's limit on a secret's size.
pub const MAX_SECRET_SIZE: u64 = 500 * 1024;

/// Where a secret's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

/// One `--secret`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSecret {
    pub id: String,
    pub source: SecretSource,
}

/// A `--secret` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("invalid --secret {spec:?}: {reason}")]
    Invalid { spec: String, reason: String },
    #[error("secret {id}: reading {path}: {source}")]
    Read { id: String, path: PathBuf, source: std::io::Error },
    #[error("secret {id}: environment variable {var} is not set")]
    EnvMissing { id: String, var: String },
    #[error("secret {id}: {size} bytes is more than the {MAX_SECRET_SIZE} a secret may have")]
    TooBig { id: String, size: u64 },
}

impl BuildSecret {
    /// Parses `id=NAME[,type=file|env][,src=PATH|source=PATH][,env=VAR]` as `docker buildx
    /// build --secret` does: with neither `src` nor `env`, the secret is the environment
    /// variable named like the id when it is set, else the file named like the id.
    pub fn parse(spec: &str) -> Result<Self, SecretError> {
        let invalid = |reason: &str| SecretError::Invalid { spec: spec.to_string(), reason: reason.to_string() };
        let (mut id, mut kind, mut file, mut env) = (None, None, None, None);
        for field in spec.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            let (key, value) = field.split_once('=').ok_or_else(|| invalid("expected key=value fields"))?;
            match key.trim().to_ascii_lowercase().as_str() {
                "id" => id = Some(value.to_string()),
                "type" => kind = Some(value.to_ascii_lowercase()),
                "src" | "source" => file = Some(value.to_string()),
                "env" => env = Some(value.to_string()),
                _ => return Err(invalid(&format!("unexpected key {key:?}"))),
            }
        }
        // `type=env,src=VAR` names a variable.
        if kind.as_deref() == Some("env") && env.is_none() {
            env = file.take();
        }
        if !matches!(kind.as_deref(), None | Some("file") | Some("env")) {
            return Err(invalid("type must be file or env"));
        }
        let id = id.or_else(|| env.clone()).filter(|i| !i.is_empty()).ok_or_else(|| invalid("missing id"))?;
        let source = match (file, env) {
            (Some(_), Some(_)) => return Err(invalid("give src or env, not both")),
            (Some(f), None) => SecretSource::File(PathBuf::from(f)),
            (None, Some(e)) => SecretSource::Env(e),
            (None, None) if std::env::var_os(&id).is_some() => SecretSource::Env(id.clone()),
            (None, None) => SecretSource::File(PathBuf::from(&id)),
        };
        Ok(BuildSecret { id, source })
    }

    /// The secret's bytes.
    pub fn read(&self) -> Result<Vec<u8>, SecretError> {
        let bytes = match &self.source {
            SecretSource::File(path) => {
                let read = |source| SecretError::Read { id: self.id.clone(), path: path.clone(), source };
                let size = std::fs::metadata(path).map_err(read)?.len();
                if size > MAX_SECRET_SIZE {
                    return Err(SecretError::TooBig { id: self.id.clone(), size });
                }
                std::fs::read(path).map_err(read)?
            }
            SecretSource::Env(var) => std::env::var_os(var)
                .map(std::os::unix::ffi::OsStringExt::into_vec)
                .ok_or_else(|| SecretError::EnvMissing { id: self.id.clone(), var: var.clone() })?,
        };
        if bytes.len() as u64 > MAX_SECRET_SIZE {
            return Err(SecretError::TooBig { id: self.id.clone(), size: bytes.len() as u64 });
        }
        Ok(bytes)
    }

    /// Checks the source is usable now (the file exists and is small enough), as buildx does
    /// before the build starts.
    pub fn check(&self) -> Result<(), SecretError> {
        if let SecretSource::File(path) = &self.source {
            let size = std::fs::metadata(path)
                .map_err(|source| SecretError::Read { id: self.id.clone(), path: path.clone(), source })?
                .len();
            if size > MAX_SECRET_SIZE {
                return Err(SecretError::TooBig { id: self.id.clone(), size });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_buildx_forms() {
        let s = BuildSecret::parse("id=tok,src=/run/tok").unwrap();
        assert_eq!(s, BuildSecret { id: "tok".into(), source: SecretSource::File("/run/tok".into()) });
        let s = BuildSecret::parse("id=kube,env=KUBECONFIG").unwrap();
        assert_eq!(s.source, SecretSource::Env("KUBECONFIG".into()));
        let s = BuildSecret::parse("type=env,id=a,source=VAR").unwrap();
        assert_eq!(s.source, SecretSource::Env("VAR".into()));
        let s = BuildSecret::parse("env=API_TOKEN").unwrap();
        assert_eq!((s.id.as_str(), s.source), ("API_TOKEN", SecretSource::Env("API_TOKEN".into())));
        let s = BuildSecret::parse("id=rbuild-test-unset-variable-x").unwrap();
        assert_eq!(s.source, SecretSource::File("rbuild-test-unset-variable-x".into()));
        assert!(BuildSecret::parse("src=/x").is_err());
        assert!(BuildSecret::parse("id=a,bogus=1").is_err());
        assert!(BuildSecret::parse("id=a,type=ssh").is_err());
    }

    #[test]
    fn missing_sources_are_errors_naming_the_id() {
        let s = BuildSecret::parse("id=tok,src=/nonexistent/rbuild-secret").unwrap();
        assert!(s.check().unwrap_err().to_string().contains("secret tok"));
        let s = BuildSecret::parse("id=tok,env=RBUILD_TEST_UNSET_SECRET_VAR").unwrap();
        assert!(s.read().unwrap_err().to_string().contains("RBUILD_TEST_UNSET_SECRET_VAR"));
    }
}
