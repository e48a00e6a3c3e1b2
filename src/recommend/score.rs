//! Scoring: every preset's rules against the workload, the ranking, the winner and the runner-up.
//!
//! A preset's score is the sum of the weights of its rules whose `when` holds. Presets whose
//! `exclude` condition holds, and presets without a `[signals]` table, are not candidates. The
//! highest score wins; ties go to the preset with fewer moving parts, then to the smaller id.
//! When no rule fires for any candidate (nothing known about the workload), the template's default
//! preset is the answer.

use std::cmp::Ordering;

use super::explain;
use super::outcome::{Difference, Excluded, Reason, Recommendation, RunnerUp, Scored};
use super::workload::Workload;
use crate::error::{Error, Problem, Result};
use crate::signals::expr::Condition;
use crate::signals::{Clause, interpolate};
use crate::template::manifest::Manifest;
use crate::template::preset::Catalogue;

/// Whether a rule's condition holds. The conditions were checked when the presets loaded; one
/// that still does not parse (a catalogue built in code) is an error naming the preset and rule.
fn holds(c: &Clause<'_>, preset: &str, workload: &Workload) -> Result<bool> {
    let condition = Condition::parse(c.when.get_ref()).map_err(|e| {
        Error::InvalidTemplate(vec![Problem::file(
            &format!("preset `{preset}`"),
            format!("rule `{}`: `when`: {}", c.id.get_ref(), e.message),
        )])
    })?;
    Ok(condition.holds(workload))
}

/// Scores every preset of `catalogue` for `workload`. `template` is the `--template` argument to
/// repeat in the generated command.
pub fn recommend(
    catalogue: &Catalogue,
    manifest: &Manifest,
    workload: &Workload,
    template: Option<&str>,
) -> Result<Recommendation> {
    workload.validate()?;
    let fill = |text: &str| interpolate(text, &|name| workload.display(name)).unwrap_or_else(|_| text.to_string());
    let mut candidates: Vec<Scored> = Vec::new();
    let mut excluded: Vec<Excluded> = Vec::new();
    'presets: for preset in &catalogue.presets {
        let Some(signals) = &preset.signals else {
            continue;
        };
        let mut reasons = Vec::new();
        for c in signals.clauses() {
            if !holds(&c, &preset.id, workload)? {
                continue;
            }
            let (rule, text) = (c.id.get_ref().clone(), fill(c.text.get_ref()));
            match c.weight {
                Some(w) => reasons.push(Reason {
                    rule,
                    weight: *w.get_ref(),
                    text,
                }),
                None => {
                    excluded.push(Excluded {
                        preset: preset.id.clone(),
                        rule,
                        text,
                    });
                    continue 'presets;
                }
            }
        }
        // Strongest first; the file's order among equal weights.
        reasons.sort_by_key(|r| std::cmp::Reverse(r.weight));
        let moving_parts = signals.moving_parts.unwrap_or_else(|| {
            manifest
                .layouts
                .get(&preset.layout)
                .map_or(1, |l| l.mounts.len() as u32)
        });
        candidates.push(Scored {
            preset: preset.id.clone(),
            title: preset.title.clone(),
            layout: preset.layout.clone(),
            score: reasons.iter().map(|r| r.weight).sum(),
            moving_parts,
            default: preset.default,
            reasons,
        });
    }
    if candidates.is_empty() {
        return Err(Error::workload(explain::no_candidate(&excluded)));
    }
    candidates.sort_by(rank);
    let mut fallback = None;
    if candidates.iter().all(|c| c.reasons.is_empty())
        && let Some(i) = candidates.iter().position(|c| c.default)
    {
        let d = candidates.remove(i);
        fallback = Some(explain::fallback(workload.is_unknown()));
        candidates.insert(0, d);
    }
    let winner = &candidates[0];
    let runner = candidates.get(1);
    let tie_break = match runner {
        Some(r) if fallback.is_none() && r.score == winner.score => Some(explain::tie(winner, r)),
        _ => None,
    };
    let runner_up = runner.map(|r| runner_up(winner, r, fallback.is_some()));
    let layout_description = manifest
        .layouts
        .get(&winner.layout)
        .map(|l| l.description.clone())
        .unwrap_or_default();
    Ok(Recommendation {
        preset: winner.preset.clone(),
        title: winner.title.clone(),
        layout: winner.layout.clone(),
        layout_description,
        score: winner.score,
        reasons: winner.reasons.clone(),
        runner_up,
        tie_break,
        fallback,
        excluded,
        command: explain::new_command(&winner.preset, template),
        ranking: candidates,
    })
}

/// Rank order: higher score, then fewer moving parts, then id.
fn rank(a: &Scored, b: &Scored) -> Ordering {
    b.score
        .cmp(&a.score)
        .then(a.moving_parts.cmp(&b.moving_parts))
        .then(a.preset.cmp(&b.preset))
}

