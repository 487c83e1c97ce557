//! What a run measured, and its three outputs in one folder: `report.md` (tables and the
//! plots), the plots as PNG files, and `summary.json`, flat figures a script can compare.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::plot::{self, Line, PlotError, Scale};
use crate::stats::{Percentiles, Samples, counts_per_second};

/// The plots, by file name, in the order the report shows them.
pub const PLOTS: [&str; 3] = ["throughput.png", "latency.png", "lags.png"];

/// Picks one percentile.
type Pick = fn(&Percentiles) -> f64;

/// The ceilings measured in the same run, on the same servers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ceilings {
    /// Publishers awaiting their own JetStream acks: messages stored per second.
    pub publishers_per_s: f64,
    /// How many publishers.
    pub publishers: usize,
    /// A bare ordered consumer reading `FACTS` from its start: messages per second.
    pub ordered_consumer_per_s: f64,
    /// The raw driver's journaled bulk upserts into a scratch database: documents per second.
    pub raw_writes_per_s: f64,
}

/// Everything a run measured. Times are seconds since the run started.
#[derive(Debug, Clone, Default)]
pub struct Results {
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// Players at full strength.
    pub players: usize,
    /// How long players played (the ramp included), in seconds.
    pub seconds: f64,
    /// The ramp, in seconds.
    pub ramp_seconds: f64,
    /// How long the series run: the play and the drain after it, in whole seconds.
    pub span: usize,
    /// Cores on this machine.
    pub cores: usize,
    /// A line on the plan and the gateway's settings.
    pub setup: String,
    /// When each command was accepted (answered 202, or 200 with an outcome).
    pub accepted: Vec<f64>,
    /// When each fact of the run was stored in `FACTS`.
    pub facts_stored: Vec<f64>,
    /// When each fact was seen projected (the projector's position passed it).
    pub facts_projected: Vec<f64>,
    /// Facts not projected by the end of the drain.
    pub unprojected: u64,
    /// Latency of commands answered 202, ms.
    pub latency_202: Samples,
    /// Latency of commands sent with `?wait=true` and answered with their outcome, ms.
    pub latency_wait: Samples,
    /// From sending a command to its first fact being stored, ms.
    pub command_to_fact: Samples,
    /// From a fact being stored to the projection's position passing it, ms.
    pub projection_lag: Samples,
    /// From a fact being stored to a player's live stream delivering it, ms.
    pub delivery_lag: Samples,
    /// Answers by HTTP status (`"202"`), and requests that got none (`"no answer"`).
    pub statuses: BTreeMap<String, u64>,
    /// Outcomes of waited commands: `applied`, or `rejected: <reason>`.
    pub outcomes: BTreeMap<String, u64>,
    /// The ceilings.
    pub ceilings: Ceilings,
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

impl Results {
    /// Commands accepted per second once every player has joined (the whole run when the
    /// ramp takes it all).
    pub fn accepted_per_s(&self) -> f64 {
        let steady = self.seconds - self.ramp_seconds;
        if steady >= 1.0 {
            let n = self
                .accepted
                .iter()
                .filter(|&&t| t >= self.ramp_seconds && t < self.seconds)
                .count();
            n as f64 / steady
        } else {
            ratio(self.accepted.len() as f64, self.seconds)
        }
    }

    /// Facts stored per second while players played.
    pub fn facts_per_s(&self) -> f64 {
        let n = self
            .facts_stored
            .iter()
            .filter(|&&t| t < self.seconds)
            .count();
        ratio(n as f64, self.seconds)
    }

    /// Facts projected per second, from the first fact stored to the last one projected. When
    /// the projection keeps up, this is the rate the game made facts at, not the projector's
    /// ceiling: the projection lag says which it was.
    pub fn projected_per_s(&self) -> f64 {
        let first = self
            .facts_stored
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let last = self.facts_projected.iter().copied().fold(0.0_f64, f64::max);
        ratio(self.facts_projected.len() as f64, last - first)
    }

