//! `rbuild images`: REPOSITORY TAG IMAGE ID CREATED SIZE, with Docker's filters and formats.

use crate::cli::table::TableWriter;
use crate::cli::template::render_rows;
use crate::cli::Printer;
use crate::events::units::{human_size, since};
use crate::store::{ImageStore, StoredImage};
use anyhow::{anyhow, bail};

#[derive(clap::Args, Debug)]
pub struct ImagesArgs {
    /// Only images of this repository (and tag)
    pub reference: Option<String>,
    /// Show all images (by default intermediate images are hidden)
    #[arg(short, long)]
    pub all: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter output: dangling=true|false, reference=PATTERN, label=KEY[=VALUE], before=IMAGE, since=IMAGE
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Format output using a Go template (`table` prefix for columns)
    #[arg(long)]
    pub format: Option<String>,
}

/// A shell-style glob: `*` and `?` (neither matches `/`), everything else literal.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).take_while(|i| *i == 0 || t[i - 1] != '/').any(|i| go(rest, &t[i..])),
            Some(('?', rest)) => !t.is_empty() && t[0] != '/' && go(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    go(&pattern.chars().collect::<Vec<_>>(), &text.chars().collect::<Vec<_>>())
}

fn created(i: &StoredImage) -> CreatedAt {
    i.config.created.as_deref().and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
}

/// `2024-01-02 03:04:05 +0000 UTC`, Go's default time format as docker prints CreatedAt.
pub fn go_time(rfc3339: Option<&str>) -> String {
    rfc3339
        .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
        .map(|t| t.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string())
        .unwrap_or_default()
}

struct Row {
    repo: String,
    tag: String,
    digest: String,
    image: StoredImage,
}

/// The `--filter`s and reference of an `images` command, parsed once.
#[derive(Default)]
struct ImageFilter {
    dangling: Option<bool>,
    patterns: Vec<String>,
    labels: Vec<String>,
    before: Option<CreatedAt>,
    after: Option<CreatedAt>,
}

/// When an image was made, as [`created`] reads it.
type CreatedAt = Option<chrono::DateTime<chrono::FixedOffset>>;

impl ImageFilter {
    fn parse(args: &ImagesArgs, store: &ImageStore, images: &[StoredImage]) -> anyhow::Result<Self> {
        let mut filter = ImageFilter::default();
        for f in &args.filter {
            let (k, v) = f.split_once('=').ok_or_else(|| anyhow!("bad format of filter (expected name=value): {f}"))?;
            match k {
                "dangling" => {
                    filter.dangling = Some(match v.to_ascii_lowercase().as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => bail!("invalid filter 'dangling={v}'"),
                    })
                }
                "reference" => filter.patterns.push(v.to_owned()),
                "label" => filter.labels.push(v.to_owned()),
                "before" => filter.before = Some(created(store.resolve_in(images, v)?)),
                "since" => filter.after = Some(created(store.resolve_in(images, v)?)),
                _ => bail!("invalid filter '{k}'"),
            }
        }
        if let Some(r) = &args.reference {
            filter.patterns.push(r.clone());
        }
        Ok(filter)
    }

    /// Whether `img` is listed (before tag patterns): intermediate images only with `-a`.
    fn keeps(&self, img: &StoredImage, has_child: bool, all: bool) -> bool {
        let untagged = img.tags.is_empty();
        if untagged && has_child && !all && self.dangling.is_none() {
            return false;
        }
        if self.dangling.is_some_and(|d| d != (untagged && !has_child)) {
            return false;
        }
        let image_labels = &img.config.config.labels;
        let labelled = self.labels.iter().all(|l| match l.split_once('=') {
            Some((k, v)) => image_labels.get(k).is_some_and(|x| x == v),
            None => image_labels.contains_key(l.as_str()),
        });
        labelled
            && self.before.as_ref().is_none_or(|b| created(img) < *b)
            && self.after.as_ref().is_none_or(|s| created(img) > *s)
    }

    /// The rows of `images`, newest first, one per tag that matches.
    fn rows(&self, images: &[StoredImage], all: bool) -> Vec<Row> {
        let has_child = |i: &StoredImage| images.iter().any(|c| c.parent.as_ref() == Some(&i.id));
        let mut rows = Vec::new();
        let mut sorted: Vec<&StoredImage> = images.iter().collect();
        sorted.sort_by_key(|i| std::cmp::Reverse(created(i)));
        for img in sorted.into_iter().filter(|img| self.keeps(img, has_child(img), all)) {
            let digest = img.manifest_digest.to_string();
            if img.tags.is_empty() {
                if self.patterns.is_empty() {
                    rows.push(Row { repo: "<none>".into(), tag: "<none>".into(), digest, image: img.clone() });
                }
                continue;
            }
            for t in &img.tags {
                let name = t.familiar_name();
                let full = t.familiar();
                if !self.patterns.is_empty()
                    && !self.patterns.iter().any(|pat| glob_match(pat, &name) || glob_match(pat, &full))
                {
                    continue;
                }
                rows.push(Row {
                    repo: name,
                    tag: t.tag().unwrap_or("<none>").to_owned(),
                    digest: digest.clone(),
                    image: img.clone(),
                });
            }
        }
        rows
    }
}

pub fn run(args: ImagesArgs, p: &mut Printer) -> anyhow::Result<()> {
    let store = ImageStore::open_default()?;
    let (images, damaged) = store.catalog()?;
    for d in &damaged {
        p.warn(format!("Error: {d}"));
    }
    let rows = ImageFilter::parse(&args, &store, &images)?.rows(&images, args.all);
    let id_of = |i: &StoredImage| {
        if args.no_trunc {
            i.id.to_string()
        } else {
            i.id.short().to_owned()
        }
    };
    if args.quiet {
        let mut seen = std::collections::HashSet::new();
        for r in &rows {
            if seen.insert(r.image.id.clone()) {
                p.line(id_of(&r.image))?;
            }
        }
        return Ok(());
    }
    if let Some(format) = &args.format {
        let data: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "Repository": r.repo, "Tag": r.tag, "ID": id_of(&r.image), "Digest": r.digest,
                    "CreatedSince": since(r.image.config.created.as_deref()),
                    "CreatedAt": go_time(r.image.config.created.as_deref()),
                    "Size": human_size(r.image.unpacked_size()), "VirtualSize": human_size(r.image.unpacked_size()),
                    "SharedSize": "N/A", "UniqueSize": "N/A", "Containers": "N/A",
                })
            })
            .collect();
        let header = serde_json::json!({"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "Digest": "DIGEST",
            "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE", "VirtualSize": "SIZE",
            "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE", "Containers": "CONTAINERS"});
        for line in render_rows(format, &header, &data).map_err(|e| anyhow!(e))? {
            p.line(line)?;
        }
        return Ok(());
    }
    let mut t = TableWriter::new();
    let mut header = vec!["REPOSITORY", "TAG"];
    if args.digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"]);
    t.row(header);
    for r in &rows {
        let mut cells = vec![r.repo.clone(), r.tag.clone()];
        if args.digests {
            cells.push(r.digest.clone());
        }
        cells.extend([id_of(&r.image), since(r.image.config.created.as_deref()), human_size(r.image.unpacked_size())]);
        t.row(cells);
    }
    for line in t.lines() {
        p.line(line)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("busy*", "busybox"));
        assert!(glob_match("busybox:*", "busybox:latest"));
        assert!(!glob_match("*", "a/b"));
        assert!(glob_match("*/*", "a/b"));
        assert!(glob_match("b?sybox", "busybox"));
        assert!(!glob_match("busybox", "busybox:latest"));
    }
}
