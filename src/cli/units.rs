//! Sizes as the docker CLI prints them: decimal units, four significant digits
//! (`2.048kB`, `1.5MB`, `10B`).

/// Docker's `HumanSize`: base 1000, `%.4g` of the scaled value.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{}{}", four_significant(value), UNITS[unit])
}

/// `%.4g` for values below 1000: four significant digits, trailing zeros dropped.
fn four_significant(value: f64) -> String {
    let digits_before = if value < 1.0 { 1 } else { (value.log10().floor() as i32 + 1).max(1) };
    let decimals = (4 - digits_before).max(0) as usize;
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn matches_docker_output() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(10), "10B");
        assert_eq!(human_size(2048), "2.048kB");
        assert_eq!(human_size(1_500_000), "1.5MB");
        assert_eq!(human_size(12_345), "12.35kB");
        assert_eq!(human_size(999_999), "1000kB");
        assert_eq!(human_size(4_400_000), "4.4MB");
    }
}
