//! What a command must be before a simulator takes it, whoever sent it: a game client through
//! the gateway, an admin, or another simulator handing an entity over. The bus is not trusted.
//!
//! A command is admitted when it is addressed to this region, its sender may send its kind, it
//! passes every rule the gateway checks at the edge (positions inside the world, hp within
//! max_hp, known regions, text lengths; `schemas`' own validation) and the rules only the game
//! balance knows (levels, experience, hit points, inventory, damage and rewards within what
//! `config/balance.toml` allows). Anything else goes to `DLQ` with every reason, and is never
//! applied.

use schemas::command::Origin;
use schemas::fact::Progress;
use schemas::fold::InventoryItem;
use schemas::validation::FieldError;
use schemas::{Actor, Command, EntityKind, EntityState, Envelope, RegionId, ValidationContext};

use crate::balance::Balance;

/// Everything a command is checked against.
#[derive(Debug, Clone)]
pub struct Admission {
    region: RegionId,
    world: ValidationContext,
    balance: std::sync::Arc<Balance>,
}

/// Who an actor is, as the command table's origins name senders.
fn origin_of(actor: &Actor) -> Origin {
    match actor {
        Actor::Player { .. } => Origin::Player,
        Actor::Admin { .. } => Origin::Admin,
        Actor::System { .. } => Origin::System,
    }
}

impl Admission {
    /// The rules of `region` in a world whose validation context is `world`.
    pub fn new(
        region: RegionId,
        world: ValidationContext,
        balance: std::sync::Arc<Balance>,
    ) -> Self {
        Self {
            region,
            world,
            balance,
        }
    }

    /// `Ok` when a command was stored on the subject its envelope names: the subject is what the
    /// bus's permissions and this region's consumers judge, the envelope what is applied, so a
    /// player's command inside a system command's subject (which a simulator may publish) or a
    /// low-priority kind in the high lane is refused.
    pub fn on_its_subject(subject: &str, cmd: &Envelope<Command>) -> Result<(), String> {
        match cmd.subject() {
            Some(own) if own.to_string() == subject => Ok(()),
            own => Err(format!(
                "the {} command was stored on {subject}, not on {}",
                cmd.payload.kind(),
                own.map_or_else(|| "a region's subject".to_owned(), |s| s.to_string())
            )),
        }
    }

    /// `Ok` when the command may be applied here; every reason it may not, otherwise.
    pub fn admit(&self, cmd: &Envelope<Command>) -> Result<(), String> {
        let mut errors = Vec::new();
        if cmd.region.as_ref() != Some(&self.region) {
            errors.push(FieldError::new(
                "region",
                "wrong_region",
                format!(
                    "is addressed to {:?}, not to this region ({})",
                    cmd.region.as_ref().map(RegionId::as_str),
                    self.region
                ),
            ));
        }
        let kind = cmd.payload.kind();
        if kind.origin() > origin_of(&cmd.actor) {
            errors.push(FieldError::new(
                "actor",
                "forbidden",
                format!("a {:?} may not send {kind}", origin_of(&cmd.actor)),
            ));
        }
        errors.extend(cmd.payload.validation_errors(&self.world));
        self.check_balance(&cmd.payload, &mut errors);
        reasons(&format!("the {kind} command"), errors)
    }

    fn check_balance(&self, command: &Command, errors: &mut Vec<FieldError>) {
        let b = &*self.balance;
        match command {
            Command::AcceptHandOff(h) => self.check_state(&h.state, "state", errors),
            Command::Strike(s) if s.amount > b.max_damage() => errors.push(FieldError::new(
                "amount",
                "range",
                format!("must be at most {}, the most any blow does", b.max_damage()),
            )),
            Command::Reward(r) if r.amount > b.max_reward() => errors.push(FieldError::new(
                "amount",
                "range",
                format!(
                    "must be at most {}, the most any NPC is worth",
                    b.max_reward()
                ),
            )),
            _ => {}
        }
    }

    /// A snapshot read back from its bucket: every entity inside the world and within the
    /// balance, or every reason it is not.
    pub fn check_snapshot(&self, snapshot: &crate::Snapshot) -> Result<(), String> {
        let mut errors = Vec::new();
        for (i, e) in snapshot.entities.iter().enumerate() {
            let prefix = format!("entities[{i}].state");
            e.state.check(&self.world, &prefix, &mut errors);
            self.check_state(&e.state, &prefix, &mut errors);
        }
        reasons("the snapshot", errors)
    }

    /// What an avatar took with it when it left, read back from `player_progress`: within the
    /// balance, or every reason it is not.
    pub fn check_progress(&self, progress: &Progress) -> Result<(), String> {
        let mut errors = Vec::new();
        self.check_progress_fields(
            progress.level,
            progress.xp,
            &progress.inventory,
            "progress",
            &mut errors,
        );
        if progress.level == 0 {
            errors.push(FieldError::new(
                "progress.level",
                "range",
                "must be at least 1",
            ));
        }
        reasons("the stored progress", errors)
    }

