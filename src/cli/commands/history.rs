//! `rbuild history IMAGE`: IMAGE CREATED CREATED BY SIZE COMMENT, newest first, with
//! `<missing>` for steps that have no image in this store.

use crate::cli::table::TableWriter;
use crate::cli::template::render_rows;
use crate::cli::Printer;
use crate::events::units::{human_size, since};
use crate::store::ImageStore;
use anyhow::anyhow;

#[derive(clap::Args, Debug)]
pub struct HistoryArgs {
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub human: bool,
    /// Format output using a Go template
    #[arg(long)]
    pub format: Option<String>,
    pub image: String,
}

/// Docker's `Ellipsis`: at most `max` characters, the last one `…` when cut.
fn ellipsis(s: &str, max: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= max {
        s.to_owned()
    } else {
        let mut out: String = chars[..max - 1].iter().collect();
        out.push('…');
        out
    }
}

struct Entry {
    id: String,
    created: Option<String>,
    created_by: String,
    size: u64,
    comment: String,
}

pub fn run(args: HistoryArgs, p: &mut Printer) -> anyhow::Result<()> {
    let store = ImageStore::open_default()?;
    let images = store.images()?;
    let image = store.resolve_in(&images, &args.image)?;
    let show_id = |id: &crate::layer::digest::Sha256Digest| {
        if args.no_trunc {
            id.to_string()
        } else {
            id.short().to_owned()
        }
    };

    // Which history row ends at which ancestor image (built images record their parent).
    let mut ancestors = vec![(image.config.history.len(), show_id(&image.id))];
    let mut cur = image.parent.clone();
    while let Some(pid) = cur {
        match images.iter().find(|i| i.id == pid) {
            Some(parent) => {
                ancestors.push((parent.config.history.len(), show_id(&parent.id)));
                cur = parent.parent.clone();
            }
            None => break,
        }
    }
    let mut entries = Vec::new();
    let mut layers = image.layers.iter();
    match image.config.history.as_slice() {
        hist if !hist.is_empty() => {
            for (n, h) in hist.iter().enumerate() {
                let size = if h.empty_layer { 0 } else { layers.next().map(|l| l.shown_size()).unwrap_or(0) };
                let id = ancestors
                    .iter()
                    .find(|(len, _)| *len == n + 1)
                    .map(|(_, id)| id.clone())
                    .unwrap_or_else(|| "<missing>".into());
                entries.push(Entry {
                    id,
                    created: h.created.clone(),
                    created_by: h.created_by.clone().unwrap_or_default(),
                    size,
                    comment: h.comment.clone().unwrap_or_default(),
                });
            }
        }
        _ => {
            let n = image.layers.len();
            for (i, l) in image.layers.iter().enumerate() {
                entries.push(Entry {
                    id: if i + 1 == n { show_id(&image.id) } else { "<missing>".into() },
                    created: image.config.created.clone(),
                    created_by: String::new(),
                    size: l.shown_size(),
                    comment: String::new(),
                });
            }
        }
    }
    entries.reverse();
    if args.quiet {
        for e in &entries {
            p.line(&e.id)?;
        }
        return Ok(());
    }
    let created_by = |e: &Entry| {
        let s = e.created_by.replace('\t', " ");
        if args.no_trunc {
            s
        } else {
            ellipsis(&s, 45)
        }
    };
    let created = |e: &Entry| {
        if args.human {
            since(e.created.as_deref())
        } else {
            e.created.clone().unwrap_or_default()
        }
    };
    let size = |e: &Entry| {
        if args.human {
            human_size(e.size)
        } else {
            e.size.to_string()
        }
    };
    if let Some(format) = &args.format {
        let rows: Vec<_> = entries
            .iter()
            .map(|e| serde_json::json!({"ID": e.id, "CreatedSince": created(e), "CreatedAt": super::images::go_time(e.created.as_deref()),
                "CreatedBy": created_by(e), "Size": size(e), "Comment": e.comment}))
            .collect();
        let header = serde_json::json!({"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"});
        for line in render_rows(format, &header, &rows).map_err(|e| anyhow!(e))? {
            p.line(line)?;
        }
        return Ok(());
    }
    let mut t = TableWriter::new();
    t.row(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]);
    for e in &entries {
        t.row([e.id.clone(), created(e), created_by(e), size(e), e.comment.clone()]);
    }
    for line in t.lines() {
        p.line(line)?;
    }
    Ok(())
}
