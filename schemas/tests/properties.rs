//! Property tests: every command and fact survives the wire; no input makes a decoder panic.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use schemas::command::{
    AcceptHandOff, Attack, Chat, ChatChannel, Kick, Leave, Move, Pickup, Respawn, Reward, Spawn,
    Strike,
};
use schemas::fact::*;
use schemas::fold::InventoryItem;
use schemas::*;
use serde_json::Value;
use uuid::Uuid;

fn region() -> impl Strategy<Value = RegionId> {
    "[a-z0-9][a-z0-9_-]{0,31}".prop_map(|s| RegionId::new(s).expect("pattern matches the rule"))
}

fn entity() -> impl Strategy<Value = EntityId> {
    any::<u128>().prop_map(|n| EntityId::from_uuid(Uuid::from_u128(n)))
}

fn player() -> impl Strategy<Value = PlayerId> {
    any::<u128>().prop_map(|n| PlayerId::from_uuid(Uuid::from_u128(n)))
}

fn event_id() -> impl Strategy<Value = EventId> {
    any::<u128>().prop_map(|n| EventId::from_uuid(Uuid::from_u128(n)))
}

/// Inside the test world (see `ctx`).
fn position() -> impl Strategy<Value = Position> {
    (-1000.0..1000.0f64, -1000.0..1000.0f64).prop_map(|(x, y)| Position::new(x, y))
}

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!(
        "[a-zA-Z0-9 éß😀.,!?]{{0,{}}}[a-zA-Z0-9éß😀]",
        max - 1
    ))
    .expect("regex")
}

fn channel() -> impl Strategy<Value = ChatChannel> {
    prop_oneof![Just(ChatChannel::Say), Just(ChatChannel::Region)]
}

fn item() -> impl Strategy<Value = InventoryItem> {
    (entity(), "[a-z_]{1,16}").prop_map(|(item, item_kind)| InventoryItem { item, item_kind })
}

fn entity_state() -> impl Strategy<Value = EntityState> {
    (
        entity(),
        proptest::option::of(player()),
        position(),
        proptest::option::of(position()),
        (0u32..10_000, 0u32..10_000),
        (1u32..100, any::<u64>()),
        proptest::collection::vec(item(), 0..4),
        any::<bool>(),
    )
        .prop_map(
            |(id, player, position, destination, (a, b), (level, xp), inventory, alive)| {
                EntityState {
                    id,
                    kind: if player.is_some() {
                        EntityKind::Player
                    } else {
                        EntityKind::Npc
                    },
                    player,
                    position,
                    destination,
                    hp: a.min(b),
                    max_hp: a.max(b),
                    level,
                    xp,
                    inventory,
                    alive,
                }
            },
        )
}

fn client_command() -> impl Strategy<Value = Command> {
    prop_oneof![
        proptest::option::of(Just(RegionId::new("r1").expect("id")))
            .prop_map(|region| Command::Spawn(Spawn { region })),
        position().prop_map(|p| Command::Move(Move { x: p.x, y: p.y })),
        entity().prop_map(|target| Command::Attack(Attack { target })),
        (text(500), proptest::option::of(channel()))
            .prop_map(|(text, channel)| Command::Chat(Chat { text, channel })),
        entity().prop_map(|item| Command::Pickup(Pickup { item })),
        Just(Command::Respawn(Respawn {})),
        Just(Command::Leave(Leave {})),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        4 => client_command(),
        1 => (player(), text(200)).prop_map(|(player, reason)| Command::Kick(Kick { player, reason })),
        1 => (region(), entity_state()).prop_map(|(from_region, state)| Command::AcceptHandOff(AcceptHandOff { from_region, state })),
        1 => (region(), entity(), position(), entity(), any::<u32>()).prop_map(|(from_region, attacker, position, target, amount)| Command::Strike(Strike { from_region, attacker, position, target, amount })),
        1 => (region(), entity(), 1..u64::MAX).prop_map(|(from_region, entity, amount)| Command::Reward(Reward { from_region, entity, amount })),
    ]
}

fn reason() -> impl Strategy<Value = RejectReason> {
    prop_oneof![
        Just(RejectReason::NotSpawned),
        Just(RejectReason::OnCooldown),
        Just(RejectReason::ItemGone),
        Just(RejectReason::OutOfRange),
        Just(RejectReason::RegionFull),
    ]
}

