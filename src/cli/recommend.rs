//! `stackwise recommend`: flags (or, on a terminal, questions) → a preset with its reasons.
//! The decision itself is `stackwise::recommend`; this module parses, asks and prints.
//!
//! The workload flags are not a derive struct: [`RecommendArgs`] implements clap's `Args` by
//! walking `stackwise::recommend::INPUTS`, and the questions walk the same table, so a new input
//! needs no edit here.

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Arg, ArgAction, ArgMatches};
use dialoguer::theme::ColorfulTheme;
use dialoguer::{Confirm, Input as TextInput, Select};
use serde_json::json;
use stackwise::project::new::NewRequest;
use stackwise::recommend::{self, Answer, INPUTS, Input, Kind, ProjectFit, Recommendation, Recorded, Workload};
use stackwise::template::source::TemplateSource;
use stackwise::{Error, Result};

use super::prompt::{confirm, prompt_err};
use super::status::ExitStatus;
use super::style::{self, Paint};
use super::{Settings, print_json, template_flag};

#[derive(Debug, Default)]
pub struct RecommendArgs {
    workload: Workload,
    json: bool,
    template: Option<String>,
    project: Option<PathBuf>,
}

/// The flag of one workload input, from its row of the table.
fn workload_arg(input: &'static Input) -> Arg {
    let arg = Arg::new(input.name).long(input.flag).help(input.long_help());
    match &input.kind {
        Kind::Choice { value_name, .. } => arg
            .value_name(*value_name)
            .value_parser(PossibleValuesParser::new(input.words()).try_map(move |w| input.parse(&w)))
            .hide_possible_values(true),
        Kind::Count | Kind::Millis => arg
            .value_name("N")
            .allow_negative_numbers(true)
            .value_parser(move |text: &str| input.parse(text)),
        Kind::Switch => arg.action(ArgAction::SetTrue),
    }
}

