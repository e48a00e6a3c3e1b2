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
use dialoguer::{Confirm, Input as TextInput};
use serde_json::json;
use stackwise::Result;
use stackwise::project::new::NewRequest;
use stackwise::recommend::{self, Answer, INPUTS, Input, Kind, ProjectFit, Recommendation, Recorded, Workload};
use stackwise::template::source::TemplateSource;

use super::ask::prompt_err;
use super::settings::{Settings, print_json, template_flag};
use super::status::ExitStatus;
use super::style::{self, Paint};
use super::workload::{ask_workload, recommendation_text, restore_terminal};

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
    let ask = !args.json && workload.is_unknown() && settings.terminal();
    if ask {
        stackwise::interrupt::start_polling()?;
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