fn fact() -> impl Strategy<Value = Fact> {
    prop_oneof![
        (player(), "[a-zA-Z0-9_]{3,32}").prop_map(|(player, username)| Fact::AccountRegistered(
            AccountRegistered { player, username }
        )),
        entity_state().prop_map(|state| Fact::Spawned(Spawned { state })),
        (entity(), position(), position()).prop_map(|(entity, from, destination)| {
            Fact::MovementStarted(MovementStarted {
                entity,
                from,
                destination,
            })
        }),
        (entity(), position(), any::<bool>()).prop_map(|(entity, position, arrived)| Fact::Moved(
            Moved {
                entity,
                position,
                arrived
            }
        )),
        (entity(), entity(), any::<u32>(), any::<u32>()).prop_map(
            |(attacker, target, amount, hp)| Fact::Damaged(Damaged {
                attacker,
                target,
                amount,
                hp
            })
        ),
        (entity(), proptest::option::of(entity()), position()).prop_map(
            |(entity, killer, position)| Fact::Died(Died {
                entity,
                killer,
                position
            })
        ),
        (entity(), position(), any::<u32>()).prop_map(|(entity, position, hp)| Fact::Respawned(
            Respawned {
                entity,
                position,
                hp
            }
        )),
        (
            entity(),
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            any::<u32>()
        )
            .prop_map(
                |(entity, amount, xp, level, max_hp)| Fact::XpGained(XpGained {
                    entity,
                    amount,
                    xp,
                    level,
                    max_hp
                })
            ),
        (entity(), "[a-z_]{1,16}", position()).prop_map(|(item, item_kind, position)| {
            Fact::ItemSpawned(ItemSpawned {
                item,
                item_kind,
                position,
            })
        }),
        (entity(), item()).prop_map(|(entity, item)| Fact::ItemPicked(ItemPicked { entity, item })),
        (entity(), channel(), text(500), position()).prop_map(
            |(entity, channel, text, position)| Fact::ChatSaid(ChatSaid {
                entity,
                channel,
                text,
                position
            })
        ),
        (
            entity(),
            prop_oneof![
                Just(LeaveReason::Requested),
                Just(LeaveReason::Kicked),
                Just(LeaveReason::Disconnected)
            ],
            position(),
            proptest::option::of(
                (
                    1..100u32,
                    any::<u64>(),
                    proptest::collection::vec(item(), 0..3)
                )
                    .prop_map(|(level, xp, inventory)| Progress {
                        level,
                        xp,
                        inventory
                    })
            )
        )
            .prop_map(|(entity, reason, position, progress)| Fact::Left(Left {
                entity,
                reason,
                position,
                progress
            })),
        (entity_state(), region())
            .prop_map(|(state, to_region)| Fact::HandedOffOut(HandedOffOut { state, to_region })),
        (entity_state(), region())
            .prop_map(|(state, from_region)| Fact::HandedOffIn(HandedOffIn { state, from_region })),
        (entity_state(), "[a-z_]{1,16}")
            .prop_map(|(state, npc_kind)| Fact::NpcSpawned(NpcSpawned { state, npc_kind })),
        (entity(), proptest::option::of(entity()), position()).prop_map(
            |(npc, killer, position)| Fact::NpcDied(NpcDied {
                npc,
                killer,
                position
            })
        ),
        (
            entity(),
            entity(),
            any::<u32>(),
            position(),
            proptest::collection::vec(region(), 1..3)
        )
            .prop_map(|(attacker, target, amount, position, to_regions)| {
                Fact::StruckAcross(StruckAcross {
                    attacker,
                    target,
                    amount,
                    position,
                    to_regions,
                })
            }),
        (entity(), entity(), any::<u64>(), region()).prop_map(
            |(entity, npc, amount, to_region)| {
                Fact::RewardSent(RewardSent {
                    entity,
                    npc,
                    amount,
                    to_region,
                })
            }
        ),
        (prop::sample::select(CommandKind::ALL), reason(), text(100)).prop_map(
            |(command, reason, message)| Fact::Rejected(Rejected {
                command,
                reason,
                message
            })
        ),
    ]
}

fn actor() -> impl Strategy<Value = Actor> {
    prop_oneof![
        player().prop_map(|id| Actor::Player { id }),
        player().prop_map(|id| Actor::Admin { id }),
        "[a-z-]{1,20}".prop_map(|service| Actor::System { service }),
    ]
}

fn envelope<P: std::fmt::Debug>(
    payload: impl Strategy<Value = P>,
) -> impl Strategy<Value = Envelope<P>> {
    (
        event_id(),
        0i64..4_000_000_000_000,
        actor(),
        proptest::option::of(region()),
        event_id(),
        proptest::option::of(event_id()),
        payload,
    )
        .prop_map(
            |(id, millis, actor, region, correlation_id, causation_id, payload)| Envelope {
                id,
                occurred_at: DateTime::<Utc>::from_timestamp_millis(millis).expect("in range"),
                actor,
                region,
                correlation_id,
                causation_id,
                payload,
            },
        )
}

