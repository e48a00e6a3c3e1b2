//! Values of template variables: TOML → JSON, coercion of raw input to a variable's type,
//! and its checks (choices, bounds, length, pattern).

use serde_json::Value;

use super::variable::{VarType, Variable};

/// Converts a TOML value (manifest defaults, preset options, answers files) to JSON.
pub fn toml_to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(t.iter().map(|(k, v)| (k.clone(), toml_to_json(v))).collect()),
    }
}

/// Converts `value` to the variable's type and checks choices, bounds and pattern.
/// Strings (from `--set` or prompts) are parsed: `true`/`false`, integers, comma-separated lists.
pub fn coerce(var: &Variable, value: &Value) -> std::result::Result<Value, String> {
    let typed = match (var.kind, value) {
        (VarType::Bool, Value::Bool(b)) => Value::Bool(*b),
        (VarType::Bool, Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "1" | "on" => Value::Bool(true),
            "false" | "no" | "n" | "0" | "off" => Value::Bool(false),
            other => return Err(format!("expected a boolean (true or false), got {other:?}")),
        },
        (VarType::Integer, Value::Number(n)) if n.is_i64() => value.clone(),
        (VarType::Integer, Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("expected an integer, got {s:?}"))?,
        (VarType::String | VarType::Choice, Value::String(s)) => Value::String(s.clone()),
        (VarType::List, Value::Array(items)) => {
            let mut out = Vec::new();
            for i in items {
                match i {
                    Value::String(s) => out.push(Value::String(s.clone())),
                    other => return Err(format!("expected a list of strings, found {other}")),
                }
            }
            Value::Array(out)
        }
        (VarType::List, Value::String(s)) => Value::Array(
            s.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| Value::String(p.to_string()))
                .collect(),
        ),
        (kind, other) => {
            return Err(format!("expected a value of type {}, got {other}", kind.as_str()));
        }
    };
    if let (Some(choices), Value::String(s)) = (&var.choices, &typed)
        && !choices.contains(s)
    {
        return Err(format!("{s:?} is not one of the choices: {}", choices.join(", ")));
    }
    if let (Some(choices), Value::Array(items)) = (&var.choices, &typed) {
        for i in items {
            let s = i.as_str().unwrap_or_default();
            if !choices.iter().any(|c| c == s) {
                return Err(format!("{s:?} is not one of the choices: {}", choices.join(", ")));
            }
        }
    }
    if let Some(n) = typed.as_i64()
        && (var.min.is_some_and(|m| n < m) || var.max.is_some_and(|m| n > m))
    {
        {
            return Err(format!(
                "{n} is out of range ({}..={})",
                var.min.map_or("".into(), |m| m.to_string()),
                var.max.map_or("".into(), |m| m.to_string())
            ));
        }
    }
    if let (Some(max), Value::String(s)) = (var.max_length, &typed)
        && s.chars().count() > max
    {
        return Err(format!(
            "{} characters is too long; the limit is {max}",
            s.chars().count()
        ));
    }
    if let (Some(pattern), Value::String(s)) = (&var.pattern, &typed) {
        let re = compiled_pattern(pattern).map_err(|e| format!("the template's pattern is invalid: {e}"))?;
        if !re.is_match(s) {
            return Err(var
                .pattern_message
                .clone()
                .unwrap_or_else(|| format!("{s:?} does not match the pattern {pattern}")));
        }
    }
    Ok(typed)
}

/// Compiles a validation pattern once per process (patterns are checked at load and at every value).
pub fn compiled_pattern(pattern: &str) -> std::result::Result<regex::Regex, regex::Error> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<String, regex::Regex>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(re) = cache.lock().ok().and_then(|c| c.get(pattern).cloned()) {
        return Ok(re);
    }
    let re = regex::Regex::new(pattern)?;
    if let Ok(mut c) = cache.lock() {
        c.insert(pattern.to_string(), re.clone());
    }
    Ok(re)
}
