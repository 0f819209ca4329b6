//! Docker's classic `--cache-from IMAGE`: images (in the store, or pulled) whose history
//! seeds cache hits when neither the store nor an imported cache has a record for a step.
//!
//! As the classic builder's image cache does (moby `image/cache`): a source image matches a
//! step on parent image P when its history starts with P's history and its layers with P's
//! layers, and its next history entry's `created_by` is the one this step would write. The
//! hit is the source image itself when that entry is its last; otherwise an image is
//! restored from P plus that entry (and its layer, unless the entry is `empty_layer`) with
//! the step's own config, as moby's `restoreCachedImage` does. Only steps whose `created_by`
//! is known before they run can match: config-only steps, WORKDIR, RUN, and COPY/ADD of
//! build-context files (named by their classic tarsum); COPY/ADD from another stage, image,
//! URL or heredoc runs.

use crate::engine::config::{apply_config_instruction, history_created_by, StageConfigState};
use crate::engine::executor::{ImageState, StageExecutor};
use crate::engine::run_step::run_argv;
use crate::engine::BuildError;
use crate::frontend::instructions::{FileCopy, Instruction};
use crate::image::{HistoryEntry, ImageConfig};
use crate::plan::Step;
use crate::store::{PutImage, StoredImage};

/// The images of the build's classic `--cache-from IMAGE`s.
#[derive(Debug, Default)]
pub struct ClassicSources {
    pub images: Vec<StoredImage>,
}

/// What a source image offers for one step.
#[derive(Debug, PartialEq, Eq)]
enum ClassicMatch {
    /// The step is the source image's last: the image itself.
    Whole,
    /// The source's history entry after the parent's, with its layer (index into the
    /// source's layers) unless the entry is `empty_layer`.
    Entry { layer: Option<usize> },
}

/// How a source image (history `theirs`, layer diff IDs `their_ids`) continues a parent
/// (`history`, `diff_ids`) with a step writing `created_by`, as moby's `isValidParent` and
/// `isValidConfig` decide.
fn continues(
    theirs: &[HistoryEntry],
    their_ids: &[String],
    history: &[HistoryEntry],
    diff_ids: &[String],
    created_by: &str,
) -> Option<ClassicMatch> {
    let valid_parent = theirs.len() > history.len()
        && theirs[..history.len()] == history[..]
        && their_ids.len() >= diff_ids.len()
        && their_ids[..diff_ids.len()] == diff_ids[..];
    let next = theirs.get(history.len())?;
    if !valid_parent || next.created_by.as_deref() != Some(created_by) {
        return None;
    }
    if theirs.len() == history.len() + 1 {
        return Some(ClassicMatch::Whole);
    }
    if next.empty_layer {
        return Some(ClassicMatch::Entry { layer: None });
    }
    (diff_ids.len() < their_ids.len()).then_some(ClassicMatch::Entry { layer: Some(diff_ids.len()) })
}

impl ClassicSources {
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// The first source image that continues `parent` with a step writing `created_by`.
    fn find(
        &self,
        parent: Option<&StoredImage>,
        parent_config: &ImageConfig,
        created_by: &str,
    ) -> Option<(&StoredImage, ClassicMatch)> {
        let ids = |image: &StoredImage| image.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>();
        let diff_ids = parent.map(ids).unwrap_or_default();
        self.images.iter().find_map(|image| {
            continues(&image.config.history, &ids(image), &parent_config.history, &diff_ids, created_by)
                .map(|m| (image, m))
        })
    }
}

