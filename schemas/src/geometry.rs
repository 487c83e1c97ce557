//! Points and rectangles in world coordinates.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A point in world coordinates (metres; x grows east, y grows north).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Position {
    /// East-west coordinate.
    #[serde(serialize_with = "finite")]
    pub x: f64,
    /// North-south coordinate.
    #[serde(serialize_with = "finite")]
    pub y: f64,
}

/// Writes a coordinate, refusing NaN and infinities: JSON has no such numbers (`serde_json` would
/// quietly write `null`), and a message that cannot be read back must never reach the log.
pub(crate) fn finite<S: serde::Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.is_finite() {
        serializer.serialize_f64(*value)
    } else {
        Err(serde::ser::Error::custom(format!(
            "{value} is not a finite number"
        )))
    }
}

impl Position {
    /// A point.
    pub const fn new(x: f64, y: f64) -> Self {
        Self { x, y }
    }

    /// The straight-line distance to `other`.
    pub fn distance(&self, other: &Position) -> f64 {
        (self.x - other.x).hypot(self.y - other.y)
    }
}

/// An axis-aligned rectangle: a region's area, or the whole world's.
///
/// `min` is inclusive and `max` exclusive, so that regions which share an edge never both
/// contain a point on it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    /// The south-west corner (inclusive).
    pub min: Position,
    /// The north-east corner (exclusive).
    pub max: Position,
}

impl Bounds {
    /// A rectangle from its corners; `None` unless `min < max` on both axes and all are finite.
    pub fn new(min: Position, max: Position) -> Option<Self> {
        let finite = [min.x, min.y, max.x, max.y].iter().all(|v| v.is_finite());
        (finite && min.x < max.x && min.y < max.y).then_some(Self { min, max })
    }

    /// Whether `p` lies inside.
    pub fn contains(&self, p: &Position) -> bool {
        p.x >= self.min.x && p.x < self.max.x && p.y >= self.min.y && p.y < self.max.y
    }

    /// How far `p` is from the rectangle: 0 inside, else the distance to its nearest edge.
    pub fn distance(&self, p: &Position) -> f64 {
        let dx = (self.min.x - p.x).max(p.x - self.max.x).max(0.0);
        let dy = (self.min.y - p.y).max(p.y - self.max.y).max(0.0);
        dx.hypot(dy)
    }

    /// The smallest rectangle holding both.
    pub fn union(&self, other: &Bounds) -> Bounds {
        Bounds {
            min: Position::new(self.min.x.min(other.min.x), self.min.y.min(other.min.y)),
            max: Position::new(self.max.x.max(other.max.x), self.max.y.max(other.max.y)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_half_open() {
        let b = Bounds::new(Position::new(0.0, 0.0), Position::new(10.0, 10.0)).expect("valid");
        assert!(b.contains(&Position::new(0.0, 0.0)));
        assert!(b.contains(&Position::new(9.99, 9.99)));
        assert!(!b.contains(&Position::new(10.0, 5.0)));
        assert!(!b.contains(&Position::new(5.0, -0.1)));
        assert!(!b.contains(&Position::new(f64::NAN, 1.0)));
    }

    #[test]
    fn distance_to_a_rectangle_is_zero_inside_and_to_the_nearest_edge_outside() {
        let b = Bounds::new(Position::new(0.0, 0.0), Position::new(10.0, 10.0)).expect("valid");
        assert_eq!(b.distance(&Position::new(5.0, 5.0)), 0.0);
        assert_eq!(b.distance(&Position::new(13.0, 5.0)), 3.0);
        assert_eq!(b.distance(&Position::new(5.0, -2.0)), 2.0);
        assert_eq!(b.distance(&Position::new(13.0, 14.0)), 5.0);
    }

    #[test]
    fn non_finite_coordinates_are_never_written() {
        assert!(serde_json::to_string(&Position::new(1.0, 2.5)).is_ok());
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(serde_json::to_string(&Position::new(bad, 0.0)).is_err());
            assert!(serde_json::to_string(&Position::new(0.0, bad)).is_err());
        }
    }

    #[test]
    fn degenerate_bounds_are_refused() {
        let p = Position::new(1.0, 1.0);
        assert!(Bounds::new(p, p).is_none());
        assert!(Bounds::new(Position::new(0.0, 0.0), Position::new(f64::INFINITY, 1.0)).is_none());
    }
}
