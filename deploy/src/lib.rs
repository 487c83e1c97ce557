//! The game backend's production deployment, as files: `compose.yaml` (the whole topology on
//! one host, in containers), `Dockerfile` (the one image of the game's binaries), `nginx.conf`
//! (the reverse proxy in front of the gateways), `env.example` (every variable the compose file
//! needs) and `prometheus/targets/` (what Prometheus scrapes there).
//!
//! Nothing here runs them: this crate reads them, so that its tests can check each file
//! against what the binaries and the shipped configs read, and a change on either side that
//! the other does not follow fails a test instead of a deployment.
//!
//! - [`Compose`] and [`Service`]: the parts of a compose file the checks look at.
//! - [`interpolate`]: compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}`.
//! - [`env_file`]: the `KEY=value` lines of `env.example`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// This crate's folder: where the deployment files are.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// A compose file: its services and networks by name (the rest is not checked here).
#[derive(Debug, Deserialize)]
pub struct Compose {
    /// The services, by name.
    pub services: BTreeMap<String, Service>,
    /// The networks, by name.
    #[serde(default)]
    pub networks: BTreeMap<String, Network>,
}

/// A network of a compose file.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Network {
    /// Its address management.
    pub ipam: Ipam,
}

/// A network's address management.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Ipam {
    /// Its subnets.
    pub config: Vec<Subnet>,
}

/// One subnet of a network.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Subnet {
    /// The subnet, `a.b.c.d/n`.
    pub subnet: String,
    /// Where the addresses handed out automatically come from, `a.b.c.d/n`.
    pub ip_range: Option<String>,
}

/// Whether `ip` lies in `cidr` (`a.b.c.d/n`, IPv4); `None` when `cidr` is not one.
pub fn in_cidr(ip: std::net::Ipv4Addr, cidr: &str) -> Option<bool> {
    let (base, bits) = cidr.split_once('/')?;
    let base: std::net::Ipv4Addr = base.parse().ok()?;
    let bits: u32 = bits.parse().ok().filter(|b| *b <= 32)?;
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    Some(u32::from(ip) & mask == u32::from(base) & mask)
}

/// One service of a compose file.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Service {
    /// The image it runs.
    pub image: String,
    /// Its command, as a list (a string command would be split by a shell; none is used).
    pub command: Vec<String>,
    /// Its environment, before interpolation.
    pub environment: BTreeMap<String, String>,
    /// `source:target[:mode]` mounts; a source starting with `.` is a path beside the file.
    pub volumes: Vec<String>,
    /// Published ports, `[host_ip:]host:container`.
    pub ports: Vec<String>,
    /// Its health check.
    pub healthcheck: Option<Healthcheck>,
    /// Its networks: a list of names, or names with settings (a fixed address).
    pub networks: Networks,
}

/// A service's health check.
#[derive(Debug, Default, Deserialize)]
pub struct Healthcheck {
    /// The check's command, `["CMD", ...]` or `["CMD-SHELL", "..."]`.
    pub test: Vec<String>,
}

/// A service's networks, in either of compose's two forms.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Networks {
    /// `networks: [game]`
    Names(Vec<String>),
    /// `networks: {game: {ipv4_address: ...}}`
    Attached(BTreeMap<String, Attachment>),
}

impl Default for Networks {
    fn default() -> Self {
        Self::Names(Vec::new())
    }
}

/// How a service is attached to one network.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Attachment {
    /// A fixed IPv4 address on it.
    pub ipv4_address: Option<String>,
}

impl Networks {
    /// The fixed IPv4 addresses the service takes.
    pub fn fixed_addresses(&self) -> Vec<&str> {
        match self {
            Self::Names(_) => Vec::new(),
            Self::Attached(map) => map
                .values()
                .filter_map(|a| a.ipv4_address.as_deref())
                .collect(),
        }
    }
}

impl Compose {
    /// Parses a compose file.
    pub fn parse(text: &str) -> Result<Self, String> {
        yaml_serde::from_str(text).map_err(|e| e.to_string())
    }

    /// The services whose command starts with `binary` (in the image of the game's binaries).
    pub fn running<'a>(
        &'a self,
        binary: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a Service)> + 'a {
        self.services
            .iter()
            .filter(move |(_, s)| s.command.first().map(String::as_str) == Some(binary))
    }
}

