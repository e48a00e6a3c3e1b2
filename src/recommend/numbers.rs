//! Numbers as people write them on a command line (`40_000`, `40k`, `2.5ms`), and as a
//! recommendation prints them (`40,000`).

/// Largest accepted request rate or connection count (larger is certainly a typo).
pub const MAX_COUNT: u64 = 1_000_000_000;
/// Largest accepted p99 target, in milliseconds (beyond a minute it is not a request latency).
pub const MAX_P99_MS: f64 = 60_000.0;

/// Parses a count (`--peak-rps`, `--connections`): digits, optionally grouped by threes with `_`
/// or `,` (`40_000`, `1,000,000`), and an optional `k` (thousand) or `m` (million) suffix, e.g.
/// `40000`, `40k`, `1.5k`. The error is the reason alone.
pub fn count_from_str(text: &str) -> Result<u64, String> {
    let whole = || "expected a whole number such as 5000, 40_000 or 40k".to_string();
    let t = text.trim();
    if t.starts_with('-') {
        return Err("must not be negative".into());
    }
    let t = ungrouped(t)?;
    let (digits, factor) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1_000u64),
        Some('m' | 'M') => (&t[..t.len() - 1], 1_000_000u64),
        _ => (t.as_str(), 1u64),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(whole());
    }
    let value = if factor == 1 {
        digits.parse::<u64>().map_err(|_| whole())?
    } else {
        let v: f64 = digits.parse().map_err(|_| whole())?;
        let scaled = (v * factor as f64 * 1000.0).round() / 1000.0;
        if scaled.fract() != 0.0 || scaled > MAX_COUNT as f64 * 10.0 {
            return Err(whole());
        }
        scaled as u64
    };
    if value > MAX_COUNT {
        return Err(format!(
            "{} is out of range (at most {})",
            format_count(value),
            format_count(MAX_COUNT)
        ));
    }
    Ok(value)
}

/// `t` without its group separators, when they group the whole part by threes (`40,000`,
/// `1_000_000`). Anything else is refused rather than read as one number: `2,5k` is not 25,000,
/// `40,5` not 405, `1,0,0` not 100.
fn ungrouped(t: &str) -> Result<String, String> {
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '_' || c == ','))
        .unwrap_or(t.len());
    let (whole, rest) = t.split_at(end);
    if rest.contains(['_', ',']) {
        return Err("`,` and `_` only group the digits of a whole number by threes, e.g. 40,000 or 1_000_000".into());
    }
    let Some(sep) = whole.chars().find(|c| matches!(c, '_' | ',')) else {
        return Ok(t.to_string());
    };
    let groups: Vec<&str> = whole.split(sep).collect();
    let by_threes = (1..=3).contains(&groups[0].len()) && groups[1..].iter().all(|g| g.len() == 3);
    if !by_threes || groups.iter().any(|g| !g.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!(
            "`{sep}` must separate groups of three digits (40{sep}000, 1{sep}000{sep}000); for a fraction use a point: 2.5k"
        ));
    }
    Ok(format!("{}{rest}", groups.concat()))
}

/// Parses a latency target in milliseconds (`--p99-ms`): a positive number, at most a minute.
/// The error is the reason alone.
pub fn ms_from_str(text: &str) -> Result<f64, String> {
    let t = text.trim().trim_end_matches("ms").trim();
    let v: f64 = t
        .parse()
        .map_err(|_| "expected a number of milliseconds such as 50 or 2.5".to_string())?;
    ms_in_range(v)?;
    Ok(v)
}

pub(crate) fn ms_in_range(v: f64) -> Result<(), String> {
    if !v.is_finite() {
        return Err("expected a finite number of milliseconds".into());
    }
    if v <= 0.0 {
        return Err("must be greater than 0 ms".into());
    }
    if v > MAX_P99_MS {
        return Err("is out of range (at most 60000 ms)".into());
    }
    Ok(())
}

/// `40000` → `40,000`.
pub fn format_count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `2.5` → `2.5`, `50.0` → `50`.
pub fn format_ms(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_parse_with_separators_and_suffixes() {
        assert_eq!(count_from_str("40000").unwrap(), 40_000);
        assert_eq!(count_from_str("40_000").unwrap(), 40_000);
        assert_eq!(count_from_str("40,000").unwrap(), 40_000);
        assert_eq!(count_from_str("40k").unwrap(), 40_000);
        assert_eq!(count_from_str("1.5k").unwrap(), 1_500);
        assert_eq!(count_from_str("2M").unwrap(), 2_000_000);
        for bad in ["-5", "abc", "", "1.5", "k", "1e5", "99999999999"] {
            assert!(count_from_str(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn separators_only_group_digits_by_threes() {
        assert_eq!(count_from_str("1,000,000").unwrap(), 1_000_000);
        assert_eq!(count_from_str("1_000_000").unwrap(), 1_000_000);
        assert_eq!(count_from_str("100,000").unwrap(), 100_000);
        assert_eq!(count_from_str("1,500k").unwrap(), 1_500_000);
        for bad in [
            "2,5k",
            "40,5",
            "1,0,0",
            "40,0000",
            ",000",
            "40,",
            "1_000,000",
            "4000_0",
            "1.5,0k",
            "1__000",
        ] {
            let err = count_from_str(bad).unwrap_err();
            assert!(err.contains("three"), "{bad}: {err}");
        }
    }

    #[test]
    fn latency_must_be_positive() {
        assert_eq!(ms_from_str("2.5").unwrap(), 2.5);
        assert_eq!(ms_from_str("50ms").unwrap(), 50.0);
        for bad in ["0", "-1", "NaN", "inf", "x", "70000"] {
            assert!(ms_from_str(bad).is_err(), "{bad}");
        }
    }
}
