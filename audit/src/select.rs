//! What a run reads: which streams, which time or sequence range, which regions and kinds (as
//! subject filters, so the server sends only those), which player or correlation (checked here,
//! since subjects do not carry them).

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use schemas::{CommandKind, EventId, FactKind, PlayerId, Scope, WorldConfig};

use crate::error::AuditError;

/// One of the two streams of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogStream {
    /// `COMMANDS`: every validated command.
    Commands,
    /// `FACTS`: what happened.
    Facts,
}

impl LogStream {
    /// The JetStream stream's name.
    pub fn name(self) -> &'static str {
        match self {
            LogStream::Commands => nats_topology::topology::COMMANDS,
            LogStream::Facts => nats_topology::topology::FACTS,
        }
    }

    /// The subjects to read for these regions and kinds (everything when both are empty).
    pub fn subjects(self, regions: &[Scope], kinds: &[String]) -> Vec<String> {
        let regions: Vec<String> = if regions.is_empty() {
            vec!["*".into()]
        } else {
            regions.iter().map(ToString::to_string).collect()
        };
        let kinds: Vec<&str> = if kinds.is_empty() {
            vec!["*"]
        } else {
            kinds.iter().map(String::as_str).collect()
        };
        let mut out = Vec::new();
        for r in &regions {
            for k in &kinds {
                out.push(match self {
                    LogStream::Commands => format!("cmd.*.{r}.{k}"),
                    LogStream::Facts => format!("fact.{r}.{k}"),
                });
            }
        }
        if out.len() == 1 && out[0].ends_with("*.*") {
            out = vec![match self {
                LogStream::Commands => "cmd.>".into(),
                LogStream::Facts => "fact.>".into(),
            }];
        }
        out
    }
}

/// Everything that says which events a run reads.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// The streams, in the order given.
    pub streams: Vec<LogStream>,
    /// From the first event stored at or after this.
    pub since: Option<DateTime<Utc>>,
    /// Up to the last event stored at or before this.
    pub until: Option<DateTime<Utc>>,
    /// From this stream sequence.
    pub from_seq: Option<u64>,
    /// Up to this stream sequence.
    pub to_seq: Option<u64>,
    /// Only these regions (`Scope::Global` for facts of no region: accounts and sessions).
    pub regions: Vec<Scope>,
    /// Only these kinds (checked against the streams' kinds).
    pub kinds: Vec<String>,
    /// Only events by or about this player.
    pub player: Option<PlayerId>,
    /// Only events of this correlation (a command and its facts).
    pub correlation: Option<EventId>,
    /// Keep reading new events as they are stored, instead of ending at the log's end.
    pub follow: bool,
}