    /// The flat figures of `summary.json`.
    pub fn summary(&self) -> Value {
        let mut out = Map::new();
        let mut put = |key: String, value: f64| {
            out.insert(key, json!(if value.is_finite() { value } else { 0.0 }));
        };
        let accepted = self.accepted_per_s();
        let projected = self.projected_per_s();
        put("players".into(), self.players as f64);
        put("seconds".into(), self.seconds);
        put("ramp_seconds".into(), self.ramp_seconds);
        put("cores".into(), self.cores as f64);
        put("accepted_per_s".into(), accepted);
        put("accepted_total".into(), self.accepted.len() as f64);
        put("facts_per_s".into(), self.facts_per_s());
        put("projected_per_s".into(), projected);
        put("unprojected_facts".into(), self.unprojected as f64);
        for (name, samples) in [("202", &self.latency_202), ("wait", &self.latency_wait)] {
            let p = samples.overall();
            put(format!("p50_ms_{name}"), p.p50);
            put(format!("p90_ms_{name}"), p.p90);
            put(format!("p99_ms_{name}"), p.p99);
            put(format!("p999_ms_{name}"), p.p999);
            put(format!("samples_{name}"), p.count as f64);
        }
        for (name, samples) in [
            ("command_to_fact_lag", &self.command_to_fact),
            ("projection_lag", &self.projection_lag),
            ("delivery_lag", &self.delivery_lag),
        ] {
            let p = samples.overall();
            put(format!("{name}_p50_ms"), p.p50);
            put(format!("{name}_p90_ms"), p.p90);
            put(format!("{name}_p99_ms"), p.p99);
            put(format!("{name}_p999_ms"), p.p999);
            put(format!("{name}_samples"), p.count as f64);
        }
        let c = self.ceilings;
        put("publishers".into(), c.publishers as f64);
        put("publishers_per_s".into(), c.publishers_per_s);
        put("gateway_ratio".into(), ratio(accepted, c.publishers_per_s));
        put("ordered_consumer_per_s".into(), c.ordered_consumer_per_s);
        put("raw_writes_per_s".into(), c.raw_writes_per_s);
        put(
            "projector_ratio".into(),
            ratio(projected, c.raw_writes_per_s),
        );
        let errors: u64 = self
            .statuses
            .iter()
            .filter(|(status, _)| !matches!(status.as_str(), "200" | "201" | "202" | "204"))
            .map(|(_, n)| n)
            .sum();
        put("errors".into(), errors as f64);
        out.insert("started_at".into(), json!(self.started_at.to_rfc3339()));
        out.insert("statuses".into(), json!(self.statuses));
        out.insert("outcomes".into(), json!(self.outcomes));
        Value::Object(out)
    }

    /// Writes `report.md`, the plots and `summary.json` into `dir` (made when missing).
    pub fn write(&self, dir: &Path) -> Result<(), ReportError> {
        std::fs::create_dir_all(dir).map_err(ReportError::Write)?;
        self.plot(dir)?;
        let summary = self.summary();
        let text =
            serde_json::to_string_pretty(&summary).map_err(|e| ReportError::Write(e.into()))?;
        std::fs::write(dir.join("summary.json"), text + "\n").map_err(ReportError::Write)?;
        std::fs::write(dir.join("report.md"), self.markdown(&summary, ""))
            .map_err(ReportError::Write)?;
        Ok(())
    }

    fn plot(&self, dir: &Path) -> Result<(), PlotError> {
        let span = self.span.max(1);
        let x_max = span as f64;
        let per_second = |times: &[f64]| -> Vec<(f64, f64)> {
            counts_per_second(times, span)
                .into_iter()
                .enumerate()
                .map(|(s, n)| (s as f64 + 0.5, n as f64))
                .collect()
        };
        plot::lines(
            &dir.join(PLOTS[0]),
            &format!("Throughput, {} players", self.players),
            "per second",
            x_max,
            Scale::Linear,
            &[
                Line {
                    name: "commands accepted".into(),
                    points: per_second(&self.accepted),
                },
                Line {
                    name: "facts stored".into(),
                    points: per_second(&self.facts_stored),
                },
                Line {
                    name: "facts projected".into(),
                    points: per_second(&self.facts_projected),
                },
            ],
        )?;
        let percentiles = |title: &str, of: &[(&str, &Samples)], picks: &[(&str, Pick)]| {
            let mut lines = Vec::new();
            for (name, samples) in of {
                let per_second = samples.per_second(span);
                for (label, pick) in picks {
                    lines.push(Line {
                        name: format!("{name} {label}"),
                        points: per_second
                            .iter()
                            .enumerate()
                            .filter(|(_, p)| p.count > 0)
                            .map(|(s, p)| (s as f64 + 0.5, pick(p)))
                            .collect(),
                    });
                }
            }
            (title.to_owned(), lines)
        };
        let p50: Pick = |p| p.p50;
        let p90: Pick = |p| p.p90;
        let p99: Pick = |p| p.p99;
        let (title, lines) = percentiles(
            "Command latency per second",
            &[
                ("202", &self.latency_202),
                ("?wait=true", &self.latency_wait),
            ],
            &[("p50", p50), ("p90", p90), ("p99", p99)],
        );
        plot::lines(
            &dir.join(PLOTS[1]),
            &title,
            "milliseconds (log scale)",
            x_max,
            Scale::Log,
            &lines,
        )?;
        let (title, lines) = percentiles(
            "Lags per second",
            &[
                ("command to fact", &self.command_to_fact),
                ("fact to read model", &self.projection_lag),
                ("fact to live stream", &self.delivery_lag),
            ],
            &[("p50", p50), ("p99", p99)],
        );
        plot::lines(
            &dir.join(PLOTS[2]),
            &title,
            "milliseconds (log scale)",
            x_max,
            Scale::Log,
            &lines,
        )
    }

