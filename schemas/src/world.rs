//! The region config: which regions the world has, where they are, how big their grid cells
//! are, how many players each holds and which touch. Read by the gateway (world bounds, where to
//! spawn) and the region simulators (what to run), from `config/regions.toml`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::geometry::{Bounds, Position};
use crate::ids::RegionId;
use crate::validation::ValidationContext;

/// One region, as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    /// Its id.
    pub id: RegionId,
    /// Its area; regions never overlap.
    pub bounds: Bounds,
    /// The side of a spatial-index cell, in world units.
    pub cell_size: f64,
    /// How many players it holds at most.
    pub capacity: u32,
    /// The regions that share a border with it.
    #[serde(default)]
    pub neighbours: Vec<RegionId>,
}

/// The whole world: every region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldConfig {
    /// The regions, in the order they are listed.
    #[serde(rename = "region")]
    pub regions: Vec<RegionConfig>,
}

/// A region config that cannot be used; the message names the region and the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("region config: {0}")]
pub struct WorldConfigError(pub String);

impl WorldConfig {
    /// Reads and checks a region config written in TOML (`[[region]]` tables).
    pub fn from_toml(text: &str) -> Result<Self, WorldConfigError> {
        let config: WorldConfig =
            toml::from_str(text).map_err(|e| WorldConfigError(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    /// Every way the config is unusable, reported as the first one found.
    pub fn check(&self) -> Result<(), WorldConfigError> {
        let err = |msg: String| Err(WorldConfigError(msg));
        if self.regions.is_empty() {
            return err("no [[region]] is defined".into());
        }
        let mut ids = BTreeSet::new();
        for r in &self.regions {
            if !ids.insert(&r.id) {
                return err(format!("region {} is defined twice", r.id));
            }
            if Bounds::new(r.bounds.min, r.bounds.max).is_none() {
                return err(format!(
                    "region {}: bounds.min must be below bounds.max on both axes",
                    r.id
                ));
            }
            if !(r.cell_size.is_finite() && r.cell_size > 0.0) {
                return err(format!(
                    "region {}: cell_size must be a positive number",
                    r.id
                ));
            }
            if r.capacity == 0 {
                return err(format!("region {}: capacity must be at least 1", r.id));
            }
        }
        for r in &self.regions {
            if let Some(unknown) = r.neighbours.iter().find(|n| !ids.contains(n)) {
                return err(format!(
                    "region {}: neighbour {unknown} is not defined",
                    r.id
                ));
            }
        }
        for (i, a) in self.regions.iter().enumerate() {
            for b in &self.regions[i + 1..] {
                if overlap(&a.bounds, &b.bounds) {
                    return err(format!("regions {} and {} overlap", a.id, b.id));
                }
            }
        }
        Ok(())
    }

    /// The smallest rectangle holding every region.
    pub fn world_bounds(&self) -> Bounds {
        let mut regions = self.regions.iter().map(|r| r.bounds);
        let first = regions.next().unwrap_or(Bounds {
            min: Position::new(0.0, 0.0),
            max: Position::new(0.0, 0.0),
        });
        regions.fold(first, |acc, b| acc.union(&b))
    }

    /// The region containing `p`, if any.
    pub fn region_at(&self, p: &Position) -> Option<&RegionConfig> {
        self.regions.iter().find(|r| r.bounds.contains(p))
    }

    /// A region by id.
    pub fn region(&self, id: &RegionId) -> Option<&RegionConfig> {
        self.regions.iter().find(|r| &r.id == id)
    }

    /// What command validation needs: the world's bounds and the region ids.
    pub fn validation_context(&self) -> ValidationContext {
        ValidationContext {
            world: self.world_bounds(),
            regions: self.regions.iter().map(|r| r.id.clone()).collect(),
        }
    }

    /// The region a new player should enter: the one with the most room left (by capacity minus
    /// `population`), the first listed on a tie; `None` when every region is full.
    pub fn least_crowded(&self, population: &BTreeMap<RegionId, u32>) -> Option<&RegionConfig> {
        self.regions
            .iter()
            .map(|r| {
                (
                    r,
                    r.capacity
                        .saturating_sub(population.get(&r.id).copied().unwrap_or(0)),
                )
            })
            .filter(|(_, room)| *room > 0)
            .fold(
                None,
                |best: Option<(&RegionConfig, u32)>, (r, room)| match best {
                    Some((_, best_room)) if best_room >= room => best,
                    _ => Some((r, room)),
                },
            )
            .map(|(r, _)| r)
    }
}

fn overlap(a: &Bounds, b: &Bounds) -> bool {
    a.min.x < b.max.x && b.min.x < a.max.x && a.min.y < b.max.y && b.min.y < a.max.y
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"
        [[region]]
        id = "west"
        bounds = { min = { x = 0.0, y = 0.0 }, max = { x = 100.0, y = 100.0 } }
        cell_size = 10.0
        capacity = 2
        neighbours = ["east"]

        [[region]]
        id = "east"
        bounds = { min = { x = 100.0, y = 0.0 }, max = { x = 200.0, y = 100.0 } }
        cell_size = 10.0
        capacity = 3
        neighbours = ["west"]
    "#;

    fn id(s: &str) -> RegionId {
        RegionId::new(s).expect("id")
    }

    #[test]
    fn a_good_config_reads_and_answers() {
        let world = WorldConfig::from_toml(TWO).expect("valid");
        assert_eq!(world.world_bounds().max, Position::new(200.0, 100.0));
        assert_eq!(
            world
                .region_at(&Position::new(100.0, 5.0))
                .map(|r| r.id.as_str()),
            Some("east")
        );
        assert_eq!(
            world
                .region_at(&Position::new(99.9, 5.0))
                .map(|r| r.id.as_str()),
            Some("west")
        );
        assert!(world.region_at(&Position::new(250.0, 5.0)).is_none());
        assert_eq!(world.validation_context().regions.len(), 2);
    }

    #[test]
    fn spawning_goes_where_there_is_most_room() {
        let world = WorldConfig::from_toml(TWO).expect("valid");
        let pick = |west: u32, east: u32| {
            let population = BTreeMap::from([(id("west"), west), (id("east"), east)]);
            world.least_crowded(&population).map(|r| r.id.to_string())
        };
        assert_eq!(pick(0, 0).as_deref(), Some("east"));
        assert_eq!(pick(0, 2).as_deref(), Some("west"));
        assert_eq!(pick(2, 3), None);
    }

    #[test]
    fn bad_configs_name_what_is_wrong() {
        let cases = [
            (
                TWO.replace("\"east\"\n        bounds", "\"west\"\n        bounds"),
                "defined twice",
            ),
            (
                TWO.replace(
                    "max = { x = 100.0, y = 100.0 }",
                    "max = { x = 0.0, y = 100.0 }",
                ),
                "bounds.min",
            ),
            (
                TWO.replace(
                    "cell_size = 10.0\n        capacity = 2",
                    "cell_size = 0.0\n        capacity = 2",
                ),
                "cell_size",
            ),
            (TWO.replace("capacity = 2", "capacity = 0"), "capacity"),
            (
                TWO.replace("neighbours = [\"east\"]", "neighbours = [\"north\"]"),
                "neighbour north",
            ),
            (
                TWO.replace(
                    "min = { x = 100.0, y = 0.0 }",
                    "min = { x = 50.0, y = 0.0 }",
                ),
                "overlap",
            ),
            (
                TWO.replace("capacity = 2", "capacity = 2\n        colour = 1"),
                "unknown field",
            ),
            ("".to_owned(), "region"),
        ];
        for (text, needle) in cases {
            let err = WorldConfig::from_toml(&text).expect_err(needle).to_string();
            assert!(err.contains(needle), "{needle:?} not in {err:?}");
        }
    }
}
