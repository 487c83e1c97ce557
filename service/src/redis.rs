//! Redis as the game backend uses it: one server, or a Redis Cluster of several masters.
//!
//! `REDIS_URL` names one server (`redis://host:6379`) or, separated by commas, the seed nodes of
//! a cluster (`redis://a:6379,redis://b:6379,redis://c:6379`), whose other nodes are found from
//! the seeds. A single URL that turns out to be a cluster node (`cluster_enabled:1`) is taken as
//! a cluster's one seed. A comma in a password must be percent-encoded (`%2C`). [`Redis`]
//! answers commands either way.
//!
//! What differs is what a cluster refuses: a script, a transaction or a pipeline whose keys lie
//! in more than one hash slot (`CROSSSLOT`). Keys that one such call takes together share a hash
//! tag (the part of the key in `{...}`, see [`tag`]), so they lie in one slot. Calls that touch
//! many owners' keys at once go through [`Redis::each`] and [`Redis::in_order`]: one pipeline on
//! a single server, one command at a time (all at once) on a cluster.
//!
//! Live-stream messages are classic pub/sub, which a cluster carries to every node: a subscriber
//! may listen on any node ([`Target::clients`]).

use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::Slot;
use ::redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult, Value};

/// Where Redis is: one server, or the seed nodes of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One server.
    Single(String),
    /// The seed nodes of a Redis Cluster.
    Cluster(Vec<String>),
}

impl Target {
    /// Reads `REDIS_URL`'s form: one URL, or several separated by commas for a cluster.
    pub fn parse(url: &str) -> Self {
        let urls: Vec<String> = url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
        match <[String; 1]>::try_from(urls) {
            Ok([one]) => Self::Single(one),
            Err(urls) if urls.is_empty() => Self::Single(url.trim().to_owned()),
            Err(urls) => Self::Cluster(urls),
        }
    }

    /// The URLs named, the server's alone or the cluster's seeds.
    pub fn urls(&self) -> &[String] {
        match self {
            Self::Single(url) => std::slice::from_ref(url),
            Self::Cluster(urls) => urls,
        }
    }

    /// A client per URL, for pub/sub: a cluster carries classic pub/sub messages to every node,
    /// so a subscriber may use any of them (the next when one is down).
    pub fn clients(&self) -> RedisResult<Vec<::redis::Client>> {
        self.urls()
            .iter()
            .map(|url| ::redis::Client::open(url.as_str()))
            .collect()
    }
}

/// How long to wait for Redis, and how often to try again, before a call fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patience {
    /// To connect.
    pub connect: Duration,
    /// For an answer.
    pub response: Duration,
    /// Tries after the first.
    pub retries: u8,
}

/// A connection to Redis, standalone or clustered, that reconnects on its own; cheap to clone
/// (clones share the connection).
#[derive(Clone)]
pub enum Redis {
    /// One server.
    Single(ConnectionManager),
    /// A Redis Cluster: each command goes to the master of its key's slot.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "Redis::Single",
            Self::Cluster(_) => "Redis::Cluster",
        })
    }
}

impl Redis {
    /// Connects to `url` (see [`Target::parse`]), with the library's own patience when `None`.
    pub async fn connect(url: &str, patience: Option<Patience>) -> RedisResult<Self> {
        match Target::parse(url) {
            Target::Single(url) => {
                let client = ::redis::Client::open(url.as_str())?;
                let mut probe = client.get_multiplexed_async_connection().await?;
                // A server that refuses INFO (some managed ones rename it) is taken as one.
                let info: Option<String> = ::redis::cmd("INFO")
                    .arg("cluster")
                    .query_async(&mut probe)
                    .await
                    .ok();
                if info.is_some_and(|i| i.lines().any(|l| l.trim() == "cluster_enabled:1")) {
                    return Self::cluster(vec![url], patience).await;
                }
                let manager = match patience {
                    None => ConnectionManager::new(client).await?,
                    Some(p) => {
                        let config = ConnectionManagerConfig::new()
                            .set_connection_timeout(Some(p.connect))
                            .set_response_timeout(Some(p.response))
                            .set_number_of_retries(usize::from(p.retries));
                        ConnectionManager::new_with_config(client, config).await?
                    }
                };
                Ok(Self::Single(manager))
            }
            Target::Cluster(urls) => Self::cluster(urls, patience).await,
        }
    }

