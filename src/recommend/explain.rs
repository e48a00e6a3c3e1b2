//! The sentences of a recommendation: why the runner-up lost, how a tie was broken, why the
//! default was taken, the commands to run, and the rules as `presets show` lists them.

use super::outcome::{Difference, Excluded, Scored};
use crate::template::preset::Preset;

/// The tie rule, as printed.
pub const TIE_RULE: &str = "equal scores go to the preset with fewer moving parts (processes and stores to run), then to the alphabetically first id";

/// `+3`, `-2`, `0`.
pub fn signed(n: i32) -> String {
    if n > 0 { format!("+{n}") } else { n.to_string() }
}

/// Why there is no recommendation at all.
pub(crate) fn no_candidate(excluded: &[Excluded]) -> String {
    if excluded.is_empty() {
        return "no preset of this template has a [signals] table, so none can be recommended".into();
    }
    let all: Vec<String> = excluded.iter().map(|x| format!("{} ({})", x.preset, x.rule)).collect();
    format!("every preset is excluded for this workload: {}", all.join(", "))
}

/// Why the default preset was taken.
pub(crate) fn fallback(nothing_given: bool) -> String {
    format!(
        "No rule fired{}, so this is the template's default preset. Describe the workload \
         (--ai, --data, --realtime, --peak-rps, --team, ...) for a reasoned answer.",
        if nothing_given {
            " (no workload signal was given)"
        } else {
            " for the signals given"
        }
    )
}

/// How the tie rule decided between `w` and `r`, which scored the same.
pub(crate) fn tie(w: &Scored, r: &Scored) -> String {
    let how = if w.moving_parts != r.moving_parts {
        format!(
            "{} has fewer moving parts ({} against {})",
            w.preset, w.moving_parts, r.moving_parts
        )
    } else {
        format!(
            "both have {} moving parts, and `{}` comes first alphabetically",
            w.moving_parts, w.preset
        )
    };
    format!(
        "{} and {} both scored {}; the tie rule decided: {how}.",
        w.preset, r.preset, w.score
    )
}

/// One sentence: why the runner-up `r` lost to `w`.
pub(crate) fn why_runner_up_lost(w: &Scored, r: &Scored, differences: &[Difference], fallback: bool) -> String {
    let behind = w.score - r.score;
    if fallback {
        return format!(
            "{} scored {} too; with no rule firing, the default preset is taken",
            r.preset, r.score
        );
    }
    if behind == 0 {
        let rule = if w.moving_parts != r.moving_parts {
            format!(
                "it has more moving parts ({} against {})",
                r.moving_parts, w.moving_parts
            )
        } else {
            format!("same moving parts, and `{}` sorts first", w.preset)
        };
        return format!(
            "{} scored the same ({}); it lost on the tie rule: {rule}",
            r.preset, r.score
        );
    }
    let mut s = format!(
        "{} scored {} against {} ({} point{} behind)",
        r.preset,
        r.score,
        w.score,
        behind,
        if behind == 1 { "" } else { "s" }
    );
    let decisive: Vec<String> = differences
        .iter()
        .filter(|d| d.winner > d.runner_up)
        .take(3)
        .map(|d| {
            format!(
                "{} ({} for {}, {} for {})",
                d.rule,
                signed(d.winner),
                w.preset,
                signed(d.runner_up),
                r.preset
            )
        })
        .collect();
    if !decisive.is_empty() {
        s.push_str("; what separated them: ");
        s.push_str(&decisive.join(", "));
    }
    s
}

/// The `stackwise new` command for a preset (`my-app` stands for the project's name).
pub fn new_command(preset: &str, template: Option<&str>) -> String {
    let mut cmd = format!("stackwise new my-app --preset {preset}");
    if let Some(t) = template {
        cmd.push_str(" --template ");
        cmd.push_str(&shell_quote(t));
    }
    cmd
}

/// `s` as one word of a POSIX shell command line.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-./:@#=+,".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// For `stackwise presets show`: the signals that lead to (or rule out) a preset, one per line.
pub fn describe_signals(preset: &Preset) -> Vec<String> {
    let Some(signals) = &preset.signals else {
        return vec!["(no [signals] table: `stackwise recommend` never picks this preset)".into()];
    };
    let mut rules: Vec<_> = signals.rules.iter().collect();
    rules.sort_by_key(|r| std::cmp::Reverse(*r.weight.get_ref()));
    let mut lines: Vec<String> = rules
        .into_iter()
        .map(|r| {
            format!(
                "{:>4}  {}  ({})",
                signed(*r.weight.get_ref()),
                r.when.get_ref().trim(),
                r.id.get_ref()
            )
        })
        .collect();
    for x in &signals.exclude {
        lines.push(format!("never when {}  ({})", x.when.get_ref().trim(), x.id.get_ref()));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_quote_what_the_shell_would_split() {
        assert_eq!(new_command("ml-api", None), "stackwise new my-app --preset ml-api");
        assert_eq!(shell_quote("https://h/r.git#v1"), "https://h/r.git#v1");
        assert_eq!(shell_quote("it's here"), r"'it'\''s here'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(signed(3), "+3");
        assert_eq!(signed(-2), "-2");
        assert_eq!(signed(0), "0");
    }
}
