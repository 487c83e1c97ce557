//! The game balance a test runs with: the shipped `config/balance.toml` with the test's own
//! numbers laid over it, so a test states only what it changes, and a key the rules gain is
//! given its shipped value in every test at once.
//!
//! ```
//! // Fast walkers, no NPCs, one potion per region.
//! let toml = test_servers::balance::shipped_with(
//!     r#"
//! player_speed = 40.0
//! npc = []
//! [[item]]
//! kind = "potion"
//! per_region = 1
//! respawn_secs = 3600.0
//! "#,
//! );
//! assert!(toml.contains("player_speed = 40.0"));
//! ```

use toml::{Table, Value};

/// The balance the game ships with.
pub const SHIPPED: &str = include_str!("../../config/balance.toml");

/// The shipped balance with `overrides` laid over it, as TOML text.
///
/// A key of the overrides replaces the shipped one; a table (`[attack]`) is merged key by key;
/// an array of tables (`[[npc]]`, `[[item]]`) replaces the shipped array whole, and `npc = []`
/// leaves none. Panics, naming the fault, when either text is not TOML: a test's own mistake.
pub fn shipped_with(overrides: &str) -> String {
    let mut balance: Table = SHIPPED.parse().expect("config/balance.toml is TOML");
    let overrides: Table = overrides
        .parse()
        .expect("the test's balance overrides are TOML");
    lay_over(&mut balance, overrides);
    balance.to_string()
}

fn lay_over(base: &mut Table, overrides: Table) {
    for (key, value) in overrides {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(shipped)), Value::Table(changed)) => lay_over(shipped, changed),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use toml::{Table, Value};

    use super::{SHIPPED, shipped_with};

    fn parsed(text: &str) -> Table {
        text.parse().expect("TOML")
    }

    #[test]
    fn without_overrides_it_is_the_shipped_balance() {
        assert_eq!(parsed(&shipped_with("")), parsed(SHIPPED));
    }

    #[test]
    fn a_key_is_replaced_a_table_merged_and_an_array_of_tables_replaced_whole() {
        let balance = parsed(&shipped_with(
            "player_speed = 40.0\nnpc = []\n[attack]\ncooldown_ms = 1\n\
             [[item]]\nkind = \"potion\"\nper_region = 1\nrespawn_secs = 9.0\n",
        ));
        let shipped = parsed(SHIPPED);
        assert_eq!(balance["player_speed"], Value::Float(40.0));
        assert_eq!(balance["max_level"], shipped["max_level"]);
        assert_eq!(balance["attack"]["cooldown_ms"], Value::Integer(1));
        assert_eq!(balance["attack"]["range"], shipped["attack"]["range"]);
        assert_eq!(balance["npc"], Value::Array(Vec::new()));
        let items = balance["item"].as_array().expect("items");
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["kind"], Value::String("potion".into()));
    }

    #[test]
    #[should_panic(expected = "overrides are TOML")]
    fn overrides_that_are_not_toml_are_the_tests_mistake() {
        let _ = shipped_with("player_speed = = 1");
    }
}
