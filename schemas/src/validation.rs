//! What makes a command valid, and how a bad one is described: one [`FieldError`] per bad field,
//! which the gateway turns into the `details` of a 400 answer.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::geometry::Bounds;
use crate::ids::RegionId;

/// One bad field: which, a stable snake_case code, and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FieldError {
    /// The field's name (`x`, `text`, `state.hp`); empty for the body as a whole.
    pub field: String,
    /// What is wrong, as a stable code: `required`, `invalid_type`, `unknown_field`, `length`,
    /// `out_of_world`, ...
    pub code: String,
    /// What is wrong, for people.
    pub message: String,
}

impl FieldError {
    /// A field error.
    pub fn new(
        field: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            code: code.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// A command (or other client input) that was refused, with every reason at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Invalid {
    /// One entry per bad field; never empty.
    pub details: Vec<FieldError>,
}

impl Invalid {
    /// A refusal for one reason.
    pub fn one(
        field: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            details: vec![FieldError::new(field, code, message)],
        }
    }

    /// `Ok(())` when nothing was found wrong, the refusal otherwise.
    pub fn check(details: Vec<FieldError>) -> Result<(), Self> {
        if details.is_empty() {
            Ok(())
        } else {
            Err(Self { details })
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid input")?;
        for (i, detail) in self.details.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            detail.fmt(f)?;
        }
        Ok(())
    }
}

/// What the domain rules need to know about the world: its bounds and its regions. Built by the
/// gateway from the region config.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationContext {
    /// The whole world; a destination outside it is refused.
    pub world: Bounds,
    /// The regions that exist; a `spawn` naming another is refused.
    pub regions: BTreeSet<RegionId>,
}

/// Domain rules beyond what `validator` attributes say: checks that need the world, or that
/// look at several fields.
pub(crate) trait DomainRules {
    fn check_domain(&self, _ctx: &ValidationContext, _errors: &mut Vec<FieldError>) {}

    /// Writes what of [`DomainRules::check_domain`] a JSON Schema can say (bounds, the regions
    /// there are, patterns) into the schema of the payload's `properties`, next to the rule
    /// itself so that the two change together.
    fn state_in_schema(_ctx: &ValidationContext, _properties: &mut Map<String, Value>)
    where
        Self: Sized,
    {
    }
}

/// Runs the `validator` rules and then the domain rules, collecting every failure.
pub(crate) fn validate_payload<T: validator::Validate + DomainRules>(
    payload: &T,
    ctx: &ValidationContext,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Err(found) = payload.validate() {
        flatten_validator_errors("", &found, &mut errors);
    }
    payload.check_domain(ctx, &mut errors);
    errors
}

fn flatten_validator_errors(
    prefix: &str,
    found: &validator::ValidationErrors,
    out: &mut Vec<FieldError>,
) {
    let mut fields: Vec<_> = found.errors().iter().collect();
    fields.sort_by(|a, b| a.0.cmp(b.0));
    for (field, kind) in fields {
        let path = if prefix.is_empty() {
            field.to_string()
        } else {
            format!("{prefix}.{field}")
        };
        match kind {
            validator::ValidationErrorsKind::Field(errs) => {
                for err in errs {
                    let message = err
                        .message
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_else(|| describe_validator_error(err));
                    out.push(FieldError::new(path.clone(), err.code.to_string(), message));
                }
            }
            validator::ValidationErrorsKind::Struct(inner) => {
                flatten_validator_errors(&path, inner, out)
            }
            validator::ValidationErrorsKind::List(items) => {
                for (index, inner) in items {
                    flatten_validator_errors(&format!("{path}[{index}]"), inner, out);
                }
            }
        }
    }
}

fn describe_validator_error(err: &validator::ValidationError) -> String {
    let param = |name: &str| err.params.get(name).map(|v| v.to_string());
    match err.code.as_ref() {
        "length" => match (param("min"), param("max")) {
            (Some(min), Some(max)) => format!("must be {min} to {max} characters long"),
            (Some(min), None) => format!("must be at least {min} characters long"),
            (None, Some(max)) => format!("must be at most {max} characters long"),
            (None, None) => "has the wrong length".to_owned(),
        },
        "range" => match (param("min"), param("max")) {
            (Some(min), Some(max)) => format!("must be between {min} and {max}"),
            (Some(min), None) => format!("must be at least {min}"),
            (None, Some(max)) => format!("must be at most {max}"),
            (None, None) => "is out of range".to_owned(),
        },
        code => format!("fails the `{code}` rule"),
    }
}

/// Takes one field out of a JSON object and decodes it, recording why when it cannot be.
///
/// A missing field decodes as `null`, so `Option` fields may be left out and required ones get
/// a `required` error; an explicit `null` counts as missing.
pub(crate) fn take_field<T: serde::de::DeserializeOwned>(
    map: &mut Map<String, Value>,
    name: &str,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    let present = map.get(name).is_some_and(|v| !v.is_null());
    let value = map.remove(name).unwrap_or(Value::Null);
    match serde_json::from_value::<T>(value) {
        Ok(v) => Some(v),
        Err(_) if !present => {
            errors.push(FieldError::new(name, "required", "is required"));
            None
        }
        Err(e) => {
            errors.push(FieldError::new(name, "invalid", e.to_string()));
            None
        }
    }
}

