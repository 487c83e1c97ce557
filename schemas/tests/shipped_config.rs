//! The region config the project ships is valid.

#[test]
fn the_shipped_region_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/regions.toml");
    let text = std::fs::read_to_string(path).expect("config/regions.toml");
    let world = schemas::WorldConfig::from_toml(&text).expect("valid");
    assert_eq!(world.regions.len(), 4);
    for region in &world.regions {
        for neighbour in &region.neighbours {
            let back = world.region(neighbour).expect("defined");
            assert!(
                back.neighbours.contains(&region.id),
                "{} and {neighbour} are neighbours both ways",
                region.id
            );
        }
    }
}
