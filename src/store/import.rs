//! `import`: a rootfs tarball (plain, gzip or zstd) becomes a one-layer image. The layer is
//! stored as an uncompressed tar, so its digest is its diff ID.

use super::{ImageReference, ImageStore, LayerBlob, PutImage, Result, StoreError, StoredImage};
use crate::image::{platform::native_arch, ContainerConfig, HistoryEntry, ImageConfig};
use crate::layer::compression::decompressing_reader;
use oci_spec::image::MediaType;
use std::io::{self, Read, Write};

/// Options of `rbuild import`.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    pub tag: Option<ImageReference>,
    /// Dockerfile instructions applied to the config (`CMD ["sh"]`, `ENV A=b`, ...).
    pub changes: Vec<String>,
    pub message: Option<String>,
    /// Shown in the history comment: `Imported from <source>`.
    pub source: String,
    /// The image's `created` time (RFC 3339), from `SOURCE_DATE_EPOCH` so that one tarball
    /// gives one image ID on every machine; `None`: now.
    pub created: Option<String>,
}

/// A tee that copies everything read into a writer.
struct Tee<'a, R, W> {
    reader: R,
    writer: &'a mut W,
    progress: &'a indicatif::ProgressBar,
}

impl<R: Read, W: Write> Read for Tee<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.reader.read(buf)?;
        self.writer.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Imports `input` (named `source` in errors) as a new image.
pub fn import_rootfs<R: Read>(
    store: &ImageStore,
    input: R,
    opts: &ImportOptions,
    progress: &indicatif::ProgressBar,
) -> Result<StoredImage> {
    let work = store.work_dir()?;
    let bad = |reason: String| StoreError::BadArchive { path: opts.source.clone(), reason };
    let (_, tar_stream) = decompressing_reader(progress.wrap_read(input)).map_err(|e| bad(e.to_string()))?;
    let mut writer = work.blob_writer(store)?;
    // Summed while the tar is checked: the layer's size as `images` shows it (see
    // `CommittedLayer::unpacked_size`).
    let mut content_bytes = 0u64;
    {
        let mut tee = Tee { reader: tar_stream, writer: &mut writer, progress };
        let mut archive = tar::Archive::new(&mut tee);
        let mut count = 0usize;
        for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
            let mut entry = entry.map_err(|e| bad(format!("not a valid tar archive: {e}")))?;
            // As the layer writer counts it: file contents and symlink targets.
            if entry.header().entry_type().is_file() {
                content_bytes += entry.size();
            } else if entry.header().entry_type().is_symlink() {
                content_bytes += entry.link_name_bytes().map_or(0, |l| l.len() as u64);
            }
            // Reading also writes the layer (the tee): a full disk is not a bad archive.
            io::copy(&mut entry, &mut io::sink()).map_err(|e| {
                if super::is_disk_full(&e) {
                    StoreError::DiskFull {
                        root: store.root().to_owned(),
                        during: format!("importing {}", opts.source),
                        source: e,
                    }
                } else {
                    bad(format!("truncated or corrupt tar archive: {e}"))
                }
            })?;
            count += 1;
        }
        if count == 0 {
            return Err(bad("empty archive: no files".into()));
        }
        // Keep the end-of-archive blocks and any padding in the layer.
        io::copy(&mut tee, &mut io::sink()).map_err(|e| bad(e.to_string()))?;
        let _ = tee.progress;
    }
    let (digest, size) = writer.commit(None)?;
    let now = match &opts.created {
        Some(created) => created.clone(),
        None => chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
    };
    let mut config = ImageConfig::scratch("linux", native_arch(), None);
    for change in &opts.changes {
        apply_change(&mut config.config, change)
            .map_err(|reason| StoreError::Conflict(format!("invalid change {change:?}: {reason}")))?;
    }
    config.created = Some(now.clone());
    let comment = opts.message.clone().unwrap_or_else(|| format!("Imported from {}", opts.source));
    config.history.push(HistoryEntry { created: Some(now), comment: Some(comment), ..HistoryEntry::default() });
    config.rootfs.diff_ids.push(digest.to_string());
    let raw = config.to_json().map_err(io::Error::other)?;
    let layer = LayerBlob {
        digest: digest.clone(),
        diff_id: digest,
        size,
        media_type: MediaType::ImageLayer,
        unpacked_size: Some(content_bytes),
    };
    let put = PutImage { tags: opts.tag.iter().cloned().collect(), parent: None };
    let image = store.put_image_raw(&raw, &[layer], &put)?;
    drop(work);
    Ok(image)
}

