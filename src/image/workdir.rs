//! Where a WORKDIR points: Docker resolves it lexically against the current one, and so does
//! everything that takes a path relative to it (COPY's destination, RUN mounts' targets).

/// WORKDIR: an absolute path replaces, a relative one is joined to the current one; `.` and
/// `..` are resolved lexically, as Docker does.
pub fn resolve_workdir(current: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        let base = if current.is_empty() { "/" } else { current };
        format!("{}/{path}", base.trim_end_matches('/'))
    };
    clean_path(&joined)
}

/// Lexical cleaning of an absolute path (`/a/./b/../c/` -> `/a/c`).
pub fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}
