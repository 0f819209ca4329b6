//! The LLB graph as BuildKit's Go client marshals it (`llb.Definition`): every op encoded
//! once, named by the sha256 of its bytes, listed after the ops it reads, with a terminal op
//! (inputs only) last; per-op metadata (a progress name, the capabilities it needs) and the
//! Dockerfile lines each op came from.

use std::collections::{BTreeMap, BTreeSet};

use bollard_buildkit_proto::pb;
use prost::Message;
use sha2::{Digest, Sha256};

/// One output of an op: what a later op's input names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Output {
    /// `sha256:<hex>` of the op's encoded bytes.
    pub digest: String,
    pub index: i64,
}

impl Output {
    pub fn input(&self) -> pb::Input {
        pb::Input { digest: self.digest.clone(), index: self.index }
    }
}

/// A capability an op needs, and the Dockerfile instruction that made the op: what a worker
/// without the capability is told.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CapRequirement {
    /// BuildKit's capability ID (`exec.mount.cache`, `file.base`, `mergeop`, ...).
    pub cap: String,
    /// 1-based Dockerfile line of the instruction.
    pub line: usize,
    /// The instruction as written.
    pub instruction: String,
}

/// Where an op came from and what it needs, for its metadata.
#[derive(Debug, Clone, Default)]
pub struct OpOrigin {
    /// Shown in BuildKit's progress (`llb.customname`): `[build 2/4] RUN make`.
    pub name: String,
    /// Dockerfile lines (1-based, inclusive); none for internal ops.
    pub lines: Option<(usize, usize)>,
    /// The instruction as written, for capability errors.
    pub instruction: String,
    pub caps: Vec<&'static str>,
    /// The plan step (its `Step N/M` number) the op belongs to; none for internal ops.
    pub step: Option<usize>,
}

/// The ops added so far, in an order where every op follows its inputs.
#[derive(Debug, Default)]
pub struct Graph {
    ops: Vec<(String, Vec<u8>)>,
    seen: BTreeSet<String>,
    metadata: BTreeMap<String, pb::OpMetadata>,
    locations: BTreeMap<String, pb::Locations>,
    requirements: BTreeSet<CapRequirement>,
    steps: BTreeMap<String, usize>,
}

/// `sha256:<hex>` of `bytes`, as BuildKit names ops.
pub fn op_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl Graph {
    /// Adds `op` (its inputs must be in the graph already) and returns its first output. The
    /// same op added twice is one op.
    pub fn add(&mut self, op: pb::Op, origin: &OpOrigin) -> Output {
        let bytes = op.encode_to_vec();
        let digest = op_digest(&bytes);
        if self.seen.insert(digest.clone()) {
            self.ops.push((digest.clone(), bytes));
        }
        if let Some(step) = origin.step {
            self.steps.entry(digest.clone()).or_insert(step);
        }
        let meta = self.metadata.entry(digest.clone()).or_default();
        if !origin.name.is_empty() {
            meta.description.insert("llb.customname".to_string(), origin.name.clone());
        }
        for cap in &origin.caps {
            meta.caps.insert(cap.to_string(), true);
            if let Some((line, _)) = origin.lines {
                self.requirements.insert(CapRequirement {
                    cap: cap.to_string(),
                    line,
                    instruction: origin.instruction.clone(),
                });
            }
        }
        if let Some((start, end)) = origin.lines {
            let range = pb::Range {
                start: Some(pb::Position { line: start as i32, character: 0 }),
                end: Some(pb::Position { line: end as i32, character: 0 }),
            };
            let locations = self.locations.entry(digest.clone()).or_default();
            let location = pb::Location { source_index: 0, ranges: vec![range] };
            if !locations.locations.contains(&location) {
                locations.locations.push(location);
            }
        }
        Output { digest, index: 0 }
    }

    /// The capabilities the ops need, each with the first instruction that needs it.
    pub fn requirements(&self) -> Vec<CapRequirement> {
        let mut first: BTreeMap<&str, &CapRequirement> = BTreeMap::new();
        for r in &self.requirements {
            first.entry(r.cap.as_str()).or_insert(r);
        }
        first.into_values().cloned().collect()
    }

    /// The plan step of every op that belongs to one, by op digest (BuildKit reports
    /// progress per op digest).
    pub fn steps(&self) -> BTreeMap<String, usize> {
        self.steps.clone()
    }

    /// The Definition with `result` as its terminal op (none: an empty filesystem), the
    /// Dockerfile as its one source file, and `terminal_description` on the terminal op.
    pub fn finish(
        mut self,
        result: Option<&Output>,
        dockerfile: (&str, &str),
        terminal_description: BTreeMap<String, String>,
    ) -> pb::Definition {
        let terminal = pb::Op { inputs: result.map(Output::input).into_iter().collect(), ..Default::default() };
        let bytes = terminal.encode_to_vec();
        let digest = op_digest(&bytes);
        self.ops.push((digest.clone(), bytes));
        self.metadata.entry(digest).or_default().description.extend(terminal_description);
        let (filename, text) = dockerfile;
        let info = pb::SourceInfo {
            filename: filename.to_string(),
            data: text.as_bytes().to_vec(),
            definition: None,
            language: "Dockerfile".to_string(),
        };
        pb::Definition {
            def: self.ops.into_iter().map(|(_, bytes)| bytes).collect(),
            metadata: self.metadata,
            source: Some(pb::Source { locations: self.locations, infos: vec![info] }),
        }
    }
}
