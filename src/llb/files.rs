//! COPY, ADD and WORKDIR as LLB file ops: one copy action per source (from the context, a
//! stage, an image, a URL or a heredoc) chained onto the destination filesystem, with
//! `--chown`, `--chmod` and `--exclude`; `COPY --link` copies onto scratch and merges; WORKDIR
//! makes its directory (owned by the USER, as BuildKit does).

use std::collections::BTreeMap;

use super::graph::{OpOrigin, Output};
use super::{pb, Fs, LlbError, Lowering};
use crate::image::{resolve_workdir, ImageConfig};
use crate::plan::instruction::{FileCopy, Instruction};
use crate::plan::{Stage, Step};

/// BuildKit's "no input" (scratch), "no output" and "keep the mode / time" values.
const EMPTY: i64 = -1;
const UNSET: i32 = -1;

/// Where one source's files come from.
struct Source {
    fs: Fs,
    /// The path inside `fs`.
    path: String,
    /// ADD may unpack it (a local archive, not a download).
    unpack: bool,
}

impl Lowering<'_> {
    /// Lowers COPY/ADD onto `fs` with the config `before` it.
    pub(crate) fn copy(
        &mut self,
        stage: &Stage,
        step: &Step,
        fc: &FileCopy,
        before: &ImageConfig,
        fs: Fs,
        origin: &OpOrigin,
    ) -> Result<Output, LlbError> {
        let is_add = matches!(step.instruction, Instruction::Add(_));
        let file = self.file();
        let unsupported = |reason: &str| LlbError::unsupported(&file, step, reason);
        if fc.parents {
            return Err(unsupported("--parents has no LLB lowering in BuildKit's stable file op"));
        }
        let mode = match &fc.chmod {
            Some(text) => u32::from_str_radix(text, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .ok_or_else(|| unsupported(&format!("--chmod={text} is not an octal mode")))?
                as i32,
            None => UNSET,
        };
        let mut sources = Vec::new();
        for src in &fc.sources {
            sources.push(self.copy_source(step, fc, src, is_add, stage, origin).map_err(|r| unsupported(&r))?);
        }
        let mut dest = resolve_workdir(&before.config.working_dir, &fc.dest);
        if fc.dest.ends_with('/') || fc.dest == "." || fc.dest.ends_with("/.") || fc.sources.len() > 1 {
            dest = format!("{}/", dest.trim_end_matches('/'));
        }
        let mut caps = vec!["file.base"];
        if !fc.exclude.is_empty() {
            caps.push("file.copy.includeexcludepatterns");
        }
        // --link: the copy lands on an empty filesystem, merged onto the base afterwards.
        let target = if fc.link { None } else { fs.clone() };
        let mut inputs: Vec<Output> = target.iter().cloned().collect();
        let dest_input = if target.is_some() { 0 } else { EMPTY };
        let mut actions = Vec::new();
        let count = sources.len();
        for (k, source) in sources.into_iter().enumerate() {
            let secondary = match source.fs {
                None => EMPTY,
                Some(out) => match inputs.iter().position(|o| *o == out) {
                    Some(i) => i as i64,
                    None => {
                        inputs.push(out);
                        (inputs.len() - 1) as i64
                    }
                },
            };
            let copy = pb::FileActionCopy {
                src: source.path,
                dest: dest.clone(),
                owner: fc.chown.as_deref().map(|c| chown_opt(c, dest_input)),
                mode,
                follow_symlink: true,
                dir_copy_contents: true,
                attempt_unpack_docker_compatibility: is_add && source.unpack && fc.unpack != Some(false),
                create_dest_path: true,
                allow_wildcard: true,
                allow_empty_wildcard: true,
                timestamp: -1,
                exclude_patterns: fc.exclude.clone(),
                ..Default::default()
            };
            actions.push((secondary, copy, k + 1 == count));
        }
        let first_chained = inputs.len() as i64;
        let actions = actions
            .into_iter()
            .enumerate()
            .map(|(k, (secondary, copy, last))| pb::FileAction {
                input: if k == 0 { dest_input } else { first_chained + k as i64 - 1 },
                secondary_input: secondary,
                output: if last { 0 } else { EMPTY },
                action: Some(pb::file_action::Action::Copy(copy)),
            })
            .collect();
        let op = self.file_op(inputs, actions);
        let copied = self.graph.add(op, &OpOrigin { caps, ..origin.clone() });
        match (fc.link, fs) {
            (true, Some(base)) => Ok(self.merge(vec![base, copied], origin)),
            _ => Ok(copied),
        }
    }

    /// Where one COPY/ADD source is read from; the error is the reason.
    fn copy_source(
        &mut self,
        step: &Step,
        fc: &FileCopy,
        src: &str,
        is_add: bool,
        stage: &Stage,
        origin: &OpOrigin,
    ) -> Result<Source, String> {
        if let Some(doc) = fc.heredoc_for(src) {
            let data =
                if doc.chomp { crate::frontend::parser::chomp_heredoc(&doc.content) } else { doc.content.clone() };
            let fs = self.heredoc_file(&doc.name, data.into_bytes(), origin);
            return Ok(Source { fs: Some(fs), path: format!("/{}", doc.name), unpack: false });
        }
        let is_url = src.starts_with("http://") || src.starts_with("https://");
        if is_add && is_url && fc.from.is_none() {
            if src.ends_with(".git") || src.contains(".git#") {
                return Err("ADD from a git repository has no lowering yet".to_string());
            }
            let name = src.split(['?', '#']).next().unwrap_or(src).rsplit('/').next().unwrap_or("").to_string();
            let name = if name.is_empty() { "__unnamed__".to_string() } else { name };
            let mut attrs = BTreeMap::new();
            attrs.insert("http.filename".to_string(), name.clone());
            let mut caps = vec!["source.http"];
            if let Some(sum) = &fc.checksum {
                attrs.insert("http.checksum".to_string(), sum.clone());
                caps.push("source.http.checksum");
            }
            let op = pb::Op {
                op: Some(pb::op::Op::Source(pb::SourceOp { identifier: src.to_string(), attrs })),
                constraints: Some(pb::WorkerConstraints::default()),
                ..Default::default()
            };
            let fs = self.graph.add(op, &OpOrigin { caps, ..origin.clone() });
            return Ok(Source { fs: Some(fs), path: format!("/{name}"), unpack: false });
        }
        if is_url {
            return Err(format!("{} cannot copy from a URL", step.instruction.keyword()));
        }
        let fs = match &fc.from {
            Some(from) => self.source_named(stage, from, origin),
            None => Some(self.context_source()),
        };
        Ok(Source { fs, path: resolve_workdir("/", src), unpack: true })
    }

    /// A scratch filesystem holding one heredoc as a file.
    fn heredoc_file(&mut self, name: &str, data: Vec<u8>, origin: &OpOrigin) -> Output {
        let mkfile = pb::FileActionMkFile { path: format!("/{name}"), mode: 0o644, data, owner: None, timestamp: -1 };
        let action = pb::FileAction {
            input: EMPTY,
            secondary_input: EMPTY,
            output: 0,
            action: Some(pb::file_action::Action::Mkfile(mkfile)),
        };
        let op = self.file_op(Vec::new(), vec![action]);
        self.graph.add(op, &OpOrigin { caps: vec!["file.base"], ..origin.clone() })
    }

    /// WORKDIR: makes the directory (the config after the step names it).
    pub(crate) fn workdir(&mut self, after: &ImageConfig, before: &ImageConfig, fs: Fs, origin: &OpOrigin) -> Output {
        let input = if fs.is_some() { 0 } else { EMPTY };
        let user = &before.config.user;
        let mkdir = pb::FileActionMkDir {
            path: after.config.working_dir.clone(),
            mode: 0o755,
            make_parents: true,
            owner: (!user.is_empty()).then(|| chown_opt(user, input)),
            timestamp: -1,
        };
        let action = pb::FileAction {
            input,
            secondary_input: EMPTY,
            output: 0,
            action: Some(pb::file_action::Action::Mkdir(mkdir)),
        };
        let op = self.file_op(fs.into_iter().collect(), vec![action]);
        self.graph.add(op, &OpOrigin { caps: vec!["file.base"], ..origin.clone() })
    }

    /// A merge op: `layers` stacked in order (COPY --link).
    fn merge(&mut self, layers: Vec<Output>, origin: &OpOrigin) -> Output {
        let op = pb::Op {
            inputs: layers.iter().map(Output::input).collect(),
            op: Some(pb::op::Op::Merge(pb::MergeOp {
                inputs: (0..layers.len() as i64).map(|input| pb::MergeInput { input }).collect(),
            })),
            platform: Some(self.platform.clone()),
            constraints: Some(pb::WorkerConstraints::default()),
        };
        self.graph.add(op, &OpOrigin { caps: vec!["mergeop"], ..origin.clone() })
    }

    fn file_op(&self, inputs: Vec<Output>, actions: Vec<pb::FileAction>) -> pb::Op {
        pb::Op {
            inputs: inputs.iter().map(Output::input).collect(),
            op: Some(pb::op::Op::File(pb::FileOp { actions })),
            platform: Some(self.platform.clone()),
            constraints: Some(pb::WorkerConstraints::default()),
        }
    }
}

/// `--chown=user:group` (names are looked up in the destination's `/etc/passwd` and
/// `/etc/group`, which is input `input`; numbers are taken as IDs).
fn chown_opt(text: &str, input: i64) -> pb::ChownOpt {
    let one = |part: &str| pb::UserOpt {
        user: Some(match part.parse::<u32>() {
            Ok(id) => pb::user_opt::User::ById(id),
            Err(_) => pb::user_opt::User::ByName(pb::NamedUserOpt { name: part.to_string(), input }),
        }),
    };
    let (user, group) = match text.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (text, None),
    };
    pb::ChownOpt { user: Some(one(user)), group: group.map(one) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chown_takes_numbers_as_ids_and_names_from_the_destination() {
        let opt = chown_opt("1000:staff", 0);
        assert_eq!(opt.user.and_then(|u| u.user), Some(pb::user_opt::User::ById(1000)));
        let group = opt.group.and_then(|g| g.user);
        assert_eq!(group, Some(pb::user_opt::User::ByName(pb::NamedUserOpt { name: "staff".into(), input: 0 })));
        assert!(chown_opt("app", EMPTY).group.is_none());
    }
}
