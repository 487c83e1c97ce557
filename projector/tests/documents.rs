//! The read-model and audit documents of facts with absurd but well-formed values: each fact
//! folds and encodes, or is refused with why (and then goes to the dead letters); nothing
//! panics. No servers: this is the part of a batch's write that the data decides.

use projector::models::{Stored, entities_of, fold_entity, fold_player, players_of};
use projector::trail::fact_entry;
use proptest::prelude::*;
use schemas::fact::{Damaged, Respawned, Spawned, XpGained};
use schemas::read_model::to_document;
use schemas::read_model::{EntityDoc, PlayerDoc};
use schemas::{Actor, EntityKind, EntityState, Envelope, Fact, PlayerId, Position, RegionId};

fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        -1e6..1e6f64
    ]
}

fn absurd_facts(player: PlayerId) -> impl Strategy<Value = Vec<Fact>> {
    let me = schemas::EntityId::from(player);
    (
        (any::<u32>(), any::<u32>(), any::<u32>(), any::<u64>()),
        (number(), number()),
        (any::<u64>(), any::<u64>(), any::<u32>(), any::<u32>()),
        (any::<u32>(), any::<u32>()),
    )
        .prop_map(
            move |(
                (hp, max_hp, level, xp),
                (x, y),
                (gained, total, new_level, new_max),
                (amount, left),
            )| {
                vec![
                    Fact::Spawned(Spawned {
                        state: EntityState {
                            id: me,
                            kind: EntityKind::Player,
                            player: Some(player),
                            position: Position::new(x, y),
                            destination: None,
                            hp,
                            max_hp,
                            level,
                            xp,
                            inventory: vec![],
                            alive: true,
                        },
                    }),
                    Fact::XpGained(XpGained {
                        entity: me,
                        amount: gained,
                        xp: total,
                        level: new_level,
                        max_hp: new_max,
                    }),
                    Fact::Damaged(Damaged {
                        attacker: schemas::EntityId::new(),
                        target: me,
                        amount,
                        hp: left,
                    }),
                    Fact::Respawned(Respawned {
                        entity: me,
                        position: Position::new(y, x),
                        hp: left,
                    }),
                ]
            },
        )
}

proptest! {
    #[test]
    fn absurd_facts_fold_and_encode_or_are_refused_with_why(
        facts in absurd_facts(PlayerId::new())
    ) {
        let region: RegionId = "west".parse().expect("region");
        let mut players: Option<PlayerDoc> = None;
        let mut entities: Option<EntityDoc> = None;
        for (i, payload) in facts.into_iter().enumerate() {
            let env = Envelope::new(
                Actor::System { service: "region-sim".into() },
                Some(region.clone()),
                payload,
            );
            let stored = Stored { seq: i as u64 + 1, env, client_ip: None, request_id: None };
            for p in players_of(&stored.env.payload) {
                fold_player(&mut players, p, &stored);
            }
            for e in entities_of(&stored.env.payload) {
                fold_entity(&mut entities, e, &stored, Some("ada"));
            }
            for encoded in [
                players.as_ref().map(to_document),
                entities.as_ref().map(to_document),
                Some(fact_entry(&stored)),
            ]
            .into_iter()
            .flatten()
            {
                if let Err(e) = encoded {
                    prop_assert!(e.to_string().starts_with("cannot encode a document: "), "{}", e);
                }
            }
        }
    }
}
