//! Cache lookups of a stage's steps: the store's records first, then the records of an
//! imported cache (`--cache-from`, brought into the store on a hit), then a classic
//! `--cache-from IMAGE` continuing the parent.

use crate::engine::config::StageConfigState;
use crate::engine::executor::{ImageState, StageExecutor};
use crate::engine::shared_cache::materialize;
use crate::engine::BuildError;
use crate::events::BuildEvent;
use crate::layer::digest::Sha256Digest;
use crate::plan::{CacheKey, Step};

impl StageExecutor<'_> {
    /// The image the cache gives `step`: a record (the store's or an imported one), else a
    /// classic `--cache-from` image continuing the parent (`state`, or the last hit's image).
    pub(crate) fn lookup(
        &self,
        step: &Step,
        state: &ImageState,
        last_hit: Option<&str>,
        config_state: &StageConfigState,
    ) -> Result<Option<String>, BuildError> {
        if let Some(hit) = self.cached(step)? {
            return Ok(Some(hit));
        }
        if self.classic.is_empty() {
            return Ok(None);
        }
        match last_hit {
            Some(hit) => self.classic_cached(step, &self.hit_state(hit)?, config_state),
            None => self.classic_cached(step, state, config_state),
        }
    }

    pub(crate) fn note_step(&self, stage: usize, key: &CacheKey) {
        if let Ok(mut used) = self.used.lock() {
            used.steps.push((stage, key.clone()));
        }
    }

    /// The image ID a cache record names, if the record is there and the store still has the
    /// image's config (a file check: the index is read once, by [`Self::hit_state`]); else
    /// the image of an imported cache's record, brought into the store.
    pub(crate) fn cached(&self, step: &Step) -> Result<Option<String>, BuildError> {
        if let Some(image) = self.cache.image_of(&step.cache_key)? {
            match image.parse::<Sha256Digest>() {
                Ok(id) if self.store.has_blob(&id) => return Ok(Some(image)),
                // The image was removed (rmi, prune): the record is stale.
                _ => self.cache.remove(&step.cache_key)?,
            }
        }
        match self.imported.lookup(&step.cache_key) {
            Some((source, entry)) => match materialize(self.store, &self.cache, source, entry) {
                Ok(image) => Ok(Some(image)),
                // A cache that cannot give what it lists (a blob gone or corrupt) costs a
                // rerun of the step, not the build.
                Err(BuildError::CacheTransfer(e)) => {
                    self.emit(BuildEvent::Warning { message: format!("{e}; running step {} instead", step.number) });
                    Ok(None)
                }
                Err(e) => Err(e),
            },
            None => Ok(None),
        }
    }

    /// The state after a cache hit: the recorded image, read from the store.
    pub(crate) fn hit_state(&self, image_id: &str) -> Result<ImageState, BuildError> {
        let stored = self.store.resolve(image_id).map_err(|e| {
            BuildError::Internal(format!("cache hit on image {image_id}, which the store cannot read: {e}"))
        })?;
        self.state_of(stored)
    }
}
