//! Lowering: a parsed [`Dockerfile`] to a [`BuildPlan`]. Owns Docker's scoping rules (ARG
//! before the first FROM is visible only to FROM lines; a stage re-declares what it uses; ENV
//! beats ARG; `--build-arg` beats defaults; automatic platform and proxy args), the choice of
//! which fields are expanded, stage references (`FROM <stage>`, `COPY --from`, `RUN
//! --mount=from=`), `--target` pruning, and the cache key of every step.
//!
//! Lowering is pure: what it needs from outside (a base image's digest and ENV, the digest of
//! COPY sources) comes through the [`ImageResolver`] and [`SourceResolver`] traits.

use std::collections::{BTreeMap, BTreeSet};

use crate::context::ContextError;
use crate::frontend::ast::{Dockerfile, Node};
use crate::frontend::instructions::{read_instruction, FileCopy, Instruction, MountType, RunInstruction, SourceRef};
use crate::frontend::shell::{ShellLex, VarLookup};
use crate::frontend::Diagnostic;
/// Lowering's options name platforms; re-exported for callers of [`LowerOptions`].
pub use crate::image::Platform;
use crate::image::DEFAULT_PATH;
use crate::plan::{
    BuildPlan, CacheKey, CacheKeyInputs, Dependency, GlobalArgStep, SourceInputs, Stage, StageBase, Step,
};
use crate::store::ReferenceError;

/// Build args Docker accepts without an ARG declaration and keeps out of the cache key and
/// the image history.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The platform's automatic args (`TARGETPLATFORM`, `TARGETOS`, ... with `prefix` `TARGET`).
fn automatic_args(platform: &Platform, prefix: &str) -> Vec<(String, String)> {
    vec![
        (format!("{prefix}PLATFORM"), platform.to_string()),
        (format!("{prefix}OS"), platform.os.clone()),
        (format!("{prefix}ARCH"), platform.arch.clone()),
        (format!("{prefix}VARIANT"), platform.variant.clone().unwrap_or_default()),
    ]
}

/// A base image as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The manifest digest: it enters the FROM step's cache key.
    pub digest: String,
    /// The image ID (config digest): what the stage runs on.
    pub id: String,
    /// The image's ENV, visible to expansion in the stage.
    pub env: Vec<(String, String)>,
    /// The image's ONBUILD triggers: they run as the first steps of a stage built FROM it.
    pub on_build: Vec<String>,
}

/// Looks base images up (the engine asks the store; a dry run may have none).
pub trait ImageResolver {
    fn resolve(&self, reference: &str) -> Option<ResolvedImage>;
}

/// Computes the digest of what a COPY/ADD reads from the build context.
pub trait SourceResolver {
    /// Errors are the user's (a source that matches nothing): the message is shown as is, at
    /// the instruction's line.
    fn digest(&self, copy: &FileCopy) -> Result<SourceInputs, ContextError>;
    /// The digest of what `RUN --mount=type=bind,source=…` (from the context) shows: the
    /// source path and everything below it that `.dockerignore` keeps.
    fn bind_digest(&self, source: &str) -> Result<SourceInputs, ContextError>;
}

/// What lowering needs besides the Dockerfile.
pub struct LowerOptions<'a> {
    /// `--build-arg NAME=VALUE`.
    pub build_args: BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// `--platform` (defaults to the native platform).
    pub target_platform: Platform,
    pub build_platform: Platform,
    pub images: Option<&'a dyn ImageResolver>,
    pub sources: Option<&'a dyn SourceResolver>,
}

impl Default for LowerOptions<'_> {
    fn default() -> Self {
        LowerOptions {
            build_args: BTreeMap::new(),
            target: None,
            target_platform: Platform::native(),
            build_platform: Platform::native(),
            images: None,
            sources: None,
        }
    }
}

/// Names and values in scope for expansion: ENV first (it always beats ARG), then ARGs.
struct Scope<'a> {
    env: &'a [(String, String)],
    args: &'a [(String, String)],
}

