//! The boolean option matrix: every combination of the boolean variables that apply to a layout.
//! The one builder `stackwise lint` and `stackwise test --matrix` share.

use serde_json::{Map, Value};

use super::files::MANIFEST_FILE;
use super::inline::{self, InlineFailure};
use super::manifest::Manifest;
use super::variable::{VarType, Variable};
use crate::error::Result;

/// The most boolean variables combined exhaustively (2^N combinations per preset or layout).
pub const MAX_BOOL_VARS: usize = 8;

/// Every combination (name → true/false) of the boolean variables that apply to `layout`: those
/// without a `when`, or whose `when` holds with only the layout known (one that needs other
/// answers counts as applying). The first [`MAX_BOOL_VARS`] of them, in manifest order; one empty
/// combination when there are none. A variable `fixed` holds a value for is not combined. An
/// error only when a `when` was stopped ([`applies`]).
pub fn bool_matrix(manifest: &Manifest, layout: &str, fixed: &Map<String, Value>) -> Result<Vec<Map<String, Value>>> {
    let mut bools = Vec::new();
    for v in &manifest.variables {
        if bools.len() < MAX_BOOL_VARS && v.kind == VarType::Bool && !fixed.contains_key(&v.name) && applies(v, layout)?
        {
            bools.push(v.name.as_str());
        }
    }
    Ok((0..1usize << bools.len())
        .map(|mask| {
            bools
                .iter()
                .enumerate()
                .map(|(i, name)| ((*name).to_string(), Value::Bool(mask & (1 << i) != 0)))
                .collect()
        })
        .collect())
}

/// Whether `v` applies to `layout`: no `when`, or one that holds with only the layout known (one
/// that needs other answers counts as applying). An error only when its render was stopped (over
/// its budget, Ctrl-C): every later render of it would be stopped too.
pub fn applies(v: &Variable, layout: &str) -> Result<bool> {
    let Some(w) = v.when.as_deref() else {
        return Ok(true);
    };
    let mut ctx = Map::new();
    ctx.insert("layout".into(), Value::String(layout.to_string()));
    match inline::try_eval(w, &ctx) {
        Ok(holds) => Ok(holds),
        Err(InlineFailure::Invalid(_)) => Ok(true),
        Err(InlineFailure::Stopped(stop)) => {
            Err(stop.into_error(MANIFEST_FILE, format!("the `when` of variable `{}`", v.name)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Template;
    use crate::template::source::TemplateSource;

    /// A boolean whose `when` is false for a layout is not combined there; the others are.
    #[test]
    fn the_matrix_honours_when() {
        let t = Template::load(&TemplateSource::Builtin).unwrap();
        for layout in t.manifest.layouts.keys() {
            let matrix = bool_matrix(&t.manifest, layout, &Map::new()).unwrap();
            let applying: Vec<&Variable> = t
                .manifest
                .variables
                .iter()
                .filter(|v| v.kind == VarType::Bool && applies(v, layout).unwrap())
                .collect();
            assert_eq!(matrix.len(), 1 << applying.len().min(MAX_BOOL_VARS), "{layout}");
            for v in t.manifest.variables.iter().filter(|v| v.kind == VarType::Bool) {
                let combined = matrix.iter().any(|m| m.contains_key(&v.name));
                assert_eq!(
                    combined,
                    applying.iter().any(|a| a.name == v.name),
                    "{layout}: {}",
                    v.name
                );
            }
        }
        let no_when_false = t
            .manifest
            .variables
            .iter()
            .any(|v| v.kind == VarType::Bool && t.manifest.layouts.keys().any(|l| !applies(v, l).unwrap()));
        assert!(
            no_when_false,
            "the built-in template has a boolean that does not apply to some layout"
        );
    }
}
