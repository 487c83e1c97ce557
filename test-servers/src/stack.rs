//! The servers a test of the game runs against, started together: NATS with the JetStream
//! topology in place, and, as the test asks, the MongoDB-compatible server and Redis; a folder
//! for the test's config files and logs. Every stack of the tests (the gateway's `TestApp`, the
//! projector's `Stack`, the simulator's `Bus`, the whole game's `World`) stands on one, and adds
//! only the programs it tests.
//!
//! ```no_run
//! # async fn example() {
//! let servers = test_servers::Stack::builder().mongo().redis().start().await;
//! let facts = servers.js.get_stream("FACTS").await.expect("the topology is there");
//! # }
//! ```

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::Context;
use nats_topology::{Credentials, Settings as TopologySettings, Topology};

use crate::{NatsUsers, Server};

/// What a test asks of its [`Stack`].
#[derive(Debug, Default, Clone)]
#[must_use]
pub struct Builder {
    secured: bool,
    mongo: bool,
    redis: bool,
    lease_ttl: Option<Duration>,
}

impl Builder {
    /// NATS as `ops/up` runs it: one user per role, each with only the subjects it needs
    /// ([`Stack::users`]); the stack's own connection is the admin's.
    pub fn secured(mut self) -> Self {
        self.secured = true;
        self
    }

    /// A MongoDB-compatible server too ([`Stack::mongo`], [`Stack::db`]).
    pub fn mongo(mut self) -> Self {
        self.mongo = true;
        self
    }

    /// A Redis server too ([`Stack::redis`]).
    pub fn redis(mut self) -> Self {
        self.redis = true;
        self
    }

    /// Leases (regions', the projector's) that lapse after `ttl` rather than the local
    /// topology's, so a test that kills a lease holder sees the lease taken over soon.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = Some(ttl);
        self
    }

    /// Starts the servers and puts the topology in place, as `nats-topology ensure` does
    /// before the services start. Panics with the reason when a server cannot start: a test
    /// cannot go on without it.
    pub async fn start(self) -> Stack {
        let (nats, users) = if self.secured {
            let (nats, users) = Server::start_secured().expect("a secured nats-server");
            (nats, Some(users))
        } else {
            (Server::start_nats().expect("nats-server"), None)
        };
        let credentials = users.as_ref().map_or_else(Credentials::default, |u| {
            Credentials::user("admin", u.password("admin").unwrap_or_default())
        });
        let (client, js) = nats_topology::connect(&nats.url(), "test", &credentials)
            .await
            .expect("the test connects to NATS");
        let settings = TopologySettings {
            lease_ttl: self
                .lease_ttl
                .unwrap_or(TopologySettings::local().lease_ttl),
            ..TopologySettings::local()
        };
        nats_topology::ensure(&js, &Topology::new(&settings))
            .await
            .expect("the topology is put in place");
        let mongo = self
            .mongo
            .then(|| Server::start_mongo().expect("secantusd"));
        let db = match &mongo {
            Some(mongo) => Some(
                mongodb::Client::with_uri_str(mongo.url())
                    .await
                    .expect("the test connects to MongoDB")
                    .database(DATABASE),
            ),
            None => None,
        };
        let redis = self
            .redis
            .then(|| Server::start_redis().expect("redis-server"));
        Stack {
            nats,
            users,
            mongo,
            db,
            redis,
            client,
            js,
            dir: tempfile::tempdir().expect("a folder for the test"),
        }
    }
}

/// How many messages `stream` holds now, on any JetStream context.
pub async fn messages_in(js: &Context, stream: &str) -> u64 {
    js.get_stream(stream)
        .await
        .expect("the stream exists")
        .info()
        .await
        .expect("the stream's info")
        .state
        .messages
}

/// Lets a test's own stack, which holds a [`Stack`] in a field, read the servers as its own
/// (`app.js`, `app.nats.url()`, `app.mongo_mut().stop()`): one line instead of a `Deref` and a
/// `DerefMut` written out in every test crate.
///
/// ```
/// struct World {
///     servers: test_servers::Stack,
/// }
/// test_servers::stands_on!(World, servers);
/// ```
#[macro_export]
macro_rules! stands_on {
    ($stack:ty, $field:ident) => {
        impl ::std::ops::Deref for $stack {
            type Target = $crate::Stack;

            fn deref(&self) -> &$crate::Stack {
                &self.$field
            }
        }

        impl ::std::ops::DerefMut for $stack {
            fn deref_mut(&mut self) -> &mut $crate::Stack {
                &mut self.$field
            }
        }
    };
}

/// The database the services use unless told otherwise (`MONGODB_DATABASE`).
pub const DATABASE: &str = "game";

/// Running servers, stopped when dropped; see the [module](self).
#[derive(Debug)]
pub struct Stack {
    /// The NATS server.
    pub nats: Server,
    users: Option<NatsUsers>,
    mongo: Option<Server>,
    db: Option<mongodb::Database>,
    redis: Option<Server>,
    /// A connection with every right (the admin's, on a secured server).
    pub client: async_nats::Client,
    /// JetStream over [`Stack::client`].
    pub js: Context,
    /// The test's own folder: config files, logs.
    pub dir: tempfile::TempDir,
}

impl Stack {
    /// What the test needs, started by [`Builder::start`].
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// NATS alone, with the topology in place.
    pub async fn nats_only() -> Self {
        Self::builder().start().await
    }

    /// NATS, MongoDB and Redis, as every service together needs them.
    pub async fn start() -> Self {
        Self::builder().mongo().redis().start().await
    }

    /// The role users of a [`Builder::secured`] server.
    pub fn users(&self) -> &NatsUsers {
        self.users
            .as_ref()
            .expect("the stack was started secured()")
    }

    /// The MongoDB-compatible server.
    pub fn mongo(&self) -> &Server {
        self.mongo
            .as_ref()
            .expect("the stack was started with mongo()")
    }

    /// The MongoDB-compatible server, to stop, restart or throttle.
    pub fn mongo_mut(&mut self) -> &mut Server {
        self.mongo
            .as_mut()
            .expect("the stack was started with mongo()")
    }

    /// The services' database ([`DATABASE`]) on [`Stack::mongo`].
    pub fn db(&self) -> &mongodb::Database {
        self.db
            .as_ref()
            .expect("the stack was started with mongo()")
    }

    /// The Redis server.
    pub fn redis(&self) -> &Server {
        self.redis
            .as_ref()
            .expect("the stack was started with redis()")
    }

    /// The Redis server, to stop or restart.
    pub fn redis_mut(&mut self) -> &mut Server {
        self.redis
            .as_mut()
            .expect("the stack was started with redis()")
    }

    /// How many messages `stream` holds now.
    pub async fn messages_in(&self, stream: &str) -> u64 {
        messages_in(&self.js, stream).await
    }

    /// A path in the test's folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The environment a service of `role` connects with: the servers' addresses, and on a
    /// secured server its NATS user and password.
    pub fn env_for(&self, role: &str) -> Vec<(&'static str, String)> {
        let mut env = vec![("NATS_URL", self.nats.url())];
        if let Some(mongo) = &self.mongo {
            env.push(("MONGODB_URI", mongo.url()));
        }
        if let Some(redis) = &self.redis {
            env.push(("REDIS_URL", redis.url()));
        }
        if let Some(users) = &self.users {
            env.push(("NATS_USER", role.to_owned()));
            env.push((
                "NATS_PASSWORD",
                users.password(role).unwrap_or_default().to_owned(),
            ));
        }
        env
    }
}
