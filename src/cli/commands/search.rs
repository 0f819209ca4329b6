//! `rbuild search [--limit N] [--format F] [--registry R] [REGISTRY/]TERM`: repositories of a
//! registry's catalog whose names contain TERM.

use crate::cli::table::TableWriter;
use crate::cli::template::render_rows;
use crate::cli::Printer;
use anyhow::{anyhow, bail};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
#[command(
    about = "Search a registry's repositories (its /v2/_catalog; Docker Hub's search API is not reachable from rbuild)",
    after_help = "The registry is the HOST[:PORT]/ prefix of TERM (127.0.0.1:5000/busy), else --registry \
or $RBUILD_REGISTRY. Docker Hub's search API (index.docker.io/v1/search) is a separate service that rbuild \
does not reach; registries list their repositories through the distribution API's catalog, which needs \
catalog access (on an authenticating registry, `rbuild login` first). --format fields, as docker's: \
.Name .Description .StarCount .IsOfficial .IsAutomated (a catalog has names only)."
)]
pub struct SearchArgs {
    /// What the repository names must contain; HOST[:PORT]/TERM names the registry too
    pub term: String,
    /// Max number of results
    #[arg(long, default_value_t = 25)]
    pub limit: usize,
    /// Pretty-print results using a Go template
    #[arg(long)]
    pub format: Option<String>,
    /// The registry to search (HOST[:PORT]) when TERM has no HOST[:PORT]/ prefix
    #[arg(long, env = "RBUILD_REGISTRY")]
    pub registry: Option<String>,
    /// Require HTTPS and verify certificates (false: plain HTTP; default: plain HTTP only to
    /// localhost, 127.0.0.0/8 and RBUILD_INSECURE_REGISTRIES)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub tls_verify: Option<bool>,
    /// Directory of <host:port>/*.crt CA files (default: $RBUILD_CERTS_DIR, else the system's)
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
}

/// (registry, term) of a search: a first component with `.` or `:`, or `localhost`, is a host.
fn registry_and_term(term: &str, registry: Option<&str>) -> anyhow::Result<(String, String)> {
    if let Some((first, rest)) = term.split_once('/') {
        if first.contains(['.', ':']) || first == "localhost" {
            return Ok((first.to_owned(), rest.to_owned()));
        }
    }
    match registry.filter(|r| !r.is_empty()) {
        Some(r) => Ok((crate::registry::login::server_registry(Some(r))?, term.to_owned())),
        None => bail!(
            "no registry to search for {term:?}: Docker Hub's search API is not reachable from rbuild; \
             give HOST[:PORT]/{term} or --registry HOST[:PORT]"
        ),
    }
}

pub fn run(args: SearchArgs, p: &mut Printer) -> anyhow::Result<()> {
    if args.limit == 0 {
        bail!("invalid --limit 0: give a number of results of 1 or more");
    }
    let (registry, term) = registry_and_term(&args.term, args.registry.as_deref())?;
    let opts = super::login::registry_options(args.tls_verify, args.cert_dir);
    let names = crate::registry::catalog::search(&registry, &term, args.limit, &opts)?;
    if let Some(format) = &args.format {
        let rows: Vec<serde_json::Value> = names
            .iter()
            .map(|n| {
                serde_json::json!({"Name": n, "Index": registry, "Description": "", "StarCount": 0,
                    "IsOfficial": false, "IsAutomated": false})
            })
            .collect();
        let header = serde_json::json!({"Name": "NAME", "Index": "INDEX", "Description": "DESCRIPTION",
            "StarCount": "STARS", "IsOfficial": "OFFICIAL", "IsAutomated": "AUTOMATED"});
        for line in render_rows(format, &header, &rows).map_err(|e| anyhow!(e))? {
            p.line(line)?;
        }
        return Ok(());
    }
    let mut table = TableWriter::new();
    table.row(["NAME"]);
    for n in &names {
        table.row([n.as_str()]);
    }
    for line in table.lines() {
        p.line(line)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_comes_from_the_term_or_the_flag() {
        let split = |t: &str, r: Option<&str>| registry_and_term(t, r).map_err(|e| e.to_string());
        assert_eq!(split("127.0.0.1:5000/busy", None).unwrap(), ("127.0.0.1:5000".into(), "busy".into()));
        assert_eq!(split("localhost/app", None).unwrap(), ("localhost".into(), "app".into()));
        assert_eq!(split("library/busy", Some("r.example")).unwrap(), ("r.example".into(), "library/busy".into()));
        let err = split("busybox", None).unwrap_err();
        assert!(err.contains("Docker Hub's search API is not reachable"), "{err}");
    }
}