impl VarLookup for Scope<'_> {
    fn lookup(&self, name: &str) -> Option<&str> {
        fn last<'l>(list: &'l [(String, String)], name: &str) -> Option<&'l str> {
            list.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
        }
        last(self.env, name).or_else(|| last(self.args, name))
    }
}

/// A stage while it is being lowered.
struct StageState {
    env: Vec<(String, String)>,
    /// Declared ARGs that have a value, in declaration order.
    args: Vec<(String, String)>,
    /// Names of every ARG the stage declared (with or without a value).
    declared: BTreeSet<String>,
}

/// Lowers `df` (parsed from `text`) into a plan.
pub fn lower(df: &Dockerfile, text: &str, opts: &LowerOptions) -> Result<BuildPlan, Diagnostic> {
    Lowering::new(df, text, opts).run()
}

/// Parses and lowers in one call, for tests and the library API.
pub fn parse_and_lower(text: &str, file: &str, opts: &LowerOptions) -> Result<BuildPlan, Diagnostic> {
    let df = crate::frontend::parser::parse(text, file)?;
    lower(&df, text, opts)
}

struct Lowering<'a> {
    df: &'a Dockerfile,
    src: SourceRef<'a>,
    opts: &'a LowerOptions<'a>,
    lex: ShellLex,
    /// Automatic platform args (always visible to FROM; to a stage once it declares them).
    automatic: Vec<(String, String)>,
    /// ARGs before the first FROM, with their values.
    global: Vec<(String, String)>,
    global_declared: BTreeMap<String, Option<String>>,
    stages: Vec<Stage>,
    final_env: Vec<Vec<(String, String)>>,
    consumed: BTreeSet<String>,
    warnings: Vec<String>,
}

impl<'a> Lowering<'a> {
    fn new(df: &'a Dockerfile, text: &'a str, opts: &'a LowerOptions<'a>) -> Self {
        let mut automatic = automatic_args(&opts.target_platform, "TARGET");
        automatic.extend(automatic_args(&opts.build_platform, "BUILD"));
        Lowering {
            df,
            src: SourceRef { file: &df.file, text },
            opts,
            lex: ShellLex::new(df.directives.escape),
            automatic,
            global: Vec::new(),
            global_declared: BTreeMap::new(),
            stages: Vec::new(),
            final_env: Vec::new(),
            consumed: BTreeSet::new(),
            warnings: df.warnings.iter().map(|w| w.headline()).collect(),
        }
    }

    fn run(mut self) -> Result<BuildPlan, Diagnostic> {
        let nodes = &self.df.instructions;
        let first_from = nodes.iter().position(|n| n.keyword.eq_ignore_ascii_case("from"));
        let Some(first_from) = first_from else {
            let node = nodes.iter().find(|n| !n.keyword.eq_ignore_ascii_case("arg"));
            return Err(match node.or(nodes.first()) {
                Some(n) => self.src.error_at(n, &n.keyword, "no build stage: a Dockerfile needs a FROM instruction"),
                None => Diagnostic::at(&self.df.file, self.src.text, 1, 1, "file with no instructions"),
            });
        };
        for node in &nodes[..first_from] {
            let instruction = read_instruction(node, &self.src)?;
            match instruction {
                Instruction::Arg { args } => self.declare_global(node, args)?,
                other => {
                    return Err(self.src.error_at(
                        node,
                        &node.keyword,
                        format!("{} before the first FROM: only ARG may come before FROM", other.keyword()),
                    ))
                }
            }
        }
        let mut start = first_from;
        while start < nodes.len() {
            let end = nodes[start + 1..]
                .iter()
                .position(|n| n.keyword.eq_ignore_ascii_case("from"))
                .map_or(nodes.len(), |p| start + 1 + p);
            self.lower_stage(&nodes[start..end])?;
            start = end;
        }
        self.finish()
    }

