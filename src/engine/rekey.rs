//! What a `--from` names (an earlier stage's result or an image in the store), and the cache
//! key a step really has when its stage runs, when that is not the planned one: a
//! `COPY --from=<stage>` is keyed on the files it selects in that stage (as Docker keys it),
//! and the steps after a re-keyed one chain on its new key.

use std::collections::BTreeMap;
use std::sync::Arc;

use fs_err as fs;

use crate::engine::copy::plan_from_image;
use crate::engine::executor::{ImageState, StageExecutor, NOT_IN_STORE};
use crate::engine::BuildError;
use crate::frontend::instructions::{FileCopy, Instruction};
use crate::layer::stack::MergedView;
use crate::plan::{CacheKey, Dependency, SourceInputs, Stage, StageBase, Step};

impl StageExecutor<'_> {
    /// `step` with the key it really has, when that is not the planned one: a COPY/ADD
    /// `--from` an earlier stage is keyed on what it copies (the selected files' paths,
    /// content, modes and link targets in that stage), not on the stage's key, so a change
    /// there that leaves them the same still hits, as in Docker; a step after a re-keyed one
    /// chains on its new key, and so does a FROM of a stage whose last key changed.
    /// `rekeyed_parent`: (planned, effective) key of the step before.
    pub(crate) fn rekey(
        &self,
        stage: &Stage,
        step: &Step,
        rekeyed_parent: Option<&(String, CacheKey)>,
        done: &BTreeMap<usize, Arc<ImageState>>,
        memo: bool,
    ) -> Result<Option<Step>, BuildError> {
        let mut inputs = step.key_inputs.clone();
        if let Some((planned, effective)) = rekeyed_parent {
            if &inputs.parent == planned {
                inputs.parent = effective.to_string();
            }
        }
        // FROM an earlier stage chains on the key that stage really had.
        if let (Instruction::From { .. }, StageBase::Stage { index }) = (&step.instruction, &stage.base) {
            if let Some(key) = done.get(index).and_then(|s| s.key.as_ref()) {
                inputs.parent = format!("stage:{key}");
            }
        }
        if let Instruction::Copy(fc) | Instruction::Add(fc) = &step.instruction {
            // No sources in the plan: the COPY has only heredocs.
            if let (Some(from), Some(_)) = (&fc.from, &inputs.sources) {
                if let Some(index) = self.stage_dependency(stage, from, done) {
                    inputs.sources = Some(self.stage_sources(step, fc, from, &done[&index], memo)?);
                }
            }
        }
        if inputs == step.key_inputs {
            return Ok(None);
        }
        Ok(Some(Step { cache_key: inputs.key(), key_inputs: inputs, ..step.clone() }))
    }

    /// The digest of the files a `COPY --from=<stage>` selects in that stage's image, each
    /// named `<path> in stage <from>` so that a miss says which one changed.
    fn stage_sources(
        &self,
        step: &Step,
        fc: &FileCopy,
        from: &str,
        source: &ImageState,
        memo: bool,
    ) -> Result<SourceInputs, BuildError> {
        let keyword = if step.instruction.keyword() == "ADD" { "ADD" } else { "COPY" };
        let fail = |message: String| BuildError::Step { step: step.number, message };
        let files: Vec<String> = fc.sources.iter().filter(|s| fc.heredoc_for(s).is_none()).cloned().collect();
        // The image and the selection fix the answer: a cached rebuild reads it back instead
        // of every copied file.
        let image = source.stored.as_ref().map(|s| s.id.to_string());
        let selection = format!("{keyword} --from={from} {}", files.join("\0"));
        if let Some(digest) = image.as_deref().filter(|_| memo).and_then(|id| self.cache.source_memo(id, &selection)) {
            // The digest is the key; which files it covers is read only if the step misses.
            return Ok(SourceInputs { digest, files: BTreeMap::new() });
        }
        let view = MergedView::new(&self.unpacked(source)?);
        let items = plan_from_image(keyword, from, &view, &files, "/", true).map_err(|e| fail(e.to_string()))?;
        let mut located = Vec::with_capacity(items.len());
        for item in items {
            let path = view
                .image_path(&item.host)
                .ok_or_else(|| BuildError::Internal(format!("{} is outside stage {from}", item.host.display())))?;
            let meta = fs::symlink_metadata(&item.host)?;
            located.push((crate::context::walk::entry_from_metadata(path, &item.host, &meta)?, item.host));
        }
        // Owners are what --chown says (it is in the instruction), never the stage's.
        let digest = crate::context::located_digest(&located, Some((0, 0)))?;
        let files = digest.files.into_iter().map(|(path, d)| (format!("{path} in stage {from}"), d)).collect();
        let sources = SourceInputs { digest: digest.digest, files };
        if let Some(id) = &image {
            self.cache.put_source_memo(id, &selection, &sources.digest);
        }
        Ok(sources)
    }

    /// The image a `--from` names: an earlier stage's result, or an image in the store.
    pub(crate) fn copy_source_image(
        &self,
        stage: &Stage,
        from: &str,
        done: &BTreeMap<usize, Arc<ImageState>>,
    ) -> Result<ImageState, BuildError> {
        if let Some(index) = self.stage_dependency(stage, from, done) {
            return Ok((*done[&index]).clone());
        }
        let stored = self
            .store
            .resolve(from)
            .map_err(|_| BuildError::BaseImageMissing { reference: from.to_string(), reason: NOT_IN_STORE.into() })?;
        self.state_of(stored)
    }

    /// The built stage a `--from` names, if it names one (else it names an image).
    pub(crate) fn stage_dependency(
        &self,
        stage: &Stage,
        from: &str,
        done: &BTreeMap<usize, Arc<ImageState>>,
    ) -> Option<usize> {
        stage.dependencies.iter().find_map(|dep| match dep {
            Dependency::Stage { index }
                if done.contains_key(index)
                    && (from.parse::<usize>().ok() == Some(*index)
                        || self.stage_name(*index).as_deref() == Some(&from.to_ascii_lowercase())) =>
            {
                Some(*index)
            }
            _ => None,
        })
    }

    fn stage_name(&self, index: usize) -> Option<String> {
        self.stage_names.get(index).cloned().flatten()
    }
}
