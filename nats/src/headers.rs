//! The NATS header names the project writes, in one place, and how a reader gets one back.

/// The gateway's request id, carried from the HTTP request into the command's message.
pub const REQUEST_ID: &str = "Request-Id";
/// The client's own `x-request-id`, beside the gateway's (which a client cannot choose).
pub const CLIENT_REQUEST_ID: &str = "Client-Request-Id";
/// The client's IP address, for the audit trail.
pub const CLIENT_IP: &str = "Client-Ip";

/// Dead letters: the stream the message came from.
pub const DLQ_ORIGIN_STREAM: &str = "Dlq-Origin-Stream";
/// Dead letters: the subject the message was published on (and is redriven to).
pub const DLQ_ORIGIN_SUBJECT: &str = "Dlq-Origin-Subject";
/// Dead letters: the message's sequence in its origin stream.
pub const DLQ_ORIGIN_SEQ: &str = "Dlq-Origin-Seq";
/// Dead letters: the message's own `Nats-Msg-Id`, if it had one.
pub const DLQ_ORIGIN_MSG_ID: &str = "Dlq-Origin-Msg-Id";
/// Dead letters: the consumer that gave up on it, if any.
pub const DLQ_CONSUMER: &str = "Dlq-Consumer";
/// Dead letters: why it was given up on.
pub const DLQ_REASON: &str = "Dlq-Reason";
/// Dead letters: how many deliveries were attempted.
pub const DLQ_ATTEMPTS: &str = "Dlq-Attempts";
/// Dead letters: when it was dead-lettered (RFC 3339, UTC).
pub const DLQ_AT: &str = "Dlq-At";

/// The longest header value written; longer ones are cut.
pub const MAX_VALUE_LEN: usize = 1024;

/// A header value as NATS can carry it: control characters (line breaks above all) become spaces
/// and it is cut to [`MAX_VALUE_LEN`] bytes on a character boundary.
pub fn value(raw: &str) -> String {
    let mut out: String = raw
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > MAX_VALUE_LEN {
        let mut end = MAX_VALUE_LEN;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

/// The value of the header `name` on `message`, when it carries one.
pub fn read(message: &async_nats::jetstream::Message, name: &str) -> Option<String> {
    message
        .headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_lose_line_breaks_and_are_bounded() {
        assert_eq!(value("bad\r\nthing"), "bad  thing");
        let long = "é".repeat(MAX_VALUE_LEN);
        let cut = value(&long);
        assert!(cut.len() <= MAX_VALUE_LEN && cut.chars().all(|c| c == 'é'));
    }
}
