//! NATS subjects, built and parsed in one place.
//!
//! - commands: `cmd.<priority>.<region>.<kind>`, e.g. `cmd.high.north-1.attack`
//! - facts: `fact.<region>.<kind>`, e.g. `fact.north-1.damaged`; facts that belong to no region
//!   (an account registered) use the scope token `_global`, which no region id can be.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::command::CommandKind;
use crate::fact::FactKind;
use crate::ids::RegionId;

/// The first token of every command subject.
pub const COMMAND_PREFIX: &str = "cmd";
/// The first token of every fact subject.
pub const FACT_PREFIX: &str = "fact";
/// The scope token of facts that belong to no region.
pub const GLOBAL_SCOPE: &str = "_global";

/// How urgently a command is applied: within a tick, `high` goes first, then `normal`, then
/// `low` (with a budget so that `low` never starves).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Combat and admin.
    High,
    /// Movement, items, spawning.
    Normal,
    /// Chat and cosmetics.
    Low,
}

impl Priority {
    /// Every priority, most urgent first.
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    /// The subject token.
    pub const fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Priority {
    type Err = SubjectError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Priority::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| SubjectError::new(s, "unknown priority"))
    }
}

/// A subject that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad subject {subject:?}: {why}")]
pub struct SubjectError {
    /// The subject (or token) as given.
    pub subject: String,
    /// What is wrong with it.
    pub why: String,
}

impl SubjectError {
    fn new(subject: &str, why: impl Into<String>) -> Self {
        Self {
            subject: subject.to_owned(),
            why: why.into(),
        }
    }
}

/// Where a command goes: `cmd.<priority>.<region>.<kind>`. The priority always matches the kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommandSubject {
    /// The region that applies it.
    pub region: RegionId,
    /// What it is.
    pub kind: CommandKind,
}

impl CommandSubject {
    /// The subject of a command of `kind` for `region`.
    pub fn new(region: RegionId, kind: CommandKind) -> Self {
        Self { region, kind }
    }

    /// The priority token, taken from the kind.
    pub fn priority(&self) -> Priority {
        self.kind.priority()
    }

    /// The filter for a region's commands of one priority: `cmd.high.<region>.*`.
    pub fn filter(priority: Priority, region: &RegionId) -> String {
        format!("{COMMAND_PREFIX}.{priority}.{region}.*")
    }
}

impl fmt::Display for CommandSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{COMMAND_PREFIX}.{}.{}.{}",
            self.priority(),
            self.region,
            self.kind
        )
    }
}

impl FromStr for CommandSubject {
    type Err = SubjectError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut tokens = s.split('.');
        let (Some(COMMAND_PREFIX), Some(priority), Some(region), Some(kind), None) = (
            tokens.next(),
            tokens.next(),
            tokens.next(),
            tokens.next(),
            tokens.next(),
        ) else {
            return Err(SubjectError::new(
                s,
                "expected cmd.<priority>.<region>.<kind>",
            ));
        };
        let priority: Priority = priority
            .parse()
            .map_err(|_| SubjectError::new(s, "unknown priority"))?;
        let region = RegionId::new(region).map_err(|e| SubjectError::new(s, e.to_string()))?;
        let kind: CommandKind = kind
            .parse()
            .map_err(|_| SubjectError::new(s, "unknown command kind"))?;
        if kind.priority() != priority {
            return Err(SubjectError::new(
                s,
                format!("{kind} commands are {}, not {priority}", kind.priority()),
            ));
        }
        Ok(Self { region, kind })
    }
}

/// Which part of the world a fact belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// One region.
    Region(RegionId),
    /// No region: accounts and other world-wide facts.
    Global,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Region(region) => region.fmt(f),
            Scope::Global => f.write_str(GLOBAL_SCOPE),
        }
    }
}

impl From<Option<RegionId>> for Scope {
    fn from(region: Option<RegionId>) -> Self {
        region.map_or(Scope::Global, Scope::Region)
    }
}

/// Where a fact goes: `fact.<region>.<kind>` (or `fact._global.<kind>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FactSubject {
    /// The region, or none.
    pub scope: Scope,
    /// What happened.
    pub kind: FactKind,
}

impl FactSubject {
    /// The subject of a fact of `kind` in `scope`.
    pub fn new(scope: impl Into<Scope>, kind: FactKind) -> Self {
        Self {
            scope: scope.into(),
            kind,
        }
    }

    /// The filter for all facts of a region: `fact.<region>.*`.
    pub fn filter(scope: &Scope) -> String {
        format!("{FACT_PREFIX}.{scope}.*")
    }
}

impl fmt::Display for FactSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{FACT_PREFIX}.{}.{}", self.scope, self.kind)
    }
}

impl FromStr for FactSubject {
    type Err = SubjectError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut tokens = s.split('.');
        let (Some(FACT_PREFIX), Some(scope), Some(kind), None) =
            (tokens.next(), tokens.next(), tokens.next(), tokens.next())
        else {
            return Err(SubjectError::new(s, "expected fact.<region>.<kind>"));
        };
        let scope = if scope == GLOBAL_SCOPE {
            Scope::Global
        } else {
            Scope::Region(RegionId::new(scope).map_err(|e| SubjectError::new(s, e.to_string()))?)
        };
        let kind: FactKind = kind
            .parse()
            .map_err(|_| SubjectError::new(s, "unknown fact kind"))?;
        Ok(Self { scope, kind })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r1() -> RegionId {
        RegionId::new("north-1").expect("id")
    }

    #[test]
    fn every_command_subject_parses_back() {
        for kind in CommandKind::ALL {
            let subject = CommandSubject::new(r1(), *kind);
            let text = subject.to_string();
            assert!(text.starts_with(&format!("cmd.{}.north-1.", kind.priority())));
            assert_eq!(text.parse::<CommandSubject>(), Ok(subject));
        }
    }

    #[test]
    fn every_fact_subject_parses_back() {
        for kind in FactKind::ALL {
            for scope in [Scope::Region(r1()), Scope::Global] {
                let subject = FactSubject::new(scope, *kind);
                assert_eq!(subject.to_string().parse::<FactSubject>(), Ok(subject));
            }
        }
        assert_eq!(
            FactSubject::new(None, FactKind::AccountRegistered).to_string(),
            "fact._global.account_registered"
        );
    }

    #[test]
    fn malformed_subjects_are_refused() {
        for bad in [
            "",
            "cmd",
            "cmd.high.north-1",
            "cmd.high.north-1.attack.extra",
            "cmd.urgent.north-1.attack",
            "cmd.low.north-1.attack",
            "cmd.high.North.attack",
            "cmd.high.north-1.fly",
            "fact.north-1.attack",
            "cmd.high.*.attack",
        ] {
            assert!(bad.parse::<CommandSubject>().is_err(), "{bad}");
        }
        for bad in [
            "fact",
            "fact.north-1",
            "fact.north-1.moved.x",
            "fact._other.moved",
            "cmd.north-1.moved",
        ] {
            assert!(bad.parse::<FactSubject>().is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_cover_their_subjects() {
        assert_eq!(
            CommandSubject::filter(Priority::High, &r1()),
            "cmd.high.north-1.*"
        );
        assert_eq!(FactSubject::filter(&Scope::Global), "fact._global.*");
    }
}
