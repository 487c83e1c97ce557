//! The `audit` command against real servers, on a log this test builds: every format read back
//! (Parquet and CSV also by DuckDB, an independent reader), every filter, an interrupted replay,
//! `verify` finding a deleted, an altered and an extra audit document, `state` before and after a
//! fight and equal to the read model now, and bad input refused with one clear line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::Context;
use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use nats_topology::publish::{Outgoing, publish_all};
use schemas::command::{Attack, Chat, Spawn};
use schemas::fact::{AccountRegistered, ChatSaid, Damaged, Spawned};
use schemas::{Actor, Command, EntityState, Envelope, Fact, PlayerId, Position, RegionId};
use serde_json::Value;
use test_servers::{Server, Stack};

struct Log {
    /// NATS with the topology in place, and the folder for the command's output.
    servers: Stack,
    ada: PlayerId,
    bo: PlayerId,
    /// The fight's command id.
    fight: schemas::EventId,
    /// When the last fact before the fight was stored.
    before_fight: String,
    facts: u64,
    commands: u64,
}

fn region(id: &str) -> RegionId {
    id.parse().expect("region")
}

fn sim() -> Actor {
    Actor::System {
        service: "region-sim".into(),
    }
}

fn avatar(player: PlayerId, at: Position) -> EntityState {
    EntityState::newcomer(player, at, 100)
}

/// Stores `commands`, then `facts`; returns the facts' sequence numbers.
async fn store(js: &Context, commands: &[Envelope<Command>], facts: &[Envelope<Fact>]) -> Vec<u64> {
    let commands: Vec<Outgoing> = commands
        .iter()
        .map(|c| Outgoing::command(c).expect("command"))
        .collect();
    for stored in publish_all(js, commands).await {
        stored.expect("stored");
    }
    let facts: Vec<Outgoing> = facts
        .iter()
        .map(|f| Outgoing::fact(f).expect("fact"))
        .collect();
    publish_all(js, facts)
        .await
        .into_iter()
        .map(|r| r.expect("stored").sequence)
        .collect()
}

/// `text` said by `player` at `at` in `region`: the chat command, and the fact it caused.
fn said(
    player: PlayerId,
    region: &RegionId,
    at: Position,
    text: &str,
) -> (Envelope<Command>, Envelope<Fact>) {
    let chat = Envelope::new(
        Actor::Player { id: player },
        Some(region.clone()),
        Command::Chat(Chat {
            text: text.into(),
            channel: None,
        }),
    );
    let fact = Envelope::caused_by(
        &chat,
        0,
        sim(),
        Some(region.clone()),
        Fact::ChatSaid(ChatSaid {
            entity: player.into(),
            channel: schemas::command::ChatChannel::Say,
            text: text.into(),
            position: at,
        }),
    );
    (chat, fact)
}

async fn stored_at(js: &Context, stream: &str, seq: u64) -> String {
    let stream = js.get_stream(stream).await.expect("stream");
    let m = stream.get_raw_message(seq).await.expect("message");
    m.time.to_rfc3339()
}

