//! An import call as a trace line holds it: a [`Call`]'s name and
//! arguments, and its [`Reply`] as the result.
//!
//! The recorder writes them and replay builds them again from what a policy
//! does; both go through these functions, so a difference in a trace is a
//! difference in behaviour, never in formatting. The shapes themselves are
//! the contract's (`sluice_contract::world`): a new import needs nothing here.

use serde_json::Value;
use sluice_policy::{Call, Reply};

/// The call's arguments, as the `args` of its trace line.
pub fn args(call: &Call) -> Value {
    match serde_json::to_value(call) {
        Ok(Value::Object(mut line)) => line.remove("args").unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// The reply, as the `result` of its trace line.
pub fn result(reply: &Reply) -> Value {
    serde_json::to_value(reply).unwrap_or(Value::Null)
}

/// Reads the recorded `result` of `call` back into its reply.
pub fn read(call: &Call, result: &Value) -> Result<Reply, serde_json::Error> {
    Reply::read(call, result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_policy::{ClaimFilter, Dispatch, Level, Outcome, Route, SendResult, Verdict};

    /// One call of every import, with the reply of its kind.
    fn every_import() -> Vec<(Call, Reply)> {
        let skip = ClaimFilter {
            skip_meshes: vec!["north".into()],
            skip_unnamed: true,
        };
        let outcome = Outcome {
            rowid: 7,
            attempts: 2,
            verdict: Verdict::Dead { reason: "x".into() },
        };
        let dispatch = Dispatch {
            rowid: 7,
            route: Route::Daemon("north".into()),
            client_message_id: "c".into(),
            request_fingerprint_hex: "00".into(),
            target_spec: "*".into(),
            priority: "now".into(),
            nonce: "n".into(),
            ciphertext: "c".into(),
        };
        vec![
            (
                Call::ClaimDue {
                    now: 5,
                    limit: 2,
                    lease_ms: 30_000,
                    skip: skip.clone(),
                },
                Reply::Rows(Ok(Vec::new())),
            ),
            (
                Call::Settle {
                    outcomes: vec![outcome],
                },
                Reply::Count(Err("busy".into())),
            ),
            (Call::Reclaim { now: 5 }, Reply::Count(Ok(1))),
            (Call::Expire { now: 5, cutoff: 1 }, Reply::Count(Ok(0))),
            (Call::NextDueAt { skip }, Reply::DueAt(Ok(Some(9)))),
            (Call::MeshLinks {}, Reply::Links(Vec::new())),
            (
                Call::Throttle {
                    mesh: "north".into(),
                },
                Reply::Nothing,
            ),
            (
                Call::SessionStates {
                    pubkeys: vec!["ab".into()],
                },
                Reply::Sessions(vec![sluice_policy::SessionState::Open]),
            ),
            (
                Call::SendBatch {
                    dispatches: vec![dispatch],
                    ack_timeout_ms: 500,
                },
                Reply::Sent(vec![SendResult::Accepted("m".into())]),
            ),
            (Call::Now {}, Reply::Time(42)),
            (Call::RandomBytes { len: 3 }, Reply::Bytes(vec![1, 2, 3])),
            (
                Call::Log {
                    level: Level::Info,
                    event: "e".into(),
                    fields: vec![("k".into(), "v".into())],
                },
                Reply::Nothing,
            ),
        ]
    }

    #[test]
    fn a_calls_trace_name_is_its_wit_name_and_its_reply_reads_back() {
        for (call, reply) in every_import() {
            let line = serde_json::to_value(&call).unwrap_or_default();
            assert_eq!(line["call"], call.name(), "{call:?}");
            assert!(args(&call).is_object(), "{call:?}: args must be an object");
            let text = result(&reply);
            assert_eq!(read(&call, &text).ok(), Some(reply.clone()), "{call:?}");
            // The empty and the refusing answers are of the call's own kind.
            for other in [Reply::nothing(&call, "no"), Reply::failing(&call, "no")] {
                assert_eq!(
                    std::mem::discriminant(&other),
                    std::mem::discriminant(&reply),
                    "{call:?}"
                );
            }
        }
    }

    #[test]
    fn args_and_results_keep_the_shape_of_recorded_traces() {
        let call = Call::ClaimDue {
            now: 1,
            limit: 2,
            lease_ms: 3,
            skip: ClaimFilter::default(),
        };
        assert_eq!(
            args(&call).to_string(),
            r#"{"lease_ms":3,"limit":2,"now":1,"skip":{"skip_meshes":[],"skip_unnamed":false}}"#
        );
        assert_eq!(result(&Reply::Count(Ok(0))).to_string(), r#"{"Ok":0}"#);
        assert_eq!(
            result(&Reply::Bytes(vec![1, 2, 3])).to_string(),
            r#""AQID""#
        );
        assert_eq!(result(&Reply::Nothing).to_string(), "null");
        assert_eq!(args(&Call::Now {}).to_string(), "{}");
    }
}
