//! Places in a template's TOML files. Every problem the checks of a manifest, a component or a
//! preset find is reported as `file:line:col: message`: this module finds the byte offset of a key
//! or a value by its path in the parsed document, and turns offsets into lines and columns.

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::{Error, Problem};

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(source.len());
    while !source.is_char_boundary(at) {
        at -= 1;
    }
    let before = &source[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The byte offset in `source` of the `offset`-th byte of a TOML string's value, where `span`
/// is the string as written (quotes included) and `value` what it means. Exact when the value is
/// written without escapes up to that point; otherwise the start of the string.
pub fn position_in_string(source: &str, span: Range<usize>, value: &str, offset: usize) -> usize {
    let Some(raw) = source.get(span.clone()) else {
        return span.start;
    };
    let quotes = if raw.starts_with("\"\"\"") || raw.starts_with("'''") {
        3
    } else if raw.starts_with('"') || raw.starts_with('\'') {
        1
    } else {
        // A bare key: written as it reads.
        0
    };
    let mut body = &raw[quotes.min(raw.len())..];
    let mut start = span.start + quotes;
    // A newline right after the opening quotes of a multi-line string is not part of the value.
    if quotes == 3 {
        for newline in ["\r\n", "\n"] {
            if let Some(rest) = body.strip_prefix(newline) {
                body = rest;
                start += newline.len();
                break;
            }
        }
    }
    // Past the end of the value (an expression that stops short): its end.
    let offset = offset.min(value.len());
    let same = body.bytes().zip(value.bytes()).take_while(|(a, b)| a == b).count();
    if offset <= same { start + offset } else { span.start }
}

/// One step of a path into a TOML document: the key of a table or the index in an array.
#[derive(Debug, Clone, Copy)]
pub enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

impl<'a> From<&'a str> for Step<'a> {
    fn from(key: &'a str) -> Self {
        Step::Key(key)
    }
}

impl<'a> From<&'a String> for Step<'a> {
    fn from(key: &'a String) -> Self {
        Step::Key(key)
    }
}

impl From<usize> for Step<'_> {
    fn from(index: usize) -> Self {
        Step::Index(index)
    }
}

/// A path into a document: `toml_path!["variables", 2, "name"]`.
macro_rules! toml_path {
    ($($step:expr),* $(,)?) => {
        &[$($crate::template::span::Step::from($step)),*][..]
    };
}
pub(crate) use toml_path;

/// A TOML file of a template, parsed with the place of every key and value.
pub struct Document<'t> {
    /// The file as a user finds it in the template (`stackwise.toml`, `presets/x.toml`).
    pub file: String,
    pub text: &'t str,
    root: Spanned<DeTable<'t>>,
}

impl<'t> Document<'t> {
    /// Parses `text`; every syntax error is a problem at its place.
    pub fn parse(file: impl Into<String>, text: &'t str) -> Result<Self, Vec<Problem>> {
        let file = file.into();
        let (root, errors) = DeTable::parse_recoverable(text);
        let doc = Document { file, text, root };
        if errors.is_empty() {
            return Ok(doc);
        }
        let mut problems: Vec<Problem> = errors.iter().map(|e| doc.toml_problem(e)).collect();
        problems.dedup();
        Err(problems)
    }

