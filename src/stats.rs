//! The bus's counters as the stats report them, and their JSON form.

use crate::options::Options;
use crate::status::Status;

/// Rejection reasons as the stats name them.
pub(crate) const REJECT_REASONS: [(&str, Status); 6] = [
    ("json", Status::Json),
    ("utf8", Status::Utf8),
    ("topic", Status::Topic),
    ("too_large", Status::TooLarge),
    ("full", Status::Full),
    ("closed", Status::Closed),
];

/// A snapshot of a bus's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub published: u64,
    pub delivered: u64,
    pub unrouted: u64,
    pub dropped: u64,
    pub queued: u64,
    pub subscriptions: u64,
    pub callback_failures: u64,
    pub dispatcher_threads: u64,
    /// `publish_after` timers pending.
    pub timers: u64,
    /// Requests published (`request` and `request_async`), answered or not.
    pub requests: u64,
    /// Requests waiting for their first reply now.
    pub requests_waiting: u64,
    /// Requests that matched no subscription.
    pub no_responders: u64,
    /// Replies that came after their request's first reply, time-out or end.
    pub late_replies: u64,
    /// Refused publishes by reason: json, utf8, topic, too_large, full, closed.
    pub rejected: [(&'static str, u64); 6],
    /// A served bus: processes attached now, those that exited or disconnected, and those the
    /// hub dropped (a protocol violation or a stall).
    pub peers: Option<[u64; 3]>,
}

impl Stats {
    /// The statistics of a bus that was never opened (used for the idle default bus).
    pub fn empty(options: &Options) -> Stats {
        let mut rejected = [("", 0); 6];
        for (i, (name, _)) in REJECT_REASONS.iter().enumerate() {
            rejected[i] = (name, 0);
        }
        Stats {
            dispatcher_threads: options.resolved_threads() as u64,
            rejected,
            ..Stats::default()
        }
    }

    /// As a JSON object.
    pub fn to_json(&self) -> String {
        let rejected: Vec<String> = self
            .rejected
            .iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect();
        let peers = match self.peers {
            Some([now, gone, dropped]) => {
                format!(",\"peers\":{now},\"peers_gone\":{gone},\"peers_dropped\":{dropped}")
            }
            None => String::new(),
        };
        format!(
            "{{\"published\":{},\"delivered\":{},\"unrouted\":{},\"dropped\":{},\"queued\":{},\"subscriptions\":{},\"callback_failures\":{},\"dispatcher_threads\":{},\"timers\":{},\"requests\":{},\"requests_waiting\":{},\"no_responders\":{},\"late_replies\":{}{},\"rejected\":{{{}}}}}",
            self.published,
            self.delivered,
            self.unrouted,
            self.dropped,
            self.queued,
            self.subscriptions,
            self.callback_failures,
            self.dispatcher_threads,
            self.timers,
            self.requests,
            self.requests_waiting,
            self.no_responders,
            self.late_replies,
            peers,
            rejected.join(",")
        )
    }
}
