//! COPY/ADD (and RUN bind mount) source digests for cache keys: selects the sources in the
//! build context (after `.dockerignore` and `--exclude`) and digests them with
//! [`crate::context::source_digest`]. Each selection is digested once per build: lowering
//! again after a pull asks for the same ones.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::context::{source_digest, BuildContext, ContextError};
use crate::frontend::instructions::FileCopy;
use crate::frontend::lower::SourceResolver;
use crate::plan::SourceInputs;

/// A [`SourceResolver`] backed by a build context on disk.
pub struct ContextSources<'a> {
    context: &'a BuildContext,
    /// Digests by selection (kind, sources, excludes).
    digests: Mutex<HashMap<String, SourceInputs>>,
}

impl<'a> ContextSources<'a> {
    pub fn new(context: &'a BuildContext) -> Self {
        ContextSources { context, digests: Mutex::default() }
    }

    /// The digest of `sources` minus `exclude`, computed on the first request.
    fn selection_digest(
        &self,
        kind: &str,
        sources: &[String],
        exclude: &[String],
    ) -> Result<SourceInputs, ContextError> {
        let key = format!("{kind}\0{}\0\0{}", sources.join("\0"), exclude.join("\0"));
        if let Some(hit) = self.digests.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(hit);
        }
        let entries = self.context.select(sources, exclude)?;
        // COPY and ADD write files owned by 0:0 unless --chown says otherwise, and --chown's
        // effect is already in the instruction text; a bind mount shows a copy owned by 0:0
        // (see `engine::run_mounts`): the owners in the context never reach the image or the
        // step, so they must not decide a cache miss.
        let digest = source_digest(&self.context.root, &entries, Some((0, 0)), self.context.memo())?;
        let inputs = SourceInputs { digest: digest.digest, files: digest.files.into_iter().collect() };
        if let Ok(mut m) = self.digests.lock() {
            m.insert(key, inputs.clone());
        }
        Ok(inputs)
    }
}

impl SourceResolver for ContextSources<'_> {
    fn digest(&self, copy: &FileCopy) -> Result<SourceInputs, ContextError> {
        let sources: Vec<String> = copy
            .sources
            .iter()
            .filter(|s| copy.heredoc_for(s).is_none() && !s.starts_with("http://") && !s.starts_with("https://"))
            .cloned()
            .collect();
        self.selection_digest("copy", &sources, &copy.exclude)
    }

    fn bind_digest(&self, source: &str) -> Result<SourceInputs, ContextError> {
        self.selection_digest("bind", &[source.to_string()], &[])
    }
}
