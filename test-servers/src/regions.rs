//! The region configs the tests run with, as the TOML the services read (`REGIONS_CONFIG`), so
//! a test names its regions' ids, bounds, capacities and neighbours and not the table's syntax.
//! Every region has 10-unit cells of the spatial grid.
//!
//! ```
//! // West and east, 100 x 100 each, bordering at x = 100, with room for 3 players each.
//! let two = test_servers::regions::west_and_east(3);
//! // A third region along their top, bordering neither.
//! let north = test_servers::regions::region("north", (0.0, 100.0), (200.0, 200.0), 50, &[]);
//! let three = format!("{two}{north}");
//! assert_eq!(three.matches("[[region]]").count(), 3);
//! ```

/// One `[[region]]` table: `id` covering `min` (inclusive) to `max` (exclusive), with room for
/// `capacity` players, sharing a border with `neighbours`.
pub fn region(
    id: &str,
    (min_x, min_y): (f64, f64),
    (max_x, max_y): (f64, f64),
    capacity: u32,
    neighbours: &[&str],
) -> String {
    let neighbours: Vec<String> = neighbours.iter().map(|n| format!("{n:?}")).collect();
    format!(
        "[[region]]\n\
         id = {id:?}\n\
         bounds = {{ min = {{ x = {min_x:?}, y = {min_y:?} }}, max = {{ x = {max_x:?}, y = {max_y:?} }} }}\n\
         cell_size = 10.0\n\
         capacity = {capacity}\n\
         neighbours = [{}]\n\n",
        neighbours.join(", ")
    )
}

/// Two regions that border each other: `west` (x 0 to 100) and `east` (x 100 to 200), both
/// y 0 to 100, each with room for `capacity` players.
pub fn west_and_east(capacity: u32) -> String {
    [
        region("west", (0.0, 0.0), (100.0, 100.0), capacity, &["east"]),
        region("east", (100.0, 0.0), (200.0, 100.0), capacity, &["west"]),
    ]
    .concat()
}

#[cfg(test)]
mod tests {
    use toml::{Table, Value};

    use super::{region, west_and_east};

    #[test]
    fn a_region_is_the_table_the_services_read() {
        let table: Table = region("north", (0.0, 100.0), (200.0, 250.5), 7, &["west", "east"])
            .parse()
            .expect("TOML");
        let north = &table["region"][0];
        assert_eq!(north["id"], Value::String("north".into()));
        assert_eq!(north["bounds"]["min"]["y"], Value::Float(100.0));
        assert_eq!(north["bounds"]["max"]["y"], Value::Float(250.5));
        assert_eq!(north["cell_size"], Value::Float(10.0));
        assert_eq!(north["capacity"], Value::Integer(7));
        assert_eq!(
            north["neighbours"],
            Value::Array(vec!["west".into(), "east".into()])
        );
    }

    #[test]
    fn west_and_east_border_each_other() {
        let table: Table = west_and_east(3).parse().expect("TOML");
        let regions = table["region"].as_array().expect("regions");
        assert_eq!(regions.len(), 2);
        assert_eq!(regions[0]["bounds"]["max"]["x"], Value::Float(100.0));
        assert_eq!(regions[1]["bounds"]["min"]["x"], Value::Float(100.0));
        assert_eq!(regions[0]["neighbours"], Value::Array(vec!["east".into()]));
        assert_eq!(regions[1]["neighbours"], Value::Array(vec!["west".into()]));
    }
}
