//! `stackwise recommend`: flags (or, on a terminal, questions) → a preset with its reasons.
//! The decision itself is `stackwise::recommend`; this module parses, asks and prints.

use std::io::IsTerminal;

use clap::Parser;
use clap::builder::PossibleValuesParser;
use dialoguer::theme::ColorfulTheme;
use dialoguer::{Confirm, Input, Select};
use serde_json::json;
use stackwise::recommend::{self, Ai, Data, Realtime, Recommendation, Team, Workload};
use stackwise::template::source::TemplateSource;
use stackwise::{Error, Result};

use super::style;

#[derive(clap::Args, Debug, Default)]
pub struct RecommendArgs {
    /// AI/ML in the product: none, feature (one feature among many), core (the product is built around it).
    #[arg(long, value_name = "LEVEL", value_parser = PossibleValuesParser::new(Ai::CHOICES), hide_possible_values = true)]
    ai: Option<String>,
    /// Data engineering: none, some (analytics, reports), heavy (ETL and pipelines are central).
    #[arg(long, value_name = "LEVEL", value_parser = PossibleValuesParser::new(Data::CHOICES), hide_possible_values = true)]
    data: Option<String>,
    /// Real-time delivery: none, some (notifications, live updates), core (chat, collaboration, live dashboards).
    #[arg(long, value_name = "LEVEL", value_parser = PossibleValuesParser::new(Realtime::CHOICES), hide_possible_values = true)]
    realtime: Option<String>,
    /// Peak requests per second (e.g. 5000, 40_000, 40k).
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = recommend::count_from_str)]
    peak_rps: Option<u64>,
    /// Concurrent connections at peak (WebSocket, SSE, long polling).
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = recommend::count_from_str)]
    connections: Option<u64>,
    /// p99 latency target in milliseconds.
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = recommend::ms_from_str)]
    p99_ms: Option<f64>,
    /// The language the team works in: python, node, mixed.
    #[arg(long, value_name = "TEAM", value_parser = PossibleValuesParser::new(Team::CHOICES), hide_possible_values = true)]
    team: Option<String>,
    /// The back end shares TypeScript types and validation with the front end.
    #[arg(long)]
    shared_frontend_types: bool,
    /// Deployed serverless-first (per-invocation cost and memory matter).
    #[arg(long)]
    serverless: bool,
    /// Regulated domain with compliance requirements (health, finance).
    #[arg(long)]
    regulated: bool,
    /// Print one JSON document on stdout (never asks).
    #[arg(long)]
    json: bool,
    /// Template source whose presets to choose from (default: the built-in template).
    #[arg(long, value_name = "SRC")]
    template: Option<String>,
}

impl RecommendArgs {
    fn workload(&self) -> Result<Workload> {
        Ok(Workload {
            ai: self.ai.as_deref().map(Ai::parse).transpose()?,
            data: self.data.as_deref().map(Data::parse).transpose()?,
            realtime: self.realtime.as_deref().map(Realtime::parse).transpose()?,
            peak_rps: self.peak_rps,
            connections: self.connections,
            p99_ms: self.p99_ms,
            team: self.team.as_deref().map(Team::parse).transpose()?,
            shared_frontend_types: self.shared_frontend_types,
            serverless: self.serverless,
            regulated: self.regulated,
        })
    }
}

pub fn run(args: RecommendArgs) -> Result<()> {
    let source = TemplateSource::parse(args.template.as_deref(), None);
    let loaded = stackwise::template::Template::load(&source)?;
    let mut workload = args.workload()?;
    let ask = !args.json && workload.is_unknown() && std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if ask {
        let _ = ctrlc::set_handler(|| {
            stackwise::project::stage::INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        workload = ask_workload().inspect_err(|_| restore_terminal())?;
    }
    let rec = recommend::recommend(&loaded.catalogue, &loaded.manifest, &workload, args.template.as_deref())?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json_document(&rec, &workload)).unwrap_or_default()
        );
        return Ok(());
    }
    print!("{}", human(&rec, &workload));
    if ask {
        offer_generation(&rec, args.template.as_deref()).inspect_err(|_| restore_terminal())?;
    }
    Ok(())
}

