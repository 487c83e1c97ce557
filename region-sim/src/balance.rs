//! Game balance, from `config/balance.toml`: speeds, hit points, combat, respawn, experience, NPC
//! and item kinds. No game number is a constant in code.

use serde::Deserialize;

/// The attack rules.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attack {
    /// How far an attack reaches.
    pub range: f64,
    /// Milliseconds between two attacks of one attacker.
    pub cooldown_ms: u64,
    /// The least damage a hit does.
    pub damage_min: u32,
    /// The most damage a hit does.
    pub damage_max: u32,
}

/// An NPC kind and how many of it each region holds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NpcKind {
    /// Its name.
    pub kind: String,
    /// How many live in each region.
    pub per_region: u32,
    /// Its hit points.
    pub hp: u32,
    /// The least damage its hit does.
    pub damage_min: u32,
    /// The most damage its hit does.
    pub damage_max: u32,
    /// How far it walks per second.
    pub speed: f64,
    /// How near a player must come for it to attack.
    pub aggro_radius: f64,
    /// How far from its home it wanders.
    pub wander_radius: f64,
    /// Experience for killing it.
    pub xp: u64,
    /// Seconds before a dead one comes back.
    pub respawn_secs: f64,
}

/// An item kind and how many of it lie in each region.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemKind {
    /// Its name.
    pub kind: String,
    /// How many lie in each region.
    pub per_region: u32,
    /// Seconds before a picked one appears again.
    pub respawn_secs: f64,
}

/// Every rule of the game.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Balance {
    /// How far an avatar walks per second.
    pub player_speed: f64,
    /// Hit points at level 1.
    pub player_base_hp: u32,
    /// Hit points each level adds.
    pub player_hp_per_level: u32,
    /// Seconds before a dead avatar may respawn.
    pub respawn_secs: f64,
    /// Experience for level n + 1 is `xp_per_level * n`.
    pub xp_per_level: u64,
    /// The highest level; experience stops adding up there.
    pub max_level: u32,
    /// How far an avatar reaches to pick an item up.
    pub pickup_range: f64,
    /// How many items an avatar carries.
    pub inventory_slots: u32,
    /// The attack rules.
    pub attack: Attack,
    /// The NPC kinds.
    #[serde(default, rename = "npc")]
    pub npcs: Vec<NpcKind>,
    /// The item kinds.
    #[serde(default, rename = "item")]
    pub items: Vec<ItemKind>,
}

/// A balance config that cannot be used; the message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("balance config: {0}")]
pub struct BalanceError(pub String);

impl Balance {
    /// Reads and checks a balance config written in TOML.
    pub fn from_toml(text: &str) -> Result<Self, BalanceError> {
        let balance: Balance = toml::from_str(text).map_err(|e| BalanceError(e.to_string()))?;
        balance.check()?;
        Ok(balance)
    }

