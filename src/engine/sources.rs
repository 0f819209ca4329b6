//! COPY/ADD (and RUN bind mount) source digests for cache keys: selects the sources in the
//! build context (after `.dockerignore` and `--exclude`) and digests them with
//! [`crate::context::source_digest`].

use crate::context::{source_digest, BuildContext, ContextError};
use crate::frontend::instructions::FileCopy;
use crate::frontend::lower::SourceResolver;
use crate::plan::SourceInputs;

/// A [`SourceResolver`] backed by a build context on disk.
pub struct ContextSources<'a> {
    context: &'a BuildContext,
}

impl<'a> ContextSources<'a> {
    pub fn new(context: &'a BuildContext) -> Self {
        ContextSources { context }
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
        let entries = self.context.select(&sources, &copy.exclude)?;
        // COPY and ADD write files owned by 0:0 unless --chown says otherwise, and --chown's
        // effect is already in the instruction text: the owners in the context never reach the
        // image, so they must not decide a cache miss.
        let digest = source_digest(&self.context.root, &entries, Some((0, 0)), self.context.memo())?;
        Ok(SourceInputs { digest: digest.digest, files: digest.files.into_iter().collect() })
    }

    fn bind_digest(&self, source: &str) -> Result<SourceInputs, ContextError> {
        let entries = self.context.select(&[source.to_string()], &[])?;
        // The mount shows a copy owned by 0:0 (see `engine::run_mounts`): context owners do not count.
        let digest = source_digest(&self.context.root, &entries, Some((0, 0)), self.context.memo())?;
        Ok(SourceInputs { digest: digest.digest, files: digest.files.into_iter().collect() })
    }
}
