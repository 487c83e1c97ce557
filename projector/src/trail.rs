//! The audit trail: every command and every fact, append-only, one document per event (its id is
//! the document's `_id`, so an event delivered twice is stored once), with actor, client address,
//! request id, stream and sequence, indexed for the questions analysts ask.

use mongodb::bson::{self, Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Database, IndexModel};
use serde::Serialize;

use schemas::read_model::collection::AUDIT;
use schemas::read_model::{DocumentError, to_document};

use crate::models::Stored;

/// What the audit keeps of any event besides its envelope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The stream it was read from.
    pub stream: String,
    /// Its sequence there.
    pub seq: u64,
    /// Its subject.
    pub subject: String,
    /// The client's address, when a client sent it.
    pub client_ip: Option<String>,
    /// The request id of the REST call behind it (the gateway's own).
    pub request_id: Option<String>,
    /// The client's own request id for that call, when it sent one (chosen by the client, so
    /// kept apart from `request_id`).
    pub client_request_id: Option<String>,
}

/// An audit document from an envelope (as JSON) and where it came from.
pub fn entry(
    envelope: &impl Serialize,
    origin: &Origin,
    occurred_ms: i64,
) -> Result<Document, DocumentError> {
    let mut d = to_document(envelope)?;
    let id = d.remove("id").unwrap_or(bson::Bson::Null);
    d.insert("_id", id);
    // A date, not a string, so that time ranges are index scans.
    d.insert("occurred_at", bson::DateTime::from_millis(occurred_ms));
    let actor_id = d
        .get_document("actor")
        .ok()
        .and_then(|a| a.get_str("id").or_else(|_| a.get_str("service")).ok())
        .map(str::to_owned);
    d.insert("actor_id", actor_id);
    d.insert("stream", origin.stream.clone());
    d.insert("seq", origin.seq as i64);
    d.insert("subject", origin.subject.clone());
    d.insert("client_ip", origin.client_ip.clone());
    d.insert("request_id", origin.request_id.clone());
    if let Some(client_request_id) = &origin.client_request_id {
        d.insert("client_request_id", client_request_id.clone());
    }
    Ok(d)
}

/// The audit document of a stored fact.
pub fn fact_entry(fact: &Stored) -> Result<Document, DocumentError> {
    let json: serde_json::Value = fact
        .env
        .encode()
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    entry(
        &json,
        &Origin {
            stream: nats_topology::topology::FACTS.into(),
            seq: fact.seq,
            subject: fact.env.subject().to_string(),
            client_ip: fact.client_ip.clone(),
            request_id: fact.request_id.clone(),
            client_request_id: None,
        },
        fact.env.occurred_at.timestamp_millis(),
    )
}

/// An index on `keys` under `name`, the name MongoDB's tools and errors show.
pub(crate) fn named_index(keys: Document, name: &str) -> IndexModel {
    IndexModel::builder()
        .keys(keys)
        .options(IndexOptions::builder().name(name.to_owned()).build())
        .build()
}

/// The audit trail's indexes: by actor, by region, by time, by correlation id, by kind.
pub async fn ensure_indexes(db: &Database) -> Result<(), mongodb::error::Error> {
    db.collection::<Document>(AUDIT)
        .create_indexes([
            named_index(doc! {"actor_id": 1, "occurred_at": 1}, "by_actor_time"),
            named_index(doc! {"region": 1, "occurred_at": 1}, "by_region_time"),
            named_index(doc! {"occurred_at": 1}, "by_time"),
            named_index(doc! {"correlation_id": 1}, "by_correlation"),
            named_index(doc! {"kind": 1, "occurred_at": 1}, "by_kind_time"),
        ])
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_request_id_is_kept_beside_the_gateways() {
        let envelope = serde_json::json!({"id": "c1", "actor": {"type": "player", "id": "p1"}});
        let origin = Origin {
            request_id: Some("gateway-id".into()),
            client_request_id: Some("client-id".into()),
            ..Origin::default()
        };
        let d = entry(&envelope, &origin, 0).expect("document");
        assert_eq!(d.get_str("request_id"), Ok("gateway-id"));
        assert_eq!(d.get_str("client_request_id"), Ok("client-id"));
        let without = entry(&envelope, &Origin::default(), 0).expect("document");
        assert!(!without.contains_key("client_request_id"));
    }
}
