//! One region: its world, the commands it has applied, its tick, its snapshots.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use schemas::command::{AcceptHandOff, Reward, Strike};
use schemas::{
    Actor, Command, EntityState, Envelope, EventId, Fact, Position, RegionConfig, RegionId,
    WorldConfig,
};
use serde::{Deserialize, Serialize};
use shipyard::{IntoIter, UniqueViewMut, View, World};

use crate::balance::Balance;
use crate::components::{
    Clock, Combat, Elsewhere, Ident, Item, Moving, Npc, Pos, Returning, Rules, Slot, Slots,
};
use crate::ecs_fold::{self, entity_state};
use crate::handlers::handle;
use crate::systems::{self, Produced};

/// The actor of what a simulator does on its own (NPCs, respawns, hand-offs).
pub const SERVICE: &str = "region-sim";

/// The name the commands' handlers are timed under, beside the systems' names: the part of the
/// tick before the systems.
pub const COMMANDS: &str = "commands";

/// Settings of a region that are not game balance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegionSettings {
    /// How far past its border an entity must go before it is handed over.
    pub hysteresis: f64,
    /// How many applied command ids a region remembers to recognise a redelivery.
    pub applied_memory: usize,
}

/// The newest `capacity` commands, each with what is known of it; the oldest is forgotten
/// first.
#[derive(Debug, Clone, Default)]
pub struct Remembered<V> {
    order: VecDeque<EventId>,
    known: HashMap<EventId, V>,
    capacity: usize,
}

/// The ids of the commands a region has applied, to recognise a redelivery.
pub type Applied = Remembered<()>;

/// The commands whose handler failed, with why. A delivery of one again is reported failed
/// again without its handler running a second time: what a handler emitted before it failed
/// stays in the world, unstored, and running it again would add to that. (Its dead letter may
/// not have been stored the first time: `DLQ` full, say.)
type Failed = Remembered<String>;

impl<V> Remembered<V> {
    /// An empty memory of `capacity` commands.
    pub fn new(capacity: usize) -> Self {
        Self {
            order: VecDeque::new(),
            known: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Whether `id` is remembered.
    pub fn contains(&self, id: &EventId) -> bool {
        self.known.contains_key(id)
    }

    /// What is remembered of `id`.
    pub fn get(&self, id: &EventId) -> Option<&V> {
        self.known.get(id)
    }

    /// Remembers `id` with `what` (a command remembered already keeps what it had), forgetting
    /// the oldest when full.
    pub fn remember(&mut self, id: EventId, what: V) {
        if self.known.contains_key(&id) {
            return;
        }
        self.known.insert(id, what);
        self.order.push_back(id);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.known.remove(&old);
            }
        }
    }

    /// The remembered ids, oldest first.
    pub fn ids(&self) -> impl Iterator<Item = &EventId> {
        self.order.iter()
    }

    /// How many are remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

impl Applied {
    /// Remembers `id` as applied.
    pub fn insert(&mut self, id: EventId) {
        self.remember(id, ());
    }
}

/// What one tick did.
#[derive(Debug, Default)]
pub struct TickOutput {
    /// The facts to store, in order.
    pub facts: Vec<Envelope<Fact>>,
    /// For each command applied, its id and how many of `facts` (from where) are its outcome.
    pub outcomes: Vec<(EventId, std::ops::Range<usize>)>,
    /// Commands that had been applied before (redeliveries): acknowledged, not applied again.
    pub duplicates: Vec<EventId>,
    /// Commands whose handler failed, with why: for the dead-letter queue, never applied.
    pub failed: Vec<(EventId, String)>,
    /// The commands for neighbouring regions that this tick's facts call for (an
    /// `accept_hand_off` for each hand-off, a `strike` for each blow over a border); to be
    /// published after the facts.
    pub follow_ups: Vec<Envelope<Command>>,
    /// Entities whose position changed (live state).
    pub moved: Vec<(schemas::EntityId, Position)>,
    /// How long each part of the tick took, in the order they ran: the commands' handlers (as
    /// [`COMMANDS`]), then each system by its name.
    pub took: Vec<(&'static str, Duration)>,
}

/// A region and everything it runs with.
pub struct Region {
    world: World,
    id: RegionId,
    applied: Applied,
    failed: Failed,
    rng: fastrand::Rng,
    tick: u64,
}

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

impl Region {
    /// A region that has never run (nothing in it until [`Region::seed`]).
    pub fn new(
        config: RegionConfig,
        world: Arc<WorldConfig>,
        balance: Arc<Balance>,
        settings: RegionSettings,
    ) -> Self {
        let id = config.id.clone();
        let seed = u64::from_be_bytes(
            EventId::named("region-rng", id.as_str(), 0)
                .as_uuid()
                .as_bytes()[8..16]
                .try_into()
                .unwrap_or([0; 8]),
        );
        Self {
            world: ecs_fold::new_world(config, world, balance, settings.hysteresis),
            id,
            applied: Applied::new(settings.applied_memory),
            failed: Failed::new(settings.applied_memory),
            rng: fastrand::Rng::with_seed(seed),
            tick: 0,
        }
    }