impl Selection {
    /// Checks the selection against the world (for region names) and itself; every error names
    /// the argument and, for names, lists the valid ones.
    pub fn check(&self, world: Option<&WorldConfig>) -> Result<(), AuditError> {
        if let (Some(since), Some(until)) = (self.since, self.until)
            && until < since
        {
            return Err(AuditError::usage(format!(
                "--until ({until}) is before --since ({since})"
            )));
        }
        if let (Some(from), Some(to)) = (self.from_seq, self.to_seq)
            && to < from
        {
            return Err(AuditError::usage(format!(
                "--to-seq ({to}) is before --from-seq ({from})"
            )));
        }
        if let Some(world) = world {
            let known: Vec<&str> = world.regions.iter().map(|r| r.id.as_str()).collect();
            for r in self.regions.iter().filter_map(|s| match s {
                Scope::Region(r) => Some(r),
                Scope::Global => None,
            }) {
                if !known.contains(&r.as_str()) {
                    return Err(AuditError::usage(format!(
                        "no region is called {r:?}; the regions are: {}, and _global for accounts",
                        known.join(", ")
                    )));
                }
            }
        }
        for kind in &self.kinds {
            let command = kind.parse::<CommandKind>().is_ok();
            let fact = kind.parse::<FactKind>().is_ok();
            let wanted = |s: LogStream| self.streams.contains(&s);
            if !((command && wanted(LogStream::Commands)) || (fact && wanted(LogStream::Facts))) {
                let mut names: Vec<&str> = Vec::new();
                if wanted(LogStream::Commands) {
                    names.extend(CommandKind::ALL.iter().map(|k| k.as_str()));
                }
                if wanted(LogStream::Facts) {
                    names.extend(FactKind::ALL.iter().map(|k| k.as_str()));
                }
                names.sort_unstable();
                names.dedup();
                return Err(AuditError::usage(format!(
                    "no event kind {kind:?} in the streams read; the kinds are: {}",
                    names.join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// A moment as analysts write it: RFC 3339 (`2026-11-29T12:00:00Z`, any offset), or a date and
/// time in UTC (`2026-11-29T12:00:00`, `2026-11-29 12:00`), or a date (midnight UTC).
pub fn parse_time(arg: &str, text: &str) -> Result<DateTime<Utc>, AuditError> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(t.and_utc());
    }
    Err(AuditError::usage(format!(
        "{arg} {text:?} is not a time; write it as 2026-11-29T12:00:00Z (RFC 3339), \
         2026-11-29T12:00:00 (UTC) or 2026-11-29"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_and_kind_filters_become_subjects() {
        let west = Scope::Region("west".parse().expect("region"));
        let east = Scope::Region("east".parse().expect("region"));
        assert_eq!(LogStream::Facts.subjects(&[], &[]), ["fact.>"]);
        assert_eq!(LogStream::Commands.subjects(&[], &[]), ["cmd.>"]);
        assert_eq!(
            LogStream::Facts.subjects(&[west.clone(), east], &["moved".into()]),
            ["fact.west.moved", "fact.east.moved"]
        );
        assert_eq!(LogStream::Commands.subjects(&[west], &[]), ["cmd.*.west.*"]);
        assert_eq!(
            LogStream::Facts.subjects(&[], &["died".into()]),
            ["fact.*.died"]
        );
        assert_eq!(
            LogStream::Facts.subjects(&[Scope::Global], &[]),
            ["fact._global.*"]
        );
    }

    #[test]
    fn times_are_read_in_the_forms_analysts_write() {
        let noon = parse_time("--since", "2026-11-29T12:00:00Z").expect("rfc 3339");
        assert_eq!(
            parse_time("--since", "2026-11-29T13:00:00+01:00").ok(),
            Some(noon)
        );
        assert_eq!(
            parse_time("--since", "2026-11-29T12:00:00").ok(),
            Some(noon)
        );
        assert_eq!(parse_time("--since", "2026-11-29 12:00").ok(), Some(noon));
        let midnight = parse_time("--since", "2026-11-29").expect("a date");
        assert_eq!(midnight.to_rfc3339(), "2026-11-29T00:00:00+00:00");
        let err = parse_time("--until", "yesterday").expect_err("not a time");
        assert!(
            err.to_string()
                .starts_with("--until \"yesterday\" is not a time"),
            "{err}"
        );
    }

    #[test]
    fn unknown_names_and_backwards_ranges_are_refused_with_what_is_right() {
        let world = WorldConfig::from_toml(
            r#"
[[region]]
id = "west"
bounds = { min = { x = 0.0, y = 0.0 }, max = { x = 10.0, y = 10.0 } }
cell_size = 10.0
capacity = 3
neighbours = []
"#,
        )
        .expect("world");
        let mut s = Selection {
            streams: vec![LogStream::Facts],
            regions: vec![Scope::Region("north".parse().expect("region"))],
            ..Selection::default()
        };
        let err = s
            .check(Some(&world))
            .expect_err("unknown region")
            .to_string();
        assert!(err.contains("\"north\"") && err.contains("west"), "{err}");
        s.regions.clear();
        s.kinds = vec!["flew".into()];
        let err = s.check(Some(&world)).expect_err("unknown kind").to_string();
        assert!(err.contains("\"flew\"") && err.contains("moved"), "{err}");
        s.kinds = vec!["move".into()];
        assert!(
            s.check(Some(&world)).is_err(),
            "move is a command, not a fact"
        );
        s.kinds.clear();
        s.since = parse_time("--since", "2026-11-29").ok();
        s.until = parse_time("--until", "2026-11-28").ok();
        let err = s.check(Some(&world)).expect_err("backwards").to_string();
        assert!(err.contains("--until"), "{err}");
    }
}
