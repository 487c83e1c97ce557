//! The plan of a run, read from the mix file (`config/bench.toml`): what players do and in
//! what proportions, how fast, the ramp, the drain and the ceilings.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// Why the mix file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a plan.
    #[error("{path} is not a bench plan: {source}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        source: toml::de::Error,
    },
    /// A value is out of its range; the key is named.
    #[error("{0}")]
    Invalid(String),
}

/// The whole plan.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The weights of the actions.
    pub mix: Mix,
    /// How fast each player acts.
    pub pace: Pace,
    /// How players join.
    pub ramp: Ramp,
    /// How long to wait for the projection after the players stop.
    pub drain: Drain,
    /// The ceilings run after the game.
    pub ceilings: Ceilings,
}

/// Relative weights of what a player does once in the world.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mix {
    /// Walk somewhere near.
    #[serde(rename = "move")]
    pub walk: u32,
    /// Strike something seen nearby.
    pub attack: u32,
    /// Say something.
    pub chat: u32,
    /// Reach for an item seen nearby.
    pub pickup: u32,
    /// Log out and in again.
    pub relog: u32,
}

/// One thing a player does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `move`.
    Walk,
    /// `attack`.
    Attack,
    /// `chat`.
    Chat,
    /// `pickup`.
    Pickup,
    /// Log out, log in, reopen the stream.
    Relog,
}

impl Mix {
    fn weights(&self) -> [(Action, u32); 5] {
        [
            (Action::Walk, self.walk),
            (Action::Attack, self.attack),
            (Action::Chat, self.chat),
            (Action::Pickup, self.pickup),
            (Action::Relog, self.relog),
        ]
    }

    /// The sum of the weights.
    pub fn total(&self) -> u32 {
        self.weights().iter().map(|(_, w)| w).sum()
    }

    /// The action a roll in `0..total()` picks.
    pub fn pick(&self, roll: u32) -> Action {
        let mut left = roll;
        for (action, weight) in self.weights() {
            if left < weight {
                return action;
            }
            left -= weight;
        }
        Action::Walk
    }
}

/// How fast each player acts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pace {
    /// The pause after each answer, in milliseconds.
    pub think_ms: u64,
    /// The share of commands sent with `?wait=true`, 0 to 1.
    pub wait_share: f64,
}

/// How players join.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ramp {
    /// Players join evenly over this many seconds.
    pub seconds: f64,
}

/// The wait for the projection after the players stop.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drain {
    /// At most this many seconds.
    pub max_seconds: f64,
}

/// The ceilings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ceilings {
    /// How long each one runs, in seconds.
    pub seconds: f64,
    /// How many publishers await their acks at once.
    pub publishers: usize,
}

impl Plan {
    /// Reads and checks a plan.
    pub fn load(path: &Path) -> Result<Self, PlanError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PlanError::Read {
            path: name.clone(),
            source,
        })?;
        let plan: Plan = toml::from_str(&text).map_err(|source| PlanError::Parse {
            path: name.clone(),
            source,
        })?;
        plan.check()?;
        Ok(plan)
    }

    fn check(&self) -> Result<(), PlanError> {
        let bad = |key: &str, why: &str| Err(PlanError::Invalid(format!("{key} {why}")));
        if self.mix.total() == 0 {
            return bad("mix", "needs at least one weight above 0");
        }
        if !(0.0..=1.0).contains(&self.pace.wait_share) {
            return bad("pace.wait_share", "must be between 0 and 1");
        }
        if self.ramp.seconds.is_nan() || self.ramp.seconds < 0.0 {
            return bad("ramp.seconds", "must be 0 or more");
        }
        if self.drain.max_seconds.is_nan() || self.drain.max_seconds < 0.0 {
            return bad("drain.max_seconds", "must be 0 or more");
        }
        if self.ceilings.seconds.is_nan() || self.ceilings.seconds <= 0.0 {
            return bad("ceilings.seconds", "must be above 0");
        }
        if self.ceilings.publishers == 0 {
            return bad("ceilings.publishers", "must be at least 1");
        }
        Ok(())
    }

    /// The pause after each answer.
    pub fn think(&self) -> Duration {
        Duration::from_millis(self.pace.think_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_plan_is_valid_and_every_roll_picks_by_weight() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/bench.toml");
        let plan = Plan::load(&path).expect("config/bench.toml");
        let mix = &plan.mix;
        let mut counts = std::collections::HashMap::new();
        for roll in 0..mix.total() {
            *counts.entry(mix.pick(roll)).or_insert(0u32) += 1;
        }
        assert_eq!(counts.get(&Action::Walk).copied(), Some(mix.walk));
        assert_eq!(counts.get(&Action::Relog).copied(), Some(mix.relog));
    }
}
