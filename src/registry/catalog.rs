//! `search`: the repositories of a registry's `/v2/_catalog` (every page, following `Link`)
//! whose name contains the term. The catalog is the only listing the distribution API has;
//! Docker Hub's search (`index.docker.io/v1/search`) is a separate service rbuild does not use.

use super::auth::credentials_for;
use super::http::{BasicAuth, RegistryHttp};
use super::{RegistryError, RegistryOptions, Result};

/// Catalog pages are read 100 names at a time, up to this many pages.
const PAGE: usize = 100;
const MAX_PAGES: usize = 10_000;

/// Repository names (`host[:port]/path`) of `registry` containing `term` (case-insensitive),
/// in the registry's order, at most `limit`.
pub fn search(registry: &str, term: &str, limit: usize, opts: &RegistryOptions) -> Result<Vec<String>> {
    let fail = |reason: String| RegistryError::Search { registry: registry.to_owned(), reason };
    let auth = credentials_for(registry)?.map(|c| BasicAuth { username: c.username, password: c.password });
    let http = RegistryHttp::new(registry, opts, auth)?;
    let needle = term.to_ascii_lowercase();
    let mut found = Vec::new();
    let mut path = format!("/v2/_catalog?n={PAGE}");
    for _ in 0..MAX_PAGES {
        let answer = http.get(&path, Some("registry:catalog:*"))?;
        match answer.status {
            200 => {}
            401 | 403 => {
                return Err(fail(format!("unauthorized: the catalog needs credentials (rbuild login {registry})")))
            }
            404 => return Err(fail("the registry has no catalog API (/v2/_catalog)".into())),
            s => {
                let body = String::from_utf8_lossy(&answer.body).trim().to_owned();
                return Err(fail(format!("{}{path} answered HTTP {s}: {body}", http.base)));
            }
        }
        let page: serde_json::Value = serde_json::from_slice(&answer.body)
            .map_err(|e| fail(format!("{}{path} answered something not JSON: {e}", http.base)))?;
        let names = page.get("repositories").and_then(|r| r.as_array()).cloned().unwrap_or_default();
        for name in names.iter().filter_map(|n| n.as_str()) {
            if name.to_ascii_lowercase().contains(&needle) {
                found.push(format!("{registry}/{name}"));
                if found.len() >= limit {
                    return Ok(found);
                }
            }
        }
        match answer.link.as_deref().and_then(next_link) {
            Some(next) if !names.is_empty() => path = next,
            _ => return Ok(found),
        }
    }
    Ok(found)
}

/// The path of a `Link: </v2/_catalog?last=x&n=100>; rel="next"` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find(|part| part.contains("rel=\"next\"")).and_then(|part| {
        let start = part.find('<')? + 1;
        let end = part.find('>')?;
        let target = part.get(start..end)?;
        // An absolute URL keeps only its path: the host is the one asked.
        let path = match target.split_once("://") {
            Some((_, rest)) => rest.get(rest.find('/')?..)?,
            None => target,
        };
        path.starts_with("/v2/").then(|| path.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links() {
        assert_eq!(
            next_link(r#"</v2/_catalog?last=b&n=100>; rel="next""#).as_deref(),
            Some("/v2/_catalog?last=b&n=100")
        );
        assert_eq!(
            next_link(r#"<https://r.example/v2/_catalog?last=c&n=2>; rel="next""#).as_deref(),
            Some("/v2/_catalog?last=c&n=2")
        );
        assert_eq!(next_link(r#"</elsewhere>; rel="next""#), None);
        assert_eq!(next_link(r#"</v2/_catalog?n=1>; rel="prev""#), None);
    }
}