impl clap::Args for RecommendArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        INPUTS
            .iter()
            .fold(cmd, |cmd, input| cmd.arg(workload_arg(input)))
            .arg(
                Arg::new("json")
                    .long("json")
                    .action(ArgAction::SetTrue)
                    .help("Print one JSON document on stdout (never asks)"),
            )
            .arg(
                Arg::new("template")
                    .long("template")
                    .value_name("SRC")
                    .help("Template source whose presets to choose from (default: the built-in template)"),
            )
            .arg(
                Arg::new("project")
                    .long("project")
                    .value_name("DIR")
                    .value_parser(clap::value_parser!(PathBuf))
                    .help("Compare with the preset of the project in DIR and print the `stackwise update` command that moves it"),
            )
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for RecommendArgs {
    fn from_arg_matches(m: &ArgMatches) -> std::result::Result<Self, clap::Error> {
        let mut workload = Workload::default();
        for input in INPUTS {
            let answer = match input.kind {
                Kind::Switch => m.get_flag(input.name).then_some(Answer::Yes),
                _ => m.get_one::<Answer>(input.name).copied(),
            };
            if let Some(a) = answer {
                workload
                    .set(input.name, a)
                    .map_err(|e| clap::Error::raw(clap::error::ErrorKind::ValueValidation, e))?;
            }
        }
        Ok(RecommendArgs {
            workload,
            json: m.get_flag("json"),
            template: m.get_one::<String>("template").cloned(),
            project: m.get_one::<PathBuf>("project").cloned(),
        })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> std::result::Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

pub fn run(args: RecommendArgs, settings: &Settings) -> Result<ExitStatus> {
    let recorded = args.project.as_deref().map(Recorded::read).transpose()?;
    let source = template_flag(args.template.as_deref(), None)?.unwrap_or(TemplateSource::Builtin);
    let loaded = stackwise::template::Template::load(&source)?;
    let mut workload = args.workload;
    let ask = !args.json && workload.is_unknown() && settings.interactive(false);
    if ask {
        stackwise::interrupt::start_polling();
        workload = ask_workload().inspect_err(|_| restore_terminal())?;
    }
    let template = args.template.as_deref();
    let rec = recommend::recommend(&loaded.catalogue, &loaded.manifest, &workload, template)?;
    let fit = match (&recorded, &args.project) {
        (Some(r), Some(dir)) => Some(recommend::project::compare(
            &rec,
            r,
            &loaded.manifest,
            &dir.to_string_lossy(),
            template,
        )),
        _ => None,
    };
    if args.json {
        let doc = json_document(&rec, &workload, fit.as_ref());
        print_json(&doc)?;
        return Ok(ExitStatus::Success);
    }
    print!(
        "{}",
        recommendation_text(&rec, &workload, fit.as_ref(), Paint::stdout())
    );
    if ask && fit.is_none() {
        return offer_generation(&rec, template).inspect_err(|_| restore_terminal());
    }
    Ok(ExitStatus::Success)
}

/// The `--json` document. `preset`, `layout`, `reasons`, `runner_up` (an id or null) and `command`
/// are the contract of SPEC §3; the other keys add detail. With `--project`, `current_preset` and
/// `update_command` (null when the project already fits, or when `update` cannot move it) too.
pub fn json_document(rec: &Recommendation, workload: &Workload, fit: Option<&ProjectFit>) -> serde_json::Value {
    let mut doc = json!({
        "preset": rec.preset,
        "layout": rec.layout,
        "title": rec.title,
        "score": rec.score,
        "reasons": rec.reasons.iter().map(|r| json!({"rule": r.rule, "text": r.text, "weight": r.weight})).collect::<Vec<_>>(),
        "runner_up": rec.runner_up.as_ref().map(|r| r.preset.clone()),
        "runner_up_score": rec.runner_up.as_ref().map(|r| r.score),
        "runner_up_reason": rec.runner_up.as_ref().map(|r| r.reason.clone()),
        "differences": rec.runner_up.as_ref().map(|r| r.differences.clone()).unwrap_or_default(),
        "tie_break": rec.tie_break,
        "fallback": rec.fallback,
        "excluded": rec.excluded,
        "ranking": rec.ranking.iter().map(|s| json!({"preset": s.preset, "layout": s.layout, "score": s.score, "moving_parts": s.moving_parts})).collect::<Vec<_>>(),
        "workload": workload,
        "command": rec.command,
    });
    if let (Some(fit), Some(map)) = (fit, doc.as_object_mut()) {
        map.insert("project".into(), json!(fit.project));
        map.insert("current_preset".into(), json!(fit.current_preset));
        map.insert("current_layout".into(), json!(fit.current_layout));
        map.insert("change".into(), json!(fit.change));
        map.insert("update_command".into(), json!(fit.update_command));
        map.insert("verdict".into(), json!(fit.verdict));
        map.insert("project_note".into(), json!(fit.note));
    }
    doc
}

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
    if !rec.reasons.is_empty() {
        o.push_str(&format!("\n{} (score {})\n", paint.bold("Why"), rec.score));
        for r in &rec.reasons {
            o.push_str(&format!("  {:>3}  {}\n", recommend::signed(r.weight), r.rule));
            o.push_str(&wrap(&r.text, "       ", 7));
        }
    }
    if let Some(r) = &rec.runner_up {
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
    }
    if let Some(t) = &rec.tie_break {
        o.push('\n');
        o.push_str(&wrap(
            &format!("{t} (Tie rule: {}.)", recommend::TIE_RULE),
            &format!("{} ", paint.bold("Tie:")),
            2,
        ));
    }
    if !rec.excluded.is_empty() {
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
    }
    match fit {
        None => o.push_str(&format!("\n{}\n  {}\n", paint.bold("Generate it:"), rec.command)),
        Some(fit) => {
            o.push_str(&format!("\n{} {}\n", paint.bold("Your project:"), fit.project));
            o.push_str(&wrap(&fit.verdict, "  ", 2));
            if let Some(note) = &fit.note {
                o.push_str(&wrap(note, "  note: ", 8));
            }
            if let Some(cmd) = &fit.update_command {
                o.push_str(&format!("\n{}\n  {cmd}\n", paint.bold("Update it:")));
            }
        }
    }
    o
}

// ----- the questions -----

/// Shows the cursor again after an interrupted prompt (dialoguer hides it while a list is open).
fn restore_terminal() {
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

/// After an interactive recommendation: offer to generate the project, through the very code path
/// of `stackwise new NAME --preset ID` (the same request, generated and reported the same way).
fn offer_generation(rec: &Recommendation, template: Option<&str>) -> Result<ExitStatus> {
    let theme = ColorfulTheme::default();
    eprintln!();
    let go = Confirm::with_theme(&theme)
        .with_prompt(format!("Generate a project with the {} preset now?", rec.preset))
        .default(true)
        .interact()
        .map_err(prompt_err)?;
    if !go {
        eprintln!("Not generating. Run the command above when you are ready.");
        return Ok(ExitStatus::Success);
    }
    let name: String = TextInput::with_theme(&theme)
        .with_prompt("Project name")
        .validate_with(|s: &String| -> std::result::Result<(), String> {
            stackwise::template::names::ProjectName::parse(s)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .interact_text()
        .map_err(prompt_err)?;
    let name = name.trim().to_string();
    let mut shown = vec!["stackwise", "new", &name, "--preset", &rec.preset];
    if let Some(t) = template {
        shown.extend(["--template", t]);
    }
    let shown: Vec<String> = shown.iter().map(|a| recommend::explain::shell_quote(a)).collect();
    eprintln!("{} {}", style::bold("running:"), shown.join(" "));
    let req = NewRequest {
        name,
        preset: Some(rec.preset.clone()),
        layout: None,
        output_dir: PathBuf::from("."),
        template: template_flag(template, None)?.unwrap_or(TemplateSource::Builtin),
        sets: Vec::new(),
        answers_file: None,
        force: false,
        dry_run: false,
        git: true,
        install: super::new::ask_install(true, template.is_some())?,
    };
    super::new::generate_project(&req, true, false)
}
