//! `stackwise presets [show ID]`: the workload presets of a template.

use clap::Subcommand;
use stackwise::Error;
use stackwise::template::source::TemplateSource;

use super::settings::print_json;
use super::status::ExitStatus;
use super::style;

#[derive(clap::Args, Debug)]
pub struct PresetsArgs {
    #[command(subcommand)]
    action: Option<PresetsAction>,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Template source (default: the built-in template).
    #[arg(long, value_name = "SRC", global = true)]
    template: Option<String>,
}

#[derive(Subcommand, Debug)]
enum PresetsAction {
    /// Layout, components, options and rationale of one preset.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: PresetsArgs) -> Result<ExitStatus, Error> {
    let source = super::settings::template_flag(args.template.as_deref(), None)?.unwrap_or(TemplateSource::Builtin);
    let loaded = stackwise::template::Template::load(&source)?;
    match args.action {
        None => {
            if args.json {
                print_json(&loaded.catalogue.presets)?;
                return Ok(ExitStatus::Success);
            }
            let width = loaded.catalogue.presets.iter().map(|p| p.id.len()).max().unwrap_or(0);
            for p in &loaded.catalogue.presets {
                let default = if p.default { " (default)" } else { "" };
                println!("{:width$}  {:7}  {}{default}", p.id, p.layout, p.summary, width = width);
            }
            eprintln!("\nstackwise presets show ID    details of one preset");
            Ok(ExitStatus::Success)
        }
        Some(PresetsAction::Show { id, json }) => {
            let p = loaded.catalogue.get(&id)?;
            let layout = &loaded.manifest.layouts[&p.layout];
            if json || args.json {
                let doc = serde_json::json!({
                    "preset": p,
                    "components": layout.mounts.iter().map(|m| serde_json::json!({"component": m.component, "at": m.at})).collect::<Vec<_>>(),
                });
                print_json(&doc)?;
                return Ok(ExitStatus::Success);
            }
            let mut out = String::new();
            out.push_str(&format!("{} — {}\n", style::Paint::stdout().bold(&p.id), p.title));
            out.push_str(&format!("layout:     {} ({})\n", p.layout, layout.description));
            out.push_str("components:\n");
            for m in &layout.mounts {
                out.push_str(&format!("  {:<16} at {}\n", m.component, m.at));
            }
            out.push_str("options:\n");
            for v in &loaded.manifest.variables {
                let value = p
                    .options
                    .get(&v.name)
                    .map(|x| x.to_string())
                    .unwrap_or_else(|| "(template default)".to_string());
                out.push_str(&format!("  {:<16} {value}\n", v.name));
            }
            out.push_str(&format!("\n{}\n", p.rationale.trim()));
            out.push_str("\nsignals that lead here (stackwise recommend; weight, condition, rule):\n");
            for line in stackwise::recommend::describe_signals(p) {
                out.push_str(&format!("  {line}\n"));
            }
            out.push_str(&format!("\ngenerate it: stackwise new NAME --preset {}\n", p.id));
            print!("{out}");
            Ok(ExitStatus::Success)
        }
    }
}