    fn declare_global(
        &mut self,
        node: &Node,
        args: Vec<crate::frontend::instructions::ArgDecl>,
    ) -> Result<(), Diagnostic> {
        for arg in args {
            let value = match self.opts.build_args.get(&arg.name) {
                Some(v) => Some(v.clone()),
                None => match &arg.default {
                    Some(d) => {
                        let scope_args: Vec<(String, String)> =
                            self.automatic.iter().chain(self.global.iter()).cloned().collect();
                        let scope = Scope { env: &[], args: &scope_args };
                        Some(self.expand_word(node, d, &scope)?.0)
                    }
                    None => None,
                },
            };
            self.consumed.insert(arg.name.clone());
            if let Some(v) = &value {
                self.global.push((arg.name.clone(), v.clone()));
            }
            self.global_declared.insert(arg.name, value);
        }
        Ok(())
    }

    /// Expands one word, returning the value and the names it looked up that were set.
    fn expand_word(&self, node: &Node, word: &str, scope: &Scope) -> Result<(String, BTreeSet<String>), Diagnostic> {
        match self.lex.process_word_with_matches(word, scope) {
            Ok(e) => Ok((e.value, e.matched)),
            Err(e) => {
                let mut d = self.src.error_at(node, word, e.message.clone());
                // Point inside the word when it is on the first line: at the `${NAME` an
                // unset-variable error names, else where the shell noticed the problem.
                if d.line_text.as_deref().is_some_and(|l| l.contains(word)) {
                    let named = e.message.split_once(':').and_then(|(name, _)| word.find(&format!("${{{name}")));
                    d.column += match named {
                        Some(byte) => word[..byte].chars().count(),
                        None => e.offset,
                    };
                }
                Err(d)
            }
        }
    }

    fn global_scope_args(&self) -> Vec<(String, String)> {
        self.automatic.iter().chain(self.global.iter()).cloned().collect()
    }