    fn check_progress_fields(
        &self,
        level: u32,
        xp: u64,
        inventory: &[InventoryItem],
        prefix: &str,
        errors: &mut Vec<FieldError>,
    ) {
        let b = &*self.balance;
        let field = |name: &str| format!("{prefix}.{name}");
        if level > b.max_level {
            errors.push(FieldError::new(
                field("level"),
                "range",
                format!("must be at most {}", b.max_level),
            ));
        }
        if xp > b.max_xp() {
            errors.push(FieldError::new(
                field("xp"),
                "range",
                format!("must be at most {}", b.max_xp()),
            ));
        }
        if inventory.len() > b.inventory_slots as usize {
            errors.push(FieldError::new(
                field("inventory"),
                "length",
                format!("must hold at most {} items", b.inventory_slots),
            ));
        }
        for (i, item) in inventory.iter().enumerate() {
            if !b.items.iter().any(|k| k.kind == item.item_kind) {
                errors.push(FieldError::new(
                    field(&format!("inventory[{i}].item_kind")),
                    "unknown_item",
                    format!("no item is called {:?}", item.item_kind),
                ));
            }
        }
    }

    /// An entity's state within what the balance allows an entity of its kind to have.
    pub fn check_state(&self, state: &EntityState, prefix: &str, errors: &mut Vec<FieldError>) {
        let b = &*self.balance;
        let field = |name: &str| format!("{prefix}.{name}");
        self.check_progress_fields(state.level, state.xp, &state.inventory, prefix, errors);
        let max_hp = match state.kind {
            EntityKind::Player => b.max_hp(b.max_level),
            EntityKind::Npc => b.npcs.iter().map(|n| n.hp).max().unwrap_or(0),
        };
        if state.max_hp > max_hp {
            errors.push(FieldError::new(
                field("max_hp"),
                "range",
                format!("must be at most {max_hp} for an entity of its kind"),
            ));
        }
    }
}

