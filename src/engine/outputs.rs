//! What a finished build exports besides the store (`--output`, `--push`), and the metadata a
//! CI job's next step reads (`--metadata-file`), as BuildKit's exporters do:
//! - `type=oci,dest=FILE`: an OCI image layout archive ([`crate::store::archive`]'s `oci`),
//! - `type=docker,dest=FILE`: a docker-archive `docker load` reads (it holds the OCI layout too),
//! - `type=tar,dest=FILE`: a tar of the flattened root filesystem,
//! - `type=local,dest=DIR`: the flattened root filesystem as files in DIR,
//! - `type=registry` / `type=image,push=true`: the `-t` names (or `name=`) pushed (by the
//!   caller, with [`crate::registry::push`], once the exports are written),
//! - `type=image`: the store's tags only (what a build without `--output` does).
//!
//! `dest=-` writes an archive to stdout. A file is written whole or not at all (a temp file
//! renamed into place); a directory that does not exist or is empty is filled through a temp
//! dir renamed into place, an existing non-empty one is written into (BuildKit merges too).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::layer::diff::{write_layer, DiffOptions};
use crate::layer::media::Compression;
use crate::registry::RegistryError;
use crate::store::archive::{save, ArchiveFormat, SaveItem};
use crate::store::atomic::{AtomicFile, Durability};
use crate::store::{ImageReference, ImageStore, StoreError, StoredImage};

/// One `--output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildOutput {
    /// An OCI layout archive.
    Oci { dest: Destination },
    /// A docker-archive (`docker save`'s format).
    Docker { dest: Destination },
    /// A tar of the flattened root filesystem.
    Tar { dest: Destination },
    /// The flattened root filesystem as a directory.
    Local { dest: PathBuf },
    /// The store's tags, pushed to their registries when `push`; `names` replace the `-t` ones.
    Image { names: Vec<String>, push: bool },
}

/// Where an archive goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    File(PathBuf),
    Stdout,
}