    /// Its id.
    pub fn id(&self) -> &RegionId {
        &self.id
    }

    /// The shipyard world (for tests and benchmarks).
    pub fn world(&self) -> &World {
        &self.world
    }

    /// The commands it remembers applying.
    pub fn applied(&self) -> &Applied {
        &self.applied
    }

    /// Whether `player`'s avatar is here.
    pub fn holds(&self, player: schemas::PlayerId) -> bool {
        ecs_fold::key_of(&self.world, schemas::EntityId::from(player)).is_some()
    }

    /// Whether the command `id` has been applied here.
    pub fn has_applied(&self, id: &EventId) -> bool {
        self.applied.contains(id)
    }

    fn system_fact(&self, fact: Fact, now_ms: i64) -> Envelope<Fact> {
        let mut env = Envelope::new(
            Actor::System {
                service: SERVICE.into(),
            },
            Some(self.id.clone()),
            fact,
        );
        env.occurred_at = at(now_ms);
        env
    }

    /// That `player`'s avatar is in `region`, another region, for its `spawn` in the next tick:
    /// refused as `already_spawned`.
    pub fn elsewhere(&mut self, player: schemas::PlayerId, region: schemas::RegionId) {
        if let Ok(mut e) = self.world.get_unique::<&mut Elsewhere>() {
            e.0.insert(player, region);
        }
    }

    /// What `player` had when it last left the world, for its `spawn` in the next tick.
    pub fn returning(&mut self, player: schemas::PlayerId, progress: schemas::fact::Progress) {
        if let Ok(mut r) = self.world.get_unique::<&mut Returning>() {
            r.0.insert(player, progress);
        }
    }

    /// The facts that fill a region that has never run: its NPCs and items. Nothing when it
    /// has them already.
    pub fn seed(&mut self, now_ms: i64) -> Vec<Envelope<Fact>> {
        systems::seed::run(&mut self.world, now_ms, &mut self.rng)
            .into_iter()
            .map(|f| self.system_fact(f, now_ms))
            .collect()
    }

