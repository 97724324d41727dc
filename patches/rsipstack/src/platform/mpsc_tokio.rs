//! Channels of the tokio backend: tokio's bounded channel, and an unbounded channel that holds
//! only the messages in flight.
//!
//! tokio's unbounded channel allocates its queue in blocks of 32 slots, the first one when the
//! channel is made. Every transaction and every dialog has one (`TransactionEvent` is about
//! 340 bytes, `DialogState` about 300), so each cost 10 kB while it lived, most of a call's
//! memory in a server holding thousands of calls. This one is futures-channel's unbounded
//! queue (one node per message in flight) behind tokio's API and error types, so the code
//! reads the same on both backends.

use core::task::{Context, Poll};
use futures::Stream;

pub use tokio::sync::mpsc::{channel, error, Receiver, Sender};

use error::{SendError, TryRecvError};

/// The sending half of [`unbounded_channel`]; cheap to clone.
pub struct UnboundedSender<T>(futures_channel::mpsc::UnboundedSender<T>);

/// The receiving half of [`unbounded_channel`].
pub struct UnboundedReceiver<T>(futures_channel::mpsc::UnboundedReceiver<T>);

/// A channel without a bound: [`UnboundedSender::send`] never waits.
pub fn unbounded_channel<T>() -> (UnboundedSender<T>, UnboundedReceiver<T>) {
    let (tx, rx) = futures_channel::mpsc::unbounded();
    (UnboundedSender(tx), UnboundedReceiver(rx))
}

impl<T> Clone for UnboundedSender<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> core::fmt::Debug for UnboundedSender<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("UnboundedSender")
            .field("closed", &self.0.is_closed())
            .finish()
    }
}

impl<T> core::fmt::Debug for UnboundedReceiver<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("UnboundedReceiver").finish_non_exhaustive()
    }
}

impl<T> UnboundedSender<T> {
    /// Queues `value`; gives it back when the receiver is gone or closed.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.0
            .unbounded_send(value)
            .map_err(|e| SendError(e.into_inner()))
    }

    /// Whether the receiver is gone or closed.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    /// Whether both senders feed the same receiver.
    pub fn same_channel(&self, other: &Self) -> bool {
        self.0.same_receiver(&other.0)
    }
}

impl<T> UnboundedReceiver<T> {
    /// The next message; `None` once every sender is gone (or the channel is closed) and the
    /// queue is empty. Cancel-safe.
    pub async fn recv(&mut self) -> Option<T> {
        self.0.recv().await.ok()
    }

    /// The next message if one is queued.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        match self.0.try_recv() {
            Ok(value) => Ok(value),
            Err(futures_channel::mpsc::TryRecvError::Empty) => Err(TryRecvError::Empty),
            Err(futures_channel::mpsc::TryRecvError::Closed) => Err(TryRecvError::Disconnected),
        }
    }

    /// Polls for the next message (as [`UnboundedReceiver::recv`]).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        Stream::poll_next(core::pin::Pin::new(&mut self.0), cx)
    }

    /// Refuses further messages; those queued can still be received.
    pub fn close(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_arrive_in_order_and_the_end_is_seen() {
        let (tx, mut rx) = unbounded_channel();
        let tx2 = tx.clone();
        assert!(tx.same_channel(&tx2));
        tx.send(1).unwrap();
        tx2.send(2).unwrap();
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        drop((tx, tx2));
        assert_eq!(rx.recv().await, None);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    }

    #[tokio::test]
    async fn a_closed_receiver_gives_the_message_back() {
        let (tx, mut rx) = unbounded_channel();
        tx.send(1).unwrap();
        rx.close();
        assert!(tx.is_closed());
        assert_eq!(tx.send(2).unwrap_err().0, 2);
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv().await, None);
    }
}
