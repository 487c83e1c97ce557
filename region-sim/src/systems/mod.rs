//! The systems a tick runs after the commands, one per file, each with a name: movement,
//! border crossings, NPC behaviour, and what comes back on its own (NPCs, items). Each takes the
//! region's world and the tick's time and returns the facts it decided, already folded in; NPC
//! walking is live state, not facts. [`TICK`] is their order; [`run_tick`] runs them and times
//! each, for `sim_system_duration_seconds`.
//!
//! - [`movement`]: every walk advanced to the tick's time.
//! - [`border_crossings`]: avatars past the border handed over.
//! - [`npcs`]: chasing, striking, wandering.
//! - [`respawns`]: dead NPCs and emptied item slots coming back.
//! - [`seed`]: what fills a region that has never run (on recovery, not in the tick).

pub mod border_crossings;
pub mod movement;
pub mod npcs;
pub mod respawns;
pub mod seed;

use std::time::{Duration, Instant};

use schemas::{Fact, Position};
use shipyard::World;

use crate::components::Rules;

/// What a tick's systems produced.
#[derive(Debug, Default)]
pub struct Produced {
    /// Facts for the event log, in the order they were decided.
    pub facts: Vec<Fact>,
    /// Entities whose position changed this tick (live state, for broadcast).
    pub moved: Vec<(schemas::EntityId, Position)>,
}

/// One system of the tick: its name (the `system` label of the metrics) and what it does to a
/// region's world at the tick's time, `rng` drawing what is left to chance.
#[derive(Debug, Clone, Copy)]
pub struct System {
    /// Its name.
    pub name: &'static str,
    /// Runs it once.
    pub run: fn(&mut World, i64, &mut fastrand::Rng) -> Produced,
}

/// The systems of a tick, in the order they run.
pub const TICK: [System; 4] = [
    System {
        name: movement::NAME,
        run: movement::run,
    },
    System {
        name: border_crossings::NAME,
        run: border_crossings::run,
    },
    System {
        name: npcs::NAME,
        run: npcs::run,
    },
    System {
        name: respawns::NAME,
        run: respawns::run,
    },
];

/// Runs every system of [`TICK`] in order at `now_ms`: what they produced together, and how
/// long each took, by name.
pub fn run_tick(
    world: &mut World,
    now_ms: i64,
    rng: &mut fastrand::Rng,
) -> (Produced, Vec<(&'static str, Duration)>) {
    let mut produced = Produced::default();
    let mut took = Vec::with_capacity(TICK.len());
    for system in TICK {
        let started = Instant::now();
        let Produced { facts, moved } = (system.run)(world, now_ms, rng);
        took.push((system.name, started.elapsed()));
        produced.facts.extend(facts);
        produced.moved.extend(moved);
    }
    (produced, took)
}

/// A point drawn at random inside the region.
fn random_point(rules: &Rules, rng: &mut fastrand::Rng) -> Position {
    let b = rules.region.bounds;
    rules.clamp(Position::new(
        b.min.x + rng.f64() * (b.max.x - b.min.x),
        b.min.y + rng.f64() * (b.max.y - b.min.y),
    ))
}
