//! Resolving a Docker `USER` value (`name`, `uid`, `uid:gid`, `name:group`, ...) against a
//! container's `/etc/passwd` and `/etc/group`.

/// The identity a workload runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: every group of `/etc/group` that lists the user by name.
    pub groups: Vec<u32>,
    /// Home directory from `/etc/passwd`, `/` if the user is not listed there.
    pub home: String,
}

/// A `USER` value that does not resolve; the text names what is missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("no matching entries in passwd file for {0:?}")]
    UnknownUser(String),
    #[error("invalid user {0:?}")]
    InvalidUser(String),
    #[error("no matching entries in group file for {0:?}")]
    UnknownGroup(String),
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 {
            return None;
        }
        Some(PasswdEntry { name: f[0], uid: f[2].parse().ok()?, gid: f[3].parse().ok()?, home: f[5] })
    })
}

fn group_entries(group: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    group.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        let members = f[3].split(',').filter(|m| !m.is_empty()).collect();
        Some((f[0], f[2].parse().ok()?, members))
    })
}

/// The uid and primary gid of the user `name` in `passwd` (for `COPY --chown=name`).
pub fn passwd_ids(passwd: &str, name: &str) -> Option<(u32, u32)> {
    passwd_entries(passwd).find(|e| e.name == name).map(|e| (e.uid, e.gid))
}

/// The gid of the group `name` in `group` (for `COPY --chown=user:name`).
pub fn group_id(group: &str, name: &str) -> Option<u32> {
    group_entries(group).find(|(n, _, _)| *n == name).map(|(_, gid, _)| gid)
}

/// Resolves `user` (`None` = root) with the contents of `/etc/passwd` and `/etc/group` (empty
/// strings when the files are missing). A name that is not listed is an error whose text
/// names it; a numeric uid or gid need not be listed.
pub fn resolve_user(user: Option<&str>, passwd: &str, group: &str) -> Result<ExecUser, UserError> {
    let spec = user.unwrap_or("").trim();
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let entry = match user_part.parse::<u32>() {
        Ok(uid) => passwd_entries(passwd).find(|e| e.uid == uid),
        Err(_) => Some(
            passwd_entries(passwd)
                .find(|e| e.name == user_part)
                .ok_or_else(|| UserError::UnknownUser(user_part.to_string()))?,
        ),
    };
    let uid = match &entry {
        Some(e) => e.uid,
        None => user_part.parse::<u32>().map_err(|_| UserError::InvalidUser(user_part.to_string()))?,
    };
    let gid = match group_part {
        Some(g) if !g.is_empty() => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group_entries(group)
                .find(|(name, _, _)| *name == g)
                .map(|(_, gid, _)| gid)
                .ok_or_else(|| UserError::UnknownGroup(g.to_string()))?,
        },
        _ => entry.as_ref().map_or(0, |e| e.gid),
    };
    let mut groups = Vec::new();
    if group_part.is_none() {
        if let Some(e) = &entry {
            groups = group_entries(group)
                .filter(|(_, _, members)| members.contains(&e.name))
                .map(|(_, gid, _)| gid)
                .filter(|g| *g != gid)
                .collect();
        }
    }
    Ok(ExecUser { uid, gid, groups, home: entry.map_or("/".to_string(), |e| e.home.to_string()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:app\napp:x:1000:\n";

    #[test]
    fn names_ids_and_pairs_resolve() {
        let root = resolve_user(None, PASSWD, GROUP).expect("root");
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        let app = resolve_user(Some("app"), PASSWD, GROUP).expect("app");
        assert_eq!((app.uid, app.gid, app.groups.clone()), (1000, 1000, vec![10]));
        assert_eq!(resolve_user(Some("1000"), PASSWD, GROUP).expect("uid").gid, 1000);
        let pair = resolve_user(Some("1000:10"), PASSWD, GROUP).expect("pair");
        assert_eq!((pair.uid, pair.gid), (1000, 10));
        let named = resolve_user(Some("app:wheel"), PASSWD, GROUP).expect("names");
        assert_eq!((named.uid, named.gid), (1000, 10));
        let unlisted = resolve_user(Some("4242"), PASSWD, GROUP).expect("unlisted uid");
        assert_eq!((unlisted.uid, unlisted.gid, unlisted.home.as_str()), (4242, 0, "/"));
    }

    #[test]
    fn names_look_up_ids() {
        assert_eq!(passwd_ids(PASSWD, "app"), Some((1000, 1000)));
        assert_eq!(passwd_ids(PASSWD, "ghost"), None);
        assert_eq!(group_id(GROUP, "wheel"), Some(10));
        assert_eq!(group_id(GROUP, "app:x"), None);
    }

    #[test]
    fn unknown_names_are_errors_naming_them() {
        let err = resolve_user(Some("ghost"), PASSWD, GROUP).unwrap_err();
        assert_eq!(err.to_string(), r#"no matching entries in passwd file for "ghost""#);
        let err = resolve_user(Some("app:nogroup"), PASSWD, GROUP).unwrap_err();
        assert_eq!(err.to_string(), r#"no matching entries in group file for "nogroup""#);
    }
}