    /// One tick at `now_ms`: the commands, in the order given (high priority first, stream order
    /// within a priority), then the systems ([`systems::TICK`]: movement, border crossings, NPCs
    /// and respawns).
    pub fn tick(&mut self, commands: &[Envelope<Command>], now_ms: i64) -> TickOutput {
        self.tick += 1;
        if let Ok(mut clock) = self.world.get_unique::<&mut Clock>() {
            clock.0 = now_ms;
        }
        let started = Instant::now();
        let mut out = TickOutput::default();
        for cmd in commands {
            if self.applied.contains(&cmd.id) {
                out.duplicates.push(cmd.id);
                continue;
            }
            if let Some(why) = self.failed.get(&cmd.id) {
                out.failed.push((cmd.id, why.clone()));
                continue;
            }
            let start = out.facts.len();
            let world = &mut self.world;
            let decided = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                #[cfg(feature = "failpoints")]
                crate::runner::failpoint_handler(cmd);
                handle(world, cmd, now_ms)
            }));
            let facts = match decided {
                Ok(facts) => facts,
                Err(panic) => {
                    let why = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "the handler panicked".into());
                    let why = format!("handler failed: {why}");
                    self.failed.remember(cmd.id, why.clone());
                    out.failed.push((cmd.id, why));
                    continue;
                }
            };
            for (i, fact) in facts.into_iter().enumerate() {
                let mut env = Envelope::caused_by(
                    cmd,
                    u32::try_from(i).unwrap_or(u32::MAX),
                    cmd.actor.clone(),
                    Some(self.id.clone()),
                    fact,
                );
                env.occurred_at = at(now_ms);
                out.follow_ups.extend(follow_ups(&env));
                out.facts.push(env);
            }
            self.applied.insert(cmd.id);
            out.outcomes.push((cmd.id, start..out.facts.len()));
        }
        // Progress looked up for a spawn that did not happen (rejected, or not in this batch)
        // is looked up again when it comes.
        if let Ok(mut r) = self.world.get_unique::<&mut Returning>() {
            r.0.clear();
        }
        if let Ok(mut e) = self.world.get_unique::<&mut Elsewhere>() {
            e.0.clear();
        }
        out.took.push((COMMANDS, started.elapsed()));
        let (Produced { facts, moved }, took) =
            systems::run_tick(&mut self.world, now_ms, &mut self.rng);
        out.moved = moved;
        out.took.extend(took);
        for fact in facts {
            let env = self.system_fact(fact, now_ms);
            out.follow_ups.extend(follow_ups(&env));
            out.facts.push(env);
        }
        out
    }

    /// Folds a fact read back from the log (recovery). Returns the commands for neighbouring
    /// regions the fact calls for, to be sent again: their ids are derived from the fact's, so
    /// a copy already sent is stored once and applied once.
    pub fn fold(&mut self, env: &Envelope<Fact>) -> Vec<Envelope<Command>> {
        ecs_fold::apply(
            &mut self.world,
            &env.payload,
            env.occurred_at.timestamp_millis(),
        );
        self.remember_cause(env);
        follow_ups(env)
    }

    /// Remembers the command behind a stored fact as applied (facts a command decided name it
    /// as their cause; the systems' facts name none).
    pub fn remember_cause(&mut self, env: &Envelope<Fact>) {
        if let Some(cause) = env.causation_id {
            self.applied.insert(cause);
        }
    }

    /// Every entity's recorded state, by id.
    pub fn entities(&self) -> std::collections::BTreeMap<schemas::EntityId, EntityState> {
        self.keys()
            .into_iter()
            .filter_map(|k| entity_state(&self.world, k))
            .map(|s| (s.id, s))
            .collect()
    }

    /// Every item on the ground: id, kind and position.
    pub fn items(&self) -> std::collections::BTreeMap<schemas::EntityId, (String, Position)> {
        self.world.run(|item: View<Item>, pos: View<Pos>| {
            (&item, &pos)
                .iter()
                .map(|(i, p)| (i.id, (i.kind.clone(), p.0)))
                .collect()
        })
    }

    /// The ECS keys of every avatar and NPC (what carries an [`Ident`]).
    fn keys(&self) -> Vec<shipyard::EntityId> {
        self.world
            .iter::<&Ident>()
            .into_iter()
            .with_id()
            .map(|(k, _)| k)
            .collect()
    }

    /// How many avatars, NPCs and items it holds: what balancing weighs it by.
    pub fn census(&self) -> (u64, u64, u64) {
        let (mut players, mut npcs) = (0, 0);
        for ident in self.world.iter::<&Ident>().into_iter() {
            match ident.kind {
                schemas::EntityKind::Player => players += 1,
                schemas::EntityKind::Npc => npcs += 1,
            }
        }
        let items = self.world.iter::<&Item>().into_iter().count() as u64;
        (players, npcs, items)
    }

    /// Players, and every entity (avatars, NPCs and items).
    pub fn population(&self) -> (u64, u64) {
        let players = self
            .world
            .iter::<&Ident>()
            .into_iter()
            .filter(|i| i.kind == schemas::EntityKind::Player)
            .count() as u64;
        let npcs_and_players = self.world.iter::<&Ident>().into_iter().count() as u64;
        let items = self.world.iter::<&Item>().into_iter().count() as u64;
        (players, npcs_and_players + items)
    }

    /// The region's state as a snapshot covering `FACTS` up to `facts_seq`.
    pub fn snapshot(&self, facts_seq: u64, now_ms: i64) -> Snapshot {
        let entities = self
            .keys()
            .into_iter()
            .filter_map(|key| {
                let state = entity_state(&self.world, key)?;
                let moving = self.world.get::<&Moving>(key).ok().map(|m| **m);
                let combat = self
                    .world
                    .get::<&Combat>(key)
                    .ok()
                    .map(|c| **c)
                    .unwrap_or_default();
                let npc = self.world.get::<&Npc>(key).ok().map(|n| NpcSnapshot {
                    kind: n.kind,
                    home: n.home,
                    next_wander_ms: n.next_wander_ms,
                });
                Some(EntitySnapshot {
                    state,
                    moving,
                    combat,
                    npc,
                })
            })
            .collect();
        let items = self.world.run(|item: View<Item>, pos: View<Pos>| {
            (&item, &pos)
                .iter()
                .map(|(i, p)| ItemSnapshot {
                    id: i.id,
                    kind: i.kind.clone(),
                    slot: i.slot,
                    position: p.0,
                })
                .collect()
        });
        let slots = self
            .world
            .get_unique::<&Slots>()
            .map(|s| s.0.clone())
            .unwrap_or_default();
        Snapshot {
            region: self.id.clone(),
            facts_seq,
            at_ms: now_ms,
            tick: self.tick,
            entities,
            items,
            slots,
            applied: self.applied.ids().copied().collect(),
        }
    }

    /// A region restored from a snapshot.
    pub fn restore(
        snapshot: &Snapshot,
        config: RegionConfig,
        world: Arc<WorldConfig>,
        balance: Arc<Balance>,
        settings: RegionSettings,
    ) -> Self {
        let mut region = Self::new(config, world, balance, settings);
        region.tick = snapshot.tick;
        for id in &snapshot.applied {
            region.applied.insert(*id);
        }
        let w = &mut region.world;
        for e in &snapshot.entities {
            let mut state = e.state.clone();
            state.destination = None;
            let npc_kind = e.npc.as_ref().and_then(|n| {
                w.get_unique::<&Rules>()
                    .ok()
                    .and_then(|r| r.balance.npcs.get(n.kind).map(|k| k.kind.clone()))
            });
            let fact = match npc_kind {
                Some(npc_kind) => Fact::NpcSpawned(schemas::fact::NpcSpawned { state, npc_kind }),
                None => Fact::Spawned(schemas::fact::Spawned { state }),
            };
            ecs_fold::apply(w, &fact, snapshot.at_ms);
            let Some(key) = ecs_fold::key_of(w, e.state.id) else {
                continue;
            };
            if let Some(m) = e.moving {
                w.add_component(key, m);
            }
            if let Ok(mut c) = w.get::<&mut Combat>(key) {
                **c = e.combat;
            }
            if let (Some(n), Ok(mut npc)) = (&e.npc, w.get::<&mut Npc>(key)) {
                npc.home = n.home;
                npc.next_wander_ms = n.next_wander_ms;
            }
        }
        for item in &snapshot.items {
            let key = w.add_entity((
                Pos(item.position),
                Item {
                    id: item.id,
                    kind: item.kind.clone(),
                    slot: item.slot,
                },
            ));
            ecs_fold::index(w, item.id, key, item.position, false);
        }
        w.run(|mut slots: UniqueViewMut<Slots>| slots.0.clone_from(&snapshot.slots));
        region
    }
}

