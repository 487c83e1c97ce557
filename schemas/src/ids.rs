//! Typed identifiers: events, players, entities and regions.
//!
//! Every id is parsed once, at the edge; downstream code holds a type that cannot be malformed.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize};
use uuid::{Builder, Uuid};

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The string is not a UUID in its hyphenated or simple form.
    #[error("not a UUID: {0}")]
    NotAUuid(String),
    /// The string breaks the region id rule (see [`RegionId`]).
    #[error(
        "invalid region id {0:?}: 1 to 32 characters of a-z, 0-9, '_' and '-', starting with a letter or digit"
    )]
    InvalidRegion(String),
}

macro_rules! uuid_id {
    ($(#[$meta:meta])* $name:ident, $what:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps a UUID.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.as_hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::try_parse(s).map(Self).map_err(|_| IdError::NotAUuid(s.to_owned()))
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({ "type": "string", "format": "uuid", "description": $what })
            }
        }
    };
}

uuid_id!(
    /// The id of a command or a fact: a UUIDv7, so ids sort by the time they were made.
    EventId,
    "A UUIDv7 naming one command or fact."
);
uuid_id!(
    /// The id of a player account, fixed at registration.
    PlayerId,
    "The id of a player account."
);
uuid_id!(
    /// The id of anything in the world: a player's avatar, an NPC, an item on the ground.
    EntityId,
    "The id of an entity in the world: a player's avatar, an NPC or an item."
);

impl EventId {
    /// A fresh UUIDv7 for a new command.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The id of the `index`-th event derived from `parent` (the facts of a command, say).
    ///
    /// Deterministic: the same parent and index always give the same id, so a republished
    /// fact carries the same `Nats-Msg-Id` and is stored once. The result is still a UUIDv7
    /// with the parent's timestamp, so derived ids sort next to their parent.
    pub fn derived(parent: EventId, index: u32) -> Self {
        let millis = parent
            .0
            .get_timestamp()
            .map(|ts| {
                let (secs, nanos) = ts.to_unix();
                secs * 1000 + u64::from(nanos) / 1_000_000
            })
            .unwrap_or(0);
        let digest = Uuid::new_v5(&parent.0, &index.to_be_bytes());
        let mut random = [0u8; 10];
        random.copy_from_slice(&digest.as_bytes()[6..16]);
        Self(Builder::from_unix_timestamp_millis(millis, &random).into_uuid())
    }

    /// The id of an event named by `name` within `namespace` (a region's tick, say), taking its
    /// timestamp from `at_millis`. Deterministic, like [`EventId::derived`].
    pub fn named(namespace: &str, name: &str, at_millis: u64) -> Self {
        let ns = Uuid::new_v5(&Uuid::NAMESPACE_OID, namespace.as_bytes());
        let digest = Uuid::new_v5(&ns, name.as_bytes());
        let mut random = [0u8; 10];
        random.copy_from_slice(&digest.as_bytes()[6..16]);
        Self(Builder::from_unix_timestamp_millis(at_millis, &random).into_uuid())
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl PlayerId {
    /// A fresh id for a new account.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for PlayerId {
    fn default() -> Self {
        Self::new()
    }
}

impl EntityId {
    /// A fresh id for a new entity.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The id of a region's `index`-th spawned entity of a kind (NPCs, items): deterministic, so
    /// a simulator that replays a region's history gives its entities the same ids.
    pub fn named(region: &RegionId, what: &str, index: u64) -> Self {
        let ns = Uuid::new_v5(&Uuid::NAMESPACE_OID, region.as_str().as_bytes());
        Self(Uuid::new_v5(&ns, format!("{what}/{index}").as_bytes()))
    }
}

impl Default for EntityId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<PlayerId> for EntityId {
    /// A player's avatar has the player's id: one avatar per player.
    fn from(player: PlayerId) -> Self {
        Self(player.0)
    }
}

/// The id of a region (a bounded area of the world), as written in the region config.
///
/// 1 to 32 characters of `a-z`, `0-9`, `_` and `-`, starting with a letter or digit, so that it
/// is always one safe token of a NATS subject (`cmd.<priority>.<region>.<kind>`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RegionId(String);

impl RegionId {
    /// The longest region id allowed.
    pub const MAX_LEN: usize = 32;

    /// Whether a region id may start with `c`: a-z or 0-9.
    fn may_start_with(c: char) -> bool {
        c.is_ascii_lowercase() || c.is_ascii_digit()
    }

    /// Whether a region id may hold `c` after its first character: a-z, 0-9, '_' or '-'.
    fn may_hold(c: char) -> bool {
        Self::may_start_with(c) || c == '_' || c == '-'
    }

    /// Parses and checks a region id.
    pub fn new(id: impl Into<String>) -> Result<Self, IdError> {
        let id = id.into();
        let mut chars = id.chars();
        let first_ok = chars.next().is_some_and(Self::may_start_with);
        let rest_ok = chars.all(Self::may_hold);
        if first_ok && rest_ok && id.len() <= Self::MAX_LEN {
            Ok(Self(id))
        } else {
            Err(IdError::InvalidRegion(id))
        }
    }

    /// The rule [`RegionId::new`] checks, as a regular expression (for JSON Schema and OpenAPI
    /// documents), made from the same predicates and length.
    pub fn pattern() -> &'static str {
        // Made once per process: a class is found by asking every character of Unicode, and
        // every schema that holds a region id asks for this one.
        static PATTERN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "^{}{}{{0,{}}}$",
                crate::validation::char_class(RegionId::may_start_with),
                crate::validation::char_class(RegionId::may_hold),
                RegionId::MAX_LEN - 1
            )
        });
        &PATTERN
    }

    /// The id as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RegionId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for RegionId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::new(raw).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for RegionId {
    fn schema_name() -> Cow<'static, str> {
        "RegionId".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": Self::pattern(),
            "description": "The id of a region, as in the region config: 1 to 32 characters of a-z, 0-9, '_' and '-', starting with a letter or digit."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_deterministic_distinct_and_v7() {
        let parent = EventId::new();
        let a = EventId::derived(parent, 0);
        assert_eq!(a, EventId::derived(parent, 0));
        assert_ne!(a, EventId::derived(parent, 1));
        assert_eq!(a.as_uuid().get_version_num(), 7);
        let parent_ms = parent.as_uuid().get_timestamp().map(|t| t.to_unix().0);
        assert_eq!(
            a.as_uuid().get_timestamp().map(|t| t.to_unix().0),
            parent_ms
        );
    }

    #[test]
    fn region_ids_follow_the_subject_token_rule() {
        for good in ["a", "north-1", "z_9", "0abc"] {
            assert!(RegionId::new(good).is_ok(), "{good}");
        }
        let too_long = "a".repeat(33);
        for bad in [
            "",
            "North",
            "a.b",
            "a*",
            ">",
            "-a",
            "_a",
            "a b",
            too_long.as_str(),
            "é",
        ] {
            assert!(RegionId::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_region_id_pattern_states_the_parsers_rule() {
        assert_eq!(RegionId::pattern(), "^[0-9a-z][\\-0-9_a-z]{0,31}$");
    }

    #[test]
    fn region_id_json_is_checked() {
        assert!(serde_json::from_str::<RegionId>("\"ok-1\"").is_ok());
        assert!(serde_json::from_str::<RegionId>("\"not.ok\"").is_err());
    }
}
