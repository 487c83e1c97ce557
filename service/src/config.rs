//! How every binary reads its settings: the environment first, then a TOML file the
//! environment may name, with the shipped files in `config/` as the fallback. A variable set to
//! the empty string counts as unset, so `FOO=` in a compose file means "the default".

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::{SettingsError, bad};

/// The folder of the shipped config files, `config/` at the workspace's root.
pub fn shipped_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
}

/// The process environment as settings read it: an empty variable is unset.
pub fn env_var(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

/// An environment made of `pairs` alone, as a settings loader takes one: for tests, which must
/// not read the process's own.
pub fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |key| map.get(key).cloned()
}

/// The text of the file the variable `key` names in `env`, or of the shipped `file` when it is
/// unset; the error names `key` and the path.
pub fn read(
    env: impl Fn(&str) -> Option<String>,
    key: &str,
    file: &str,
) -> Result<String, SettingsError> {
    let path = env(key)
        .map(PathBuf::from)
        .unwrap_or_else(|| shipped_dir().join(file));
    std::fs::read_to_string(&path)
        .map_err(|e| bad(key, format!("cannot read {}: {e}", path.display())))
}

/// As [`read`], parsed as TOML into `T`; a parse error names `key` too.
pub fn parse<T: serde::de::DeserializeOwned>(
    env: impl Fn(&str) -> Option<String>,
    key: &str,
    file: &str,
) -> Result<T, SettingsError> {
    read_with(env, key, file, |text| toml::from_str(text))
}

/// As [`read`], handed to `parse` (a config type's own reader, with its own checks); its error
/// names `key` too.
pub fn read_with<T, E: std::fmt::Display>(
    env: impl Fn(&str) -> Option<String>,
    key: &str,
    file: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, SettingsError> {
    parse(&read(env, key, file)?).map_err(|e| bad(key, e.to_string()))
}

/// The regions' file, which every program reads: the one `REGIONS_CONFIG` names, else the
/// shipped `regions.toml`, handed to `parse` as [`read_with`] does.
pub fn read_regions<T, E: std::fmt::Display>(
    env: impl Fn(&str) -> Option<String>,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, SettingsError> {
    read_with(env, "REGIONS_CONFIG", "regions.toml", parse)
}

/// The address a program listens on: the variable `key` in `env`, else `fallback` (the file's or
/// the built-in one); the error names `key`.
pub fn listen_addr(
    env: impl Fn(&str) -> Option<String>,
    key: &str,
    fallback: String,
) -> Result<SocketAddr, SettingsError> {
    let text = env(key).unwrap_or(fallback);
    text.parse()
        .map_err(|_| bad(key, format!("{text:?} is not host:port")))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::{listen_addr, parse, read, shipped_dir};

    #[derive(Debug, serde::Deserialize)]
    struct Sample {
        tick_hz: u32,
    }

    #[test]
    fn an_unset_variable_reads_the_shipped_file() {
        let text = read(|_| None, "SIM_CONFIG", "region-sim.toml").expect("shipped file");
        let shipped =
            std::fs::read_to_string(shipped_dir().join("region-sim.toml")).expect("the file");
        assert_eq!(text, shipped);
    }

    #[test]
    fn a_named_file_wins_and_its_faults_name_the_variable() {
        let dir = tempfile::tempdir().expect("dir");
        let good = dir.path().join("good.toml");
        std::fs::write(&good, "tick_hz = 7\n").expect("write");
        let bad_toml = dir.path().join("bad.toml");
        std::fs::write(&bad_toml, "tick_hz = \"seven\"\n").expect("write");
        let env = |path: &std::path::Path| {
            let map = HashMap::from([("SIM_CONFIG", path.display().to_string())]);
            move |k: &str| map.get(k).cloned()
        };
        let sample: Sample = parse(env(&good), "SIM_CONFIG", "region-sim.toml").expect("parsed");
        assert_eq!(sample.tick_hz, 7);
        let wrong = parse::<Sample>(env(&bad_toml), "SIM_CONFIG", "region-sim.toml")
            .expect_err("not a number");
        assert_eq!(wrong.key, "SIM_CONFIG");
        let missing = read(env(&dir.path().join("none.toml")), "SIM_CONFIG", "x.toml")
            .expect_err("no such file");
        assert_eq!(missing.key, "SIM_CONFIG");
        assert!(missing.why.contains("none.toml"), "{}", missing.why);
    }

    #[test]
    fn a_listen_address_from_the_environment_wins_and_a_bad_one_names_its_variable() {
        let env = |text: &'static str| move |k: &str| (k == "SIM_ADDR").then(|| text.to_owned());
        let fallback = || "127.0.0.1:8080".to_owned();
        let addr = listen_addr(env("0.0.0.0:9000"), "SIM_ADDR", fallback()).expect("address");
        assert_eq!(addr.to_string(), "0.0.0.0:9000");
        let addr = listen_addr(|_| None, "SIM_ADDR", fallback()).expect("address");
        assert_eq!(addr.to_string(), "127.0.0.1:8080");
        let wrong = listen_addr(env("nowhere"), "SIM_ADDR", fallback()).expect_err("not host:port");
        assert_eq!(
            wrong.to_string(),
            r#"configuration: SIM_ADDR: "nowhere" is not host:port"#
        );
    }
}