/// What is wrong with an `--output` value or what failed while writing one.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("invalid --output {spec:?}: {reason}")]
    BadSpec { spec: String, reason: String },
    #[error("--push needs a name to push to: give -t NAME[:TAG]")]
    NothingToPush,
    #[error("writing the {kind} output to {}: {source}", dest.display())]
    Write { kind: &'static str, dest: PathBuf, source: std::io::Error },
    #[error("refusing to write the {kind} output to a terminal: give dest=FILE or redirect stdout")]
    Terminal { kind: &'static str },
    #[error(transparent)]
    Layer(#[from] crate::layer::diff::LayerError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl std::str::FromStr for BuildOutput {
    type Err = OutputError;

    /// `type=TYPE,dest=PATH[,name=N][,push=true]`, `PATH` (local) or `-` (tar on stdout).
    fn from_str(spec: &str) -> Result<Self, OutputError> {
        let bad = |reason: String| OutputError::BadSpec { spec: spec.to_owned(), reason };
        if spec == "-" {
            return Ok(BuildOutput::Tar { dest: Destination::Stdout });
        }
        if !spec.contains('=') {
            if spec.is_empty() {
                return Err(bad("empty".into()));
            }
            return Ok(BuildOutput::Local { dest: PathBuf::from(spec) });
        }
        let (mut kind, mut dest, mut names, mut push) = (None, None, Vec::new(), false);
        for field in spec.split(',') {
            let (key, value) = field.split_once('=').ok_or_else(|| bad(format!("{field:?} is not KEY=VALUE")))?;
            match key.trim() {
                "type" => kind = Some(value.to_owned()),
                "dest" => dest = Some(value.to_owned()),
                "name" => names.extend(value.split(['+', ';']).filter(|n| !n.is_empty()).map(str::to_owned)),
                "push" => {
                    push = value.parse::<bool>().map_err(|_| bad(format!("push={value:?} is not true or false")))?
                }
                other => return Err(bad(format!("unknown key {other:?} (known: type, dest, name, push)"))),
            }
        }
        let kind = kind.ok_or_else(|| bad("no type= (oci, docker, tar, local, image or registry)".into()))?;
        let archive = |dest: Option<String>| match dest.as_deref() {
            None | Some("") => Err(bad(format!("type={kind} needs dest=FILE (or dest=- for stdout)"))),
            Some("-") => Ok(Destination::Stdout),
            Some(path) => Ok(Destination::File(PathBuf::from(path))),
        };
        match kind.as_str() {
            "oci" => Ok(BuildOutput::Oci { dest: archive(dest)? }),
            "docker" => Ok(BuildOutput::Docker { dest: archive(dest)? }),
            "tar" => Ok(BuildOutput::Tar { dest: archive(dest)? }),
            "local" => match dest.as_deref() {
                None | Some("") | Some("-") => Err(bad("type=local needs dest=DIR".into())),
                Some(d) => Ok(BuildOutput::Local { dest: PathBuf::from(d) }),
            },
            "image" => Ok(BuildOutput::Image { names, push }),
            "registry" => Ok(BuildOutput::Image { names, push: true }),
            other => Err(bad(format!("unknown type {other:?} (oci, docker, tar, local, image or registry)"))),
        }
    }
}

/// The outputs of one build, checked before it starts.
#[derive(Debug, Clone, Default)]
pub struct OutputPlan {
    /// Archives and directories to write.
    pub exports: Vec<BuildOutput>,
    /// References to push the image to, normalised (`docker.io/library/app:latest`).
    pub push: Vec<ImageReference>,
    /// Whether the store gets the `-t` tags: yes without `--output`, or with `type=image`.
    pub tag_store: bool,
}

impl OutputPlan {
    /// The plan for `--output` values, `--push` and the `-t` names.
    pub fn new(outputs: &[String], push_flag: bool, tags: &[String]) -> Result<Self, OutputError> {
        let mut plan = OutputPlan { tag_store: outputs.is_empty(), ..OutputPlan::default() };
        let mut push_names: Vec<String> = Vec::new();
        for spec in outputs {
            match spec.parse::<BuildOutput>()? {
                BuildOutput::Image { names, push } => {
                    plan.tag_store = true;
                    if push {
                        push_names.extend(if names.is_empty() { tags.to_vec() } else { names });
                    }
                }
                other => plan.exports.push(other),
            }
        }
        if push_flag {
            push_names.extend(tags.iter().cloned());
            if tags.is_empty() {
                return Err(OutputError::NothingToPush);
            }
        }
        for name in push_names {
            let reference = ImageReference::parse(&name).map_err(StoreError::from)?.with_default_tag();
            if !plan.push.contains(&reference) {
                plan.push.push(reference);
            }
        }
        let stdout = plan.exports.iter().filter(|o| {
            matches!(
                o,
                BuildOutput::Oci { dest: Destination::Stdout }
                    | BuildOutput::Docker { dest: Destination::Stdout }
                    | BuildOutput::Tar { dest: Destination::Stdout }
            )
        });
        if stdout.count() > 1 {
            return Err(OutputError::BadSpec {
                spec: outputs.join(" "),
                reason: "only one output can go to stdout".into(),
            });
        }
        Ok(plan)
    }

    /// Whether an output writes to stdout (the build's own output then goes to stderr).
    pub fn uses_stdout(&self) -> bool {
        self.exports.iter().any(|o| {
            matches!(
                o,
                BuildOutput::Oci { dest: Destination::Stdout }
                    | BuildOutput::Docker { dest: Destination::Stdout }
                    | BuildOutput::Tar { dest: Destination::Stdout }
            )
        })
    }
}

/// Writes one export of `image`, named `tags` inside archives.
pub fn export(
    store: &ImageStore,
    image: &StoredImage,
    tags: &[ImageReference],
    output: &BuildOutput,
) -> Result<(), OutputError> {
    let item = || vec![SaveItem { image: image.clone(), tags: tags.to_vec() }];
    let hidden = indicatif::ProgressBar::hidden();
    match output {
        BuildOutput::Oci { dest } => {
            write_archive(dest, "oci", |w| Ok(save(store, &item(), ArchiveFormat::Oci, w, &hidden)?))
        }
        BuildOutput::Docker { dest } => {
            write_archive(dest, "docker", |w| Ok(save(store, &item(), ArchiveFormat::Docker, w, &hidden)?))
        }
        BuildOutput::Tar { dest } => {
            let work = store.work_dir()?;
            let rootfs = work.path().join("rootfs");
            std::fs::create_dir(&rootfs).map_err(StoreError::from)?;
            store.flatten_into(image, &rootfs)?;
            let plain = DiffOptions { compression: Compression::None, ..DiffOptions::default() };
            let tar = write_layer(&rootfs, work.path(), &plain)?;
            write_archive(dest, "tar", |w| {
                let mut file = std::fs::File::open(&tar.path).map_err(StoreError::from)?;
                std::io::copy(&mut file, w).map_err(StoreError::from)?;
                Ok(())
            })
        }
        BuildOutput::Local { dest } => export_directory(store, image, dest),
        BuildOutput::Image { .. } => Ok(()),
    }
}

/// Writes an archive to a file (whole or not at all) or to stdout.
fn write_archive(
    dest: &Destination,
    kind: &'static str,
    write: impl FnOnce(&mut dyn Write) -> Result<(), OutputError>,
) -> Result<(), OutputError> {
    match dest {
        Destination::Stdout => {
            use std::io::IsTerminal;
            if std::io::stdout().is_terminal() {
                return Err(OutputError::Terminal { kind });
            }
            let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            write(&mut out)?;
            out.flush().map_err(|source| OutputError::Write { kind, dest: "stdout".into(), source })
        }
        Destination::File(path) => {
            let failed = |source| OutputError::Write { kind, dest: path.clone(), source };
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let file = AtomicFile::create(dir, path).map_err(failed)?;
            let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
            write(&mut out)?;
            let file = out.into_inner().map_err(|e| failed(e.into_error()))?;
            file.commit(Durability::Synced).map_err(failed)
        }
    }
}

/// `type=local`: the flattened root filesystem in `dest`.
fn export_directory(store: &ImageStore, image: &StoredImage, dest: &Path) -> Result<(), OutputError> {
    let failed = |source| OutputError::Write { kind: "local", dest: dest.to_path_buf(), source };
    let empty = match std::fs::read_dir(dest) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(failed(e)),
    };
    if !empty {
        return Ok(store.flatten_into(image, dest)?);
    }
    // Filled beside its destination, then renamed into place: all or nothing.
    let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let temp = tempfile::Builder::new().prefix(".rbuild-output-").tempdir_in(parent).map_err(failed)?;
    store.flatten_into(image, temp.path())?;
    if dest.exists() {
        std::fs::remove_dir(dest).map_err(failed)?;
    }
    std::fs::rename(temp.path(), dest).map_err(failed)?;
    // The temp dir is gone (renamed): nothing for its drop to remove.
    let _ = temp.keep();
    Ok(())
}

/// The `--metadata-file` JSON, with the keys buildx writes: the manifest digest
/// (`containerimage.digest`), the image ID (`containerimage.config.digest`), the manifest's
/// descriptor, and the names (`image.name`, comma-separated).
pub fn metadata(image: &StoredImage, names: &[ImageReference]) -> serde_json::Value {
    let mut meta = serde_json::json!({
        "containerimage.config.digest": image.id.to_string(),
        "containerimage.descriptor": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": image.manifest_digest.to_string(),
            "size": image.manifest_size,
        },
        "containerimage.digest": image.manifest_digest.to_string(),
    });
    if !names.is_empty() {
        let joined: Vec<String> = names.iter().map(ToString::to_string).collect();
        meta["image.name"] = serde_json::Value::String(joined.join(","));
    }
    meta
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<BuildOutput, String> {
        s.parse::<BuildOutput>().map_err(|e| e.to_string())
    }

    #[test]
    fn output_specs_parse_as_buildx_reads_them() {
        assert_eq!(parse("out").unwrap(), BuildOutput::Local { dest: "out".into() });
        assert_eq!(parse("-").unwrap(), BuildOutput::Tar { dest: Destination::Stdout });
        assert_eq!(parse("type=oci,dest=a.tar").unwrap(), BuildOutput::Oci { dest: Destination::File("a.tar".into()) });
        assert_eq!(parse("type=docker,dest=-").unwrap(), BuildOutput::Docker { dest: Destination::Stdout });
        assert_eq!(parse("type=local,dest=d").unwrap(), BuildOutput::Local { dest: "d".into() });
        assert_eq!(parse("type=registry").unwrap(), BuildOutput::Image { names: vec![], push: true });
        assert_eq!(
            parse("type=image,name=a:1+b:2,push=true").unwrap(),
            BuildOutput::Image { names: vec!["a:1".into(), "b:2".into()], push: true }
        );
        assert!(parse("type=oci").unwrap_err().contains("type=oci needs dest=FILE"));
        assert!(parse("type=zip,dest=x").unwrap_err().contains("unknown type \"zip\""));
        assert!(parse("type=oci,dest=x,tar=false").unwrap_err().contains("unknown key \"tar\""));
        assert!(parse("dest=x").unwrap_err().contains("no type="));
        assert!(parse("type=image,push=maybe").unwrap_err().contains("push=\"maybe\""));
    }

    #[test]
    fn plans_say_what_is_tagged_and_pushed() {
        let tags = vec!["app:1".to_owned(), "127.0.0.1:5000/app".to_owned()];
        let plan = OutputPlan::new(&[], true, &tags).unwrap();
        assert!(plan.tag_store && plan.exports.is_empty());
        let pushed: Vec<String> = plan.push.iter().map(ToString::to_string).collect();
        assert_eq!(pushed, ["docker.io/library/app:1", "127.0.0.1:5000/app:latest"]);
        let plan = OutputPlan::new(&["type=oci,dest=o.tar".into()], false, &tags).unwrap();
        assert!(!plan.tag_store && plan.push.is_empty() && plan.exports.len() == 1);
        let plan = OutputPlan::new(&["type=oci,dest=o.tar".into(), "type=image".into()], false, &tags).unwrap();
        assert!(plan.tag_store);
        assert!(matches!(OutputPlan::new(&[], true, &[]), Err(OutputError::NothingToPush)));
        let two = OutputPlan::new(&["-".into(), "type=oci,dest=-".into()], false, &tags).unwrap_err();
        assert!(two.to_string().contains("only one output can go to stdout"));
    }
}
