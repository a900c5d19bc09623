//! The publish path: validate and copy on the caller's thread, take capacity, then under the
//! bus lock number the message and queue it for every matching subscription - looking at queue
//! limits, policies and groups only when some live subscription has one - or hand it to the
//! request it answers.

use crate::bus::{closed_error, deadline, Core, Shared};
use crate::capacity::Room;
use crate::flush::Epoch;
use crate::message::Message;
use crate::request::{Claim, Waiter};
use crate::status::{Error, Status};
use crate::subscription::end::EndReason;
use crate::subscription::{Offered, Subscription};
use crate::topic::{self, Kind};
use crate::{clock, dispatch, fanout, validate};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a publish may wait for room, decided on the thread that publishes.
pub(crate) struct Wait {
    in_callback: bool,
    /// As `publish_timeout_ms`; 0 from a callback of the bus.
    timeout_ms: i32,
    until: Option<Instant>,
    /// The flush epoch of the message whose callback publishes.
    parent: Option<Arc<Epoch>>,
    /// In an attached process: the hub's token of the delivery whose callback publishes.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    parent_token: u64,
}

impl Wait {
    /// For a publish made now on this thread.
    pub(crate) fn here(shared: &Shared) -> Wait {
        let in_callback = dispatch::in_callback_of(shared.id);
        let timeout_ms = match in_callback {
            true => 0,
            false => shared.options.publish_timeout_ms,
        };
        Wait {
            in_callback,
            timeout_ms,
            until: match timeout_ms {
                ms if ms > 0 => deadline(Some(Duration::from_millis(ms as u64))),
                _ => None,
            },
            parent: match in_callback {
                true => dispatch::parent_epoch(shared.id),
                false => None,
            },
            parent_token: match in_callback {
                true => dispatch::parent_token(shared.id),
                false => 0,
            },
        }
    }

    /// For a message a hub takes from an attached process: it never waits (the process had
    /// credit for it), and belongs to the epoch of the delivery whose callback published it.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn from_peer(parent: Option<Arc<Epoch>>) -> Wait {
        Wait {
            in_callback: false,
            timeout_ms: 0,
            until: None,
            parent,
            parent_token: 0,
        }
    }

    /// Whether the publish fails at once rather than wait for room.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn never_waits(&self) -> bool {
        self.timeout_ms == 0
    }

    /// Until when it waits (`None`: no limit).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn until(&self) -> Option<Instant> {
        self.until
    }

    /// See `parent_token`.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn parent_token(&self) -> u64 {
        self.parent_token
    }

    fn full(&self, why: String) -> Error {
        let how = if self.in_callback {
            "; a callback publishing into its own bus never waits for room"
        } else if self.timeout_ms > 0 {
            " and publish_timeout_ms ran out"
        } else {
            ""
        };
        Error::new(Status::Full, format!("{why}{how}"))
    }
}

/// What a publish did with an accepted message.
pub(crate) struct Published {
    pub seq: u64,
    /// Whether anything took it: a subscription, or the request it answers.
    pub routed: bool,
}

impl Shared {
    pub(crate) fn publish(&self, topic: &str, json: &[u8]) -> Result<u64, Error> {
        let wait = Wait::here(self);
        let message = self.prepare(topic, json, "", &wait)?;
        self.accept(topic, message, &wait).map(|p| p.seq)
    }

    /// Validates and copies a message (with `reply`, its reply topic, or "") and takes its unit
    /// of capacity, waiting for room as `wait` says.
    pub(crate) fn prepare(
        &self,
        topic: &str,
        json: &[u8],
        reply: &str,
        wait: &Wait,
    ) -> Result<Arc<Message>, Error> {
        if self.tracker.is_closed() {
            return Err(closed_error("cannot publish"));
        }
        topic::check(topic, Kind::Topic)?;
        validate::check_size(json, self.options.max_message_bytes)?;
        // The copy comes before validation: its stores go to cache lines a dispatcher read
        // last, and while validation (which only reads) runs, they reach this core's cache,
        // instead of holding up the first locked instruction after them (the capacity or the
        // bus lock). A refused payload's copy is dropped.
        let message = self.spares.message(topic, json, reply);
        validate::check_payload(json, self.options.max_message_bytes, self.options.max_depth)?;
        // An attached bus whose hub is gone says so before it would wait for local room.
        #[cfg(target_os = "linux")]
        if let Some(link) = self.link() {
            link.check()?;
        }
        let room = match wait.timeout_ms {
            0 if self.tracker.try_reserve() => Room::Taken,
            0 => Room::Full,
            _ => self.tracker.reserve(wait.until),
        };
        match room {
            Room::Taken => Ok(message),
            Room::Full => Err(wait.full(format!(
                "the bus is full ({} messages held, queue_capacity {})",
                self.tracker.held(),
                self.options.queue_capacity
            ))),
            Room::Closed => Err(closed_error("cannot publish")),
        }
    }

