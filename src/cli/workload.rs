//! The workload questions of `stackwise recommend` (also asked by `new` when the user is not
//! sure which preset to take) and the recommendation as text: a leaf the `recommend` command
//! and the prompter share.

use dialoguer::theme::ColorfulTheme;
use dialoguer::{Input as TextInput, Select};
use stackwise::recommend::{self, Answer, INPUTS, Input, Kind, ProjectFit, Recommendation, Workload};
use stackwise::{Error, Result};

use super::ask::{confirm, prompt_err};
use super::style::{self, Paint};

const WIDTH: usize = 100;

/// Word-wraps `text` to `WIDTH` columns, every line after the first indented by `indent`.
fn wrap(text: &str, first: &str, indent: usize) -> String {
    let mut out = String::from(first);
    let mut col = first.chars().count();
    let pad = " ".repeat(indent);
    let mut at_start = true;
    for word in text.split_whitespace() {
        let len = word.chars().count();
        if !at_start && col + 1 + len > WIDTH {
            out.push('\n');
            out.push_str(&pad);
            col = indent;
            at_start = true;
        }
        if !at_start {
            out.push(' ');
            col += 1;
        }
        out.push_str(word);
        col += len;
        at_start = false;
    }
    out.push('\n');
    out
}

/// The recommendation as a team lead reads it, painted with `paint` (the stream it goes to).
pub fn recommendation_text(
    rec: &Recommendation,
    workload: &Workload,
    fit: Option<&ProjectFit>,
    paint: Paint,
) -> String {
    [
        headline(rec, workload, paint),
        reasons(rec, paint),
        runner_up(rec, paint),
        tie_break(rec, paint),
        ruled_out(rec, paint),
        next_step(rec, fit, paint),
    ]
    .concat()
}

/// The preset, its layout, the workload as flags, and the fallback note when nothing decided.
fn headline(rec: &Recommendation, workload: &Workload, paint: Paint) -> String {
    let mut o = String::new();
    o.push_str(&format!(
        "{} {} ({})\n",
        paint.bold("Recommended preset:"),
        paint.ok(&rec.preset),
        rec.title
    ));
    o.push_str(&wrap(
        &format!("{} — {}", rec.layout, rec.layout_description),
        "Layout:   ",
        10,
    ));
    let flags = workload.to_flags();
    o.push_str(&wrap(
        &if flags.is_empty() {
            "nothing given (every signal unknown)".to_string()
        } else {
            flags.join(" ")
        },
        "Workload: ",
        10,
    ));
    if let Some(f) = &rec.fallback {
        o.push('\n');
        o.push_str(&wrap(f, "", 0));
    }
    o
}

/// "Why": the rules that scored, with their weights and texts.
fn reasons(rec: &Recommendation, paint: Paint) -> String {
    let mut o = String::new();
    if !rec.reasons.is_empty() {
        o.push_str(&format!("\n{} (score {})\n", paint.bold("Why"), rec.score));
        for r in &rec.reasons {
            o.push_str(&format!("  {:>3}  {}\n", recommend::signed(r.weight), r.rule));
            o.push_str(&wrap(&r.text, "       ", 7));
        }
    }
    o
}

/// The runner-up, and the rules that separate it from the winner.
fn runner_up(rec: &Recommendation, paint: Paint) -> String {
    let mut o = String::new();
    let Some(r) = &rec.runner_up else {
        return o;
    };
    o.push_str(&format!(
        "\n{} {} ({} layout, score {})\n",
        paint.bold("Runner-up:"),
        r.preset,
        r.layout,
        r.score
    ));
    if rec.fallback.is_some() || r.behind == 0 || r.differences.is_empty() {
        o.push_str(&wrap(&format!("{}.", r.reason), "  ", 2));
    } else {
        o.push_str(&format!(
            "  {} point{} behind; the rules that separate them:\n",
            r.behind,
            if r.behind == 1 { "" } else { "s" }
        ));
        let width = r.differences.iter().map(|d| d.rule.len()).max().unwrap_or(0);
        for d in &r.differences {
            o.push_str(&format!(
                "    {:<width$}  {:>3} for {}, {:>3} for {}\n",
                d.rule,
                recommend::signed(d.winner),
                rec.preset,
                recommend::signed(d.runner_up),
                r.preset,
            ));
        }
    }
    o
}

