//! [`Platform`]: `os/arch[/variant]` as `--platform`, `FROM --platform` and an image index
//! name it, in OCI/Go naming.

use std::fmt;

/// `os/arch[/variant]`, as in `--platform`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

/// A `--platform` value that is not `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform {text:?}: expected os/arch[/variant], e.g. linux/amd64")]
pub struct PlatformError {
    /// The value as given.
    pub text: String,
}

impl Platform {
    /// The platform this binary runs on, in OCI/Go naming (`linux/amd64`, `linux/arm64`).
    pub fn native() -> Self {
        let arch = native_arch();
        let variant = (arch == "arm").then(|| "v7".to_string());
        Platform { os: "linux".into(), arch: arch.into(), variant }
    }

    /// Parses `linux/amd64`, `linux/arm/v7`, or `amd64` (the OS defaults to linux).
    pub fn parse(text: &str) -> Result<Self, PlatformError> {
        let parts: Vec<&str> = text.trim().split('/').collect();
        let nonempty = |s: &&str| !s.is_empty();
        let owned = |os: &str, arch: &str, variant: Option<&str>| Platform {
            os: os.to_string(),
            arch: arch.to_string(),
            variant: variant.map(str::to_string),
        };
        match parts.as_slice() {
            [arch] if nonempty(arch) => Ok(owned("linux", arch, None)),
            [os, arch] if nonempty(os) && nonempty(arch) => Ok(owned(os, arch, None)),
            [os, arch, v] if nonempty(os) && nonempty(arch) && nonempty(v) => Ok(owned(os, arch, Some(v))),
            _ => Err(PlatformError { text: text.to_string() }),
        }
    }
}

/// This machine's `GOARCH` name (`amd64`, `arm64`): what an image config's `architecture`
/// and an image index's `platform.architecture` call it.
pub fn native_arch() -> &'static str {
    go_arch(std::env::consts::ARCH)
}

/// Go's `GOARCH` name of a Rust `target_arch` (`x86_64` -> `amd64`).
fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_every_form() {
        for (text, shown) in [
            ("linux/amd64", "linux/amd64"),
            ("linux/arm/v7", "linux/arm/v7"),
            ("arm64", "linux/arm64"),
            (" windows/amd64 ", "windows/amd64"),
        ] {
            assert_eq!(Platform::parse(text).expect(text).to_string(), shown);
        }
        let p = Platform::parse("linux/arm/v6").expect("parses");
        assert_eq!((p.os.as_str(), p.arch.as_str(), p.variant.as_deref()), ("linux", "arm", Some("v6")));
    }

    #[test]
    fn rejects_empty_parts_with_the_documented_message() {
        for text in ["", "linux/", "/amd64", "a/b/c/d", "linux/arm/"] {
            let e = Platform::parse(text).expect_err(text);
            assert_eq!(
                e.to_string(),
                format!("invalid platform {text:?}: expected os/arch[/variant], e.g. linux/amd64")
            );
        }
    }

    #[test]
    fn native_uses_go_names() {
        let native = Platform::native();
        assert_eq!(native.os, "linux");
        assert_eq!(native.arch, native_arch());
        assert_eq!(Platform::parse(&native.to_string()), Ok(native));
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
    }
}
