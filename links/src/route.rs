//! `send_batch`: every dispatch to its link, all links at once, results in
//! dispatch order.
//!
//! Owns: looking up each route's open link (a daemon route goes over its
//! mesh's daemon link, a session route over that session's link only, never
//! another), spending the member's budget (a dispatch it no longer allows is
//! not written: `rate_budget_empty`), handing each link its share, and
//! reassembling the answers.
//! Does not own: the sends on the socket (`connection`) or judging results.

use crate::budget::Budget;
use crate::config::{ACK_TIMEOUT_MAX, LinkState, REPLY_GRACE};
use crate::connection::Batch;
use crate::links::{Inner, Links};
use sluice_contract::{Dispatch, RATE_BUDGET_EMPTY, Route, SendResult};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout_at};

/// One link's share of a batch: where it goes, and which dispatches.
struct Share {
    link: mpsc::Sender<Batch>,
    budget: Budget,
    indices: Vec<usize>,
    dispatches: Vec<Dispatch>,
}

impl Links {
    /// Sends every dispatch, concurrently and pipelined per link, and returns
    /// one result per dispatch in dispatch order. A dispatch whose link is
    /// not open (or, for a session route, not registered) fails at once
    /// (`link_not_open…`); the others wait for their ack up to `ack_timeout`
    /// (capped at `ACK_TIMEOUT_MAX`).
    pub async fn send_batch(
        &self,
        dispatches: Vec<Dispatch>,
        ack_timeout: Duration,
    ) -> Vec<SendResult> {
        let deadline = Instant::now() + ack_timeout.min(ACK_TIMEOUT_MAX);
        let mut results: Vec<Option<SendResult>> = vec![None; dispatches.len()];
        let mut shares: Vec<Share> = Vec::new();
        // Each route is looked up once per batch, however many rows use it.
        let mut share_of: HashMap<Route, Result<usize, String>> = HashMap::new();
        for (index, dispatch) in dispatches.into_iter().enumerate() {
            let share = share_of
                .entry(dispatch.route.clone())
                .or_insert_with(|| {
                    open_link(&self.inner, &dispatch.route).map(|(link, budget)| {
                        shares.push(Share {
                            link,
                            budget,
                            indices: Vec::new(),
                            dispatches: Vec::new(),
                        });
                        shares.len() - 1
                    })
                })
                .clone();
            match share {
                // Taken here, under the bucket's lock, so two callers sharing
                // a member never both spend its last token.
                Ok(share) if !shares[share].budget.take_one() => {
                    results[index] = Some(SendResult::Failed(RATE_BUDGET_EMPTY.to_string()));
                }
                Ok(share) => {
                    shares[share].indices.push(index);
                    shares[share].dispatches.push(dispatch);
                }
                Err(reason) => results[index] = Some(SendResult::Failed(reason)),
            }
        }
        // Hand every link its share first, then wait: the links send in
        // parallel and the batch takes as long as its slowest link.
        let mut waiting = Vec::new();
        for share in shares {
            let (reply, answer) = oneshot::channel();
            let batch = Batch {
                dispatches: share.dispatches,
                deadline,
                reply,
            };
            match timeout_at(deadline, share.link.send(batch)).await {
                Ok(Ok(())) => waiting.push((share.indices, answer)),
                Ok(Err(_)) => fill(&mut results, &share.indices, "link_not_open"),
                Err(_) => fill(&mut results, &share.indices, "ack_timeout"),
            }
        }
        for (indices, answer) in waiting {
            match timeout_at(deadline + REPLY_GRACE, answer).await {
                Ok(Ok(answers)) if answers.len() == indices.len() => {
                    for (index, result) in indices.into_iter().zip(answers) {
                        results[index] = Some(result);
                    }
                }
                _ => fill(&mut results, &indices, "link_closed"),
            }
        }
        results
            .into_iter()
            .map(|result| result.unwrap_or_else(|| SendResult::Failed("link_closed".to_string())))
            .collect()
    }
}

/// The queue of the open link a route goes over and the budget its sends
/// spend, or why there is none.
fn open_link(inner: &Inner, route: &Route) -> Result<(mpsc::Sender<Batch>, Budget), String> {
    match route {
        Route::Daemon(slug) => {
            let Some(daemon) = inner.daemon(slug) else {
                return Err(format!("link_not_open: unknown mesh {slug}"));
            };
            if daemon.handle.state() == LinkState::Open {
                Ok((daemon.handle.commands.clone(), daemon.budget.clone()))
            } else {
                Err("link_not_open".to_string())
            }
        }
        Route::Session(pubkey) => {
            let (link, mesh) = inner.sessions().open_link(pubkey)?;
            let budget = inner
                .daemon(&mesh)
                .map(|daemon| daemon.budget.clone())
                .ok_or_else(|| format!("link_not_open: unknown mesh {mesh}"))?;
            Ok((link, budget))
        }
    }
}

fn fill(results: &mut [Option<SendResult>], indices: &[usize], reason: &str) {
    for &index in indices {
        results[index] = Some(SendResult::Failed(reason.to_string()));
    }
}
