//! Flow control: the append messages in flight to one follower.

use std::collections::VecDeque;

/// One append message in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Inflight {
    /// The index of the last entry the message carries.
    index: u64,
    /// The total payload size of the entries it carries.
    bytes: u64,
}

/// A sliding window over the append messages sent to a follower but not acknowledged yet.
///
/// The window is full when it holds `max_inflight_msgs` messages, or when `max_inflight_bytes`
/// is non-zero and the messages carry at least that many bytes. Messages are added in increasing
/// index order and freed, oldest first, when the follower acknowledges an index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inflights {
    window: VecDeque<Inflight>,
    bytes: u64,
    max_inflight_msgs: usize,
    max_inflight_bytes: u64,
}

impl Inflights {
    /// An empty window for at most `max_inflight_msgs` messages and (unless 0, meaning no limit)
    /// `max_inflight_bytes` bytes.
    pub fn new(max_inflight_msgs: usize, max_inflight_bytes: u64) -> Self {
        Inflights {
            window: VecDeque::new(),
            bytes: 0,
            max_inflight_msgs,
            max_inflight_bytes,
        }
    }

    /// Records a message whose last entry is `index`, carrying `bytes` bytes of entries.
    ///
    /// # Panics
    ///
    /// If the window is [`full`](Self::full): the caller must check flow control first.
    /// Messages must be added in increasing index order for [`free_le`](Self::free_le) to free
    /// the right ones.
    pub fn add(&mut self, index: u64, bytes: u64) {
        if self.full() {
            panic!("cannot add into a full inflights window (flow control was not checked)");
        }
        self.window.push_back(Inflight { index, bytes });
        self.bytes = self.bytes.saturating_add(bytes);
    }

    /// Frees every message whose last index is at most `to` (the follower acknowledged `to`).
    pub fn free_le(&mut self, to: u64) {
        while let Some(first) = self.window.front() {
            if first.index > to {
                break;
            }
            self.bytes -= first.bytes;
            self.window.pop_front();
        }
    }

    /// Whether no more messages may be sent.
    pub fn full(&self) -> bool {
        self.window.len() >= self.max_inflight_msgs
            || (self.max_inflight_bytes != 0 && self.bytes >= self.max_inflight_bytes)
    }

    /// The number of messages in flight.
    pub fn count(&self) -> usize {
        self.window.len()
    }

    /// The number of bytes in flight.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The message-count limit.
    pub fn max_inflight_msgs(&self) -> usize {
        self.max_inflight_msgs
    }

    /// The byte limit (0: none).
    pub fn max_inflight_bytes(&self) -> u64 {
        self.max_inflight_bytes
    }

    /// Frees every message.
    pub fn reset(&mut self) {
        self.window.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_up_to_the_message_limit() {
        let mut inf = Inflights::new(10, 0);
        for i in 0..10 {
            assert!(!inf.full());
            inf.add(i, 100);
        }
        assert!(inf.full());
        assert_eq!(inf.count(), 10);
        assert_eq!(inf.bytes(), 1000);
    }

    #[test]
    fn free_le_frees_acknowledged_messages_in_order() {
        let mut inf = Inflights::new(10, 0);
        for i in 0..10 {
            inf.add(i, 1);
        }
        inf.free_le(0);
        assert_eq!(inf.count(), 9);
        inf.free_le(4);
        assert_eq!(inf.count(), 5);
        assert_eq!(inf.bytes(), 5);
        // An older acknowledgement frees nothing more.
        inf.free_le(2);
        assert_eq!(inf.count(), 5);
        // The window slides: new messages can be added.
        for i in 10..15 {
            inf.add(i, 1);
        }
        assert!(inf.full());
        inf.free_le(14);
        assert_eq!(inf.count(), 0);
        assert_eq!(inf.bytes(), 0);
        assert!(!inf.full());
    }

    #[test]
    fn byte_limit_fills_the_window_early() {
        let mut inf = Inflights::new(10, 1000);
        inf.add(1, 400);
        inf.add(2, 500);
        assert!(!inf.full());
        inf.add(3, 100);
        assert!(inf.full(), "1000 bytes in flight reach the 1000 byte limit");
        inf.free_le(1);
        assert!(!inf.full());
        // A single message larger than the limit is allowed when there is room.
        inf.add(4, 5000);
        assert!(inf.full());
        assert_eq!(inf.count(), 3);
    }

    #[test]
    fn reset_empties_the_window() {
        let mut inf = Inflights::new(2, 0);
        inf.add(1, 1);
        inf.add(2, 1);
        inf.reset();
        assert_eq!(inf.count(), 0);
        assert_eq!(inf.bytes(), 0);
        assert!(!inf.full());
    }

    #[test]
    #[should_panic(expected = "cannot add into a full inflights window")]
    fn adding_to_a_full_window_is_a_bug() {
        let mut inf = Inflights::new(1, 0);
        inf.add(1, 0);
        inf.add(2, 0);
    }
}