/// The regular-expression character class of exactly the characters `member` holds: how a rule
/// written as a Rust predicate is stated in a JSON Schema `pattern`, so that the document and the
/// check cannot drift apart.
///
/// It is written as ranges of literal characters, either those `member` holds (`[...]`) or those
/// it does not (`[^...]`), whichever is shorter. The shorter form is not only smaller: test-data
/// generators (Hypothesis, under Schemathesis) draw from a negated class of a few ranges at once
/// but take a minute for the same set written as ranges up to U+10FFFF. The characters a class
/// gives a meaning to (`\`, `]`, `[`, `^`, `-`) are escaped; every other one is written as itself,
/// which ECMA-262 (with the `u` flag, as JSON Schema validators use it), Python's `re` and the
/// `regex` crate read alike. Surrogates are not characters (and a body holding a lone one is
/// malformed JSON to the gateway), so a negated class does not list them.
pub fn char_class(member: impl Fn(char) -> bool) -> String {
    let held = ranges_of(&member);
    let not_held = ranges_of(|c| !member(c));
    if held.is_empty() || class_len(&held) > class_len(&not_held) + 1 {
        class("[^", &not_held)
    } else {
        class("[", &held)
    }
}

/// The runs of consecutive characters (first, last) that `member` holds.
fn ranges_of(member: impl Fn(char) -> bool) -> Vec<(char, char)> {
    let mut runs: Vec<(char, char)> = Vec::new();
    // `char::from_u32` skips the surrogates: no run spans them.
    for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
        if !member(c) {
            continue;
        }
        match runs.last_mut() {
            Some((_, last)) if u32::from(c) == u32::from(*last) + 1 => *last = c,
            _ => runs.push((c, c)),
        }
    }
    runs
}

/// How many characters `runs` take in a class (escapes aside).
fn class_len(runs: &[(char, char)]) -> usize {
    runs.iter()
        .map(|(first, last)| match u32::from(*last) - u32::from(*first) {
            0 => 1,
            1 => 2,
            _ => 3,
        })
        .sum()
}

fn class(open: &str, runs: &[(char, char)]) -> String {
    fn push(out: &mut String, c: char) {
        if matches!(c, '\\' | ']' | '[' | '^' | '-') {
            out.push('\\');
        }
        out.push(c);
    }
    let mut out = String::from(open);
    for &(first, last) in runs {
        push(&mut out, first);
        if last != first {
            if u32::from(last) > u32::from(first) + 1 {
                out.push('-');
            }
            push(&mut out, last);
        }
    }
    out.push(']');
    out
}

/// Records every field left in `map` after the known ones were taken as unknown.
pub(crate) fn reject_unknown_fields(map: &Map<String, Value>, errors: &mut Vec<FieldError>) {
    for name in map.keys() {
        errors.push(FieldError::new(
            name.clone(),
            "unknown_field",
            "is not a field of this command",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_lists_every_detail() {
        let invalid = Invalid {
            details: vec![
                FieldError::new("x", "required", "is required"),
                FieldError::new("", "not_an_object", "the body must be a JSON object"),
            ],
        };
        assert_eq!(
            invalid.to_string(),
            "invalid input: x: is required; the body must be a JSON object"
        );
    }

    #[test]
    fn a_char_class_lists_ranges_and_escapes_what_a_class_means() {
        assert_eq!(char_class(|c| c.is_ascii_digit()), "[0-9]");
        assert_eq!(
            char_class(|c| c.is_ascii_lowercase() || c == '-' || c == '_' || c == 'A'),
            "[\\-A_a-z]"
        );
        assert_eq!(char_class(|c| c == 'a' || c == 'b'), "[ab]");
        assert_eq!(char_class(|c| matches!(c, '[' | ']' | '^')), "[\\[\\]\\^]");
        // No run spans the surrogates, which are not characters.
        assert_eq!(
            char_class(|c| ('\u{D7FE}'..='\u{E000}').contains(&c)),
            "[\u{D7FE}\u{D7FF}\u{E000}]"
        );
        // A class of nearly everything is written as what it leaves out.
        assert_eq!(char_class(|c| c != 'a' && c != '-'), "[^\\-a]");
        assert_eq!(
            char_class(|c| !c.is_ascii_control()),
            "[^\u{0}-\u{1F}\u{7F}]"
        );
    }

    #[test]
    fn take_field_tells_missing_from_mistyped() {
        let mut map = serde_json::json!({"a": "text", "b": 1})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut errors = Vec::new();
        assert_eq!(take_field::<f64>(&mut map, "a", &mut errors), None);
        assert_eq!(take_field::<f64>(&mut map, "b", &mut errors), Some(1.0));
        assert_eq!(take_field::<f64>(&mut map, "c", &mut errors), None);
        assert_eq!(
            take_field::<Option<f64>>(&mut map, "d", &mut errors),
            Some(None)
        );
        let codes: Vec<_> = errors
            .iter()
            .map(|e| (e.field.as_str(), e.code.as_str()))
            .collect();
        assert_eq!(codes, [("a", "invalid"), ("c", "required")]);
    }
}
