//! Commands: what a client (or an admin, or a region handing an entity over) asks the world to do.
//!
//! A command is a request, not a fact: the region simulator decides what it does and records
//! the outcome as facts (see [`crate::fact`]). Clients send a command as a JSON object tagged by
//! `type`, e.g. `{"type": "move", "x": 10.5, "y": -3}`; [`Command::parse`] turns such a body into
//! a [`Command`] or into an [`Invalid`] listing every bad field.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use validator::Validate;

use crate::fold::EntityState;
use crate::geometry::Position;
use crate::ids::{EntityId, PlayerId, RegionId};
use crate::subject::Priority;
use crate::validation::{
    DomainRules, FieldError, Invalid, ValidationContext, char_class, reject_unknown_fields,
    take_field, validate_payload,
};

/// Who may send a command kind. Ordered: an admin may send what a player may, the system may
/// send anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A game client, for its own avatar.
    Player,
    /// An admin, through the admin routes.
    Admin,
    /// A service of the backend itself (a region simulator handing an entity over).
    System,
}

/// Declares a command payload: the struct with its serde, JSON Schema and validator derives,
/// and a decoder that reports every bad field rather than the first.
macro_rules! payload {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $name {
            #[allow(unused_mut)]
            fn from_fields(mut map: Map<String, Value>) -> Result<Self, Vec<FieldError>> {
                let mut errors = Vec::new();
                $( let $field = take_field::<$ty>(&mut map, stringify!($field), &mut errors); )*
                reject_unknown_fields(&map, &mut errors);
                match ($( $field, )*) {
                    ($( Some($field), )*) if errors.is_empty() => Ok(Self { $( $field, )* }),
                    _ => Err(errors),
                }
            }
        }
    };
}

