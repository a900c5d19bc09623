//! One bus across processes (Linux): a process serves its bus under a name (`hub`), and other
//! processes of the same user attach to it (`peer`). The hub alone numbers messages, so `seq`
//! is one order for every process. Each attached process has one sealed memfd shared with the
//! hub and nobody else (`layout`), holding two byte rings (`ring`): its publishes,
//! acknowledgements, flushes and subscribes go up, deliveries and answers come down, in the
//! records of `wire`. A Unix socket in a private directory (`name`) carries the hand-shake and
//! the descriptors, and its hang-up (with a pidfd) tells either side that the other is gone.
//!
//! Flow control: the hub grants each peer credit - units of its `queue_capacity`, taken before
//! they are granted - and a peer publishes only with credit, so the hub never waits to take a
//! peer's message and its memory stays bounded. A delivery holds its message (its capacity and
//! its flush epoch) at the hub until the peer acknowledges it after the callback returned, in
//! the ring behind whatever the callback published, so flush waits across processes too.

pub mod hub;
mod layout;
pub mod name;
mod outbound;
pub mod peer;
mod ring;
mod spin;
mod wire;