fn reasons(what: &str, errors: Vec<FieldError>) -> Result<(), String> {
    if errors.is_empty() {
        return Ok(());
    }
    let reasons: Vec<String> = errors.iter().map(ToString::to_string).collect();
    Err(format!("{what} breaks the rules: {}", reasons.join("; ")))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use schemas::command::{AcceptHandOff, Chat, Reward, Strike};
    use schemas::{EntityId, PlayerId, Position};

    use super::*;

    fn balance() -> Arc<Balance> {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/balance.toml"
        ))
        .expect("the shipped balance");
        Arc::new(Balance::from_toml(&text).expect("a valid balance"))
    }

    fn admission() -> Admission {
        let world = ValidationContext {
            world: schemas::geometry::Bounds {
                min: Position::new(0.0, 0.0),
                max: Position::new(2000.0, 2000.0),
            },
            regions: ["west", "east"]
                .into_iter()
                .map(|r| r.parse().expect("region"))
                .collect(),
        };
        Admission::new("west".parse().expect("region"), world, balance())
    }

    fn system() -> Actor {
        Actor::System {
            service: "region-sim".into(),
        }
    }

    fn west() -> Option<RegionId> {
        Some("west".parse().expect("region"))
    }

    fn avatar() -> EntityState {
        EntityState::newcomer(PlayerId::new(), Position::new(10.0, 10.0), 100)
    }

    fn hand_off(state: EntityState) -> Envelope<Command> {
        Envelope::new(
            system(),
            west(),
            Command::AcceptHandOff(AcceptHandOff {
                from_region: "east".parse().expect("region"),
                state,
            }),
        )
    }

    #[test]
    fn a_sound_hand_off_is_admitted() {
        assert_eq!(admission().admit(&hand_off(avatar())), Ok(()));
    }

    #[test]
    fn a_hand_off_with_absurd_numbers_is_refused_with_every_reason() {
        let mut state = avatar();
        state.xp = u64::MAX;
        state.level = u32::MAX;
        state.max_hp = u32::MAX;
        state.hp = u32::MAX;
        state.position = Position::new(-1e300, 5.0);
        let why = admission().admit(&hand_off(state)).expect_err("refused");
        for field in ["state.xp", "state.level", "state.max_hp", "state.position"] {
            assert!(why.contains(field), "{field} named in: {why}");
        }
    }

    #[test]
    fn a_hand_off_carrying_unknown_or_too_many_items_is_refused() {
        let mut state = avatar();
        state.inventory = (0..=balance().inventory_slots)
            .map(|_| schemas::fold::InventoryItem {
                item: EntityId::new(),
                item_kind: "healing_potion".into(),
            })
            .collect();
        state.inventory[0].item_kind = "the crown jewels".into();
        let why = admission().admit(&hand_off(state)).expect_err("refused");
        assert!(why.contains("state.inventory:"), "{why}");
        assert!(why.contains("state.inventory[0].item_kind"), "{why}");
    }

    #[test]
    fn a_player_may_not_send_what_only_simulators_send() {
        let mut cmd = hand_off(avatar());
        cmd.actor = Actor::Player {
            id: PlayerId::new(),
        };
        let why = admission().admit(&cmd).expect_err("refused");
        assert!(why.contains("may not send accept_hand_off"), "{why}");
    }

    #[test]
    fn a_command_for_another_region_is_refused() {
        let mut cmd = Envelope::new(
            Actor::Player {
                id: PlayerId::new(),
            },
            Some("east".parse().expect("region")),
            Command::Chat(Chat {
                text: "hello".into(),
                channel: None,
            }),
        );
        assert!(
            admission()
                .admit(&cmd)
                .expect_err("refused")
                .contains("not to this region")
        );
        cmd.region = west();
        assert_eq!(admission().admit(&cmd), Ok(()));
    }

    fn any_state() -> impl proptest::strategy::Strategy<Value = EntityState> {
        use proptest::prelude::*;
        let f = prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            -10.0..2010.0f64
        ];
        (
            (any::<bool>(), any::<bool>(), f.clone(), f),
            (any::<u32>(), any::<u32>(), any::<u32>(), any::<u64>()),
            (
                prop::collection::vec(".{0,12}", 0..30),
                any::<bool>(),
                any::<bool>(),
            ),
        )
            .prop_map(
                |((player, own_id, x, y), (hp, max_hp, level, xp), (kinds, alive, small))| {
                    let p = PlayerId::new();
                    let id = if own_id { p.into() } else { EntityId::new() };
                    let pick = |n: u64, small: bool| if small { n % 200 } else { n };
                    EntityState {
                        id,
                        kind: if player {
                            EntityKind::Player
                        } else {
                            EntityKind::Npc
                        },
                        player: player.then_some(p),
                        position: Position::new(x, y),
                        destination: None,
                        hp: pick(u64::from(hp), small) as u32,
                        max_hp: pick(u64::from(max_hp), small) as u32,
                        level: pick(u64::from(level), small) as u32,
                        xp: pick(xp, small),
                        inventory: kinds
                            .into_iter()
                            .map(|k| schemas::fold::InventoryItem {
                                item: EntityId::new(),
                                item_kind: if small { "healing_potion".into() } else { k },
                            })
                            .collect(),
                        alive,
                    }
                },
            )
    }

    proptest::proptest! {
        #[test]
        fn any_hand_off_is_admitted_within_the_rules_or_refused_with_its_reasons(state in any_state()) {
            let a = admission();
            let b = balance();
            match a.admit(&hand_off(state.clone())) {
                Ok(()) => {
                    proptest::prop_assert!(state.level >= 1 && state.level <= b.max_level);
                    proptest::prop_assert!(state.xp <= b.max_xp());
                    proptest::prop_assert!(state.hp <= state.max_hp);
                    proptest::prop_assert!(state.inventory.len() <= b.inventory_slots as usize);
                    proptest::prop_assert!(state.position.x.is_finite() && state.position.y.is_finite());
                }
                Err(why) => {
                    proptest::prop_assert!(why.starts_with("the accept_hand_off command breaks the rules: state."), "{}", why);
                }
            }
        }

        #[test]
        fn any_stored_progress_is_taken_within_the_rules_or_refused_with_its_reasons(state in any_state()) {
            let progress = Progress { level: state.level, xp: state.xp, inventory: state.inventory };
            if let Err(why) = admission().check_progress(&progress) {
                proptest::prop_assert!(why.starts_with("the stored progress breaks the rules: progress."), "{}", why);
            }
        }
    }

    #[test]
    fn strikes_and_rewards_beyond_the_balance_are_refused() {
        let b = balance();
        let strike = |amount| {
            Envelope::new(
                system(),
                west(),
                Command::Strike(Strike {
                    from_region: "east".parse().expect("region"),
                    attacker: EntityId::new(),
                    position: Position::new(1.0, 1.0),
                    target: EntityId::new(),
                    amount,
                }),
            )
        };
        let reward = |amount| {
            Envelope::new(
                system(),
                west(),
                Command::Reward(Reward {
                    from_region: "east".parse().expect("region"),
                    entity: EntityId::new(),
                    amount,
                }),
            )
        };
        let a = admission();
        assert_eq!(a.admit(&strike(b.max_damage())), Ok(()));
        assert!(a.admit(&strike(u32::MAX)).is_err());
        assert_eq!(a.admit(&reward(b.max_reward())), Ok(()));
        assert!(a.admit(&reward(u64::MAX)).is_err());
    }
}