    /// Deserializes the whole document. Serde stops at the first mismatch (an unknown key, a
    /// value of the wrong type), which is returned at its place.
    pub fn deserialize<T: Deserialize<'t>>(&self) -> Result<T, Problem> {
        T::deserialize(toml::de::Deserializer::from(self.root.clone())).map_err(|e| self.toml_problem(&e))
    }

    /// Deserializes the value at `path` alone (absent: `None`), so that a mismatch in one entry
    /// of an array does not hide those of the others.
    pub fn deserialize_at<T: Deserialize<'t>>(&self, path: &[Step]) -> Option<Result<T, Problem>> {
        let value = self.value(path)?.clone();
        Some(T::deserialize(toml::de::ValueDeserializer::from(value)).map_err(|e| self.toml_problem(&e)))
    }

    /// Deserializes the value at `path` alone and adds its mismatch, if new, to `found`.
    pub fn check_part<T: Deserialize<'t>>(&self, path: &[Step], found: &mut Vec<Problem>) {
        if let Some(Err(p)) = self.deserialize_at::<T>(path)
            && !found.contains(&p)
        {
            found.push(p);
        }
    }

    /// The keys of the table at `path`, in the document's order.
    pub fn keys(&self, path: &[Step]) -> Vec<String> {
        match self.value(path).map(Spanned::get_ref) {
            Some(DeValue::Table(t)) => t.iter().map(|(k, _)| k.get_ref().to_string()).collect(),
            _ => Vec::new(),
        }
    }

    fn toml_problem(&self, e: &toml::de::Error) -> Problem {
        let at = e.span().map_or(0, |s| s.start);
        self.problem_at(at, e.message().trim())
    }

    /// The value at `path`, if the document has one there.
    pub fn value(&self, path: &[Step]) -> Option<&Spanned<DeValue<'t>>> {
        let (first, rest) = path.split_first()?;
        let mut value = child_of_table(self.root.get_ref(), *first)?.1;
        for step in rest {
            value = child(value, *step)?;
        }
        Some(value)
    }

    /// The last key of `path` as written, if the document has one there.
    fn key(&self, path: &[Step]) -> Option<&Spanned<Cow<'t, str>>> {
        let (last, parents) = path.split_last()?;
        let table = if parents.is_empty() {
            self.root.get_ref()
        } else {
            match self.value(parents)?.get_ref() {
                DeValue::Table(t) => t,
                _ => return None,
            }
        };
        child_of_table(table, *last).map(|(key, _)| key)
    }

    /// The number of entries of the array at `path` (0 when there is none).
    pub fn array_len(&self, path: &[Step]) -> usize {
        match self.value(path).map(Spanned::get_ref) {
            Some(DeValue::Array(a)) => a.len(),
            _ => 0,
        }
    }

    /// The byte offset of the value at `path`, `offset` bytes into it when it is a string; when
    /// the path stops short (a key that is absent), the place of the deepest value it reaches.
    pub fn value_offset(&self, path: &[Step], offset: usize) -> usize {
        match self.value(path) {
            Some(v) => match v.get_ref() {
                DeValue::String(s) => position_in_string(self.text, v.span(), s, offset),
                _ => v.span().start,
            },
            None => self.nearest(path),
        }
    }

    /// The byte offset of the last key of `path` itself (for a name that is wrong).
    pub fn key_offset(&self, path: &[Step]) -> usize {
        match self.key(path) {
            Some(key) => position_in_string(self.text, key.span(), key.get_ref(), 0),
            None => self.value_offset(path, 0),
        }
    }

    fn nearest(&self, path: &[Step]) -> usize {
        (0..path.len())
            .rev()
            .find_map(|n| self.value(&path[..n]).map(|v| v.span().start))
            .unwrap_or(0)
    }

    /// A problem at a byte offset of the file.
    pub fn problem_at(&self, at: usize, message: impl Into<String>) -> Problem {
        let (line, col) = line_col(self.text, at);
        Problem::at(&self.file, line, col, message)
    }

    /// A problem with the value at `path` (inside the quotes when it is a string).
    pub fn at_value(&self, path: &[Step], message: impl Into<String>) -> Problem {
        self.at_inside(path, 0, message)
    }

    /// A problem `offset` bytes into the value at `path` (a string: a Tera or regex error).
    pub fn at_inside(&self, path: &[Step], offset: usize, message: impl Into<String>) -> Problem {
        self.problem_at(self.value_offset(path, offset), message)
    }

    /// A problem with the last key of `path` (an unknown or duplicated name).
    pub fn at_key(&self, path: &[Step], message: impl Into<String>) -> Problem {
        self.problem_at(self.key_offset(path), message)
    }
}

type Entry<'d, 't> = (&'d Spanned<Cow<'t, str>>, &'d Spanned<DeValue<'t>>);

fn child_of_table<'d, 't>(table: &'d DeTable<'t>, step: Step) -> Option<Entry<'d, 't>> {
    match step {
        Step::Key(k) => table.iter().find(|(key, _)| key.get_ref() == k),
        Step::Index(_) => None,
    }
}