/// The commands for neighbouring regions a fact calls for: the `accept_hand_off` of a
/// [`Fact::HandedOffOut`], a `strike` to each region a [`Fact::StruckAcross`] reaches, and the
/// `reward` of a [`Fact::RewardSent`]. Their ids derive from the fact's, so sending them again is
/// harmless.
pub fn follow_ups(env: &Envelope<Fact>) -> Vec<Envelope<Command>> {
    let system = || Actor::System {
        service: SERVICE.into(),
    };
    let Some(from_region) = env.region.clone() else {
        return Vec::new();
    };
    let mut commands = match &env.payload {
        Fact::HandedOffOut(out) => vec![Envelope::caused_by(
            env,
            0,
            system(),
            Some(out.to_region.clone()),
            Command::AcceptHandOff(AcceptHandOff {
                from_region,
                state: out.state.clone(),
            }),
        )],
        Fact::StruckAcross(blow) => blow
            .to_regions
            .iter()
            .enumerate()
            .map(|(i, to)| {
                Envelope::caused_by(
                    env,
                    u32::try_from(i).unwrap_or(u32::MAX),
                    system(),
                    Some(to.clone()),
                    Command::Strike(Strike {
                        from_region: from_region.clone(),
                        attacker: blow.attacker,
                        position: blow.position,
                        target: blow.target,
                        amount: blow.amount,
                    }),
                )
            })
            .collect(),
        Fact::RewardSent(reward) => vec![Envelope::caused_by(
            env,
            0,
            system(),
            Some(reward.to_region.clone()),
            Command::Reward(Reward {
                from_region,
                entity: reward.entity,
                amount: reward.amount,
            }),
        )],
        _ => Vec::new(),
    };
    for cmd in &mut commands {
        cmd.occurred_at = env.occurred_at;
    }
    commands
}