    fn find_stage(&self, name: &str) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        self.stages.iter().position(|s| s.name.as_deref() == Some(lower.as_str()))
    }

    /// Resolves a `--from` value: an earlier stage by name or index, or an image.
    fn resolve_from(&self, node: &Node, value: &str) -> Result<Dependency, Diagnostic> {
        if let Some(index) = self.find_stage(value) {
            return Ok(Dependency::Stage { index });
        }
        let current = self.stages.len();
        if let Ok(index) = value.parse::<usize>() {
            if index < current {
                return Ok(Dependency::Stage { index });
            }
            return Err(self.src.error_at(
                node,
                value,
                format!("invalid stage index {index}: only the {current} stage(s) before this one can be referenced"),
            ));
        }
        let later = self.df.instructions.iter().any(|n| {
            n.keyword.eq_ignore_ascii_case("from")
                && n.args.len() == 3
                && n.args.get(2).is_some_and(|s| s.eq_ignore_ascii_case(value))
        });
        if later {
            return Err(self.src.error_at(
                node,
                value,
                format!("stage {value:?} is defined after this instruction: a stage can only use earlier stages"),
            ));
        }
        if value.is_empty() {
            return Err(self.src.error_at(
                node,
                &node.keyword,
                "from= is empty: name an earlier stage, a stage index or an image (did a variable expand to nothing?)",
            ));
        }
        check_reference(value).map_err(|e| self.src.error_at(node, value, e.to_string()))?;
        Ok(Dependency::Image { reference: value.to_string() })
    }

    fn lower_stage(&mut self, nodes: &[Node]) -> Result<(), Diagnostic> {
        let index = self.stages.len();
        let Some((from_node, rest)) = nodes.split_first() else {
            return Ok(());
        };
        let Instruction::From { image, stage_name, platform } = read_instruction(from_node, &self.src)? else {
            return Err(self.src.error_at(from_node, &from_node.keyword, "expected FROM"));
        };
        let global_args = self.global_scope_args();
        let global_scope = Scope { env: &[], args: &global_args };
        let written = image;
        let (image, used) = self.expand_word(from_node, &written, &global_scope)?;
        self.consumed.extend(used);
        // Say which variables were unset: `FROM platform-${X}` with no X is the user's doing,
        // not a registry's.
        let unset: Vec<String> = self
            .lex
            .process_word_with_matches(&written, &global_scope)
            .map(|e| e.unmatched.into_iter().collect())
            .unwrap_or_default();
        let unset_note = match unset.as_slice() {
            [] => String::new(),
            names => format!(
                " ({} not set: declare it with ARG before the first FROM, or pass --build-arg)",
                names.iter().map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
            ),
        };
        if image.trim().is_empty() {
            return Err(self.src.error_at(
                from_node,
                &from_node.args.first().cloned().unwrap_or_default(),
                "base name should not be blank: the FROM image expanded to an empty string",
            ));
        }
        let platform = match platform {
            Some(p) => Some(self.expand_word(from_node, &p, &global_scope)?.0),
            None => None,
        };
        let refers_to_itself = stage_name.as_deref().is_some_and(|name| name.eq_ignore_ascii_case(&image));
        if let (true, Some(name)) = (refers_to_itself && self.find_stage(&image).is_none(), &stage_name) {
            return Err(self.src.error_at(
                from_node,
                &image,
                format!("stage {name} refers to itself: FROM {image} AS {name} names no earlier stage, and a stage cannot build on itself"),
            ));
        }
        if let Some(name) = &stage_name {
            if self.find_stage(name).is_some() {
                return Err(self.src.error_at(from_node, name, format!("duplicate stage name {name:?}")));
            }
            if name == "scratch" || name == "context" {
                return Err(self.src.error_at(
                    from_node,
                    name,
                    format!("{name:?} is a reserved name and cannot be a stage name"),
                ));
            }
        }
        let mut dependencies = Vec::new();
        let mut on_build: Vec<String> = Vec::new();
        let (base, parent, env) = if image.eq_ignore_ascii_case("scratch") {
            (StageBase::Scratch, "scratch".to_string(), Vec::new())
        } else if let Some(base_index) = self.find_stage(&image) {
            dependencies.push(Dependency::Stage { index: base_index });
            let key = self.stages[base_index].final_key().map(|k| k.to_string()).unwrap_or_default();
            let env = self.final_env.get(base_index).cloned().unwrap_or_default();
            (StageBase::Stage { index: base_index }, format!("stage:{key}"), env)
        } else {
            check_reference(&image).map_err(|e| self.src.error_at(from_node, &written, format!("{e}{unset_note}")))?;
            if !unset_note.is_empty() {
                self.warnings
                    .push(format!("{}:{}: FROM {written} is {image}{unset_note}", self.df.file, from_node.start_line));
            }
            let resolved = self.opts.images.and_then(|r| r.resolve(&image));
            let parent = match &resolved {
                Some(r) => format!("image:{}", r.digest),
                None => format!("image:{image}"),
            };
            let id = resolved.as_ref().map(|r| r.id.clone());
            let (env, triggers) = resolved.map(|r| (r.env, r.on_build)).unwrap_or_default();
            on_build = triggers;
            (StageBase::Image { reference: image.clone(), id }, parent, env)
        };
        let mut env = env;
        // Like BuildKit, a stage whose base sets no PATH gets Docker's default one, and
        // expansion (`ENV PATH=/opt/bin:$PATH`) sees it.
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.insert(0, ("PATH".to_string(), DEFAULT_PATH.to_string()));
        }
        let from_instruction =
            Instruction::From { image: image.clone(), stage_name: stage_name.clone(), platform: platform.clone() };
        let mut state = StageState { env, args: Vec::new(), declared: BTreeSet::new() };
        let mut steps = Vec::new();
        let from_inputs = CacheKeyInputs {
            parent,
            instruction: from_instruction.canonical(),
            build_args: BTreeMap::new(),
            sources: None,
        };
        steps.push(self.step(from_node, from_instruction, BTreeMap::new(), from_inputs));
        // The base image's ONBUILD triggers run first, as if written right after FROM.
        for trigger in &on_build {
            let parsed = crate::frontend::parser::parse(trigger, &self.df.file).map_err(|e| {
                self.src.error_at(from_node, &image, format!("ONBUILD trigger {trigger:?} of {image}: {}", e.message))
            })?;
            for mut node in parsed.instructions {
                node.start_line = from_node.start_line;
                node.end_line = from_node.end_line;
                let parent = steps.last().map(|s: &Step| s.cache_key.clone());
                steps.push(self.lower_step(&node, &mut state, &mut dependencies, parent)?);
            }
        }
        for node in rest {
            let step =
                self.lower_step(node, &mut state, &mut dependencies, steps.last().map(|s: &Step| s.cache_key.clone()))?;
            steps.push(step);
        }
        dependencies.sort();
        dependencies.dedup();
        self.final_env.push(state.env);
        self.stages.push(Stage { index, name: stage_name, base, platform, dependencies, steps });
        Ok(())
    }

    fn step(
        &self,
        node: &Node,
        instruction: Instruction,
        build_args: BTreeMap<String, String>,
        inputs: CacheKeyInputs,
    ) -> Step {
        Step {
            number: 0,
            line: node.start_line,
            end_line: node.end_line,
            original: node.original.trim().to_string(),
            canonical: inputs.instruction.clone(),
            instruction,
            build_args,
            cache_key: inputs.key(),
            key_inputs: inputs,
        }
    }

    fn lower_step(
        &mut self,
        node: &Node,
        state: &mut StageState,
        dependencies: &mut Vec<Dependency>,
        parent: Option<CacheKey>,
    ) -> Result<Step, Diagnostic> {
        let mut instruction = read_instruction(node, &self.src)?;
        let mut used = BTreeSet::new();
        {
            let scope = Scope { env: &state.env, args: &state.args };
            let mut expand = |word: &str| -> Result<String, Diagnostic> {
                let (value, matched) = self.expand_word(node, word, &scope)?;
                used.extend(matched);
                Ok(value)
            };
            instruction.expand(&mut expand)?;
        }
        // COPY/ADD heredocs with an unquoted delimiter expand variables in their body, keeping
        // quotes and backslashes as written.
        if let Instruction::Copy(fc) | Instruction::Add(fc) = &mut instruction {
            let scope = Scope { env: &state.env, args: &state.args };
            let raw = self.lex.raw_quotes(true).raw_escapes(true);
            for doc in fc.heredocs.iter_mut().filter(|d| d.expand) {
                doc.content = raw.process_word(&doc.content, &scope).map_err(|e| {
                    self.src.error_at(node, &format!("<<{}", doc.name), format!("heredoc {}: {}", doc.name, e.message))
                })?;
            }
        }
        match &mut instruction {
            Instruction::Arg { args } => {
                for arg in args.iter() {
                    self.consumed.insert(arg.name.clone());
                    state.declared.insert(arg.name.clone());
                    let value = self
                        .opts
                        .build_args
                        .get(&arg.name)
                        .cloned()
                        .or_else(|| arg.default.clone())
                        .or_else(|| self.global_declared.get(&arg.name).cloned().flatten())
                        .or_else(|| self.automatic.iter().find(|(k, _)| *k == arg.name).map(|(_, v)| v.clone()));
                    if let Some(v) = value {
                        state.args.push((arg.name.clone(), v));
                    }
                }
            }
            Instruction::Env { pairs } => {
                for (k, v) in pairs.iter() {
                    if k.is_empty() {
                        return Err(self.src.error_at(node, &node.keyword, "ENV names can not be blank"));
                    }
                    state.env.retain(|(name, _)| name != k);
                    state.env.push((k.clone(), v.clone()));
                }
            }
            Instruction::Expose { ports } => {
                // A variable may expand to several ports.
                *ports = ports.iter().flat_map(|p| p.split_whitespace().map(str::to_string)).collect();
                for p in ports.iter() {
                    validate_port(p).map_err(|e| self.src.error_at(node, p, e.to_string()))?;
                }
            }
            Instruction::Copy(fc) | Instruction::Add(fc) => {
                if let Some(from) = &fc.from {
                    let dep = self.resolve_from(node, from)?;
                    dependencies.push(dep);
                }
            }
            Instruction::Run(run) => {
                for m in &run.mounts {
                    if let Some(from) = &m.from {
                        dependencies.push(self.resolve_from(node, from)?);
                    }
                }
            }
            _ => {}
        }
        // What the step can see of the build args: RUN gets every declared arg with a value in
        // its environment; other steps see the ones their expansion used. ENV shadows an ARG.
        let shadowed = |name: &str| state.env.iter().any(|(k, _)| k == name);
        let visible: BTreeMap<String, String> = state
            .args
            .iter()
            .filter(|(k, _)| !PROXY_ARGS.contains(&k.as_str()) && !shadowed(k))
            .filter(|(k, _)| matches!(instruction, Instruction::Run(_)) || used.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let sources = match &instruction {
            Instruction::Copy(fc) | Instruction::Add(fc) => self.sources_for(node, fc)?,
            Instruction::Run(run) => self.bind_sources_for(node, run)?,
            _ => None,
        };
        let inputs = CacheKeyInputs {
            parent: parent.map(|k| k.to_string()).unwrap_or_default(),
            instruction: instruction.canonical(),
            build_args: visible.clone(),
            sources,
        };
        Ok(self.step(node, instruction, visible, inputs))
    }

    /// The source digest of a COPY/ADD: from another stage, that stage's final key (same key,
    /// same files); from an image, its reference; from the context, the resolver's digest.
    fn sources_for(&self, node: &Node, fc: &FileCopy) -> Result<Option<SourceInputs>, Diagnostic> {
        let context_sources: Vec<&String> = fc.sources.iter().filter(|s| fc.heredoc_for(s).is_none()).collect();
        if context_sources.is_empty() {
            return Ok(None);
        }
        if let Some(from) = &fc.from {
            let digest = self.digest_of_from(node, from)?;
            return Ok(Some(SourceInputs { digest, files: BTreeMap::new() }));
        }
        let remote = context_sources.iter().all(|s| is_url(s));
        match self.opts.sources {
            Some(resolver) if !remote => resolver.digest(fc).map(Some).map_err(|e| {
                self.src.error_at(node, context_sources.first().map(|s| s.as_str()).unwrap_or(""), e.to_string())
            }),
            // No context (parse-only lowering) or only URLs (the engine fetches and checksums
            // them): the instruction text is all that is known.
            _ => Ok(None),
        }
    }

    /// What a `--from` names, for a key: an earlier stage's final key (same key, same files)
    /// or an image's manifest digest (its reference when it cannot be resolved).
    fn digest_of_from(&self, node: &Node, from: &str) -> Result<String, Diagnostic> {
        Ok(match self.resolve_from(node, from)? {
            Dependency::Stage { index } => {
                let key = self.stages.get(index).and_then(|s| s.final_key()).map(|k| k.to_string());
                format!("stage:{}", key.unwrap_or_default())
            }
            Dependency::Image { reference } => match self.opts.images.and_then(|r| r.resolve(&reference)) {
                Some(r) => format!("image:{}", r.digest),
                None => format!("image:{reference}"),
            },
        })
    }

    /// What a RUN's bind mounts read, so that a change misses: per bind, the context
    /// source's digest (as for COPY) or the `from` stage's key or image's digest. Cache,
    /// tmpfs and secret mounts do not enter the key (a secret's content never does).
    fn bind_sources_for(&self, node: &Node, run: &RunInstruction) -> Result<Option<SourceInputs>, Diagnostic> {
        let mut parts = Vec::new();
        let mut files = BTreeMap::new();
        for m in run.mounts.iter().filter(|m| m.kind == MountType::Bind) {
            let source = m.source.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| "/".to_string());
            let digest = match (&m.from, self.opts.sources) {
                (Some(from), _) => self.digest_of_from(node, from)?,
                (None, Some(resolver)) => {
                    let inputs =
                        resolver.bind_digest(&source).map_err(|e| self.src.error_at(node, &source, e.to_string()))?;
                    files.extend(inputs.files);
                    inputs.digest
                }
                // Parse-only lowering: nothing to digest.
                (None, None) => continue,
            };
            parts.push(format!("{}\n{digest}\n", m.canonical()));
        }
        if parts.is_empty() {
            return Ok(None);
        }
        let digest = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(parts.concat())));
        Ok(Some(SourceInputs { digest, files }))
    }

    fn finish(mut self) -> Result<BuildPlan, Diagnostic> {
        let target = match &self.opts.target {
            None => self.stages.len().saturating_sub(1),
            Some(t) => self.find_stage(t).ok_or_else(|| {
                let names: Vec<String> = self.stages.iter().filter_map(|s| s.name.clone()).collect();
                Diagnostic::at(
                    &self.df.file,
                    self.src.text,
                    self.df.start_line,
                    1,
                    format!("target stage {t:?} could not be found (stages: {})", names.join(", ")),
                )
            })?,
        };
        let mut needed = vec![false; self.stages.len()];
        let mut pending = vec![target];
        while let Some(i) = pending.pop() {
            if needed.get(i).copied().unwrap_or(true) {
                continue;
            }
            needed[i] = true;
            for dep in &self.stages[i].dependencies {
                if let Dependency::Stage { index } = dep {
                    pending.push(*index);
                }
            }
        }
        let first_from = self.df.instructions.iter().position(|n| n.keyword.eq_ignore_ascii_case("from"));
        let global_arg_steps: Vec<GlobalArgStep> = self.df.instructions[..first_from.unwrap_or(0)]
            .iter()
            .enumerate()
            .map(|(i, node)| GlobalArgStep {
                number: i + 1,
                line: node.start_line,
                original: node.original.trim().to_string(),
            })
            .collect();
        let mut number = global_arg_steps.len();
        for stage in self.stages.iter_mut().filter(|s| needed[s.index]) {
            for step in &mut stage.steps {
                number += 1;
                step.number = number;
            }
        }
        // The proxy variables and SOURCE_DATE_EPOCH are the builder's as well as ARGs.
        let mut unconsumed: Vec<String> = self
            .opts
            .build_args
            .keys()
            .filter(|k| !self.consumed.contains(*k) && !PROXY_ARGS.contains(&k.as_str()) && *k != "SOURCE_DATE_EPOCH")
            .cloned()
            .collect();
        unconsumed.sort();
        if !unconsumed.is_empty() {
            self.warnings
                .push(format!("[Warning] One or more build-args [{}] were not consumed", unconsumed.join(" ")));
        }
        Ok(BuildPlan {
            file: self.df.file.clone(),
            stages: self.stages,
            needed,
            target,
            global_args: self.global_declared,
            global_arg_steps,
            unconsumed_build_args: unconsumed,
            warnings: self.warnings,
        })
    }
}

