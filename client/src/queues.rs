//! Dispatch queues from the client: rules, receiving with leases, acks,
//! nacks, redrive and descriptions.

use std::time::Duration;

use meshgate_protocol::{
    QueueDescription, QueueMessage, QueueName, QueueSpec, Receive, Redrive, Reply, Request, Settle,
    SettleAction, WireError,
};

use crate::client::{Client, RetryOn};
use crate::error::ClientError;

/// Picks the expected reply variant, or reports a protocol violation.
macro_rules! expect_reply {
    ($reply:expr, $pattern:pat => $value:expr) => {
        match $reply {
            $pattern => Ok($value),
            other => Err(ClientError::Protocol(format!("unexpected reply {other:?}"))),
        }
    };
}

impl Client {
    /// Adds or replaces a dispatch rule (spread to every node); returns
    /// every rule. An invalid filter is refused with `InvalidFilter`.
    pub async fn create_queue(&self, spec: QueueSpec) -> Result<Vec<QueueSpec>, ClientError> {
        expect_reply!(self.request(Request::CreateQueue(spec)).await?, Reply::Queues(specs) => specs)
    }

    /// Removes a dispatch rule and its queue; returns the remaining rules.
    pub async fn delete_queue(&self, queue: &str) -> Result<Vec<QueueSpec>, ClientError> {
        let request = Request::DeleteQueue(QueueName {
            queue: queue.to_string(),
        });
        expect_reply!(self.request(request).await?, Reply::Queues(specs) => specs)
    }

    /// Lists dispatch rules.
    pub async fn list_queues(&self) -> Result<Vec<QueueSpec>, ClientError> {
        expect_reply!(self.request(Request::ListQueues).await?, Reply::Queues(specs) => specs)
    }

    /// A queue's rule and figures on the connected node.
    pub async fn describe_queue(&self, queue: &str) -> Result<QueueDescription, ClientError> {
        let request = Request::DescribeQueue(QueueName {
            queue: queue.to_string(),
        });
        expect_reply!(self.request(request).await?, Reply::Queue(description) => description)
    }

    /// Leases up to `count_max` messages of `queue` (`NAME.dlq` for its
    /// dead letters), waiting up to `wait` for the first; `visibility`
    /// overrides the queue's lease length. An empty list means the wait
    /// ran out. A lost connection is not retried (the leases it may have
    /// taken run out and the messages come again).
    pub async fn receive(
        &self,
        queue: &str,
        count_max: u32,
        wait: Duration,
        visibility: Option<Duration>,
    ) -> Result<Vec<QueueMessage>, ClientError> {
        let request = Request::Receive(Receive {
            queue: queue.to_string(),
            count_max,
            wait_ms: wait.as_millis().min(u128::from(u32::MAX)) as u32,
            visibility_ms: visibility.map(|lease| lease.as_millis() as u64),
        });
        let reply = self
            .request_waiting(request, wait, RetryOn::TransportOnly)
            .await?;
        expect_reply!(reply, Reply::Messages(messages) => messages)
    }

    /// Settles many leases of one queue at once: per lease, in order, `None`
    /// or the typed error (`UnknownLease`, `LeaseExpired`).
    pub async fn settle(
        &self,
        queue: &str,
        leases: Vec<u64>,
        action: SettleAction,
    ) -> Result<Vec<Option<WireError>>, ClientError> {
        let request = Request::Settle(Settle {
            queue: queue.to_string(),
            leases,
            action,
        });
        expect_reply!(self.request(request).await?, Reply::Settled(outcomes) => outcomes)
    }

    /// Acks one message: done with it.
    pub async fn ack(&self, queue: &str, lease: u64) -> Result<(), ClientError> {
        self.settle_one(queue, lease, SettleAction::Ack).await
    }

    /// Nacks one message: deliver it again (after `delay`), or dead-letter
    /// it after its last attempt.
    pub async fn nack(
        &self,
        queue: &str,
        lease: u64,
        delay: Option<Duration>,
    ) -> Result<(), ClientError> {
        let delay_ms = delay.map(|delay| delay.as_millis() as u64);
        self.settle_one(queue, lease, SettleAction::Nack { delay_ms })
            .await
    }

    async fn settle_one(
        &self,
        queue: &str,
        lease: u64,
        action: SettleAction,
    ) -> Result<(), ClientError> {
        let mut outcomes = self.settle(queue, vec![lease], action).await?;
        match outcomes.pop() {
            Some(None) => Ok(()),
            Some(Some(error)) => Err(ClientError::Server(error)),
            None => Err(ClientError::Protocol("no outcome for the lease".into())),
        }
    }

    /// Moves up to `count_max` (all when `None`) dead letters of `queue`
    /// back into it; returns how many moved.
    pub async fn redrive(&self, queue: &str, count_max: Option<u64>) -> Result<u64, ClientError> {
        let request = Request::Redrive(Redrive {
            queue: queue.to_string(),
            count_max,
        });
        expect_reply!(self.request(request).await?, Reply::Redriven(moved) => moved)
    }
}