fn json_or_shell(rest: &str) -> Vec<String> {
    match serde_json::from_str::<Vec<String>>(rest) {
        Ok(v) => v,
        Err(_) => vec!["/bin/sh".into(), "-c".into(), rest.into()],
    }
}

fn key_values(rest: &str) -> Vec<(String, String)> {
    if let Some((k, v)) = rest.split_once(' ').filter(|(k, _)| !k.contains('=')) {
        return vec![(k.to_owned(), v.trim().to_owned())];
    }
    rest.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}

/// Why a `--change` cannot be applied (shown after `invalid change "…": `).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// An instruction with no arguments (`CMD`).
    #[error("missing arguments")]
    MissingArguments,
    /// An instruction `docker import` does not take (`RUN`, `COPY`, ...).
    #[error("{instruction} is not supported by import")]
    Unsupported { instruction: String },
}

/// Applies one `--change` instruction to the container config (docker's subset for import).
pub fn apply_change(cfg: &mut ContainerConfig, change: &str) -> std::result::Result<(), ChangeError> {
    let change = change.trim();
    let (instr, rest) = change.split_once(char::is_whitespace).ok_or(ChangeError::MissingArguments)?;
    let rest = rest.trim();
    match instr.to_ascii_uppercase().as_str() {
        "CMD" => cfg.cmd = Some(json_or_shell(rest)),
        "ENTRYPOINT" => cfg.entrypoint = Some(json_or_shell(rest)),
        "WORKDIR" => cfg.working_dir = rest.into(),
        "USER" => cfg.user = rest.into(),
        "STOPSIGNAL" => cfg.stop_signal = rest.into(),
        "ENV" => {
            for (k, v) in key_values(rest) {
                cfg.env.retain(|e| e.split_once('=').map(|(ek, _)| ek != k).unwrap_or(true));
                cfg.env.push(format!("{k}={v}"));
            }
        }
        "LABEL" => cfg.labels.extend(key_values(rest)),
        "EXPOSE" => {
            for p in rest.split_whitespace() {
                let p = if p.contains('/') { p.to_owned() } else { format!("{p}/tcp") };
                cfg.exposed_ports.insert(p, serde_json::Map::new());
            }
        }
        "VOLUME" => {
            let list = serde_json::from_str::<Vec<String>>(rest)
                .unwrap_or_else(|_| rest.split_whitespace().map(str::to_owned).collect());
            for v in list {
                cfg.volumes.insert(v, serde_json::Map::new());
            }
        }
        other => return Err(ChangeError::Unsupported { instruction: other.to_string() }),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_set_the_config() {
        let mut cfg = ContainerConfig::default();
        apply_change(&mut cfg, r#"CMD ["sh"]"#).unwrap();
        apply_change(&mut cfg, "ENV A=1 B=2").unwrap();
        apply_change(&mut cfg, "ENV A 3").unwrap();
        apply_change(&mut cfg, "ENTRYPOINT echo hi").unwrap();
        apply_change(&mut cfg, "EXPOSE 80").unwrap();
        apply_change(&mut cfg, "LABEL a=b").unwrap();
        assert_eq!(cfg.cmd, Some(vec!["sh".to_string()]));
        assert_eq!(cfg.env, ["B=2", "A=3"]);
        assert_eq!(cfg.entrypoint, Some(vec!["/bin/sh".into(), "-c".into(), "echo hi".into()]));
        assert!(cfg.exposed_ports.contains_key("80/tcp"));
        assert_eq!(cfg.labels.get("a").map(String::as_str), Some("b"));
        let err = apply_change(&mut cfg, "RUN x").unwrap_err();
        assert_eq!(err.to_string(), "RUN is not supported by import");
        assert_eq!(apply_change(&mut cfg, "CMD").unwrap_err().to_string(), "missing arguments");
    }
}