impl Service {
    /// Its bind mounts: (source resolved against `base`, target) for each source starting with `.`.
    pub fn bind_mounts(&self, base: &Path) -> Vec<(PathBuf, String)> {
        self.volumes
            .iter()
            .filter(|v| v.starts_with('.'))
            .filter_map(|v| {
                let mut parts = v.split(':');
                let source = parts.next()?;
                let target = parts.next()?;
                Some((base.join(source), target.to_owned()))
            })
            .collect()
    }
}

/// Replaces compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}` and
/// `${VAR?error}` with values from `vars`, and `$$` with `$`. `Err` names a variable that is
/// required and unset, or a `$` compose would not accept.
pub fn interpolate(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let Some(inner) = rest.strip_prefix('{') else {
            return Err(format!("a bare $ before {rest:?}: write ${{NAME}} or $$"));
        };
        let end = inner
            .find('}')
            .ok_or_else(|| format!("an unclosed ${{ in {text:?}"))?;
        let expression = &inner[..end];
        rest = &inner[end + 1..];
        let name_end = expression
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(expression.len());
        let (name, modifier) = expression.split_at(name_end);
        let value = vars.get(name).filter(|v| !v.is_empty());
        let value = match modifier {
            "" => value.cloned().unwrap_or_default(),
            m if m.starts_with(":-") || m.starts_with('-') => value
                .cloned()
                .unwrap_or_else(|| m.trim_start_matches(':')[1..].to_owned()),
            m if m.starts_with(":?") || m.starts_with('?') => value.cloned().ok_or_else(|| {
                format!("{name} is required: {}", &m.trim_start_matches(':')[1..])
            })?,
            other => return Err(format!("an unknown modifier {other:?} on {name}")),
        };
        out.push_str(&value);
    }
    out.push_str(rest);
    Ok(out)
}

/// The names of the variables `text` interpolates.
pub fn variables(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            rest = after;
        } else if let Some(inner) = rest.strip_prefix('{') {
            let end = inner
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(inner.len());
            names.push(inner[..end].to_owned());
            rest = &inner[end..];
        }
    }
    names
}

/// The `KEY=value` lines of an env file (blank lines and `#` comments skipped).
pub fn env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn interpolation_follows_compose() {
        let set = vars(&[("A", "x"), ("EMPTY", "")]);
        for (text, want) in [
            ("plain", "plain"),
            ("${A}", "x"),
            ("a${A}b${A}", "axbx"),
            ("${A:-d}", "x"),
            ("${UNSET:-d}", "d"),
            ("${EMPTY:-d}", "d"),
            ("${UNSET-d:e}", "d:e"),
            ("${A:?needed}", "x"),
            ("$$A", "$A"),
            ("${UNSET}", ""),
        ] {
            assert_eq!(interpolate(text, &set).as_deref(), Ok(want), "{text}");
        }
        for bad in [
            "${UNSET:?set it}",
            "${EMPTY:?set it}",
            "$A",
            "${A",
            "${A:+x}",
        ] {
            assert!(interpolate(bad, &set).is_err(), "{bad}");
        }
        assert_eq!(variables("${A:?x} $$B ${C:-d}"), ["A", "C"]);
    }

    #[test]
    fn addresses_are_placed_in_their_subnets() {
        let ip = |t: &str| t.parse::<std::net::Ipv4Addr>().expect("ip");
        assert_eq!(in_cidr(ip("10.40.0.10"), "10.40.0.0/24"), Some(true));
        assert_eq!(in_cidr(ip("10.40.0.10"), "10.40.0.128/25"), Some(false));
        assert_eq!(in_cidr(ip("10.40.0.200"), "10.40.0.128/25"), Some(true));
        assert_eq!(in_cidr(ip("1.2.3.4"), "0.0.0.0/0"), Some(true));
        for bad in ["10.40.0.0", "10.40.0.0/33", "x/24", "10.40.0.0/-1"] {
            assert_eq!(in_cidr(ip("10.40.0.1"), bad), None, "{bad}");
        }
    }

    #[test]
    fn env_files_are_key_value_lines() {
        let read = env_file("# c\n\nA=1\n B = two words \nC=\n");
        assert_eq!(read, vars(&[("A", "1"), ("B", "two words"), ("C", "")]));
    }
}