impl Log {
    /// Two players register and enter south-west and north-east; ada chats; then bo strikes ada
    /// twice (a command and the facts it caused); and `padding` more chat lines follow.
    async fn build(padding: usize) -> Self {
        let servers = Stack::nats_only().await;
        let js = &servers.js;
        let (ada, bo) = (PlayerId::new(), PlayerId::new());
        let (sw, ne) = (region("south-west"), region("north-east"));
        let mut facts = Vec::new();
        let mut commands = Vec::new();
        for (p, name, r, at) in [
            (ada, "ada", &sw, Position::new(10.0, 10.0)),
            (bo, "bo", &ne, Position::new(1500.0, 1500.0)),
        ] {
            facts.push(Envelope::new(
                sim(),
                None,
                Fact::AccountRegistered(AccountRegistered {
                    player: p,
                    username: name.into(),
                }),
            ));
            let spawn = Envelope::new(
                Actor::Player { id: p },
                Some(r.clone()),
                Command::Spawn(Spawn {
                    region: Some(r.clone()),
                }),
            );
            facts.push(Envelope::caused_by(
                &spawn,
                0,
                sim(),
                Some(r.clone()),
                Fact::Spawned(Spawned {
                    state: avatar(p, at),
                }),
            ));
            commands.push(spawn);
        }
        let (chat, chat_said) = said(
            ada,
            &sw,
            Position::new(10.0, 10.0),
            "hello, \"world\", with a comma",
        );
        commands.push(chat);
        facts.push(chat_said);
        let seqs = store(js, &commands, &facts).await;
        let before_fight = stored_at(js, "FACTS", *seqs.last().expect("facts")).await;

        let fight = Envelope::new(
            Actor::Player { id: bo },
            Some(sw.clone()),
            Command::Attack(Attack { target: ada.into() }),
        );
        let blows: Vec<Envelope<Fact>> = [70, 40]
            .into_iter()
            .enumerate()
            .map(|(i, hp)| {
                Envelope::caused_by(
                    &fight,
                    i as u32,
                    sim(),
                    Some(sw.clone()),
                    Fact::Damaged(Damaged {
                        attacker: bo.into(),
                        target: ada.into(),
                        amount: 30,
                        hp,
                    }),
                )
            })
            .collect();
        store(js, std::slice::from_ref(&fight), &blows).await;
        let mut more_facts = 0;
        let mut more_commands = 0;
        for chunk in (0..padding).collect::<Vec<_>>().chunks(1000) {
            let (cmds, fs): (Vec<_>, Vec<_>) = chunk
                .iter()
                .map(|i| said(bo, &ne, Position::new(1500.0, 1500.0), &format!("line {i}")))
                .unzip();
            more_commands += cmds.len() as u64;
            more_facts += fs.len() as u64;
            store(js, &cmds, &fs).await;
        }
        Self {
            servers,
            ada,
            bo,
            fight: fight.id,
            before_fight,
            facts: facts.len() as u64 + 2 + more_facts,
            commands: commands.len() as u64 + 1 + more_commands,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.servers.path(name)
    }

    fn audit(&self) -> Process {
        let mut p = Process::new(env!("CARGO_BIN_EXE_audit"));
        p.env("NATS_URL", self.servers.nats.url())
            .env_remove("NATS_USER")
            .env_remove("NATS_PASSWORD");
        p
    }

    fn run(&self, args: &[&str]) -> Output {
        self.audit().args(args).output().expect("audit runs")
    }
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "audit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Asks DuckDB (installed by `ops/install` into the project's virtual environment) `sql`, and
/// returns its rows as JSON.
fn duckdb(sql: &str) -> Vec<Value> {
    let python = test_servers::venv_bin().join("python");
    let out = Process::new(&python)
        .arg("-c")
        .arg(
            "import duckdb, json, sys\n\
             rows = duckdb.sql(sys.argv[1]).fetchall()\n\
             print(json.dumps([list(map(str, r)) for r in rows]))",
        )
        .arg(sql)
        .output()
        .expect("the venv's python (ops/install)");
    assert!(
        out.status.success(),
        "duckdb (ops/install installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("duckdb's rows")
}

#[tokio::test]
async fn every_format_holds_the_same_events_and_duckdb_reads_them_alike() {
    let log = Log::build(0).await;
    let jsonl = log.path("facts.jsonl");
    let csv = log.path("facts.csv");
    let parquet = log.path("facts.parquet");
    for (format, path) in [("jsonl", &jsonl), ("csv", &csv), ("parquet", &parquet)] {
        ok(&log.run(&[
            "replay",
            "--format",
            format,
            "--output",
            path.to_str().expect("path"),
            "--quiet",
        ]));
    }
    let from_jsonl = lines(&std::fs::read_to_string(&jsonl).expect("jsonl"));
    assert_eq!(from_jsonl.len() as u64, log.facts);
    let seqs: Vec<u64> = from_jsonl
        .iter()
        .map(|l| l["seq"].as_u64().expect("seq"))
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "stream order");
    assert_eq!(from_jsonl[0]["stream"], "FACTS");
    assert!(from_jsonl[0]["payload"].is_object(), "the envelope");

    let mut reader = csv::Reader::from_path(&csv).expect("csv");
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(header, audit::sink::CSV_COLUMNS);
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    assert_eq!(rows.len(), from_jsonl.len());
    let chat = rows
        .iter()
        .find(|r| &r[5] == "chat_said")
        .expect("the chat line");
    let payload: Value = serde_json::from_str(&chat[13]).expect("payload JSON");
    assert_eq!(payload["text"], "hello, \"world\", with a comma");

    // DuckDB, reading the same files on its own, finds the same events.
    let key = |rows: Vec<Value>| -> Vec<String> {
        rows.iter().map(|r| r.to_string()).collect::<Vec<_>>()
    };
    let expected: Vec<String> = from_jsonl
        .iter()
        .map(|l| {
            serde_json::json!([l["seq"].to_string(), l["kind"].as_str().unwrap_or_default()])
                .to_string()
        })
        .collect();
    let in_parquet = key(duckdb(&format!(
        "SELECT seq, kind FROM read_parquet('{}') ORDER BY seq",
        parquet.display()
    )));
    let in_csv = key(duckdb(&format!(
        "SELECT seq, kind FROM read_csv('{}', header = true) ORDER BY seq",
        csv.display()
    )));
    assert_eq!(in_parquet, expected);
    assert_eq!(in_csv, expected);
    // Typed columns: a timestamp and numbers, and the payload's fields as columns.
    let types = duckdb(&format!(
        "SELECT typeof(occurred_at), typeof(seq), typeof(hp) FROM read_parquet('{}') LIMIT 1",
        parquet.display()
    ));
    assert_eq!(
        types[0],
        serde_json::json!(["TIMESTAMP WITH TIME ZONE", "UBIGINT", "UINTEGER"])
    );
    let hurt = duckdb(&format!(
        "SELECT min(hp), sum(amount) FROM read_parquet('{}') WHERE kind = 'damaged'",
        parquet.display()
    ));
    assert_eq!(hurt[0], serde_json::json!(["40", "60"]));
    // The README's query: damage dealt per attacker per hour.
    let per_attacker = duckdb(&format!(
        "SELECT date_trunc('hour', occurred_at) AS hour, \
                json_extract_string(payload, '$.attacker') AS attacker, \
                sum(amount) AS damage, count(*) AS blows \
         FROM read_parquet('{}') WHERE kind = 'damaged' \
         GROUP BY ALL ORDER BY hour, damage DESC",
        parquet.display()
    ));
    assert_eq!(per_attacker.len(), 1);
    assert_eq!(per_attacker[0][1], log.bo.to_string());
    assert_eq!(per_attacker[0][2], "60");
    assert_eq!(per_attacker[0][3], "2");
}

#[tokio::test]
async fn each_filter_selects_what_it_names() {
    let log = Log::build(0).await;
    let replay = |args: &[&str]| {
        let mut all = vec!["replay", "--quiet"];
        all.extend_from_slice(args);
        lines(&ok(&log.run(&all)))
    };
    let kinds = |rows: &[Value]| -> BTreeSet<String> {
        rows.iter()
            .map(|r| r["kind"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let everything = replay(&["--stream", "both"]);
    assert_eq!(everything.len() as u64, log.facts + log.commands);

    let ne = replay(&["--region", "north-east"]);
    assert_eq!(ne.len(), 1, "bo's spawn");
    assert!(ne.iter().all(|r| r["region"] == "north-east"));

    let damaged = replay(&["--kind", "damaged", "--kind", "chat_said"]);
    assert_eq!(
        kinds(&damaged),
        BTreeSet::from(["damaged".into(), "chat_said".into()])
    );
    assert_eq!(damaged.len(), 3);

    let commands = replay(&[
        "--stream",
        "commands",
        "--region",
        "south-west",
        "--kind",
        "attack",
    ]);
    assert_eq!(commands.len(), 1);

    let bo = log.bo.to_string();
    let about_bo = replay(&["--stream", "both", "--player", &bo]);
    assert!(about_bo.iter().all(|r| r.to_string().contains(&bo)));
    assert_eq!(
        about_bo.len(),
        6,
        "bo's account, his spawn command and fact, his attack and the two blows he struck"
    );
    let globals = replay(&["--region", "_global"]);
    assert_eq!(
        kinds(&globals),
        BTreeSet::from(["account_registered".into()])
    );

    let fight = log.fight.to_string();
    let the_fight = replay(&["--stream", "both", "--correlation", &fight]);
    assert_eq!(the_fight.len(), 3, "the attack and the two blows it caused");

    let after = replay(&["--since", &log.before_fight]);
    assert!(after.iter().any(|r| r["kind"] == "damaged"));
    assert!(after.len() <= 3);
    let before = replay(&["--until", &log.before_fight]);
    assert!(before.iter().all(|r| r["kind"] != "damaged"));

    let middle = replay(&["--from-seq", "2", "--to-seq", "3"]);
    let seqs: Vec<u64> = middle
        .iter()
        .map(|r| r["seq"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(seqs, [2, 3]);
}

#[tokio::test]
async fn an_interrupted_replay_leaves_no_file() {
    let log = Log::build(20_000).await;
    let output = log.path("big.parquet");
    let child = log
        .audit()
        .args([
            "replay", "--stream", "both", "--format", "parquet", "--quiet", "--output",
        ])
        .arg(&output)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("audit runs");
    // Interrupted once it has begun writing (its temporary file exists).
    let deadline = Instant::now() + Duration::from_secs(30);
    let partial = |dir: &Path| {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains(".partial-"))
    };
    while !partial(log.servers.dir.path()) {
        assert!(Instant::now() < deadline, "the replay never began writing");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = Process::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("audit ends");
    assert!(
        !out.status.success(),
        "an interrupted replay does not succeed"
    );
    assert!(!output.exists(), "no file that looks whole");
    assert!(
        !partial(log.servers.dir.path()),
        "and no partial one left behind"
    );
}

struct Projected {
    mongo: Server,
    db: mongodb::Database,
    stop: tokio::sync::watch::Sender<bool>,
}

/// The projector's audit trail and read models of the log, written in this process.
async fn project(log: &Log) -> Projected {
    let mongo = Server::start_mongo().expect("secantusd");
    let env = std::collections::HashMap::from([
        ("NATS_URL", log.servers.nats.url()),
        ("MONGODB_URI", mongo.url()),
        ("REDIS_URL", "redis://127.0.0.1:1".to_owned()),
        ("PROJECTOR_ADDR", "127.0.0.1:0".to_owned()),
    ]);
    let settings = projector::settings::Settings::load(|k| env.get(k).cloned()).expect("settings");
    let ctx = projector::Context::connect(settings)
        .await
        .expect("projector");
    projector::live::ensure_indexes(&ctx.db, &projector::projection::Names::live())
        .await
        .expect("indexes");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(projector::live::project_facts(
        Arc::clone(&ctx),
        stopped.clone(),
    ));
    tokio::spawn(projector::live::audit_commands(Arc::clone(&ctx), stopped));
    let db = ctx.db.clone();
    let audit = db.collection::<Document>("audit");
    test_servers::poll::eventually("the projector writes the trail", || async {
        audit.count_documents(doc! {}).await.unwrap_or(0) >= log.facts + log.commands
    })
    .await;
    Projected { mongo, db, stop }
}

#[tokio::test]
async fn verify_finds_a_deleted_an_altered_and_an_extra_audit_document() {
    let log = Log::build(0).await;
    let projected = project(&log).await;
    let _ = projected.stop.send(true);
    let verify = || {
        log.audit()
            .arg("verify")
            .env("MONGODB_URI", projected.mongo.url())
            .output()
            .expect("audit verify")
    };
    let clean = verify();
    assert!(
        clean.status.success(),
        "a whole trail: {}",
        String::from_utf8_lossy(&clean.stdout)
    );
    let audit = projected.db.collection::<Document>("audit");
    let ids: Vec<String> = audit
        .find(doc! {"stream": "FACTS"})
        .await
        .expect("find")
        .try_collect::<Vec<Document>>()
        .await
        .expect("docs")
        .iter()
        .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
        .collect();
    audit
        .delete_one(doc! {"_id": &ids[0]})
        .await
        .expect("delete");
    audit
        .update_one(doc! {"_id": &ids[1]}, doc! {"$set": {"payload.hp": 1}})
        .await
        .expect("alter");
    audit
        .insert_one(doc! {"_id": "forged", "stream": "FACTS", "seq": 3_i64, "kind": "xp_gained"})
        .await
        .expect("insert");
    let found = verify();
    assert!(!found.status.success(), "gaps make verify fail");
    let report: Value = serde_json::from_slice(&found.stdout).expect("a JSON report");
    let ids_of = |key: &str| -> Vec<String> {
        report[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|g| g["id"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(ids_of("missing"), [ids[0].clone()]);
    assert_eq!(ids_of("altered"), [ids[1].clone()]);
    assert_eq!(ids_of("extra"), ["forged"]);
    assert!(
        ids_of("without_outcome").is_empty(),
        "every command has its facts"
    );
}

#[tokio::test]
async fn state_before_and_after_a_fight_and_now_equal_to_the_read_model() {
    let log = Log::build(0).await;
    let ada = log.ada.to_string();
    let at = |time: &str| -> Value {
        serde_json::from_str(&ok(&log.run(&["state", "--at", time, "--player", &ada])))
            .expect("state JSON")
    };
    let before = at(&log.before_fight);
    assert_eq!(before["hp"], 100);
    assert_eq!(before["username"], "ada");
    let now = chrono::Utc::now().to_rfc3339();
    let after = at(&now);
    assert_eq!(after["hp"], 40);

    let projected = project(&log).await;
    let doc = projected
        .db
        .collection::<Document>("players")
        .find_one(doc! {"_id": &ada})
        .await
        .expect("find")
        .expect("ada's document");
    let read_model = mongodb::bson::Bson::Document(doc).into_relaxed_extjson();
    for field in [
        "username",
        "role",
        "region",
        "position",
        "hp",
        "max_hp",
        "level",
        "xp",
        "inventory",
        "online",
    ] {
        assert_eq!(after[field], read_model[field], "{field}");
    }
    let region: Value = serde_json::from_str(&ok(&log.run(&[
        "state",
        "--at",
        &now,
        "--region",
        "south-west",
    ])))
    .expect("region JSON");
    let entities = region["entities"].as_array().expect("entities");
    assert_eq!(entities.len(), 1, "ada alone in south-west");
    assert_eq!(entities[0]["name"], "ada");
    assert_eq!(entities[0]["hp"], 40);
}

#[tokio::test]
async fn bad_input_gets_one_clear_line_and_changes_nothing() {
    let log = Log::build(0).await;
    let refused = |args: &[&str], says: &str| {
        let out = log.run(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(out.stdout.is_empty(), "nothing written");
    };
    refused(&["replay", "--region", "atlantis"], "south-west");
    refused(&["replay", "--kind", "flew"], "damaged");
    refused(
        &["replay", "--since", "2026-11-29", "--until", "2026-11-28"],
        "--until",
    );
    refused(&["replay", "--since", "yesterday"], "is not a time");
    refused(&["replay", "--player", "nobody"], "--player");
    let nowhere = log.path("no/such/folder/out.jsonl");
    refused(
        &["replay", "--output", nowhere.to_str().unwrap_or_default()],
        "cannot write",
    );
    assert!(!nowhere.exists());
    let unreachable = log
        .audit()
        .args(["replay", "--quiet"])
        .env("NATS_URL", "nats://127.0.0.1:1")
        .output()
        .expect("audit runs");
    let err = String::from_utf8_lossy(&unreachable.stderr);
    assert!(!unreachable.status.success());
    assert!(
        err.contains("nats://127.0.0.1:1"),
        "says where it tried: {err}"
    );
    // A NATS without the log's streams.
    let bare = Server::start_nats().expect("nats-server");
    let missing = log
        .audit()
        .args(["replay", "--quiet"])
        .env("NATS_URL", bare.url())
        .output()
        .expect("audit runs");
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("FACTS does not exist"), "{err}");
    // Nothing changed: the log is as it was.
    let mut facts = log.servers.js.get_stream("FACTS").await.expect("stream");
    assert_eq!(facts.info().await.expect("info").state.messages, log.facts);
}
