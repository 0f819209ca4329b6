//! Stores what a step made: the layer written from its upper dir or from a [`LayerTree`]
//! (blob, and the upper dir as the unpacked layer), then the image (the parent's layers plus
//! the new one, the config with the step's history entry) in the stage's batch.

use std::sync::Arc;
use std::time::Instant;

use crate::engine::executor::{ImageState, PendingImages, StageExecutor};
use crate::engine::BuildError;
use crate::image::{HistoryEntry, ImageConfig};
use crate::layer::diff::{write_layer, write_layer_tree, DiffOptions, LayerTree};
use crate::layer::digest::{chain_ids, Sha256Digest};
use crate::plan::Step;
use crate::store::{ImageBatch, LayerBlob, StoredImage, WorkDir};

/// How a step's upper dir is read at commit (see [`DiffOptions`]).
#[derive(Debug, Default)]
pub(crate) struct UpperDiff {
    /// fuse-overlayfs recorded whiteouts as `.wh.` files.
    pub whiteout_files: bool,
    /// The overlay's lower dirs, top-most first, for a RUN: an opaque marker on a directory
    /// none of them has is left out ([`DiffOptions::lowers`]).
    pub lowers: Vec<std::path::PathBuf>,
}

impl StageExecutor<'_> {
    /// Writes the layer of a step that changed the filesystem (`tree`, else the upper dir of
    /// `work`) and stores the image; a layer that changes nothing is left out (size 0).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn commit_layer(
        &self,
        step: &Step,
        state: &ImageState,
        config: ImageConfig,
        created_by: String,
        work: WorkDir,
        tree: Option<LayerTree>,
        upper_diff: UpperDiff,
        pending: &mut PendingImages,
    ) -> Result<(ImageState, Option<u64>), BuildError> {
        let upper = work.path().join("upper");
        let committing = Instant::now();
        let UpperDiff { whiteout_files, lowers } = upper_diff;
        let diff = DiffOptions { whiteout_files, lowers, ..self.diff.clone() };
        let layer = match &tree {
            Some(tree) => write_layer_tree(tree, work.path(), &diff)?,
            None => write_layer(&upper, work.path(), &diff)?,
        };
        tracing::debug!(
            step = step.number,
            bytes = layer.uncompressed_size,
            ms = committing.elapsed().as_millis() as u64,
            "layer written"
        );
        if layer.empty {
            let _ = std::fs::remove_file(&layer.path);
            return Ok((self.commit(&mut pending.batch, state, config, None, created_by)?, Some(0)));
        }
        let digest: Sha256Digest = layer.digest.parse().map_err(|e| BuildError::Internal(format!("{e}")))?;
        let diff_id: Sha256Digest = layer.diff_id.parse().map_err(|e| BuildError::Internal(format!("{e}")))?;
        work.commit_blob_file(self.store, &layer.path, &digest)?;
        let mut diff_ids: Vec<Sha256Digest> =
            state.stored.as_ref().map(|s| s.layers.iter().map(|l| l.diff_id.clone()).collect()).unwrap_or_default();
        diff_ids.push(diff_id.clone());
        let chain_id = chain_ids(&diff_ids).pop().unwrap_or_else(|| diff_id.clone());
        // The upper dir already has overlay whiteouts: it becomes the unpacked layer as is. A
        // layer written from a tree is unpacked by the store when something needs it.
        if tree.is_none() {
            work.commit_layer_dir(self.store, &upper, &chain_id)?;
        }
        let blob = LayerBlob {
            digest,
            diff_id,
            size: layer.compressed_size,
            media_type: layer.media_type.into(),
            unpacked_size: Some(layer.unpacked_size),
        };
        let size = layer.uncompressed_size;
        let mut image = self.commit(&mut pending.batch, state, config, Some(blob), created_by)?;
        if let Some(tree) = &tree {
            let paths = tree.root.keys().map(|k| format!("/{}", String::from_utf8_lossy(k))).collect();
            image.tree_layers.push((chain_id, Arc::new(paths)));
        }
        drop(work);
        Ok((image, Some(size)))
    }

    /// Stores the image that results from a step: the parent's layers plus `layer`, the config
    /// with a history entry for the step.
    pub(crate) fn commit(
        &self,
        batch: &mut ImageBatch,
        parent: &ImageState,
        mut config: ImageConfig,
        layer: Option<LayerBlob>,
        created_by: String,
    ) -> Result<ImageState, BuildError> {
        let mut layers: Vec<LayerBlob> = parent.stored.as_ref().map(StoredImage::layer_blobs).unwrap_or_default();
        config.created = Some(self.created.clone());
        config.history.push(HistoryEntry {
            created: Some(self.created.clone()),
            created_by: Some(created_by),
            author: config.author.clone(),
            comment: None,
            empty_layer: layer.is_none(),
        });
        if let Some(l) = layer {
            layers.push(l);
        }
        config.rootfs.diff_ids = layers.iter().map(|l| l.diff_id.to_string()).collect();
        let json = config.to_json().map_err(|e| BuildError::Internal(format!("serializing an image config: {e}")))?;
        let parent_id = parent.stored.as_ref().map(|s| s.id.clone());
        let stored = self.store.put_image_in_batch(batch, &json, &layers, parent_id)?;
        Ok(ImageState { stored: Some(stored), config, key: None, tree_layers: parent.tree_layers.clone() })
    }
}