/// Refuses an image name Docker would refuse (`UPPER:tag`, `a:b:c`, `x@sha256:1234`) before
/// anything asks a registry for it. The grammar is the store's [`ImageReference`] (one owner).
///
/// [`ImageReference`]: crate::store::reference::ImageReference
fn check_reference(reference: &str) -> Result<(), ReferenceError> {
    crate::store::reference::ImageReference::parse(reference).map(drop)
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://") || s.starts_with("git@")
}

/// An EXPOSE port Docker would refuse (shown at the EXPOSE's line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum PortError {
    #[error("invalid protocol {protocol:?} in port {port:?}: expected tcp, udp or sctp")]
    Protocol { protocol: String, port: String },
    #[error("invalid port {0:?}: expected a number from 0 to 65535")]
    Number(String),
    #[error("invalid port range {0:?}: the start is after the end")]
    Range(String),
}

/// `80`, `80/tcp`, `53/udp`, `8000-8010/sctp`.
fn validate_port(p: &str) -> Result<(), PortError> {
    let (range, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    if !matches!(proto.to_ascii_lowercase().as_str(), "tcp" | "udp" | "sctp") {
        return Err(PortError::Protocol { protocol: proto.to_string(), port: p.to_string() });
    }
    let (lo, hi) = range.split_once('-').unwrap_or((range, range));
    let parse = |s: &str| s.parse::<u16>().map_err(|_| PortError::Number(p.to_string()));
    if parse(lo)? > parse(hi)? {
        return Err(PortError::Range(p.to_string()));
    }
    Ok(())
}