/// How a tie was broken, if there was one.
fn tie_break(rec: &Recommendation, paint: Paint) -> String {
    match &rec.tie_break {
        Some(t) => {
            let text = format!("{t} (Tie rule: {}.)", recommend::TIE_RULE);
            format!("\n{}", wrap(&text, &format!("{} ", paint.bold("Tie:")), 2))
        }
        None => String::new(),
    }
}

/// "Ruled out": the presets an exclusion removed, one line per exclusion.
fn ruled_out(rec: &Recommendation, paint: Paint) -> String {
    let mut o = String::new();
    if rec.excluded.is_empty() {
        return o;
    }
    o.push_str(&format!("\n{}\n", paint.bold("Ruled out")));
    let mut groups: Vec<(&str, &str, Vec<&str>)> = Vec::new();
    for x in &rec.excluded {
        match groups.iter_mut().find(|g| g.0 == x.rule && g.1 == x.text) {
            Some(g) => g.2.push(&x.preset),
            None => groups.push((&x.rule, &x.text, vec![&x.preset])),
        }
    }
    for (rule, text, presets) in groups {
        o.push_str(&wrap(
            &format!("{text} ({rule})"),
            &format!("  {}: ", presets.join(", ")),
            4,
        ));
    }
    o
}

/// The command to generate it, or (with `--project`) how the project compares and how to update it.
fn next_step(rec: &Recommendation, fit: Option<&ProjectFit>, paint: Paint) -> String {
    let Some(fit) = fit else {
        return format!("\n{}\n  {}\n", paint.bold("Generate it:"), rec.command);
    };
    let mut o = format!("\n{} {}\n", paint.bold("Your project:"), fit.project);
    o.push_str(&wrap(&fit.verdict, "  ", 2));
    if let Some(note) = &fit.note {
        o.push_str(&wrap(note, "  note: ", 8));
    }
    if let Some(cmd) = &fit.update_command {
        o.push_str(&format!("\n{}\n  {cmd}\n", paint.bold("Update it:")));
    }
    o
}

// ----- the questions -----

/// Shows the cursor again after an interrupted prompt (dialoguer hides it while a list is open).
pub(super) fn restore_terminal() {
    let _ = dialoguer::console::Term::stderr().show_cursor();
}

/// Asks the question of one input. The default answer ("not sure", empty, or no) leaves it unknown.
fn ask(theme: &ColorfulTheme, input: &Input) -> Result<Option<Answer>> {
    match &input.kind {
        Kind::Choice { choices, .. } => {
            let items: Vec<&str> = std::iter::once("not sure")
                .chain(choices.iter().map(|c| c.answer))
                .collect();
            let i = Select::with_theme(theme)
                .with_prompt(input.question)
                .items(&items)
                .default(0)
                .interact()
                .map_err(prompt_err)?;
            Ok(i.checked_sub(1).map(|i| Answer::Word(choices[i].word)))
        }
        Kind::Count | Kind::Millis => {
            let answer: String = TextInput::with_theme(theme)
                .with_prompt(input.question)
                .allow_empty(true)
                .validate_with(|s: &String| -> std::result::Result<(), String> {
                    if s.trim().is_empty() {
                        Ok(())
                    } else {
                        input.parse(s).map(|_| ())
                    }
                })
                .interact_text()
                .map_err(prompt_err)?;
            let answer = answer.trim();
            if answer.is_empty() {
                return Ok(None);
            }
            input.parse(answer).map(Some).map_err(Error::workload)
        }
        Kind::Switch => Ok(confirm(input.question, false)?.then_some(Answer::Yes)),
    }
}

/// Asks the workload questions one by one (on a terminal), one per input. Every question can be
/// skipped: the default answer leaves that signal unknown.
pub(crate) fn ask_workload() -> Result<Workload> {
    let theme = ColorfulTheme::default();
    eprintln!(
        "{}",
        style::bold("Describe the workload (arrow keys and Enter; the default \"not sure\" leaves a signal unknown).")
    );
    let mut workload = Workload::default();
    for input in INPUTS {
        if let Some(answer) = ask(&theme, input)? {
            workload.set(input.name, answer)?;
        }
    }
    Ok(workload)
}