fn ctx() -> ValidationContext {
    ValidationContext {
        world: Bounds::new(
            Position::new(-1000.0, -1000.0),
            Position::new(1000.0, 1000.0),
        )
        .expect("bounds"),
        regions: BTreeSet::from([RegionId::new("r1").expect("id")]),
    }
}

/// Any JSON value, nested a few levels.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "move", "chat", "spawn", "attack", "kick", "x", "type", "payload"
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop::sample::select(vec![
                    "type", "x", "y", "text", "channel", "target", "item", "region", "to", "kind",
                    "payload", "id", "state"
                ])
                .prop_map(str::to_owned),
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_command_round_trips(env in envelope(command())) {
        let bytes = env.encode().expect("encode");
        prop_assert_eq!(Envelope::<Command>::decode(&bytes).expect("decode"), env);
    }

    #[test]
    fn every_fact_round_trips(env in envelope(fact())) {
        let bytes = env.encode().expect("encode");
        prop_assert_eq!(Envelope::<Fact>::decode(&bytes).expect("decode"), env);
    }

    #[test]
    fn any_coordinates_are_written_only_when_they_can_be_read_back(x in any::<f64>(), y in any::<f64>()) {
        let env = Envelope::new(Actor::System { service: "t".into() }, None, Command::Move(Move { x, y }));
        match env.encode() {
            Ok(bytes) => {
                prop_assert!(x.is_finite() && y.is_finite());
                prop_assert_eq!(Envelope::<Command>::decode(&bytes).expect("decode"), env);
            }
            Err(_) => prop_assert!(!x.is_finite() || !y.is_finite()),
        }
    }

    #[test]
    fn every_valid_client_command_parses_back(command in client_command()) {
        let body = serde_json::to_vec(&command).expect("serialise");
        prop_assert_eq!(Command::parse(&body, Origin::Player, &ctx()), Ok(command));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Envelope::<Command>::decode(&bytes);
        let _ = Envelope::<Fact>::decode(&bytes);
        let refused = Command::parse(&bytes, Origin::System, &ctx());
        if let Err(invalid) = refused {
            prop_assert!(!invalid.details.is_empty());
        }
    }

    #[test]
    fn arbitrary_json_never_panics(value in json(), kind in prop::sample::select(vec!["move", "chat", "spawned", "accept_hand_off", "x"]), version in 0u16..4) {
        if let Err(invalid) = Command::parse_value(value.clone(), Origin::System, &ctx()) {
            prop_assert!(!invalid.details.is_empty());
        }
        let wire = serde_json::json!({
            "id": EventId::new(), "kind": kind, "schema_version": version,
            "occurred_at": "2026-11-25T00:00:00Z", "actor": {"type": "system", "service": "t"},
            "correlation_id": EventId::new(), "payload": value,
        });
        let bytes = serde_json::to_vec(&wire).expect("bytes");
        let _ = Envelope::<Command>::decode(&bytes);
        let _ = Envelope::<Fact>::decode(&bytes);
    }

    #[test]
    fn damaged_envelopes_never_panic(env in envelope(command()), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = env.encode().expect("encode");
        let i = at.index(bytes.len());
        bytes[i] = byte;
        let _ = Envelope::<Command>::decode(&bytes);
    }

    #[test]
    fn subjects_round_trip(region in region(), command in prop::sample::select(CommandKind::ALL), fact in prop::sample::select(FactKind::ALL)) {
        let cmd = CommandSubject::new(region.clone(), command);
        prop_assert_eq!(cmd.to_string().parse::<CommandSubject>(), Ok(cmd));
        let fact = FactSubject::new(Some(region), fact);
        prop_assert_eq!(fact.to_string().parse::<FactSubject>(), Ok(fact));
    }

    #[test]
    fn any_string_is_a_subject_region_or_a_clear_error(s in ".{0,48}") {
        let _ = s.parse::<CommandSubject>();
        let _ = s.parse::<FactSubject>();
        let _ = s.parse::<Priority>();
        let _ = s.parse::<EventId>();
        let valid = RegionId::new(s.clone()).is_ok();
        let expected = !s.is_empty()
            && s.len() <= 32
            && s.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        prop_assert_eq!(valid, expected);
    }

    #[test]
    fn folding_a_fact_twice_is_folding_it_once(state in entity_state(), fact in fact()) {
        let mut once = state.clone();
        once.apply(&fact);
        let mut twice = once.clone();
        twice.apply(&fact);
        prop_assert_eq!(once, twice);
    }
}
