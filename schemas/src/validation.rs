//! What makes a command valid, and how a bad one is described: one [`FieldError`] per bad field,
//! which the gateway turns into the `details` of a 400 answer.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::geometry::Bounds;
use crate::ids::RegionId;

/// One bad field: which, a stable snake_case code, and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