    /// Numbers a prepared message on `topic` (its own) and queues it for every matching
    /// subscription, or hands it to the request it answers, waiting for a "block"
    /// subscription's room as `wait` says. On failure its capacity is given back.
    pub(crate) fn accept(
        &self,
        topic: &str,
        mut message: Arc<Message>,
        wait: &Wait,
    ) -> Result<Published, Error> {
        #[cfg(target_os = "linux")]
        if let Some(link) = self.link() {
            return link.publish(self, message, wait);
        }
        let parent = &wait.parent;
        let reply = topic.starts_with(crate::request::INBOX);
        let mut published_ns = clock::now_ns();
        loop {
            let mut core = self.core();
            if core.closed {
                drop(core);
                self.tracker.release();
                return Err(closed_error("cannot publish"));
            }
            if core.special == 0 {
                core.seq += 1;
                let seq = core.seq;
                let epoch = parent.clone().unwrap_or_else(|| core.epoch.clone());
                Message::stamp(&mut message, seq, published_ns, epoch);
                let answered = match reply {
                    true => self.claim(topic, &message),
                    false => None,
                };
                let routed = {
                    // The last match takes the message itself; earlier ones take clones.
                    let core = &mut *core;
                    let mut last: Option<&Arc<Subscription>> = None;
                    core.router.for_each_match(topic, |sub| {
                        if let Some(prev) = last.replace(sub) {
                            self.enqueue(prev, message.clone());
                        }
                    });
                    let routed = last.is_some() || answered.is_some();
                    match last {
                        Some(sub) => self.enqueue(sub, message),
                        None if !routed => core.unrouted += 1,
                        None => {}
                    }
                    routed
                };
                // Under the bus lock, so that a close (which takes it first) finds the answer
                // on its way: a woken caller, or a reply callback on the run queue.
                if let Some((waiter, m)) = answered {
                    self.answer(waiter, Ok(m));
                }
                drop(core);
                return Ok(Published { seq, routed });
            }
            let mut answered = None;
            let blocked = match self.route_limited(&mut core, topic, message, |m, seq, current| {
                let epoch = parent.clone().unwrap_or_else(|| current.clone());
                Message::stamp(m, seq, published_ns, epoch);
                if reply {
                    answered = self.claim(topic, m);
                }
                answered.is_some()
            }) {
                Ok((seq, routed, slow)) => {
                    if let Some((waiter, m)) = answered.take() {
                        self.answer(waiter, Ok(m)); // under the bus lock, as above
                    }
                    drop(core);
                    for sub in &slow {
                        self.after_end(sub);
                    }
                    return Ok(Published { seq, routed });
                }
                Err((m, blocked)) => {
                    message = m;
                    blocked
                }
            };
            drop(core);
            let waited = wait.timeout_ms != 0
                && self.tracker.wait_until(wait.until, || {
                    blocked.iter().any(|s| s.has_room() || s.is_ended()) || self.tracker.is_closed()
                });
            if !waited {
                self.tracker.release();
                let b = &blocked[0];
                let whose = match &b.options.group {
                    Some(g) => format!("every member of group \"{g}\" holds its queue_limit"),
                    None => format!(
                        "subscription {} (\"{}\") holds its queue_limit of {} messages",
                        b.id, b.pattern, b.options.queue_limit
                    ),
                };
                return Err(wait.full(format!("{whose} and its on_full is \"block\"")));
            }
            published_ns = clock::now_ns();
        }
    }

    /// Under the bus lock, for a message on an `_INBOX` topic: the request of this bus it is
    /// the first reply to, if any, with the message for it. A later reply is counted.
    fn claim(&self, topic: &str, message: &Arc<Message>) -> Option<(Waiter, Arc<Message>)> {
        match self.requests.claim(topic) {
            Claim::Ours(waiter) => Some((waiter, message.clone())),
            Claim::Late | Claim::NotOurs => None,
        }
    }