/// Declares the command kinds: the [`Command`] enum, [`CommandKind`], and each kind's wire
/// name, priority, origin and current schema version, all in one table.
macro_rules! commands {
    ($(
        $(#[$doc:meta])*
        $variant:ident($payload:ident) = $kind:literal, $priority:ident, $origin:ident, version $version:literal;
    )*) => {
        /// A command, tagged by `type` on the wire.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(tag = "type")]
        pub enum Command {
            $( $(#[$doc])* #[serde(rename = $kind)] $variant($payload), )*
        }

        /// The kind of a command, as named in its `type` and its subject.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
        pub enum CommandKind {
            $( $(#[$doc])* #[serde(rename = $kind)] $variant, )*
        }

        impl CommandKind {
            /// Every command kind.
            pub const ALL: &[CommandKind] = &[$(CommandKind::$variant),*];

            /// The wire name (`move`, `attack`, ...).
            pub const fn as_str(self) -> &'static str {
                match self { $(CommandKind::$variant => $kind,)* }
            }

            /// The priority its subject carries: combat and admin are `high`, movement and items
            /// `normal`, chat `low`.
            pub const fn priority(self) -> Priority {
                match self { $(CommandKind::$variant => Priority::$priority,)* }
            }

            /// Who may send it.
            pub const fn origin(self) -> Origin {
                match self { $(CommandKind::$variant => Origin::$origin,)* }
            }

            /// The schema version written today; older ones are upcast on decoding.
            pub const fn schema_version(self) -> u16 {
                match self { $(CommandKind::$variant => $version,)* }
            }

            /// Writes the domain rules of this kind that a JSON Schema can state into the
            /// schema of its payload's properties (see [`crate::json_schema::client_commands_in`]).
            pub(crate) fn state_in_schema(self, ctx: &ValidationContext, properties: &mut Map<String, Value>) {
                match self { $(CommandKind::$variant => <$payload as DomainRules>::state_in_schema(ctx, properties),)* }
            }
        }

        impl FromStr for CommandKind {
            type Err = UnknownKind;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($kind => Ok(CommandKind::$variant),)*
                    _ => Err(UnknownKind(s.to_owned())),
                }
            }
        }

        impl Command {
            /// The command's kind.
            pub const fn kind(&self) -> CommandKind {
                match self { $(Command::$variant(_) => CommandKind::$variant,)* }
            }

            /// Decodes the fields of a payload of a known kind (without its `type`).
            pub(crate) fn from_fields(kind: CommandKind, map: Map<String, Value>) -> Result<Self, Vec<FieldError>> {
                match kind { $(CommandKind::$variant => $payload::from_fields(map).map(Command::$variant),)* }
            }

            /// Every rule the command breaks, field by field; empty when it is valid.
            pub fn validation_errors(&self, ctx: &ValidationContext) -> Vec<FieldError> {
                match self { $(Command::$variant(p) => validate_payload(p, ctx),)* }
            }
        }
    };
}

/// A `type` that names no command (or no fact).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown kind {0:?}")]
pub struct UnknownKind(pub String);

impl fmt::Display for CommandKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

commands! {
    /// Enter the world, in the given region or one the gateway picks.
    Spawn(Spawn) = "spawn", Normal, Player, version 1;
    /// Walk towards a destination at the speed limit.
    Move(Move) = "move", Normal, Player, version 2;
    /// Attack an entity within range, cooldown permitting.
    Attack(Attack) = "attack", High, Player, version 1;
    /// Say something to those near, or to the whole region.
    Chat(Chat) = "chat", Low, Player, version 1;
    /// Pick up an item within reach; the first in stream order wins.
    Pickup(Pickup) = "pickup", Normal, Player, version 1;
    /// Come back after death.
    Respawn(Respawn) = "respawn", Normal, Player, version 1;
    /// Leave the world.
    Leave(Leave) = "leave", Normal, Player, version 1;
    /// Remove a player from the world (admin).
    Kick(Kick) = "kick", High, Admin, version 1;
    /// Take over an entity that crossed the border from a neighbouring region (system).
    AcceptHandOff(AcceptHandOff) = "accept_hand_off", Normal, System, version 1;
    /// Deliver a blow struck from across the border by an entity of a neighbouring region
    /// (system).
    Strike(Strike) = "strike", High, System, version 1;
    /// Grant a player the experience it earned in a neighbouring region, by slaying an NPC over
    /// the border (system).
    Reward(Reward) = "reward", Normal, System, version 1;
}

payload! {
    /// Enter the world.
    pub struct Spawn {
        /// The region to enter; the gateway picks one when this is left out.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub region: Option<RegionId>,
    }
}

payload! {
    /// Set a destination in world coordinates; the simulator walks the avatar there.
    pub struct Move {
        /// East-west coordinate of the destination, inside the world.
        #[serde(serialize_with = "crate::geometry::finite")]
        pub x: f64,
        /// North-south coordinate of the destination, inside the world.
        #[serde(serialize_with = "crate::geometry::finite")]
        pub y: f64,
    }
}

payload! {
    /// Attack an entity (a player or an NPC).
    pub struct Attack {
        /// The entity to attack.
        pub target: EntityId,
    }
}

/// Who hears a chat line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChatChannel {
    /// Those near the speaker.
    #[default]
    Say,
    /// Everyone in the speaker's region.
    Region,
}

payload! {
    /// Say something.
    pub struct Chat {
        /// The line, 1 to 500 characters, not blank, with something to see (not only zero-width,
        /// format or combining characters), without control characters, line or paragraph
        /// separators (U+2028, U+2029) or bidirectional overrides and isolates (U+202A to U+202E,
        /// U+2066 to U+2069).
        #[validate(length(min = 1, max = 500))]
        pub text: String,
        /// `say` (the default) or `region`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub channel: Option<ChatChannel>,
    }
}

impl Chat {
    /// The rules of [`Chat::text`] but its length, as a regular expression made from the same
    /// predicates the check uses: no control character nor bidirectional control anywhere, and at
    /// least one character that is not [`invisible`].
    pub fn text_pattern() -> &'static str {
        // Made once per process: a class is found by asking every character of Unicode.
        static PATTERN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            let allowed = char_class(|c| !control(c) && !bidi_control(c));
            let visible = char_class(|c| !invisible(c) && !bidi_control(c));
            format!("^{allowed}*{visible}{allowed}*$")
        });
        &PATTERN
    }

    /// The channel, `say` when none was given.
    pub fn channel(&self) -> ChatChannel {
        self.channel.unwrap_or_default()
    }
}

payload! {
    /// Pick up an item on the ground.
    pub struct Pickup {
        /// The item to pick up.
        pub item: EntityId,
    }
}

payload! {
    /// Come back after death.
    pub struct Respawn {}
}

payload! {
    /// Leave the world.
    pub struct Leave {}
}

payload! {
    /// Remove a player's avatar from the world.
    pub struct Kick {
        /// The player to remove.
        pub player: PlayerId,
        /// Why, for the audit trail and the player; 1 to 200 characters.
        #[validate(length(min = 1, max = 200))]
        pub reason: String,
    }
}