    /// The report in Markdown, its plots linked under `images` (`""`: beside it).
    pub fn markdown(&self, summary: &Value, images: &str) -> String {
        let f = |key: &str| summary.get(key).and_then(Value::as_f64).unwrap_or(0.0);
        let mut md = String::new();
        let _ = writeln!(
            md,
            "Run of {} on {} cores: {} players for {:.0} s, their accounts made and logged in beforehand, each opening its live stream and spawning in turn over the first {:.0} s. {}\n",
            self.started_at.format("%Y-%m-%d %H:%M UTC"),
            self.cores,
            self.players,
            self.seconds,
            self.ramp_seconds,
            self.setup
        );
        let _ = writeln!(md, "| what | figure |\n|---|---|");
        let _ = writeln!(
            md,
            "| commands accepted per second, all players in | {:.0} ({} in all) |",
            f("accepted_per_s"),
            self.accepted.len()
        );
        let _ = writeln!(
            md,
            "| {} publishers awaiting their acks, same server, same run | {:.0}/s: the gateway reaches **{:.2}** of it |",
            self.ceilings.publishers,
            f("publishers_per_s"),
            f("gateway_ratio")
        );
        let _ = writeln!(
            md,
            "| facts stored per second / projected per second (first stored to last projected) | {:.0} / {:.0} |",
            f("facts_per_s"),
            f("projected_per_s")
        );
        let _ = writeln!(
            md,
            "| raw journaled bulk upserts into a scratch database, same server, same run | {:.0}/s: the projection reaches **{:.2}** of it |",
            f("raw_writes_per_s"),
            f("projector_ratio")
        );
        let _ = writeln!(
            md,
            "| a bare ordered consumer reading `FACTS` | {:.0}/s |",
            f("ordered_consumer_per_s")
        );
        let _ = writeln!(
            md,
            "| facts not projected by the end of the drain | {} |\n",
            self.unprojected
        );
        let _ = writeln!(
            md,
            "| milliseconds | samples | p50 | p90 | p99 | p99.9 | max |\n|---|---|---|---|---|---|---|"
        );
        for (name, samples) in [
            ("`POST /v1/commands` answered 202", &self.latency_202),
            (
                "`POST /v1/commands?wait=true` answered with the outcome",
                &self.latency_wait,
            ),
            (
                "command sent to its first fact stored",
                &self.command_to_fact,
            ),
            (
                "fact stored to read model (projection lag)",
                &self.projection_lag,
            ),
            ("fact stored to a player's live stream", &self.delivery_lag),
        ] {
            let p = samples.overall();
            let _ = writeln!(
                md,
                "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
                p.count, p.p50, p.p90, p.p99, p.p999, p.max
            );
        }
        let _ = writeln!(md, "\n| answers by status | count |\n|---|---|");
        for (status, n) in &self.statuses {
            let _ = writeln!(md, "| {status} | {n} |");
        }
        if !self.outcomes.is_empty() {
            let _ = writeln!(md, "\n| outcomes of waited commands | count |\n|---|---|");
            for (outcome, n) in &self.outcomes {
                let _ = writeln!(md, "| {outcome} | {n} |");
            }
        }
        md.push('\n');
        for (file, alt) in PLOTS
            .iter()
            .zip(["throughput", "latency percentiles", "lags"])
        {
            let _ = writeln!(md, "![{alt} over time]({images}{file})");
        }
        md
    }
}

/// Why the report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be written.
    #[error("cannot write the report: {0}")]
    Write(#[source] std::io::Error),
    /// A plot could not be drawn.
    #[error(transparent)]
    Plot(#[from] PlotError),
}
