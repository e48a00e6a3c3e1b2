//! "Did you mean …?": the closest known name to a mistyped one (strsim, as clap does for options).

/// The candidate closest to `input`, when it is close enough to be what the user meant: a
/// Jaro-Winkler similarity of at least 0.8 (clap's threshold for options), or the input is a
/// prefix of exactly one candidate.
pub fn closest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lowered = input.to_lowercase();
    let mut best: Option<(f64, &str)> = None;
    let mut prefixed = Vec::new();
    for c in candidates {
        if c.starts_with(&lowered) {
            prefixed.push(c);
        }
        let score = strsim::jaro_winkler(&lowered, &c.to_lowercase());
        if score >= 0.8 && best.is_none_or(|(b, _)| score > b) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c).or(match prefixed.as_slice() {
        [one] => Some(*one),
        _ => None,
    })
}

/// ` (did you mean `x`?)`, or nothing: spliced into an error message after the unknown name.
pub fn did_you_mean<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(input, candidates).map_or_else(String::new, |c| format!(" (did you mean `{c}`?)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRESETS: [&str; 6] = [
        "ml-api",
        "data-pipeline",
        "realtime",
        "api-gateway",
        "ai-product",
        "ai-realtime",
    ];

    #[test]
    fn typos_find_their_preset_and_nonsense_finds_nothing() {
        assert_eq!(closest("ml_api", PRESETS), Some("ml-api"));
        assert_eq!(closest("realtme", PRESETS), Some("realtime"));
        assert_eq!(closest("AI-Product", PRESETS), Some("ai-product"));
        assert_eq!(closest("data", PRESETS), Some("data-pipeline"));
        assert_eq!(closest("kubernetes", PRESETS), None);
        assert_eq!(closest("", PRESETS), None);
        assert_eq!(
            did_you_mean("websockets", ["worker", "websocket", "proxy"]),
            " (did you mean `websocket`?)"
        );
    }
}