payload! {
    /// The receiving side of a border crossing: the entity with all its state.
    pub struct AcceptHandOff {
        /// The region the entity comes from.
        pub from_region: RegionId,
        /// The entity as it was when it left.
        pub state: EntityState,
    }
}

payload! {
    /// The receiving side of an attack over a border: the target's region decides the hit.
    pub struct Strike {
        /// The region the attacker stands in.
        pub from_region: RegionId,
        /// Who strikes.
        pub attacker: EntityId,
        /// Where the attacker stood when it struck.
        pub position: Position,
        /// Who is struck.
        pub target: EntityId,
        /// The damage drawn for the blow.
        pub amount: u32,
    }
}

payload! {
    /// The receiving side of a kill over a border: the attacker's region grants the experience.
    pub struct Reward {
        /// The region the NPC was slain in.
        pub from_region: RegionId,
        /// The player who slew it.
        pub entity: EntityId,
        /// The experience it was worth.
        #[validate(range(min = 1))]
        pub amount: u64,
    }
}

impl DomainRules for Spawn {
    fn state_in_schema(ctx: &ValidationContext, properties: &mut Map<String, Value>) {
        let known: Vec<Value> = ctx.regions.iter().map(|r| r.as_str().into()).collect();
        if let Some(region) = properties.get_mut("region") {
            region["anyOf"] = serde_json::json!([
                {"type": "string", "enum": known},
                {"type": "null"},
            ]);
        }
    }

    fn check_domain(&self, ctx: &ValidationContext, errors: &mut Vec<FieldError>) {
        if let Some(region) = &self.region
            && !ctx.regions.contains(region)
        {
            errors.push(FieldError::new(
                "region",
                "unknown_region",
                format!("no region is named {region:?}"),
            ));
        }
    }
}

impl DomainRules for Move {
    fn state_in_schema(ctx: &ValidationContext, properties: &mut Map<String, Value>) {
        let (min, max) = (ctx.world.min, ctx.world.max);
        for (field, lo, hi) in [("x", min.x, max.x), ("y", min.y, max.y)] {
            if let Some(Value::Object(schema)) = properties.get_mut(field) {
                schema.insert("minimum".into(), lo.into());
                schema.insert("exclusiveMaximum".into(), hi.into());
            }
        }
    }

    fn check_domain(&self, ctx: &ValidationContext, errors: &mut Vec<FieldError>) {
        let (min, max) = (ctx.world.min, ctx.world.max);
        for (field, value, lo, hi) in [("x", self.x, min.x, max.x), ("y", self.y, min.y, max.y)] {
            if !value.is_finite() {
                errors.push(FieldError::new(
                    field,
                    "not_finite",
                    "must be a finite number",
                ));
            } else if value < lo || value >= hi {
                errors.push(FieldError::new(
                    field,
                    "out_of_world",
                    format!("must be at least {lo} and less than {hi}"),
                ));
            }
        }
    }
}

impl DomainRules for Chat {
    fn state_in_schema(_: &ValidationContext, properties: &mut Map<String, Value>) {
        if let Some(Value::Object(text)) = properties.get_mut("text") {
            text.insert("pattern".into(), Chat::text_pattern().into());
        }
    }

    fn check_domain(&self, _: &ValidationContext, errors: &mut Vec<FieldError>) {
        let has_control = self.text.chars().any(control);
        if !self.text.is_empty() && self.text.trim().is_empty() {
            errors.push(FieldError::new(
                "text",
                "blank",
                "must not be only whitespace",
            ));
        } else if !self.text.is_empty() && !has_control && self.text.chars().all(invisible) {
            errors.push(FieldError::new(
                "text",
                "invisible",
                "must hold at least one visible character",
            ));
        }
        if has_control {
            errors.push(FieldError::new(
                "text",
                "control_characters",
                "must not contain control characters or line breaks",
            ));
        }
        if self.text.chars().any(bidi_control) {
            errors.push(FieldError::new(
                "text",
                "bidi_control",
                "must not contain bidirectional overrides or isolates (U+202A to U+202E, U+2066 to U+2069)",
            ));
        }
    }
}