fn child<'d, 't>(value: &'d Spanned<DeValue<'t>>, step: Step) -> Option<&'d Spanned<DeValue<'t>>> {
    match (value.get_ref(), step) {
        (DeValue::Table(t), Step::Key(_)) => child_of_table(t, step).map(|(_, v)| v),
        (DeValue::Array(a), Step::Index(i)) => a.get(i),
        _ => None,
    }
}

/// The error of a value that fails only when a project renders (a default, a `when`, a flag),
/// `at` bytes into the value at `path` of `file`, whose text is `text`.
pub fn error_at(file: &str, text: &str, path: &[Step], at: usize, message: impl Into<String>) -> Error {
    let problem = match Document::parse(file, text) {
        Ok(doc) => doc.at_inside(path, at, message),
        Err(_) => Problem::file(file, message),
    };
    Error::InvalidTemplate(vec![problem])
}

/// Sorts the problems of one file by place (stable: two at one place keep their order).
pub fn sort(problems: &mut [Problem]) {
    problems.sort_by_key(|p| (p.line, p.col));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_count_characters_from_one() {
        let text = "a = 1\nname = \"é-x\"\n\nlast";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 4), (1, 5));
        assert_eq!(line_col(text, 6), (2, 1));
        // `é` is two bytes and one column.
        let x = text.find('x').unwrap();
        assert_eq!(line_col(text, x), (2, 11));
        assert_eq!(line_col(text, text.len()), (4, 5));
        // Past the end, or inside a character: clamped, never a panic.
        assert_eq!(line_col(text, 1000), (4, 5));
        assert_eq!(line_col(text, x - 2), (2, 9));
    }

    #[test]
    fn strings_are_located_inside_their_quotes() {
        let text = "a = \"hello\"\nb = '''\nworld'''\nc = \"\\u0061bc\"\n";
        let doc = Document::parse("f.toml", text).unwrap();
        assert_eq!(line_col(text, doc.value_offset(toml_path!["a"], 0)), (1, 6));
        assert_eq!(line_col(text, doc.value_offset(toml_path!["a"], 2)), (1, 8));
        // A multi-line string starts after the newline that follows its quotes.
        assert_eq!(line_col(text, doc.value_offset(toml_path!["b"], 1)), (3, 2));
        // After an escape the exact column is unknown: the start of the string.
        assert_eq!(line_col(text, doc.value_offset(toml_path!["c"], 2)), (4, 5));
    }

    #[test]
    fn paths_find_keys_and_values_in_tables_and_arrays() {
        let text =
            "[[v]]\nname = \"a\"\n[[v]]\nname = \"B\"\n[l.one]\nmounts = [{ component = \"x\", flags = { k = 1 } }]\n";
        let doc = Document::parse("stackwise.toml", text).unwrap();
        assert_eq!(doc.array_len(toml_path!["v"]), 2);
        let p = doc.at_value(toml_path!["v", 1, "name"], "bad name");
        assert_eq!(p.to_string(), "stackwise.toml:4:9: bad name");
        let p = doc.at_key(toml_path!["l", "one", "mounts", 0, "flags", "k"], "unknown flag");
        assert_eq!(p.to_string(), "stackwise.toml:6:40: unknown flag");
        // An absent key: the deepest value the path reaches.
        let p = doc.at_value(toml_path!["v", 0, "type"], "needs a type");
        assert_eq!((p.line, p.col), (1, 1));
    }

    #[test]
    fn every_syntax_error_is_reported_at_its_place() {
        let problems = Document::parse("x.toml", "a = 1\nb = \nc = 2\nd = ]\n").err().unwrap();
        let places: Vec<String> = problems.iter().map(|p| format!("{}:{}", p.line, p.col)).collect();
        assert!(problems.len() >= 2, "{problems:?}");
        assert!(places.iter().any(|p| p.starts_with("2:")), "{places:?}");
        assert!(places.iter().any(|p| p.starts_with("4:")), "{places:?}");
    }

    #[test]
    fn a_type_mismatch_is_at_the_value() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            n: i64,
        }
        let doc = Document::parse("t.toml", "\nn = \"three\"\n").unwrap();
        let p = doc.deserialize::<T>().unwrap_err();
        assert_eq!((p.line, p.col), (2, 5), "{p}");
        assert!(p.message.contains("\"three\""), "{p}");
    }
}
