//! What a container's kept upper dir becomes: its change list (`rbuild diff`), a new image
//! (`rbuild commit`), and a flat rootfs tar (`rbuild export`).

use std::io::Write;

use crate::containers::{io_err, ContainerRecord, Containers, LifecycleError, Result};
use crate::engine::config::{apply_config_instruction, StageConfigState};
use crate::frontend::instructions::{read_instruction, Instruction, SourceRef};
use crate::image::HistoryEntry;
use crate::layer::apply::{LayerApply, WhiteoutMode};
use crate::layer::diff::{changes, write_layer, Change, DiffOptions};
use crate::layer::digest::Sha256Digest;
use crate::layer::media::Compression;
use crate::store::{ImageReference, LayerBlob, PutImage, StoreError, StoredImage};

/// What `rbuild commit` asks for.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// `-m`: the history entry's comment.
    pub message: Option<String>,
    /// `-a`: the image's and the history entry's author.
    pub author: Option<String>,
    /// `-c`: Dockerfile instructions applied to the config.
    pub changes: Vec<String>,
    /// `REPO[:TAG]` to tag the new image with.
    pub reference: Option<String>,
}

/// The instructions `commit -c` accepts, as Docker does.
const COMMIT_CHANGES: [&str; 10] =
    ["CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"];

/// Reads `-c` text with the Dockerfile front end: one or more instructions.
fn parse_change(change: &str) -> Result<Vec<Instruction>> {
    let invalid = |reason: String| LifecycleError::Change { change: change.to_string(), reason };
    let file = crate::frontend::parser::parse(change, "--change").map_err(|d| invalid(d.to_string()))?;
    let src = SourceRef { file: "--change", text: change };
    let mut out = Vec::new();
    for node in &file.instructions {
        let instruction = read_instruction(node, &src).map_err(|d| invalid(d.to_string()))?;
        let keyword = instruction.keyword().to_ascii_uppercase();
        if !COMMIT_CHANGES.contains(&keyword.as_str()) {
            return Err(invalid(format!("{keyword} is not a valid change command")));
        }
        out.push(instruction);
    }
    if out.is_empty() {
        return Err(invalid("no instruction".into()));
    }
    Ok(out)
}

fn parse_digest(text: &str) -> Result<Sha256Digest> {
    text.parse::<Sha256Digest>().map_err(|e| LifecycleError::Store(StoreError::Digest(e)))
}

impl Containers {
    /// What the container changed relative to its image, sorted by path.
    pub fn changes(&self, record: &ContainerRecord) -> Result<Vec<Change>> {
        let image = self.image_of(record)?;
        let mut lowers = self.store.ensure_unpacked(&image)?;
        lowers.reverse();
        Ok(changes(&record.upper, &lowers)?)
    }

    /// Stores a new image: the container's image plus its upper dir as one layer, the
    /// container's config with `-c` changes applied, and a history entry with the message
    /// and author.
    pub fn commit(&self, record: &ContainerRecord, opts: &CommitOptions) -> Result<StoredImage> {
        let mut instructions = Vec::new();
        for change in &opts.changes {
            instructions.extend(parse_change(change)?);
        }
        let tags = match &opts.reference {
            Some(r) => vec![ImageReference::parse(r).map_err(StoreError::from)?.with_default_tag()],
            None => Vec::new(),
        };
        let image = self.image_of(record)?;
        let mut config = image.config.clone();
        // The container's own config is what the image gets, as with docker commit.
        config.config.entrypoint = record.entrypoint.clone();
        config.config.cmd = record.cmd.clone();
        config.config.env = record.env.clone();
        config.config.working_dir = record.working_dir.clone();
        config.config.user = record.user.clone();
        let mut state = StageConfigState::default();
        for instruction in &instructions {
            apply_config_instruction(&mut config, &mut state, instruction);
        }

        let work = self.store.work_dir()?;
        let layer =
            write_layer(&record.upper, work.path(), &DiffOptions::default().with_source_date_epoch_from_env()?)?;
        let mut layers = image.layer_blobs();
        if layer.empty {
            let _ = std::fs::remove_file(&layer.path);
        } else {
            let digest = parse_digest(&layer.digest)?;
            let diff_id = parse_digest(&layer.diff_id)?;
            work.commit_blob_file(&self.store, &layer.path, &digest)?;
            layers.push(LayerBlob {
                digest,
                diff_id,
                size: layer.compressed_size,
                media_type: layer.media_type.into(),
                unpacked_size: Some(layer.unpacked_size),
            });
        }
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        config.created = Some(now.clone());
        config.author = opts.author.clone();
        config.history.push(HistoryEntry {
            created: Some(now),
            created_by: Some(record.cmd.clone().unwrap_or_default().join(" ")),
            author: opts.author.clone(),
            comment: opts.message.clone(),
            empty_layer: layer.empty,
        });
        config.rootfs.diff_ids = layers.iter().map(|l| l.diff_id.to_string()).collect();
        let json = config
            .to_json()
            .map_err(|source| LifecycleError::ImageConfig { image: format!("committed from {}", record.id), source })?;
        let stored = self.store.put_image_raw(&json, &layers, &PutImage { tags, parent: Some(image.id.clone()) })?;
        drop(work);
        Ok(stored)
    }

    /// Writes the container's root filesystem as one uncompressed tar: the image's layers
    /// flattened, the upper dir applied over them (its whiteouts delete).
    pub fn export(&self, record: &ContainerRecord, out: &mut dyn Write) -> Result<()> {
        let image = self.image_of(record)?;
        let work = self.store.work_dir()?;
        let rootfs = work.path().join("rootfs");
        fs_err::create_dir(&rootfs).map_err(io_err("creating", &rootfs))?;
        self.store.flatten_into(&image, &rootfs)?;
        let plain = DiffOptions { compression: Compression::None, ..DiffOptions::default() };
        let upper = write_layer(&record.upper, work.path(), &plain)?;
        let apply_err = |source| LifecycleError::Export { id: record.id.clone(), source };
        let blob = fs_err::File::open(&upper.path).map_err(io_err("opening", &upper.path))?;
        LayerApply::new(&rootfs, WhiteoutMode::Delete).map_err(apply_err)?.apply(blob).map_err(apply_err)?;
        let tar = write_layer(&rootfs, work.path(), &plain)?;
        let mut file = fs_err::File::open(&tar.path).map_err(io_err("opening", &tar.path))?;
        let write_err = |source| LifecycleError::ExportWrite { id: record.id.clone(), source };
        std::io::copy(&mut file, out).map_err(write_err)?;
        out.flush().map_err(write_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_parse_with_the_front_end() {
        let cmd = parse_change(r#"CMD ["sh"]"#).expect("CMD parses");
        assert!(matches!(cmd.as_slice(), [Instruction::Cmd { .. }]));
        let env = parse_change("ENV A=1").expect("ENV parses");
        assert!(
            matches!(env.as_slice(), [Instruction::Env { pairs }] if pairs == &[("A".to_string(), "1".to_string())])
        );
        let err = parse_change("RUN true").expect_err("RUN is refused");
        assert!(err.to_string().contains("RUN is not a valid change command"), "{err}");
    }
}