impl StageExecutor<'_> {
    /// The image a classic `--cache-from` image gives `step` on `parent`, stored (restored
    /// when it is not the source's last step) and recorded under the step's key; `None` when no
    /// source image continues `parent` with this step.
    pub(crate) fn classic_cached(
        &self,
        step: &Step,
        parent: &ImageState,
        config_state: &StageConfigState,
    ) -> Result<Option<String>, BuildError> {
        let mut config = parent.config.clone();
        apply_config_instruction(&mut config, &mut config_state.clone(), &step.instruction);
        let (argv, summary) = match &step.instruction {
            Instruction::Run(run) => (Some(run_argv(&parent.config, run)), None),
            Instruction::Copy(fc) | Instruction::Add(fc) => match self.classic_copy_summary(fc)? {
                Some(summary) => (None, Some(summary)),
                None => return Ok(None),
            },
            _ => (None, None),
        };
        let created_by =
            history_created_by(&step.instruction, &config, argv.as_deref(), &step.build_args, summary.as_deref());
        let image = match self.classic.find(parent.stored.as_ref(), &parent.config, &created_by) {
            None => return Ok(None),
            Some((source, ClassicMatch::Whole)) => source.id.to_string(),
            Some((source, ClassicMatch::Entry { layer })) => {
                let entry = source.config.history[parent.config.history.len()].clone();
                let mut layers = parent.stored.as_ref().map(StoredImage::layer_blobs).unwrap_or_default();
                if let Some(i) = layer {
                    layers.extend(source.layer_blobs().into_iter().nth(i));
                }
                config.created = entry.created.clone();
                config.history.push(entry);
                config.rootfs.diff_ids = layers.iter().map(|l| l.diff_id.to_string()).collect();
                let json =
                    config.to_json().map_err(|e| BuildError::Internal(format!("serializing an image config: {e}")))?;
                let put = PutImage { tags: Vec::new(), parent: parent.stored.as_ref().map(|p| p.id.clone()) };
                self.store.put_image_raw(&json, &layers, &put)?.id.to_string()
            }
        };
        self.cache.put(&crate::engine::cache::CacheRecord {
            image: image.clone(),
            key: step.cache_key.clone(),
            inputs: step.key_inputs.clone(),
            created: chrono::Utc::now().to_rfc3339(),
        })?;
        Ok(Some(image))
    }

    /// The classic history summary of a COPY/ADD of build-context files only (`file:<tarsum>
    /// in /dest`), as the step would write it; `None` for other sources.
    fn classic_copy_summary(&self, fc: &FileCopy) -> Result<Option<String>, BuildError> {
        let is_url = |s: &str| s.starts_with("http://") || s.starts_with("https://");
        if fc.from.is_some() || fc.sources.iter().any(|s| is_url(s) || fc.heredoc_for(s).is_some()) {
            return Ok(None);
        }
        let roots = self.context.select_roots(&fc.sources, &fc.exclude)?;
        let hash = crate::context::digest::classic_source_hash(&self.context.root, &roots, self.context.memo())?;
        Ok(Some(format!("{hash} in {}", fc.dest)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(created_by: &str, empty: bool) -> HistoryEntry {
        HistoryEntry { created_by: Some(created_by.into()), empty_layer: empty, ..Default::default() }
    }

    #[test]
    fn a_source_matches_only_a_step_that_continues_its_history() {
        let theirs = [entry("base", false), entry("ENV A=1", true), entry("RUN make", false), entry("CMD sh", true)];
        let ids = ["l0".to_string(), "l1".to_string()];
        let base = [entry("base", false)];
        let on_base = |created_by: &str| continues(&theirs, &ids, &base, &ids[..1], created_by);
        assert_eq!(on_base("ENV A=1"), Some(ClassicMatch::Entry { layer: None }));
        assert_eq!(on_base("ENV A=2"), None, "another instruction");
        assert_eq!(continues(&theirs, &ids, &[entry("other", false)], &ids[..1], "ENV A=1"), None, "another parent");
        assert_eq!(continues(&theirs, &ids, &base, &["x".to_string()], "ENV A=1"), None, "other layers");
        let after_env = [entry("base", false), entry("ENV A=1", true)];
        assert_eq!(
            continues(&theirs, &ids, &after_env, &ids[..1], "RUN make"),
            Some(ClassicMatch::Entry { layer: Some(1) })
        );
        assert_eq!(continues(&theirs, &ids, &theirs[..3], &ids, "CMD sh"), Some(ClassicMatch::Whole));
        assert_eq!(continues(&theirs, &ids, &theirs, &ids, "CMD sh"), None, "nothing after the last entry");
    }
}