/// The `--json` document. `preset`, `layout`, `reasons`, `runner_up` (an id or null) and `command`
/// are the contract of SPEC §3; the other keys add detail.
pub fn json_document(rec: &Recommendation, workload: &Workload) -> serde_json::Value {
    json!({
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
    })
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

/// The human-readable recommendation (stdout).
pub fn human(rec: &Recommendation, workload: &Workload) -> String {
    let mut o = String::new();
    o.push_str(&format!(
        "{} {} ({})\n",
        style::bold("Recommended preset:"),
        style::ok(&rec.preset),
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
        o.push_str(&format!("\n{} (score {})\n", style::bold("Why"), rec.score));
        for r in &rec.reasons {
            o.push_str(&format!("  {:>3}  {}\n", recommend::signed(r.weight), r.rule));
            o.push_str(&wrap(&r.text, "       ", 7));
        }
    }
    if let Some(r) = &rec.runner_up {
        o.push_str(&format!(
            "\n{} {} ({} layout, score {})\n",
            style::bold("Runner-up:"),
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
            &format!("{} ", style::bold("Tie:")),
            2,
        ));
    }
    if !rec.excluded.is_empty() {
        o.push_str(&format!("\n{}\n", style::bold("Ruled out")));
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
    o.push_str(&format!("\n{}\n  {}\n", style::bold("Generate it:"), rec.command));
    o
}

// ----- the questions -----

fn prompt_err(e: dialoguer::Error) -> Error {
    match e {
        dialoguer::Error::IO(io) if io.kind() == std::io::ErrorKind::Interrupted => Error::Interrupted,
        other => Error::Prompt(format!("cannot read the answer: {other}")),
    }
}

/// Shows the cursor again after an interrupted prompt (dialoguer hides it while a list is open).
fn restore_terminal() {
    let _ = dialoguer::console::Term::stderr().show_cursor();
}

/// Asks one multiple-choice question; the first item ("not sure") is the default and means unknown.
fn choose(theme: &ColorfulTheme, prompt: &str, items: &[&str]) -> Result<usize> {
    Select::with_theme(theme)
        .with_prompt(prompt)
        .items(items)
        .default(0)
        .interact()
        .map_err(prompt_err)
}

fn ask_number<T>(
    theme: &ColorfulTheme,
    prompt: &str,
    parse: fn(&str) -> std::result::Result<T, String>,
) -> Result<Option<T>> {
    let answer: String = Input::with_theme(theme)
        .with_prompt(prompt)
        .allow_empty(true)
        .validate_with(move |s: &String| -> std::result::Result<(), String> {
            if s.trim().is_empty() {
                Ok(())
            } else {
                parse(s).map(|_| ())
            }
        })
        .interact_text()
        .map_err(prompt_err)?;
    let answer = answer.trim();
    if answer.is_empty() {
        Ok(None)
    } else {
        parse(answer).map(Some).map_err(Error::Workload)
    }
}

fn ask_flag(theme: &ColorfulTheme, prompt: &str) -> Result<bool> {
    Confirm::with_theme(theme)
        .with_prompt(prompt)
        .default(false)
        .interact()
        .map_err(prompt_err)
}

/// Asks the workload questions one by one (on a terminal). Every question can be skipped: the
/// default answer is "not sure", which leaves that signal unknown.
pub(crate) fn ask_workload() -> Result<Workload> {
    let theme = ColorfulTheme::default();
    eprintln!(
        "{}",
        style::bold("Describe the workload (arrow keys and Enter; the default \"not sure\" leaves a signal unknown).")
    );
    let ai = match choose(
        &theme,
        "Is AI / ML part of the product?",
        &[
            "not sure",
            "no",
            "yes, one feature among many",
            "yes, the product is built around it",
        ],
    )? {
        1 => Some(Ai::None),
        2 => Some(Ai::Feature),
        3 => Some(Ai::Core),
        _ => None,
    };
    let data = match choose(
        &theme,
        "Data engineering (ETL, analytics, reports)?",
        &[
            "not sure",
            "none",
            "some: analytics or reports beside the API",
            "heavy: pipelines and ETL are central",
        ],
    )? {
        1 => Some(Data::None),
        2 => Some(Data::Some),
        3 => Some(Data::Heavy),
        _ => None,
    };
    let realtime = match choose(
        &theme,
        "Real-time delivery (WebSocket, live updates, streaming)?",
        &[
            "not sure",
            "none",
            "some: notifications or live updates",
            "core: chat, collaboration, live dashboards",
        ],
    )? {
        1 => Some(Realtime::None),
        2 => Some(Realtime::Some),
        3 => Some(Realtime::Core),
        _ => None,
    };
    let peak_rps = ask_number(
        &theme,
        "Peak requests per second (e.g. 5000 or 40k; empty if not sure)",
        recommend::count_from_str,
    )?;
    let connections = ask_number(
        &theme,
        "Concurrent connections at peak (empty if not sure)",
        recommend::count_from_str,
    )?;
    let p99_ms = ask_number(
        &theme,
        "p99 latency target in ms (empty if none)",
        recommend::ms_from_str,
    )?;
    let team = match choose(
        &theme,
        "What does the team write?",
        &["not sure", "Python", "TypeScript / Node", "both (mixed team)"],
    )? {
        1 => Some(Team::Python),
        2 => Some(Team::Node),
        3 => Some(Team::Mixed),
        _ => None,
    };
    let shared_frontend_types = ask_flag(&theme, "Share TypeScript types with the front end?")?;
    let serverless = ask_flag(&theme, "Serverless-first deployment?")?;
    let regulated = ask_flag(&theme, "Regulated domain (health, finance)?")?;
    Ok(Workload {
        ai,
        data,
        realtime,
        peak_rps,
        connections,
        p99_ms,
        team,
        shared_frontend_types,
        serverless,
        regulated,
    })
}

/// After an interactive recommendation: offer to generate the project, through the very code path
/// of `stackwise new NAME --preset ID` (the command line is built and dispatched as if typed).
fn offer_generation(rec: &Recommendation, template: Option<&str>) -> Result<()> {
    let theme = ColorfulTheme::default();
    eprintln!();
    let go = Confirm::with_theme(&theme)
        .with_prompt(format!("Generate a project with the {} preset now?", rec.preset))
        .default(true)
        .interact()
        .map_err(prompt_err)?;
    if !go {
        eprintln!("Not generating. Run the command above when you are ready.");
        return Ok(());
    }
    let name: String = Input::with_theme(&theme)
        .with_prompt("Project name")
        .validate_with(|s: &String| -> std::result::Result<(), String> {
            stackwise::template::names::ProjectName::parse(s)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .interact_text()
        .map_err(prompt_err)?;
    let mut argv: Vec<&str> = vec!["stackwise", "new", name.trim(), "--preset", &rec.preset];
    if let Some(t) = template {
        argv.extend(["--template", t]);
    }
    eprintln!("{} {}", style::bold("running:"), shell_words(&argv));
    let cli = super::Cli::try_parse_from(&argv).map_err(|e| Error::Prompt(e.to_string()))?;
    super::run(cli)
}

fn shell_words(argv: &[&str]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "_-./:@".contains(c)) {
                a.to_string()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