/// The runner-up, lined up with the winner rule by rule.
fn runner_up(w: &Scored, r: &Scored, fallback: bool) -> RunnerUp {
    let mut ids: Vec<&str> = Vec::new();
    for reason in w.reasons.iter().chain(&r.reasons) {
        if !ids.contains(&reason.rule.as_str()) {
            ids.push(&reason.rule);
        }
    }
    fn find<'a>(s: &'a Scored, id: &str) -> Option<&'a Reason> {
        s.reasons.iter().find(|x| x.rule == id)
    }
    let mut differences: Vec<Difference> = ids
        .into_iter()
        .filter_map(|id| {
            let (a, b) = (find(w, id), find(r, id));
            let (wa, wb) = (a.map_or(0, |x| x.weight), b.map_or(0, |x| x.weight));
            (wa != wb).then(|| Difference {
                rule: id.to_string(),
                winner: wa,
                runner_up: wb,
                text: a.or(b).map(|x| x.text.clone()).unwrap_or_default(),
            })
        })
        .collect();
    differences.sort_by(|a, b| {
        (b.winner - b.runner_up)
            .cmp(&(a.winner - a.runner_up))
            .then(a.rule.cmp(&b.rule))
    });
    let behind = w.score - r.score;
    RunnerUp {
        preset: r.preset.clone(),
        layout: r.layout.clone(),
        score: r.score,
        behind,
        reason: explain::why_runner_up_lost(w, r, &differences, fallback),
        differences,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signals::inputs::Answer;

    fn builtin() -> crate::template::Template {
        crate::template::Template::load(&crate::template::source::TemplateSource::Builtin).unwrap()
    }

    #[test]
    fn nothing_known_gives_the_default_preset() {
        let loaded = builtin();
        assert!(loaded.catalogue.presets.iter().all(|p| p.signals.is_some()));
        let r = recommend(&loaded.catalogue, &loaded.manifest, &Workload::default(), None).unwrap();
        assert!(r.fallback.is_some());
        assert_eq!(
            Some(r.preset.as_str()),
            loaded.catalogue.default_preset().map(|p| p.id.as_str())
        );
    }

    /// Every workload of a grid over all inputs (each choice, unknown included; counts around
    /// every threshold the presets use), checked against the invariants of the framework.
    #[test]
    fn invariants_hold_for_every_workload_of_the_grid() {
        let loaded = builtin();
        let can_push = |id: &str| {
            loaded
                .catalogue
                .get(id)
                .is_ok_and(|p| p.options.get("websocket").and_then(toml::Value::as_bool) == Some(true))
        };
        let words = |ws: &[&'static str]| -> Vec<Option<Answer>> {
            std::iter::once(None)
                .chain(ws.iter().map(|w| Some(Answer::Word(w))))
                .collect()
        };
        let counts = |cs: &[u64]| -> Vec<Option<Answer>> {
            std::iter::once(None)
                .chain(cs.iter().map(|c| Some(Answer::Count(*c))))
                .collect()
        };
        let switch = [None, Some(Answer::Yes)];
        let mut checked = 0;
        for ai in words(&["none", "feature", "core"]) {
            for data in words(&["none", "some", "heavy"]) {
                for realtime in words(&["none", "some", "core"]) {
                    for team in words(&["python", "node", "mixed"]) {
                        for rps in counts(&[200, 2_000, 15_000, 40_000]) {
                            for connections in counts(&[50_000]) {
                                for (p99, serverless) in
                                    [(None, None), (Some(Answer::Millis(5.0)), None), (None, switch[1])]
                                {
                                    let mut w = Workload::default();
                                    let inputs = [
                                        ("ai", ai),
                                        ("data", data),
                                        ("realtime", realtime),
                                        ("team", team),
                                        ("peak_rps", rps),
                                        ("connections", connections),
                                        ("p99_ms", p99),
                                        ("serverless", serverless),
                                    ];
                                    for (name, a) in inputs {
                                        if let Some(a) = a {
                                            w.set(name, a).unwrap();
                                        }
                                    }
                                    if w.validate().is_err() {
                                        continue;
                                    }
                                    let r = recommend(&loaded.catalogue, &loaded.manifest, &w, None).unwrap();
                                    checked += 1;
                                    // Real-time needs are never answered with a preset that cannot push.
                                    if matches!(realtime, Some(Answer::Word("some" | "core"))) {
                                        assert!(can_push(&r.preset), "{:?} → {}", w.to_flags(), r.preset);
                                    }
                                    // AI at the core always has Python.
                                    if ai == Some(Answer::Word("core")) {
                                        assert_ne!(r.layout, "node", "{:?} → {}", w.to_flags(), r.preset);
                                    }
                                    assert_eq!(r.score, r.reasons.iter().map(|x| x.weight).sum::<i32>());
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(checked > 5_000, "{checked}");
    }

    #[test]
    fn the_runner_up_is_lined_up_rule_by_rule() {
        let loaded = builtin();
        let w = Workload::default()
            .with("ai", Answer::Word("feature"))
            .unwrap()
            .with("peak_rps", Answer::Count(40_000))
            .unwrap();
        let r = recommend(&loaded.catalogue, &loaded.manifest, &w, Some("./my tpl")).unwrap();
        assert_eq!(r.preset, "ai-product");
        assert_eq!(
            r.command,
            "stackwise new my-app --preset ai-product --template './my tpl'"
        );
        let up = r.runner_up.unwrap();
        assert_eq!(up.preset, "ai-realtime");
        assert_eq!(up.behind, 1);
        assert!(up.differences.iter().all(|d| d.winner != d.runner_up));
        assert!(r.reasons.windows(2).all(|p| p[0].weight >= p[1].weight));
        assert_eq!(r.score, r.reasons.iter().map(|x| x.weight).sum::<i32>());
    }
}