    /// The first unusable value, named by its key.
    pub fn check(&self) -> Result<(), BalanceError> {
        let positive = |key: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(BalanceError(format!("{key} must be a positive number")))
            }
        };
        positive("player_speed", self.player_speed)?;
        positive("respawn_secs", self.respawn_secs)?;
        positive("pickup_range", self.pickup_range)?;
        positive("attack.range", self.attack.range)?;
        if self.player_base_hp == 0 {
            return Err(BalanceError("player_base_hp must be at least 1".into()));
        }
        if self.xp_per_level == 0 {
            return Err(BalanceError("xp_per_level must be at least 1".into()));
        }
        if self.max_level == 0 {
            return Err(BalanceError("max_level must be at least 1".into()));
        }
        // Every number the simulator makes must fit the signed 64 bits BSON and most readers
        // have; the largest are the experience and the hit points of the highest level.
        let max_xp = u128::from(self.xp_per_level)
            * u128::from(self.max_level - 1)
            * u128::from(self.max_level)
            / 2;
        let max_hp = u64::from(self.player_base_hp)
            + u64::from(self.player_hp_per_level) * u64::from(self.max_level - 1);
        if max_xp > i64::MAX as u128 || max_hp > u64::from(u32::MAX) {
            return Err(BalanceError(
                "max_level is too high for xp_per_level and player_hp_per_level: the experience \
                 or hit points of the highest level would not fit"
                    .into(),
            ));
        }
        if self.attack.damage_min > self.attack.damage_max {
            return Err(BalanceError(
                "attack.damage_min must not exceed attack.damage_max".into(),
            ));
        }
        for npc in &self.npcs {
            let key = |field: &str| format!("npc {}: {field}", npc.kind);
            positive(&key("speed"), npc.speed)?;
            positive(&key("aggro_radius"), npc.aggro_radius)?;
            positive(&key("wander_radius"), npc.wander_radius)?;
            positive(&key("respawn_secs"), npc.respawn_secs)?;
            if npc.hp == 0 || npc.damage_min > npc.damage_max {
                return Err(BalanceError(key(
                    "hp must be at least 1 and damage_min at most damage_max",
                )));
            }
        }
        for item in &self.items {
            positive(
                &format!("item {}: respawn_secs", item.kind),
                item.respawn_secs,
            )?;
        }
        Ok(())
    }

    /// The maximum hit points of an avatar at `level` (the highest level's above it).
    pub fn max_hp(&self, level: u32) -> u32 {
        let levels = level.clamp(1, self.max_level) - 1;
        self.player_base_hp
            .saturating_add(self.player_hp_per_level.saturating_mul(levels))
    }

    /// The experience that reaches the highest level; no avatar has more.
    pub fn max_xp(&self) -> u64 {
        let (per, top) = (self.xp_per_level, u64::from(self.max_level));
        // Checked at load to fit; saturating all the same.
        per.saturating_mul(top.saturating_sub(1).saturating_mul(top) / 2)
    }

    /// The level that `xp` experience gives: level n + 1 needs `xp_per_level * n` more than n,
    /// up to the highest level.
    pub fn level_for(&self, xp: u64) -> u32 {
        let mut level: u32 = 1;
        let mut needed = self.xp_per_level;
        let mut left = xp;
        while left >= needed && level < self.max_level {
            left -= needed;
            level += 1;
            needed = self.xp_per_level.saturating_mul(u64::from(level));
        }
        level
    }

    /// The most damage any blow does, a player's or an NPC's.
    pub fn max_damage(&self) -> u32 {
        self.npcs
            .iter()
            .map(|n| n.damage_max)
            .fold(self.attack.damage_max, u32::max)
    }

    /// The most experience any NPC is worth.
    pub fn max_reward(&self) -> u64 {
        self.npcs.iter().map(|n| n.xp).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> String {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/balance.toml"
        ))
        .expect("config/balance.toml")
    }

    #[test]
    fn the_shipped_balance_is_valid() {
        let balance = Balance::from_toml(&shipped()).expect("valid");
        assert_eq!(balance.npcs.len(), 2);
        assert_eq!(balance.max_hp(1), 100);
        assert_eq!(balance.max_hp(3), 120);
    }

    #[test]
    fn levels_follow_the_experience_curve() {
        let balance = Balance::from_toml(&shipped()).expect("valid");
        assert_eq!(balance.level_for(0), 1);
        assert_eq!(balance.level_for(99), 1);
        assert_eq!(balance.level_for(100), 2);
        assert_eq!(balance.level_for(299), 2);
        assert_eq!(balance.level_for(300), 3);
        assert_eq!(balance.level_for(u64::MAX), balance.max_level);
    }

    #[test]
    fn the_highest_level_bounds_experience_and_hit_points() {
        let balance = Balance::from_toml(&shipped()).expect("valid");
        // 100 * (1 + 2 + ... + 99)
        assert_eq!(balance.max_xp(), 495_000);
        assert_eq!(balance.level_for(balance.max_xp()), 100);
        assert_eq!(balance.level_for(balance.max_xp() - 1), 99);
        assert_eq!(balance.max_hp(u32::MAX), balance.max_hp(100));
        assert_eq!(balance.max_damage(), 15);
        assert_eq!(balance.max_reward(), 60);
    }

    #[test]
    fn bad_values_name_their_key() {
        let text = shipped();
        for (from, to, key) in [
            ("player_speed = 5.0", "player_speed = 0.0", "player_speed"),
            ("range = 3.0", "range = -1.0", "attack.range"),
            ("damage_min = 8", "damage_min = 80", "attack.damage_min"),
            ("speed = 4.0", "speed = nan", "npc wolf: speed"),
            ("xp_per_level = 100", "xp_per_level = 0", "xp_per_level"),
            ("max_level = 100", "max_level = 0", "max_level"),
            ("max_level = 100", "max_level = 4000000000", "max_level"),
            (
                "inventory_slots = 20",
                "inventory_slots = 20\nmana = 3",
                "unknown field",
            ),
        ] {
            let err = Balance::from_toml(&text.replace(from, to))
                .expect_err(key)
                .to_string();
            assert!(err.contains(key), "{key:?} not in {err:?}");
        }
    }
}