    /// Numbers and queues a message when some live subscription has a queue limit or a group:
    /// one member per group, then every target's room checked before anything is queued, so
    /// that a "block" subscription at its limit holds the message back for all (Err: the
    /// message back, and the subscriptions room in any of which lets it go on: the one, or
    /// every member of its group). Otherwise each target's policy
    /// applies; returns the `seq` and the subscriptions that must end as slow (already out of
    /// routing; `after_end` follows once the lock is let go).
    #[allow(clippy::type_complexity)]
    fn route_limited(
        &self,
        core: &mut Core,
        topic: &str,
        message: Arc<Message>,
        stamp: impl FnOnce(&mut Arc<Message>, u64, &Arc<Epoch>) -> bool,
    ) -> Result<(u64, bool, Vec<Arc<Subscription>>), (Arc<Message>, Vec<Arc<Subscription>>)> {
        let mut slow = Vec::new();
        let (seq, routed) = {
            let Core {
                router,
                turn,
                seq,
                unrouted,
                epoch,
                ..
            } = &mut *core;
            // A first walk looks for groups and for a "block" subscription at its limit; with
            // no group among the matches (the common case) a second walk queues, and nothing is
            // allocated.
            let (mut grouped, mut blocked) = (false, None);
            router.for_each_match(topic, |sub| {
                grouped |= sub.options.group.is_some();
                if blocked.is_none() && sub.blocks_now() {
                    blocked = Some(sub);
                }
            });
            let mut offer = |sub: &Arc<Subscription>, m: Arc<Message>| {
                let (schedule, dropped) = match sub.offer(m) {
                    Offered::Queued(schedule) => (schedule, false),
                    Offered::Replaced(schedule, oldest) => (schedule, oldest.is_some()),
                    Offered::Refused => (false, true),
                    Offered::End => {
                        // Ended at once, before a dispatcher takes another of its messages:
                        // what waits in its queue now is what gets discarded.
                        if sub.mark_ended(EndReason::Slow) {
                            slow.push(sub.clone());
                        }
                        (false, true)
                    }
                };
                if dropped {
                    self.dropped(sub, 1);
                }
                if schedule {
                    self.schedule(sub.clone());
                }
            };
            if !grouped {
                if let Some(b) = blocked {
                    return Err((message, vec![b.clone()]));
                }
                *seq += 1;
                let mut message = message;
                let answered = stamp(&mut message, *seq, epoch);
                // The last match takes the message itself; earlier ones take clones.
                let mut last: Option<&Arc<Subscription>> = None;
                router.for_each_match(topic, |sub| {
                    if let Some(prev) = last.replace(sub) {
                        offer(prev, message.clone());
                    }
                });
                let routed = last.is_some() || answered;
                match last {
                    Some(sub) => offer(sub, message),
                    None if !routed => *unrouted += 1,
                    None => {}
                }
                (*seq, routed)
            } else {
                let mut matches: Vec<&Arc<Subscription>> = Vec::new();
                router.for_each_match(topic, |sub| matches.push(sub));
                let mut targets = matches.clone();
                fanout::pick_group_members(&mut targets, turn);
                if let Some(blocked) = targets.iter().find(|s| s.blocks_now()) {
                    return Err((message, fanout::room_to_wait_for(&matches, blocked)));
                }
                *seq += 1;
                let mut message = Some(message);
                let answered = match message.as_mut() {
                    Some(m) => stamp(m, *seq, epoch),
                    None => false,
                };
                let routed = !targets.is_empty() || answered;
                if !routed {
                    *unrouted += 1;
                }
                let n = targets.len();
                for (i, sub) in targets.into_iter().enumerate() {
                    let m = match i + 1 == n {
                        true => message.take(),
                        false => message.clone(),
                    };
                    if let Some(m) = m {
                        offer(sub, m);
                    }
                }
                (*seq, routed)
            }
        };
        for sub in &slow {
            core.unroute(sub);
        }
        Ok((seq, routed, slow))
    }

    /// Queues a message for one subscription as its policy says (an attached process's link
    /// thread, with a delivery from the hub); ends it if it is slow and "end".
    #[cfg(target_os = "linux")]
    pub(crate) fn offer_one(&self, sub: &Arc<Subscription>, message: Arc<Message>) {
        if sub.options.is_plain() {
            return self.enqueue(sub, message);
        }
        let (schedule, dropped) = match sub.offer(message) {
            Offered::Queued(schedule) => (schedule, false),
            Offered::Replaced(schedule, oldest) => (schedule, oldest.is_some()),
            Offered::Refused => (false, true),
            Offered::End => {
                self.end(sub, EndReason::Slow);
                (false, true)
            }
        };
        if dropped {
            self.dropped(sub, 1);
        }
        if schedule {
            self.schedule(sub.clone());
        }
    }

    fn enqueue(&self, sub: &Arc<Subscription>, message: Arc<Message>) {
        if sub.push(message) {
            self.schedule(sub.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::bus::Bus;
    use crate::options::Options;
    use crate::publish::Wait;
    use crate::status::Status;
    use std::time::Duration;

    #[test]
    fn a_publisher_caught_between_its_room_and_the_bus_lock_does_not_fail_the_close() {
        // A publisher that took its unit of capacity before the close and gives it back when it
        // finds the bus closed held it for a while: the close once counted it as "1 pulled
        // messages not yet released" and failed with TIMEOUT (seen in CI, test_default_bus
        // under ASan, where such a publisher was preempted right there).
        let bus = Bus::new(Options::default()).unwrap();
        let s = &bus.shared;
        let wait = Wait::here(s);
        let message = s.prepare("nobody.listens", b"[1]", "", &wait).unwrap();
        assert_eq!(s.tracker.held(), 1);
        assert_eq!(bus.close(Some(Duration::from_millis(20))), Ok(()));
        let refused = s.accept("nobody.listens", message, &wait).err().unwrap();
        assert_eq!(refused.status, Status::Closed);
        assert_eq!((s.tracker.held(), bus.stats().published), (0, 0));
    }
}