/// A region's state at a tick boundary, with the `FACTS` sequence it covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The region.
    pub region: RegionId,
    /// The last `FACTS` sequence of this region folded into it.
    pub facts_seq: u64,
    /// When it was taken (Unix milliseconds).
    pub at_ms: i64,
    /// The tick it was taken after.
    pub tick: u64,
    /// Avatars and NPCs.
    pub entities: Vec<EntitySnapshot>,
    /// Items on the ground.
    pub items: Vec<ItemSnapshot>,
    /// The item slots.
    pub slots: Vec<Slot>,
    /// The commands applied, oldest first.
    pub applied: Vec<EventId>,
}

/// An avatar or NPC in a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntitySnapshot {
    /// Its recorded state.
    pub state: EntityState,
    /// Its walk, if under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moving: Option<Moving>,
    /// Its combat timers.
    #[serde(default)]
    pub combat: Combat,
    /// Its mind, for NPCs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub npc: Option<NpcSnapshot>,
}

/// An NPC's mind in a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NpcSnapshot {
    /// Its kind (index into the balance's NPC kinds).
    pub kind: usize,
    /// Its home.
    pub home: Position,
    /// When it next wanders.
    pub next_wander_ms: i64,
}

/// An item on the ground in a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemSnapshot {
    /// Its id.
    pub id: schemas::EntityId,
    /// Its kind.
    pub kind: String,
    /// Its slot.
    pub slot: usize,
    /// Where it lies.
    pub position: Position,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_command_is_remembered_with_why_until_newer_ones_push_it_out() {
        let mut failed = Failed::new(2);
        let ids: Vec<EventId> = (0..3).map(|_| EventId::new()).collect();
        failed.remember(ids[0], "handler failed: one".into());
        // Failing again keeps the first reason and one place.
        failed.remember(ids[0], "handler failed: again".into());
        failed.remember(ids[1], "handler failed: two".into());
        assert_eq!(
            failed.get(&ids[0]).map(String::as_str),
            Some("handler failed: one")
        );
        failed.remember(ids[2], "handler failed: three".into());
        assert_eq!(failed.get(&ids[0]), None, "the oldest forgotten");
        assert!(failed.get(&ids[1]).is_some() && failed.get(&ids[2]).is_some());
    }
}
