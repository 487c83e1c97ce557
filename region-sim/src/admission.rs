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
use schemas::{
    Actor, Command, EntityKind, EntityState, Envelope, Fact, Position, RegionId, ValidationContext,
};

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

    /// A snapshot read back from its bucket, given the log's last sequence and the time now:
    /// every entity inside the world and within the balance, its walk, timers, slots and items
    /// plausible, and its place in the log no further than the log goes; or every reason not.
    /// What passes cannot overflow the arithmetic of a tick (a time, a generation, a sequence
    /// counted on from) nor index past the balance's kinds.
    pub fn check_snapshot(
        &self,
        snapshot: &crate::Snapshot,
        facts_last: u64,
        now_ms: i64,
    ) -> Result<(), String> {
        let mut errors = Vec::new();
        let b = &*self.balance;
        let range = |errors: &mut Vec<FieldError>, field: String, message: String| {
            errors.push(FieldError::new(field, "range", message));
        };
        if snapshot.facts_seq > facts_last {
            range(
                &mut errors,
                "facts_seq".into(),
                format!("must be at most {facts_last}, the log's last sequence"),
            );
        }
        if snapshot.tick > MAX_COUNT {
            range(
                &mut errors,
                "tick".into(),
                format!("must be at most {MAX_COUNT}"),
            );
        }
        let latest = now_ms.saturating_add(TIME_AHEAD_MS);
        let time = |errors: &mut Vec<FieldError>, field: String, t: i64| {
            if !(0..=latest).contains(&t) {
                range(
                    errors,
                    field,
                    format!("must be a time from 0 to {latest} (Unix ms)"),
                );
            }
        };
        time(&mut errors, "at_ms".into(), snapshot.at_ms);
        let max_speed = b
            .npcs
            .iter()
            .map(|n| n.speed)
            .fold(b.player_speed, f64::max);
        for (i, e) in snapshot.entities.iter().enumerate() {
            let prefix = format!("entities[{i}].state");
            e.state.check(&self.world, &prefix, &mut errors);
            self.check_state(&e.state, &prefix, &mut errors);
            let field = |name: &str| format!("entities[{i}].{name}");
            if let Some(m) = &e.moving {
                for (name, p) in [("moving.from", m.from), ("moving.to", m.to)] {
                    if !self.world.world.contains(&p) {
                        errors.push(FieldError::new(
                            field(name),
                            "out_of_world",
                            "must be inside the world",
                        ));
                    }
                }
                if !(0.0..=max_speed).contains(&m.speed) {
                    range(
                        &mut errors,
                        field("moving.speed"),
                        format!("must be from 0 to {max_speed}, the fastest walker's speed"),
                    );
                }
                time(&mut errors, field("moving.started_ms"), m.started_ms);
            }
            for (name, t) in [
                ("combat.last_attack_ms", e.combat.last_attack_ms),
                ("combat.died_at_ms", e.combat.died_at_ms),
                ("npc.next_wander_ms", e.npc.map(|n| n.next_wander_ms)),
            ] {
                if let Some(t) = t {
                    time(&mut errors, field(name), t);
                }
            }
            if let Some(npc) = &e.npc {
                if npc.kind >= b.npcs.len() {
                    range(
                        &mut errors,
                        field("npc.kind"),
                        format!("must be below {}, the NPC kinds there are", b.npcs.len()),
                    );
                }
                if !self.world.world.contains(&npc.home) {
                    errors.push(FieldError::new(
                        field("npc.home"),
                        "out_of_world",
                        "must be inside the world",
                    ));
                }
            }
        }
        for (i, slot) in snapshot.slots.iter().enumerate() {
            let field = |name: &str| format!("slots[{i}].{name}");
            if slot.kind >= b.items.len() {
                range(
                    &mut errors,
                    field("kind"),
                    format!("must be below {}, the item kinds there are", b.items.len()),
                );
            }
            if slot.generation > MAX_COUNT {
                range(
                    &mut errors,
                    field("generation"),
                    format!("must be at most {MAX_COUNT}"),
                );
            }
            if let Some(due) = slot.due_ms {
                time(&mut errors, field("due_ms"), due);
            }
        }
        for (i, item) in snapshot.items.iter().enumerate() {
            // `usize::MAX` is an item in no slot (one the log placed where no slot of today's
            // balance is), which a pickup leaves alone.
            if item.slot >= snapshot.slots.len() && item.slot != usize::MAX {
                range(
                    &mut errors,
                    format!("items[{i}].slot"),
                    format!(
                        "must be below {}, the slots there are",
                        snapshot.slots.len()
                    ),
                );
            }
            if !self.world.world.contains(&item.position) {
                errors.push(FieldError::new(
                    format!("items[{i}].position"),
                    "out_of_world",
                    "must be inside the world",
                ));
            }
        }
        reasons("the snapshot", errors)
    }

    /// A fact read back from this region's log, before a recovering region folds it in, with
    /// every position it names brought inside the world: the names of those that were not.
    ///
    /// The log is written by this region's simulators alone, and they place nothing outside the
    /// world; but the world may have shrunk since (`regions.toml`), and whoever holds their
    /// rights could write into it what no tick makes. Folded as they were, such places go into
    /// the live world: a walk from far outside it overflows to NaN, and NaN positions are
    /// stored as `null`, which no reader decodes. Brought to the world's nearest edge, the
    /// fact is folded, so nothing it records (an arrival, a spawn) is dropped.
    pub fn bring_inside(&self, fact: &mut Fact) -> Vec<&'static str> {
        use schemas::fact::{
            ChatSaid, Died, HandedOffIn, HandedOffOut, ItemSpawned, Left, Moved, NpcDied,
            NpcSpawned, Respawned, Spawned, StruckAcross,
        };
        let bounds = &self.world.world;
        let places: Vec<(&'static str, &mut Position)> = match fact {
            Fact::MovementStarted(f) => {
                vec![("from", &mut f.from), ("destination", &mut f.destination)]
            }
            Fact::Moved(Moved { position, .. })
            | Fact::Died(Died { position, .. })
            | Fact::Respawned(Respawned { position, .. })
            | Fact::ItemSpawned(ItemSpawned { position, .. })
            | Fact::ChatSaid(ChatSaid { position, .. })
            | Fact::Left(Left { position, .. })
            | Fact::NpcDied(NpcDied { position, .. })
            | Fact::StruckAcross(StruckAcross { position, .. }) => vec![("position", position)],
            Fact::Spawned(Spawned { state })
            | Fact::HandedOffOut(HandedOffOut { state, .. })
            | Fact::HandedOffIn(HandedOffIn { state, .. })
            | Fact::NpcSpawned(NpcSpawned { state, .. }) => {
                let mut places = vec![("state.position", &mut state.position)];
                if let Some(d) = state.destination.as_mut() {
                    places.push(("state.destination", d));
                }
                places
            }
            _ => Vec::new(),
        };
        let mut moved = Vec::new();
        for (name, p) in places {
            // Inside is below `max` (see `Bounds::contains`).
            let inside = Position::new(
                p.x.clamp(bounds.min.x, bounds.max.x.next_down()),
                p.y.clamp(bounds.min.y, bounds.max.y.next_down()),
            );
            if inside != *p {
                *p = inside;
                moved.push(name);
            }
        }
        moved
    }

    /// A fact read back from this region's log (its places brought inside the world first, by
    /// [`Admission::bring_inside`]): every position it names inside the world and every state
    /// it carries possible (see [`EntityState::check`]); or every reason not. What fails this
    /// was written by no tick, and is not folded.
    ///
    /// The balance is not asked: the log outlives it, and a fact that was right under an
    /// earlier balance (a higher level cap, an item since removed) must still be folded.
    pub fn check_fact(&self, fact: &Fact) -> Result<(), String> {
        let mut errors = Vec::new();
        let mut fact = fact.clone();
        for name in self.bring_inside(&mut fact) {
            errors.push(FieldError::new(
                name,
                "out_of_world",
                "must be inside the world",
            ));
        }
        if let Some(state) = carried_state(&mut fact) {
            state.check(&self.world, "state", &mut errors);
        }
        reasons(&format!("the {} fact", fact.kind()), errors)
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

/// The largest count a snapshot may carry (ticks, a slot's generation): 2^53, beyond anything
/// a region reaches, far enough from `u64::MAX` that counting on cannot overflow.
const MAX_COUNT: u64 = 1 << 53;

/// How far ahead of now a time in a snapshot may lie: timers (a respawn, a wander, a slot's
/// refill) are set a little ahead; a year ahead is nothing a region sets.
const TIME_AHEAD_MS: i64 = 365 * 24 * 3_600 * 1_000;

/// The whole state of an entity a fact carries (an arrival, a departure over the border).
fn carried_state(fact: &mut Fact) -> Option<&mut EntityState> {
    match fact {
        Fact::Spawned(f) => Some(&mut f.state),
        Fact::HandedOffOut(f) => Some(&mut f.state),
        Fact::HandedOffIn(f) => Some(&mut f.state),
        Fact::NpcSpawned(f) => Some(&mut f.state),
        _ => None,
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

    /// A sound snapshot of west: a walking NPC that has struck, a filled slot with its item.
    fn snapshot(now_ms: i64) -> crate::Snapshot {
        use crate::components::{Combat, Moving, Slot};
        use crate::region::{EntitySnapshot, ItemSnapshot, NpcSnapshot};
        let mut npc = avatar();
        npc.kind = EntityKind::Npc;
        npc.player = None;
        npc.max_hp = 1;
        npc.hp = 1;
        let item = EntityId::new();
        crate::Snapshot {
            region: "west".parse().expect("region"),
            facts_seq: 40,
            at_ms: now_ms,
            tick: 1_000,
            entities: vec![EntitySnapshot {
                state: npc,
                moving: Some(Moving {
                    from: Position::new(10.0, 10.0),
                    to: Position::new(20.0, 10.0),
                    started_ms: now_ms - 100,
                    speed: 1.0,
                }),
                combat: Combat {
                    last_attack_ms: Some(now_ms - 1_000),
                    died_at_ms: None,
                },
                npc: Some(NpcSnapshot {
                    kind: 0,
                    home: Position::new(10.0, 10.0),
                    next_wander_ms: now_ms + 5_000,
                }),
            }],
            items: vec![ItemSnapshot {
                id: item,
                kind: balance().items[0].kind.clone(),
                slot: 0,
                position: Position::new(30.0, 30.0),
            }],
            slots: vec![Slot {
                kind: 0,
                generation: 3,
                item: Some(item),
                due_ms: None,
            }],
            applied: vec![],
        }
    }

    #[test]
    fn a_snapshot_whose_counters_times_or_kinds_are_absurd_is_refused() {
        let now = 1_780_000_000_000;
        let a = admission();
        assert_eq!(a.check_snapshot(&snapshot(now), 40, now), Ok(()));
        type Spoil = fn(&mut crate::Snapshot);
        let cases: [(&str, Spoil); 14] = [
            ("facts_seq", |s| s.facts_seq = 41),
            ("tick", |s| s.tick = u64::MAX),
            ("at_ms", |s| s.at_ms = i64::MIN),
            ("entities[0].moving.started_ms", |s| {
                s.entities[0].moving.as_mut().expect("walking").started_ms = i64::MIN
            }),
            ("entities[0].moving.speed", |s| {
                s.entities[0].moving.as_mut().expect("walking").speed = f64::NAN
            }),
            ("entities[0].moving.to", |s| {
                s.entities[0].moving.as_mut().expect("walking").to = Position::new(-1e308, 1e308)
            }),
            ("entities[0].combat.died_at_ms", |s| {
                s.entities[0].combat.died_at_ms = Some(i64::MAX)
            }),
            ("entities[0].combat.last_attack_ms", |s| {
                s.entities[0].combat.last_attack_ms = Some(-1)
            }),
            ("entities[0].npc.next_wander_ms", |s| {
                s.entities[0].npc.as_mut().expect("an npc").next_wander_ms = i64::MAX
            }),
            ("entities[0].npc.kind", |s| {
                s.entities[0].npc.as_mut().expect("an npc").kind = usize::MAX
            }),
            ("slots[0].generation", |s| s.slots[0].generation = u64::MAX),
            ("slots[0].kind", |s| s.slots[0].kind = 10_000),
            ("slots[0].due_ms", |s| s.slots[0].due_ms = Some(i64::MAX)),
            ("items[0].slot", |s| s.items[0].slot = 1),
        ];
        let mut unslotted = snapshot(now);
        unslotted.items[0].slot = usize::MAX;
        assert_eq!(
            a.check_snapshot(&unslotted, 40, now),
            Ok(()),
            "an item in no slot"
        );
        for (field, spoil) in cases {
            let mut spoilt = snapshot(now);
            spoil(&mut spoilt);
            let why = a.check_snapshot(&spoilt, 40, now).expect_err(field);
            assert!(why.contains(field), "{field}: {why}");
        }
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

    #[test]
    fn a_fact_from_the_log_is_brought_inside_the_world_and_checked() {
        use schemas::command::ChatChannel;
        use schemas::fact::{ChatSaid, Moved, MovementStarted, Spawned};
        let a = admission();
        let far = Position::new(1e300, -1e300);
        // The world's corner nearest to `far`: inside is below its `max`.
        let corner = Position::new(2000f64.next_down(), 0.0);
        let near = Position::new(10.0, 10.0);
        let entity = EntityId::new();
        let moved = |position| {
            Fact::Moved(Moved {
                entity,
                position,
                arrived: false,
            })
        };
        let walk = |from, destination| {
            Fact::MovementStarted(MovementStarted {
                entity,
                from,
                destination,
            })
        };
        let said = |position| {
            Fact::ChatSaid(ChatSaid {
                entity,
                channel: ChatChannel::Say,
                text: "hi".into(),
                position,
            })
        };
        let spawned = |state| Fact::Spawned(Spawned { state });
        // Above today's level cap, but possible: the log outlives the balance.
        let mut veteran = avatar();
        veteran.level = balance().max_level + 1;
        for mut fact in [
            moved(near),
            walk(near, near),
            said(near),
            spawned(avatar()),
            spawned(veteran),
        ] {
            assert_eq!(a.check_fact(&fact), Ok(()), "{fact:?}");
            let before = fact.clone();
            assert!(a.bring_inside(&mut fact).is_empty());
            assert_eq!(fact, before);
        }

        let mut outside = avatar();
        outside.position = far;
        for (mut fact, field, inside) in [
            (moved(far), "position", moved(corner)),
            (walk(near, far), "destination", walk(near, corner)),
            (walk(far, near), "from", walk(corner, near)),
            (said(far), "position", said(corner)),
            (spawned(outside.clone()), "state.position", {
                let mut s = outside;
                s.position = corner;
                spawned(s)
            }),
        ] {
            let why = a.check_fact(&fact).expect_err("outside");
            assert!(why.contains(field), "{field}: {why}");
            assert_eq!(a.bring_inside(&mut fact), [field]);
            assert_eq!(fact, inside);
            assert_eq!(a.check_fact(&fact), Ok(()), "{field}");
        }

        // What no tick makes, and no change of the world explains, is refused.
        let mut overhealed = avatar();
        overhealed.hp = overhealed.max_hp + 1;
        let why = a.check_fact(&spawned(overhealed)).expect_err("refused");
        assert!(why.contains("state.hp"), "{why}");
    }
}
