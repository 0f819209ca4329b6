//! `import`: a rootfs tarball (plain, gzip or zstd) becomes a one-layer image. The layer is
//! stored as an uncompressed tar, so its digest is its diff ID.

use super::{ImageReference, ImageStore, LayerBlob, PutImage, Result, StoreError, StoredImage};
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
}

/// The `GOARCH` name of this machine.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
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
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let mut container_config = serde_json::Map::new();
    for change in &opts.changes {
        apply_change(&mut container_config, change)
            .map_err(|reason| StoreError::Conflict(format!("invalid change {change:?}: {reason}")))?;
    }
    let mut config = serde_json::Map::new();
    config.insert("architecture".into(), go_arch().into());
    if !container_config.is_empty() {
        config.insert("config".into(), serde_json::Value::Object(container_config));
    }
    config.insert("created".into(), now.clone().into());
    let comment = opts.message.clone().unwrap_or_else(|| format!("Imported from {}", opts.source));
    config.insert("history".into(), serde_json::json!([{ "created": now, "comment": comment }]));
    config.insert("os".into(), "linux".into());
    config.insert("rootfs".into(), serde_json::json!({ "type": "layers", "diff_ids": [digest.to_string()] }));
    let raw = serde_json::to_vec(&serde_json::Value::Object(config)).map_err(io::Error::other)?;
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

/// Applies one `--change` instruction to the container config (docker's subset for import).
pub fn apply_change(
    cfg: &mut serde_json::Map<String, serde_json::Value>,
    change: &str,
) -> std::result::Result<(), String> {
    let change = change.trim();
    let (instr, rest) = change.split_once(char::is_whitespace).ok_or("missing arguments")?;
    let rest = rest.trim();
    match instr.to_ascii_uppercase().as_str() {
        "CMD" => {
            cfg.insert("Cmd".into(), json_or_shell(rest).into());
        }
        "ENTRYPOINT" => {
            cfg.insert("Entrypoint".into(), json_or_shell(rest).into());
        }
        "WORKDIR" => {
            cfg.insert("WorkingDir".into(), rest.into());
        }
        "USER" => {
            cfg.insert("User".into(), rest.into());
        }
        "STOPSIGNAL" => {
            cfg.insert("StopSignal".into(), rest.into());
        }
        "ENV" => {
            let env = cfg.entry("Env").or_insert_with(|| serde_json::json!([]));
            if let Some(list) = env.as_array_mut() {
                for (k, v) in key_values(rest) {
                    list.retain(|e| e.as_str().and_then(|e| e.split_once('=')).map(|(ek, _)| ek != k).unwrap_or(true));
                    list.push(format!("{k}={v}").into());
                }
            }
        }
        "LABEL" => {
            let labels = cfg.entry("Labels").or_insert_with(|| serde_json::json!({}));
            if let Some(map) = labels.as_object_mut() {
                for (k, v) in key_values(rest) {
                    map.insert(k, v.into());
                }
            }
        }
        "EXPOSE" => {
            let ports = cfg.entry("ExposedPorts").or_insert_with(|| serde_json::json!({}));
            if let Some(map) = ports.as_object_mut() {
                for p in rest.split_whitespace() {
                    let p = if p.contains('/') { p.to_owned() } else { format!("{p}/tcp") };
                    map.insert(p, serde_json::json!({}));
                }
            }
        }
        "VOLUME" => {
            let vols = cfg.entry("Volumes").or_insert_with(|| serde_json::json!({}));
            if let Some(map) = vols.as_object_mut() {
                let list = serde_json::from_str::<Vec<String>>(rest)
                    .unwrap_or_else(|_| rest.split_whitespace().map(str::to_owned).collect());
                for v in list {
                    map.insert(v, serde_json::json!({}));
                }
            }
        }
        other => return Err(format!("{other} is not supported by import")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_set_the_config() {
        let mut cfg = serde_json::Map::new();
        apply_change(&mut cfg, r#"CMD ["sh"]"#).unwrap();
        apply_change(&mut cfg, "ENV A=1 B=2").unwrap();
        apply_change(&mut cfg, "ENV A 3").unwrap();
        apply_change(&mut cfg, "ENTRYPOINT echo hi").unwrap();
        apply_change(&mut cfg, "EXPOSE 80").unwrap();
        assert_eq!(cfg["Cmd"], serde_json::json!(["sh"]));
        assert_eq!(cfg["Env"], serde_json::json!(["B=2", "A=3"]));
        assert_eq!(cfg["Entrypoint"], serde_json::json!(["/bin/sh", "-c", "echo hi"]));
        assert!(cfg["ExposedPorts"].get("80/tcp").is_some());
        assert!(apply_change(&mut cfg, "RUN x").is_err());
    }
}
