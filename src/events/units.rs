//! Docker's human-readable units: sizes (`4.26MB`, decimal, 3 significant digits as the
//! docker CLI prints them) and durations (`2 weeks`, as `docker images` CREATED shows).
//! The one owner of both: the classic renderer prints sizes with them, and the CLI's
//! `images`, `history`, `ps` and `system df` tables use them too.

/// `%.{precision}g` as Go prints it, for values below 1000.
fn go_g(value: f64, precision: usize) -> String {
    if value == 0.0 {
        return "0".into();
    }
    let exp = value.abs().log10().floor() as i32;
    let rounded_exp = {
        let s = format!("{:.*e}", precision.saturating_sub(1), value);
        s.split('e').nth(1).and_then(|e| e.parse::<i32>().ok()).unwrap_or(exp)
    };
    if rounded_exp < -4 || rounded_exp >= precision as i32 {
        let s = format!("{:.*e}", precision.saturating_sub(1), value);
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let m = if m.contains('.') { m.trim_end_matches('0').trim_end_matches('.') } else { m };
        let e: i32 = e.parse().unwrap_or(0);
        return format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
    }
    let decimals = (precision as i32 - 1 - rounded_exp).max(0) as usize;
    let s = format!("{value:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// Docker's `units.HumanSizeWithPrecision(size, 3)`: `0B`, `1.23kB`, `4.26MB`, `225MB`, as
/// `docker images` and `docker history` print sizes.
pub fn human_size(bytes: u64) -> String {
    human_size_with_precision(bytes, 3)
}

/// Docker's `units.HumanSize` (4 significant digits), as `docker build` prints the context
/// size: `2.048kB`.
pub fn human_size_4(bytes: u64) -> String {
    human_size_with_precision(bytes, 4)
}

/// Docker's `units.HumanSizeWithPrecision`: decimal units, `%.{precision}g`.
pub fn human_size_with_precision(bytes: u64, precision: usize) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut i = 0;
    while size >= 1000.0 && i < UNITS.len() - 1 {
        size /= 1000.0;
        i += 1;
    }
    format!("{}{}", go_g(size, precision), UNITS[i])
}

/// Docker's `units.HumanDuration`: `Less than a second`, `About a minute`, `3 weeks`.
pub fn human_duration(d: chrono::Duration) -> String {
    let seconds = d.num_seconds();
    let minutes = d.num_minutes();
    let hours = ((d.num_milliseconds() as f64) / 3_600_000.0 + 0.5) as i64;
    if seconds < 1 {
        "Less than a second".into()
    } else if seconds == 1 {
        "1 second".into()
    } else if seconds < 60 {
        format!("{seconds} seconds")
    } else if minutes == 1 {
        "About a minute".into()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", d.num_hours() / 24 / 365)
    }
}

/// `"<duration> ago"` for an RFC 3339 timestamp, or `"N/A"` when it is missing or invalid.
pub fn since(rfc3339: Option<&str>) -> String {
    match rfc3339.and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()) {
        Some(t) => format!("{} ago", human_duration(chrono::Utc::now().signed_duration_since(t))),
        None => "N/A".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(1234), "1.23kB");
        assert_eq!(human_size(4_261_376), "4.26MB");
        assert_eq!(human_size(225_000_000), "225MB");
        assert_eq!(human_size(1_500_000_000), "1.5GB");
    }

    #[test]
    fn durations_like_docker() {
        let s = chrono::Duration::seconds;
        assert_eq!(human_duration(s(0)), "Less than a second");
        assert_eq!(human_duration(s(30)), "30 seconds");
        assert_eq!(human_duration(s(70)), "About a minute");
        assert_eq!(human_duration(s(3600)), "About an hour");
        assert_eq!(human_duration(s(3 * 86400)), "3 days");
        assert_eq!(human_duration(s(21 * 86400)), "3 weeks");
        assert_eq!(human_duration(s(800 * 86400)), "2 years");
    }
}