    async fn cluster(seeds: Vec<String>, patience: Option<Patience>) -> RedisResult<Self> {
        let mut builder = ClusterClientBuilder::new(seeds);
        if let Some(p) = patience {
            builder = builder
                .connection_timeout(p.connect)
                .response_timeout(p.response)
                .retries(u32::from(p.retries));
        }
        let connection = builder.build()?.get_async_connection().await?;
        Ok(Self::Cluster(connection))
    }

    /// Whether this is a cluster's connection.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// Runs `cmds` and answers their replies in order: one pipeline on a single server; on a
    /// cluster, whose slots one pipeline cannot span, each command on its own, all at once.
    /// Not atomic either way.
    pub async fn each<T: FromRedisValue>(&mut self, cmds: Vec<Cmd>) -> RedisResult<Vec<T>> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Self::Single(connection) => {
                let mut pipe = Pipeline::with_capacity(cmds.len());
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                pipe.query_async(connection).await
            }
            Self::Cluster(connection) => {
                futures::future::try_join_all(cmds.into_iter().map(|cmd| {
                    let mut connection = connection.clone();
                    async move { cmd.query_async::<T>(&mut connection).await }
                }))
                .await
            }
        }
    }

    /// Runs `groups` one after the other, the commands of a group in any order, and drops the
    /// replies: a reader who sees a later group's writes sees the earlier groups' too. One
    /// pipeline on a single server (which runs it in order); on a cluster, a group's commands
    /// all at once, each on its own, once the group before has been answered.
    pub async fn in_order(&mut self, groups: Vec<Vec<Cmd>>) -> RedisResult<()> {
        match self {
            Self::Single(connection) => {
                let mut pipe = Pipeline::new();
                for cmd in groups.into_iter().flatten() {
                    pipe.add_command(cmd).ignore();
                }
                if pipe.cmd_iter().next().is_none() {
                    return Ok(());
                }
                pipe.query_async(connection).await
            }
            Self::Cluster(_) => {
                for group in groups {
                    let _: Vec<Value> = self.each(group).await?;
                }
                Ok(())
            }
        }
    }
}

impl ConnectionLike for Redis {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// `owner` as a hash tag: the keys of one owner (a player, a client address) that a script or
/// transaction takes together all carry it, so a cluster keeps them in one slot.
pub fn tag(owner: impl std::fmt::Display) -> String {
    format!("{{{owner}}}")
}

/// The cluster slot `key` lies in: keys in one slot may be taken by one script.
pub fn slot(key: &str) -> Slot {
    Slot::for_key(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_url_is_a_server_and_several_are_a_cluster() {
        assert_eq!(
            Target::parse("redis://a:6379"),
            Target::Single("redis://a:6379".into())
        );
        assert_eq!(
            Target::parse(" redis://a:1 , redis://b:2,, redis://c:3 "),
            Target::Cluster(vec![
                "redis://a:1".into(),
                "redis://b:2".into(),
                "redis://c:3".into()
            ])
        );
        assert_eq!(
            Target::parse("redis://a:1,"),
            Target::Single("redis://a:1".into())
        );
    }

    #[test]
    fn keys_with_one_tag_share_a_slot() {
        let player = "0194f0a2-7c1e-7000-8000-000000000001";
        let keys = [
            format!("session:{}:s1", tag(player)),
            format!("player_sessions:{}", tag(player)),
            format!("player:{}", tag(player)),
            format!("rl:commands_per_player:{}", tag(player)),
        ];
        assert!(keys.iter().all(|k| slot(k) == slot(&keys[0])));
        assert_ne!(slot("a"), slot("b"));
    }
}
