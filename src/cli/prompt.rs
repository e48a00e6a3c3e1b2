//! Terminal prompts (dialoguer). Used only on a terminal and never with `--yes`.

use dialoguer::theme::ColorfulTheme;
use dialoguer::{Confirm, Input, MultiSelect, Select};
use serde_json::Value;
use stackwise::Result;
use stackwise::template::manifest::{Manifest, VarType, Variable};
use stackwise::template::preset::Catalogue;

use super::ask::prompt_err;

pub struct Terminal {
    interactive: bool,
    theme: ColorfulTheme,
}

impl Terminal {
    pub fn new(interactive: bool) -> Self {
        Terminal {
            interactive,
            theme: ColorfulTheme::default(),
        }
    }
}

impl stackwise::template::prompter::Prompter for Terminal {
    fn is_interactive(&self) -> bool {
        self.interactive
    }

    fn ask(&mut self, var: &Variable, default: &Value) -> Result<Value> {
        let label = var.prompt.clone().unwrap_or_else(|| var.name.clone());
        match var.kind {
            VarType::Bool => Confirm::with_theme(&self.theme)
                .with_prompt(label)
                .default(default.as_bool().unwrap_or(false))
                .interact()
                .map(Value::Bool)
                .map_err(prompt_err),
            VarType::Choice => {
                let choices = var.choices.clone().unwrap_or_default();
                let idx = choices
                    .iter()
                    .position(|c| Some(c.as_str()) == default.as_str())
                    .unwrap_or(0);
                Select::with_theme(&self.theme)
                    .with_prompt(label)
                    .items(&choices)
                    .default(idx)
                    .interact()
                    .map(|i| Value::String(choices[i].clone()))
                    .map_err(prompt_err)
            }
            VarType::List => {
                let choices = var.choices.clone().unwrap_or_default();
                let selected: Vec<bool> = choices
                    .iter()
                    .map(|c| {
                        default
                            .as_array()
                            .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(c)))
                    })
                    .collect();
                MultiSelect::with_theme(&self.theme)
                    .with_prompt(label)
                    .items(&choices)
                    .defaults(&selected)
                    .interact()
                    .map(|idx| Value::Array(idx.into_iter().map(|i| Value::String(choices[i].clone())).collect()))
                    .map_err(prompt_err)
            }
            VarType::String | VarType::Integer => {
                let v = var.clone();
                let default_text = match default {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                Input::<String>::with_theme(&self.theme)
                    .with_prompt(label)
                    .default(default_text)
                    .validate_with(move |input: &String| -> std::result::Result<(), String> {
                        stackwise::template::value::coerce(&v, &Value::String(input.clone())).map(|_| ())
                    })
                    .interact_text()
                    .map(Value::String)
                    .map_err(prompt_err)
            }
        }
    }

    fn choose_preset(&mut self, catalogue: &Catalogue, manifest: &Manifest) -> Result<Option<String>> {
        let mut items: Vec<String> = catalogue
            .presets
            .iter()
            .map(|p| {
                let default = if p.default { " (default)" } else { "" };
                format!("{:14} {:7} {}{default}", p.id, p.layout, p.summary)
            })
            .collect();
        items.push("not sure: answer a few workload questions and let stackwise recommend".to_string());
        let default = catalogue.presets.iter().position(|p| p.default).unwrap_or(0);
        let i = Select::with_theme(&self.theme)
            .with_prompt("Which preset?")
            .items(&items)
            .default(default)
            .interact()
            .map_err(prompt_err)?;
        if let Some(p) = catalogue.presets.get(i) {
            return Ok(Some(p.id.clone()));
        }
        let workload = super::workload::ask_workload()?;
        let rec = stackwise::recommend::recommend(catalogue, manifest, &workload, None)?;
        eprint!(
            "{}",
            super::workload::recommendation_text(&rec, &workload, None, super::style::Paint::stderr())
        );
        Ok(Some(rec.preset))
    }
}