/// Whether a character shows nothing on its own: whitespace, a control or format character
/// (zero-width spaces and joiners, U+2060, U+FEFF, the soft hyphen, bidirectional marks), a
/// combining mark or variation selector (which only change the character before them), or a
/// Hangul filler.
fn invisible(c: char) -> bool {
    use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};
    c.is_whitespace()
        || matches!(
            c.general_category(),
            GeneralCategory::Control | GeneralCategory::Format
        )
        || c.general_category_group() == GeneralCategoryGroup::Mark
        || matches!(c, '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}')
}

/// Whether a character overrides or isolates the direction of the text around it, which lets a
/// line show something other than what it holds ("pay me \u{202E}won 001" shows "pay me 100
/// now").
fn bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Whether a character is a control character (line feeds and U+0085 among them) or the line or
/// paragraph separator, which break a line in many clients as a line feed does: a chat line
/// could otherwise show a second line of its speaker's making ("hi\u{2028}[server] ...").
fn control(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

impl DomainRules for Kick {
    fn check_domain(&self, _: &ValidationContext, errors: &mut Vec<FieldError>) {
        if !self.reason.is_empty() && self.reason.trim().is_empty() {
            errors.push(FieldError::new(
                "reason",
                "blank",
                "must not be only whitespace",
            ));
        }
    }
}

impl DomainRules for AcceptHandOff {
    fn check_domain(&self, ctx: &ValidationContext, errors: &mut Vec<FieldError>) {
        self.state.check(ctx, "state", errors);
    }
}

/// A system command's `from_region` must name a region of the world.
fn known_from_region(ctx: &ValidationContext, region: &RegionId, errors: &mut Vec<FieldError>) {
    if !ctx.regions.contains(region) {
        errors.push(FieldError::new(
            "from_region",
            "unknown_region",
            format!("no region is named {region:?}"),
        ));
    }
}

impl DomainRules for Strike {
    fn check_domain(&self, ctx: &ValidationContext, errors: &mut Vec<FieldError>) {
        known_from_region(ctx, &self.from_region, errors);
        let p = self.position;
        if !(p.x.is_finite() && p.y.is_finite() && ctx.world.contains(&p)) {
            errors.push(FieldError::new(
                "position",
                "out_of_world",
                "must be a finite point inside the world",
            ));
        }
    }
}

impl DomainRules for Reward {
    fn check_domain(&self, ctx: &ValidationContext, errors: &mut Vec<FieldError>) {
        known_from_region(ctx, &self.from_region, errors);
    }
}

impl DomainRules for Attack {}
impl DomainRules for Pickup {}
impl DomainRules for Respawn {}
impl DomainRules for Leave {}

impl Command {
    /// Parses a JSON body sent by `origin` into a valid command, or says every way it is not.
    ///
    /// The body must be a JSON object whose `type` names a command that `origin` may send; its
    /// other fields must be those of that command, with the right types, and pass its rules.
    pub fn parse(body: &[u8], origin: Origin, ctx: &ValidationContext) -> Result<Command, Invalid> {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            Invalid::one(
                "",
                "malformed_json",
                format!("the body is not valid JSON: {e}"),
            )
        })?;
        Self::parse_value(value, origin, ctx)
    }

    /// Like [`Command::parse`], for a body already read as JSON.
    pub fn parse_value(
        value: Value,
        origin: Origin,
        ctx: &ValidationContext,
    ) -> Result<Command, Invalid> {
        let Value::Object(mut map) = value else {
            return Err(Invalid::one(
                "",
                "not_an_object",
                "the body must be a JSON object",
            ));
        };
        let kind = match map.remove("type") {
            None => return Err(Invalid::one("type", "required", "is required")),
            Some(Value::String(name)) => match name.parse::<CommandKind>() {
                Ok(kind) if kind.origin() <= origin => kind,
                _ => {
                    let allowed: Vec<_> = CommandKind::ALL
                        .iter()
                        .filter(|k| k.origin() <= origin)
                        .map(|k| k.as_str())
                        .collect();
                    return Err(Invalid::one(
                        "type",
                        "unknown_command",
                        format!(
                            "{name:?} is not a command; expected one of {}",
                            allowed.join(", ")
                        ),
                    ));
                }
            },
            Some(_) => return Err(Invalid::one("type", "invalid", "must be a string")),
        };
        let command = Self::from_fields(kind, map).map_err(|details| Invalid { details })?;
        Invalid::check(command.validation_errors(ctx))?;
        Ok(command)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::json;

    use super::*;
    use crate::geometry::{Bounds, Position};

    fn ctx() -> ValidationContext {
        ValidationContext {
            world: Bounds::new(Position::new(0.0, 0.0), Position::new(1000.0, 1000.0))
                .expect("bounds"),
            regions: BTreeSet::from([RegionId::new("r1").expect("id")]),
        }
    }

    fn parse(body: Value) -> Result<Command, Invalid> {
        Command::parse_value(body, Origin::Player, &ctx())
    }

    fn fields(invalid: Invalid) -> Vec<(String, String)> {
        invalid
            .details
            .into_iter()
            .map(|d| (d.field, d.code))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(f, c)| (f.to_string(), c.to_string()))
            .collect()
    }

    #[test]
    fn a_valid_move_parses() {
        assert_eq!(
            parse(json!({"type": "move", "x": 10.5, "y": 3})),
            Ok(Command::Move(Move { x: 10.5, y: 3.0 }))
        );
    }

    #[test]
    fn every_bad_field_is_named() {
        let err = parse(json!({"type": "move", "x": "ten", "z": 1})).expect_err("invalid");
        assert_eq!(
            fields(err),
            pairs(&[("x", "invalid"), ("y", "required"), ("z", "unknown_field")])
        );
    }

    #[test]
    fn an_explicit_null_is_a_missing_field() {
        let err = parse(json!({"type": "move", "x": 1, "y": null})).expect_err("invalid");
        assert_eq!(fields(err), pairs(&[("y", "required")]));
        assert!(parse(json!({"type": "spawn", "region": null})).is_ok());
    }

    #[test]
    fn a_destination_outside_the_world_is_refused() {
        let err = parse(json!({"type": "move", "x": -1, "y": 1000})).expect_err("invalid");
        assert_eq!(
            fields(err),
            pairs(&[("x", "out_of_world"), ("y", "out_of_world")])
        );
    }

    #[test]
    fn the_type_must_name_a_command_the_sender_may_send() {
        for (body, code) in [
            (json!({"x": 1}), "required"),
            (json!({"type": 7}), "invalid"),
            (json!({"type": "fly"}), "unknown_command"),
            (
                json!({"type": "kick", "player": PlayerId::new(), "reason": "spam"}),
                "unknown_command",
            ),
        ] {
            assert_eq!(
                fields(parse(body).expect_err("invalid")),
                pairs(&[("type", code)])
            );
        }
        let kick = json!({"type": "kick", "player": PlayerId::new(), "reason": "spam"});
        assert!(Command::parse_value(kick, Origin::Admin, &ctx()).is_ok());
    }

    #[test]
    fn chat_text_rules() {
        let long = "é".repeat(501);
        for (text, code) in [
            ("", "length"),
            ("   ", "blank"),
            ("a\u{7}b", "control_characters"),
            ("hi\n[server] you are banned", "control_characters"),
            ("hi\u{85}[server] you are banned", "control_characters"),
            ("hi\u{2028}[server] you are banned", "control_characters"),
            ("hi\u{2029}[server] you are banned", "control_characters"),
            (long.as_str(), "length"),
        ] {
            let err = parse(json!({"type": "chat", "text": text})).expect_err(text);
            assert_eq!(fields(err), pairs(&[("text", code)]), "{text:?}");
        }
        let ok = "é".repeat(500);
        let chat = parse(json!({"type": "chat", "text": ok, "channel": "region"})).expect("valid");
        assert!(matches!(chat, Command::Chat(c) if c.channel() == ChatChannel::Region));
        let err =
            parse(json!({"type": "chat", "text": "hi", "channel": "shout"})).expect_err("channel");
        assert_eq!(fields(err), pairs(&[("channel", "invalid")]));
    }

    #[test]
    fn chat_text_of_only_invisible_characters_is_refused() {
        for text in [
            "\u{200B}",
            "\u{200B}\u{200C}\u{200D}",
            "\u{2060}",
            "\u{FEFF}",
            "\u{00AD}",
            "\u{0301}",
            "\u{0301}\u{0308}\u{20DD}",
            " \u{200B} \u{2060} ",
            "\u{3164}",
            "\u{FE0F}",
        ] {
            let err = parse(json!({"type": "chat", "text": text})).expect_err(text);
            assert_eq!(fields(err), pairs(&[("text", "invisible")]), "{text:?}");
        }
        for text in [
            "e\u{0301}",
            "\u{200B}hi",
            "\u{00AD}x",
            "\u{05D0}\u{200F}",
            "👍\u{FE0F}",
        ] {
            assert!(
                parse(json!({"type": "chat", "text": text})).is_ok(),
                "{text:?} has something to see"
            );
        }
    }

    #[test]
    fn chat_text_with_bidirectional_overrides_or_isolates_is_refused() {
        for c in ('\u{202A}'..='\u{202E}').chain('\u{2066}'..='\u{2069}') {
            let text = format!("abc{c}def");
            let err = parse(json!({"type": "chat", "text": text})).expect_err(&text);
            assert_eq!(fields(err), pairs(&[("text", "bidi_control")]), "{text:?}");
        }
    }

    /// The chat text pattern, made once: making it reads every character there is.
    static CHAT_TEXT: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(Chat::text_pattern()).expect("a regex"));

    /// Whether the chat text rules refuse `text`, but for its length.
    fn chat_text_refused(text: &str) -> bool {
        parse(json!({"type": "chat", "text": text})).is_err_and(|e| {
            fields(e)
                .iter()
                .any(|(f, code)| f == "text" && code != "length")
        })
    }

    #[test]
    fn the_chat_text_pattern_accepts_what_the_check_accepts() {
        for text in [
            "hi",
            " a ",
            "e\u{0301}",
            "\u{200B}hi",
            "👍\u{FE0F}",
            "\u{05D0}\u{200F}",
            "   ",
            "\u{200B}",
            "\u{0301}",
            "\u{3164}",
            "a\u{7}b",
            "a\u{85}",
            "abc\u{202E}def",
            "\u{2066}x",
            "x\u{2028}y",
            "x\u{2029}y",
            "\u{2028}",
        ] {
            assert_eq!(
                CHAT_TEXT.is_match(text),
                !chat_text_refused(text),
                "{text:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn the_chat_text_pattern_and_check_agree_on_any_text(
            text in "(\\PC|\\p{Cc}|\\p{Cf}|\\p{M}|\\s|[\u{202A}-\u{202E}\u{2066}-\u{2069}\u{2028}\u{2029}]){1,12}"
        ) {
            proptest::prop_assert_eq!(CHAT_TEXT.is_match(&text), !chat_text_refused(&text));
        }
    }

    #[test]
    fn a_reward_names_a_known_region_and_some_experience() {
        let system = |body: Value| Command::parse_value(body, Origin::System, &ctx());
        let entity = crate::EntityId::new();
        let good = json!({"type": "reward", "from_region": "r1", "entity": entity, "amount": 150});
        assert!(matches!(system(good), Ok(Command::Reward(_))));
        let bad = json!({"type": "reward", "from_region": "r9", "entity": entity, "amount": 0});
        assert_eq!(
            fields(system(bad).expect_err("invalid")),
            pairs(&[("amount", "range"), ("from_region", "unknown_region")])
        );
    }

    #[test]
    fn spawn_names_a_known_region_or_none() {
        assert!(parse(json!({"type": "spawn"})).is_ok());
        assert!(parse(json!({"type": "spawn", "region": "r1"})).is_ok());
        let err = parse(json!({"type": "spawn", "region": "r2"})).expect_err("unknown");
        assert_eq!(fields(err), pairs(&[("region", "unknown_region")]));
        let err = parse(json!({"type": "spawn", "region": "R.1"})).expect_err("malformed");
        assert_eq!(fields(err), pairs(&[("region", "invalid")]));
    }

    #[test]
    fn ids_must_be_uuids_and_bodies_objects() {
        let err = parse(json!({"type": "attack", "target": "bob"})).expect_err("bad id");
        assert_eq!(fields(err), pairs(&[("target", "invalid")]));
        assert_eq!(
            fields(parse(json!([1, 2])).expect_err("array")),
            pairs(&[("", "not_an_object")])
        );
        let err = Command::parse(b"{\"type\":", Origin::Player, &ctx()).expect_err("truncated");
        assert_eq!(fields(err), pairs(&[("", "malformed_json")]));
    }

    #[test]
    fn kinds_name_their_priority() {
        assert_eq!(CommandKind::Attack.priority(), Priority::High);
        assert_eq!(CommandKind::Kick.priority(), Priority::High);
        assert_eq!(CommandKind::Move.priority(), Priority::Normal);
        assert_eq!(CommandKind::Pickup.priority(), Priority::Normal);
        assert_eq!(CommandKind::Chat.priority(), Priority::Low);
        for kind in CommandKind::ALL {
            assert_eq!(kind.as_str().parse::<CommandKind>(), Ok(*kind));
        }
    }
}
