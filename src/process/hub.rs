//! The serving side of a bus shared across processes: the name it holds, the thread that
//! accepts attaching processes and reads what each one writes, and what the hub keeps per peer
//! (its rings, its credit, its subscriptions, the deliveries it has not yet acknowledged).

use super::layout::{self, Layout};
use super::name::Name;
use super::outbound::{Outbound, PeerSubscription};
use super::ring::{Reader, Violation, Writer};
use super::spin::Spin;
use super::wire::{self, Down, Up, Welcome};
use crate::bus::{Bus, Shared};
use crate::message::Message;
use crate::options::{ServeOptions, SubscribeOptions};
use crate::publish::Wait;
use crate::status::{Error, Status};
use crate::subscription::end::EndReason;
use crate::subscription::Consumer;
use crate::sys::ipc::{self, Credentials, EventFd, Listener, PidFd, SeqPacket};
use crate::sys::shm::SharedMap;
use crate::sys::thread::{self, Thread};
use crate::topic::{self, Kind};
use crate::validate;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The peer's id of the subscription that takes its request replies (`peer::INBOX_ID`).
const INBOX: i64 = 0;
/// A hello must come this soon after the connection.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the ring of a process that exited (or was dropped for a stall) is still read.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long it is read at least: a publish that passed its process's check just before the
/// hub let it go lands within this.
const GRACE: Duration = Duration::from_millis(50);
/// Records waiting for room in a peer's ring beyond which the hub stops reading its ring.
const MAX_WAITING: usize = 4096;
/// Flushes of one peer waiting at once beyond which the hub stops reading its ring.
const MAX_FLUSHES: usize = 64;
/// Records read from one peer before the hub looks at the others.
const BATCH: usize = 256;
/// Subscriptions one attached process may hold at the hub.
const MAX_PEER_SUBSCRIPTIONS: usize = 65536;

/// A bus being served under a name. Dropping it does not stop it: `stop` does.
pub struct Hub {
    pub name: Name,
    stop: AtomicBool,
    wake: EventFd,
    thread: Mutex<Option<Thread>>,
    /// Kept by the bus after the hub stops, for its stats.
    pub counts: Arc<HubCounts>,
}

/// The hub's figures for the stats.
#[derive(Default)]
pub struct HubCounts {
    /// Attached now.
    pub peers: AtomicU64,
    /// Peers that exited or disconnected.
    pub gone: AtomicU64,
    /// Peers the hub dropped: a protocol violation or a stall.
    pub dropped: AtomicU64,
    /// Units of capacity granted to peers and not yet used: held, but by no message.
    pub credit: AtomicUsize,
    /// Live subscriptions the hub holds for peers' request replies (one per peer): not
    /// counted in the stats' `subscriptions`.
    pub inboxes: AtomicU64,
}

impl Hub {
    /// Serves `bus` under `name`: takes the name, binds its socket and starts the hub thread.
    pub fn serve(bus: &Bus, name: &str, options: ServeOptions) -> Result<Arc<Hub>, Error> {
        let name = Name::take(name)?;
        let listener = Listener::bind(&name.socket).map_err(|e| {
            Error::new(
                Status::Internal,
                format!("cannot listen on {}: {e}", name.socket.display()),
            )
        })?;
        let internal = |what: &str, e: std::io::Error| {
            Error::new(Status::Internal, format!("cannot serve: {what}: {e}"))
        };
        let epoll = ipc::Epoll::new().map_err(|e| internal("epoll", e))?;
        let wake = EventFd::new().map_err(|e| internal("eventfd", e))?;
        epoll
            .add(listener.fd(), LISTENER)
            .and_then(|_| epoll.add(wake.fd(), WAKE))
            .map_err(|e| internal("epoll", e))?;
        let hub = Arc::new(Hub {
            name,
            stop: AtomicBool::new(false),
            wake,
            thread: Mutex::new(None),
            counts: Arc::default(),
        });
        let shared = bus.shared.clone();
        let window = (shared.options.queue_capacity / (4 * options.max_peers)).clamp(1, 1024);
        let state = HubThread {
            shared,
            hub: hub.clone(),
            options,
            window,
            listener,
            epoll,
            peers: BTreeMap::new(),
            next_peer: 1,
            flushes: VecDeque::new(),
            buf: Vec::new(),
            me: ipc::my_credentials(),
        };
        let started = thread::spawn("jsonbus-hub", Box::new(move || state.run()))
            .map_err(|e| internal("the hub thread could not start", e))?;
        *hub.thread() = Some(started);
        Ok(hub)
    }

    fn thread(&self) -> MutexGuard<'_, Option<Thread>> {
        self.thread.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Disconnects every peer, stops the hub thread and gives the name back.
    pub fn stop(&self) {
        self.stop.store(true, SeqCst);
        self.wake.signal();
        if let Some(t) = self.thread().take() {
            t.join();
        }
        self.name.release();
    }
}

const LISTENER: u64 = 0;
const WAKE: u64 = 1;
/// Peer n's descriptors: its socket, its pidfd, its to-hub eventfd.
fn token(peer: u64, which: u64) -> u64 {
    peer * 4 + which
}

/// What the hub thread owns.
struct HubThread {
    shared: Arc<Shared>,
    hub: Arc<Hub>,
    options: ServeOptions,
    /// Units of credit a peer may hold.
    window: usize,
    listener: Listener,
    epoll: ipc::Epoll,
    peers: BTreeMap<u64, Peer>,
    next_peer: u64,
    /// Flushes asked for by peers: the epoch that must be done, the peer, its token.
    flushes: VecDeque<(u64, u64, u64)>,
    buf: Vec<u8>,
    me: Credentials,
}

struct Peer {
    socket: SeqPacket,
    /// Why it is refused: answered once its hello has come (closing a socket with the hello
    /// unread would reset the connection, and the answer with it).
    refusal: Option<(Status, String)>,
    credentials: Credentials,
    pidfd: Option<PidFd>,
    since: Instant,
    live: Option<Live>,
}

/// A peer past its hand-shake.
struct Live {
    layout: Layout,
    to_hub: EventFd,
    reader: Reader,
    out: Arc<Outbound>,
    /// Credit given in all, and used by publishes read.
    granted: u64,
    used: u64,
    /// A publish that must wait (a "block" subscription at its limit), as read, and whether
    /// its unit of capacity must be taken again.
    parked: Option<(Vec<u8>, bool)>,
    /// The peer's subscription ids and the hub's.
    subs: HashMap<i64, i64>,
    /// Since when deliveries have waited for room with no progress, and the progress then.
    stalled: Option<(Instant, u64)>,
    /// Its process has exited (or it was dropped for a stall): only what it left in its ring
    /// is still read, for `DRAIN_TIMEOUT` at most.
    exited: bool,
    /// Counted in the stats as gone or dropped (no longer in `peers`).
    counted: bool,
    exited_at: Option<Instant>,
    /// Why the hub dropped it, if it did.
    dropped: Option<String>,
    /// Its flushes waiting in `HubThread::flushes`.
    flushes: usize,
    /// Credit used when the hub last gave it more: credit goes to peers that publish.
    used_at_top_up: u64,
}

/// Why a peer is let go.
enum Gone {
    Exited,
    Dropped(String),
    Stopping(String),
}

impl HubThread {
    fn run(mut self) {
        let mut spin = Spin::new(Duration::from_micros(
            self.shared.options.dispatcher_spin_us as u64,
        ));
        let mut events = Vec::new();
        // Whether the last look found work: work again right after it is a burst.
        let mut worked = false;
        while !self.hub.stop.load(SeqCst) {
            if self.service_all() {
                if worked {
                    spin.busy();
                }
                worked = true;
                continue;
            }
            worked = false;
            if spin.wait(|| self.any_data()) {
                continue;
            }
            self.set_sleeping(true);
            if self.any_data() {
                self.set_sleeping(false);
                continue;
            }
            let timeout = match self.has_timed_work() {
                true => 1,
                false => 20,
            };
            let _ = self.epoll.wait(&mut events, timeout);
            self.set_sleeping(false);
            spin.slept();
            for e in events.drain(..) {
                self.event(e);
            }
        }
        let peers: Vec<u64> = self.peers.keys().copied().collect();
        for p in peers {
            self.let_go(
                p,
                Gone::Stopping("the hub stopped serving (its bus was closed)".into()),
            );
        }
    }

    fn set_sleeping(&self, sleeping: bool) {
        for p in self.peers.values() {
            if let Some(l) = &p.live {
                l.reader.set_sleeping(sleeping);
            }
        }
    }

    fn any_data(&self) -> bool {
        self.peers
            .values()
            .filter_map(|p| p.live.as_ref())
            .any(|l| l.reader.has_data())
    }

    /// Whether something is waited for that no descriptor announces.
    fn has_timed_work(&self) -> bool {
        !self.flushes.is_empty()
            || self.peers.values().any(|p| {
                p.live.is_none()
                    || p.live.as_ref().is_some_and(|l| {
                        l.exited
                            || l.parked.is_some()
                            || l.layout.peer_wants_credit()
                            || !l.out.state().waiting.is_empty()
                    })
            })
    }

    fn event(&mut self, e: ipc::Event) {
        match e.token {
            LISTENER => self.accept_all(),
            WAKE => {
                self.hub.wake.drain();
            }
            t => {
                let (peer, which) = (t / 4, t % 4);
                let Some(p) = self.peers.get(&peer) else {
                    return;
                };
                match which {
                    0 if p.live.is_none() => self.handshake(peer),
                    0 => {
                        // After the hand-shake only the end of the connection comes here.
                        let mut buf = [0u8; 64];
                        match p.socket.recv(&mut buf, 0) {
                            Ok(None) => {}
                            Ok(Some(_)) => self.let_go(
                                peer,
                                Gone::Dropped("a control message after the hand-shake".into()),
                            ),
                            Err(_) => self.exited(peer),
                        }
                    }
                    1 => self.exited(peer),
                    _ => {
                        if let Some(l) = &p.live {
                            l.to_hub.drain();
                        }
                    }
                }
            }
        }
    }

    fn accept_all(&mut self) {
        while let Ok(Some(socket)) = self.listener.accept() {
            let credentials = match socket.peer_credentials() {
                Ok(c) => c,
                Err(_) => continue,
            };
            let trusted = credentials.uid == self.me.uid
                || (self.options.allow_group && credentials.gid == self.me.gid);
            // A peer that has gone no longer counts, though its ring is still being read.
            let admitted = self
                .peers
                .values()
                .filter(|p| p.refusal.is_none() && !p.live.as_ref().is_some_and(|l| l.exited))
                .count();
            let refusal = if !trusted {
                Some((
                    Status::Permission,
                    format!(
                        "the process {} of user {} (group {}) may not attach: only user {}{} may",
                        credentials.pid,
                        credentials.uid,
                        credentials.gid,
                        self.me.uid,
                        match self.options.allow_group {
                            true => format!(" or group {}", self.me.gid),
                            false => String::new(),
                        }
                    ),
                ))
            } else if admitted >= self.options.max_peers {
                Some((
                    Status::Limit,
                    format!(
                        "the hub serving \"{}\" has max_peers {} processes attached",
                        self.hub.name.name, self.options.max_peers
                    ),
                ))
            } else {
                None
            };
            let n = self.next_peer;
            self.next_peer += 1;
            if self.epoll.add(socket.fd(), token(n, 0)).is_err() {
                continue;
            }
            self.peers.insert(
                n,
                Peer {
                    socket,
                    refusal,
                    credentials,
                    pidfd: None,
                    since: Instant::now(),
                    live: None,
                },
            );
        }
    }

    /// Reads a peer's hello and answers with its shared memory, or refuses it.
    fn handshake(&mut self, n: u64) {
        let Some(p) = self.peers.get_mut(&n) else {
            return;
        };
        let mut buf = [0u8; 256];
        let version = match p.socket.recv(&mut buf, 0) {
            Ok(Some((len, _fds))) => wire::read_hello(&buf[..len]),
            Ok(None) => return,
            Err(_) => return self.let_go(n, Gone::Exited),
        };
        let mut out = Vec::new();
        if let Some((status, message)) = p.refusal.take() {
            refusal(status, message).encode(&mut out);
            let _ = p.socket.send(&out, &[], 100);
            return self.let_go(n, Gone::Dropped("refused".into()));
        }
        match version {
            Some(wire::VERSION) => {}
            v => {
                let message = match v {
                    Some(v) => format!(
                        "the attaching process speaks protocol version {v}; this hub speaks {}",
                        wire::VERSION
                    ),
                    None => "the attaching process did not send a jsonbus hello".to_string(),
                };
                refusal(Status::Peer, message).encode(&mut out);
                let _ = p.socket.send(&out, &[], 100);
                return self.let_go(n, Gone::Dropped("no valid hello".into()));
            }
        }
        let ring = self.options.peer_ring_bytes;
        let made = (|| -> std::io::Result<(Live, EventFd, SharedMap)> {
            let map = SharedMap::create(
                &format!("jsonbus-{}", self.hub.name.name),
                layout::size(ring),
            )?;
            layout::init(&map, ring);
            let map = Arc::new(map);
            let layout = Layout::new(map.clone(), ring);
            let to_hub = EventFd::new()?;
            let to_peer = EventFd::new()?;
            let to_peer_copy = EventFd::from_fd(to_peer.fd().try_clone_to_owned()?)?;
            let memfd = SharedMap::from_fd(map.fd().try_clone_to_owned()?, layout::size(ring))?;
            let out = Arc::new(Outbound::new(
                Writer::new(map.clone(), layout::down(ring)),
                to_peer,
            ));
            let reader = Reader::new(
                map.clone(),
                layout::up(ring),
                self.shared.options.max_message_bytes + 1024,
            );
            Ok((
                Live {
                    layout,
                    to_hub,
                    reader,
                    out,
                    granted: 0,
                    used: 0,
                    parked: None,
                    subs: HashMap::new(),
                    stalled: None,
                    exited: false,
                    counted: false,
                    exited_at: None,
                    dropped: None,
                    flushes: 0,
                    used_at_top_up: u64::MAX,
                },
                to_peer_copy,
                memfd,
            ))
        })();
        let (live, to_peer, memfd) = match made {
            Ok(x) => x,
            Err(e) => {
                refusal(
                    Status::Internal,
                    format!("the hub could not set up shared memory: {e}"),
                )
                .encode(&mut out);
                let _ = p.socket.send(&out, &[], 100);
                return self.let_go(n, Gone::Dropped("no shared memory".into()));
            }
        };
        Welcome {
            version: wire::VERSION,
            status: 0,
            ring_bytes: ring as u64,
            max_message_bytes: self.shared.options.max_message_bytes as u64,
            max_depth: self.shared.options.max_depth as u32,
            peer: n,
            message: String::new(),
        }
        .encode(&mut out);
        let sent = p
            .socket
            .send(&out, &[memfd.fd(), live.to_hub.fd(), to_peer.fd()], 100);
        drop((memfd, to_peer));
        if sent.is_err() {
            return self.let_go(n, Gone::Exited);
        }
        p.pidfd = PidFd::open(p.credentials.pid).ok();
        if let Some(pidfd) = &p.pidfd {
            let _ = self.epoll.add(pidfd.fd(), token(n, 1));
        }
        let _ = self.epoll.add(live.to_hub.fd(), token(n, 2));
        p.live = Some(live);
        self.hub.counts.peers.fetch_add(1, SeqCst);
    }

    /// Services every peer once; whether anything happened.
    fn service_all(&mut self) -> bool {
        let mut busy = false;
        let ns: Vec<u64> = self.peers.keys().copied().collect();
        for n in ns {
            match self.service(n) {
                Ok(b) => busy |= b,
                Err(gone) => self.let_go(n, gone),
            }
        }
        busy | self.finish_flushes()
    }

    fn service(&mut self, n: u64) -> Result<bool, Gone> {
        let Some(mut p) = self.peers.remove(&n) else {
            return Ok(false);
        };
        let result = self.service_peer(n, &mut p);
        self.peers.insert(n, p);
        result
    }

    fn service_peer(&mut self, n: u64, p: &mut Peer) -> Result<bool, Gone> {
        let Some(live) = p.live.as_mut() else {
            return match p.since.elapsed() > HANDSHAKE_TIMEOUT {
                true => Err(Gone::Dropped("no hello within 1 s".into())),
                false => Ok(false),
            };
        };
        let since_exit = live.exited_at.map_or(Duration::ZERO, |t| t.elapsed());
        // A process that exited writes nothing more: it goes once its ring is read. One the
        // hub dropped may still be finishing a publish it began: its ring is read a while.
        let grace = if live.dropped.is_some() {
            GRACE
        } else {
            Duration::ZERO
        };
        if live.exited && live.parked.is_none() && !live.reader.has_data() && since_exit >= grace
            || since_exit > DRAIN_TIMEOUT
        {
            return Err(Gone::Exited);
        }
        let mut busy = false;
        let mut buf = std::mem::take(&mut self.buf);
        // Back-pressure: a peer that does not read what the hub answers, or keeps asking for
        // flushes that cannot finish yet, is not read either (the hub's memory stays bounded).
        let answers_waiting = live.out.state().waiting.len();
        let reading = answers_waiting < MAX_WAITING && live.flushes < MAX_FLUSHES;
        for _ in 0..if reading { BATCH } else { 0 } {
            if let Some((record, needs_unit)) = live.parked.take() {
                if needs_unit {
                    if !self.shared.tracker.try_reserve() {
                        live.parked = Some((record, true));
                        break;
                    }
                    self.hub.counts.credit.fetch_add(1, SeqCst);
                }
                self.record(n, live, &record)?;
                if live.parked.is_some() {
                    break;
                }
                busy = true;
                continue;
            }
            match live.reader.next(&mut buf) {
                Ok(true) => {
                    busy = true;
                    self.record(n, live, &buf)?;
                    if live.parked.is_some() {
                        break;
                    }
                }
                Ok(false) => break,
                Err(Violation(v)) => return Err(Gone::Dropped(v)),
            }
        }
        self.buf = buf;
        if busy && live.reader.writer_waiting() {
            live.out.to_peer.signal();
        }
        busy |= live.out.drain().map_err(Gone::Dropped)?;
        self.top_up(live);
        // A peer that takes no deliveries - its ring stays full, or a delivery stays unfinished
        // there - is dropped after peer_stall_timeout_ms.
        let (waiting, progress, oldest) = {
            let s = live.out.state();
            let oldest = s.unacked.first_key_value().map(|(_, (_, at))| *at);
            (!s.waiting.is_empty(), s.writer.progress(), oldest)
        };
        let limit = self.options.peer_stall_timeout_ms;
        let late =
            oldest.filter(|at| limit >= 0 && at.elapsed() >= Duration::from_millis(limit as u64));
        if let (Some(at), None) = (late, live.stalled) {
            live.stalled = Some((at, progress));
        }
        live.stalled = match (waiting || late.is_some(), live.stalled) {
            (false, _) => None,
            (true, Some((since, at))) if at == progress || late.is_some() => {
                if limit >= 0 && since.elapsed() >= Duration::from_millis(limit as u64) {
                    // Dropped, but what it published is still taken, as from a process that
                    // exited.
                    let why = format!(
                        "it took no deliveries, or finished none, for peer_stall_timeout_ms ({limit} ms)"
                    );
                    let mut buf = Vec::new();
                    refusal(Status::Disconnected, why.clone()).encode(&mut buf);
                    let _ = p.socket.send(&buf, &[], 0);
                    p.socket.shutdown();
                    let _ = self.epoll.remove(p.socket.fd());
                    if let Some(pidfd) = &p.pidfd {
                        let _ = self.epoll.remove(pidfd.fd());
                    }
                    live.exited = true;
                    live.exited_at = Some(Instant::now());
                    live.dropped = Some(why);
                    live.stalled = None;
                    Self::release(&self.shared, &self.hub, live, false);
                    Self::count_gone(&self.hub, live, true);
                    self.flushes.retain(|f| f.1 != n);
                    return Ok(busy);
                }
                Some((since, at))
            }
            (true, _) => Some((Instant::now(), progress)),
        };
        Ok(busy)
    }

    /// Gives the peer credit up to the window, as the bus has room.
    fn top_up(&self, live: &mut Live) {
        if live.exited {
            return;
        }
        // Only to a peer that has published since, or asks: an idle one keeps what it has.
        if live.used == live.used_at_top_up && !live.layout.peer_wants_credit() {
            return;
        }
        live.used_at_top_up = live.used;
        // The hub keeps at least half its capacity for itself and the messages in flight.
        let cap = (self.shared.options.queue_capacity / 2).max(1);
        let before = live.granted;
        while live.granted - live.used < self.window as u64
            && self.hub.counts.credit.load(SeqCst) + ((live.granted - before) as usize) < cap
            && self.shared.tracker.try_reserve()
        {
            live.granted += 1;
        }
        if live.granted != before {
            self.hub
                .counts
                .credit
                .fetch_add((live.granted - before) as usize, SeqCst);
            live.layout.grant(live.granted);
            if live.layout.peer_wants_credit() {
                live.out.to_peer.signal();
            }
        }
    }

    /// One record from a peer.
    fn record(&mut self, n: u64, live: &mut Live, record: &[u8]) -> Result<(), Gone> {
        let violation = |what: String| Err(Gone::Dropped(what));
        let Some(up) = Up::decode(record) else {
            return violation(format!(
                "a record of {} bytes that is none the protocol knows",
                record.len()
            ));
        };
        match up {
            Up::Publish {
                parent,
                topic,
                reply,
                json,
            } => {
                if live.used >= live.granted {
                    return violation("a publish beyond the credit it was given".into());
                }
                if let Err(e) = topic::check(topic, Kind::Topic)
                    .and_then(|_| match reply {
                        "" => Ok(()),
                        r => topic::check(r, Kind::Topic),
                    })
                    .and_then(|_| {
                        validate::check_payload(
                            json,
                            self.shared.options.max_message_bytes,
                            self.shared.options.max_depth,
                        )
                    })
                {
                    return violation(format!(
                        "a publish its own process should have refused: {}",
                        e.message
                    ));
                }
                let parent_epoch = match parent {
                    0 => None,
                    t => live
                        .out
                        .state()
                        .unacked
                        .get(&t)
                        .and_then(|(m, _)| m.epoch().cloned()),
                };
                let message = self.shared.spares.message(topic, json, reply);
                let wait = Wait::from_peer(parent_epoch);
                match self.shared.accept(topic, message, &wait) {
                    Ok(published) => {
                        live.used += 1;
                        self.hub.counts.credit.fetch_sub(1, SeqCst);
                        if !reply.is_empty() {
                            let mut body = Vec::new();
                            Down::Routed {
                                reply,
                                routed: published.routed,
                            }
                            .encode(&mut body);
                            let mut s = live.out.state();
                            live.out.send(&mut s, body);
                        }
                    }
                    Err(e) if e.status == Status::Full => {
                        // A "block" subscription at its limit: the unit went back; try again.
                        self.hub.counts.credit.fetch_sub(1, SeqCst);
                        live.parked = Some((record.to_vec(), true));
                    }
                    Err(_) => {
                        // Closing: the message is not taken (counted as dropped), and the peer
                        // is let go soon.
                        live.used += 1;
                        self.hub.counts.credit.fetch_sub(1, SeqCst);
                        self.shared.count_dropped_delivery();
                    }
                }
            }
            Up::Ack { token } => {
                let m = live.out.state().unacked.remove(&token);
                match m {
                    Some((m, _)) => {
                        live.out.unacked.fetch_sub(1, SeqCst);
                        self.shared.spares.recycle(m)
                    }
                    // Released when its process exited.
                    None if live.exited => {}
                    None => {
                        return violation(format!(
                            "an acknowledgement of delivery {token}, which it does not hold"
                        ))
                    }
                }
            }
            Up::Flush { .. } | Up::Subscribe { .. } | Up::Unsubscribe { .. } if live.exited => {}
            Up::Flush { token } => {
                let gen = self.shared.close_epoch();
                self.flushes.push_back((gen, n, token));
                live.flushes += 1;
            }
            Up::Subscribe {
                request,
                id,
                pattern,
                group,
            } => {
                let answer = self.subscribe(live, id, pattern, group);
                let (status, message) = match &answer {
                    Ok(()) => (0, ""),
                    Err(e) => (e.status.code(), e.message.as_str()),
                };
                let mut body = Vec::new();
                Down::Subscribed {
                    request,
                    status,
                    message,
                }
                .encode(&mut body);
                let mut s = live.out.state();
                live.out.send(&mut s, body);
            }
            Up::Unsubscribe { id } => {
                if let Some(hub_id) = live.subs.remove(&id) {
                    if id == INBOX {
                        self.hub.counts.inboxes.fetch_sub(1, SeqCst);
                    }
                    let _ = Bus {
                        shared: self.shared.clone(),
                    }
                    .unsubscribe(hub_id);
                }
            }
        }
        Ok(())
    }

    /// Subscribes at the hub for the peer's subscription `id`: its deliveries go to the peer.
    fn subscribe(&self, live: &mut Live, id: i64, pattern: &str, group: &str) -> Result<(), Error> {
        if live.subs.contains_key(&id) {
            return Err(Error::new(
                Status::Internal,
                format!("subscription {id} of this process is already known to the hub"),
            ));
        }
        if live.subs.len() >= MAX_PEER_SUBSCRIPTIONS {
            return Err(Error::new(
                Status::Limit,
                format!(
                    "a process may hold at most {MAX_PEER_SUBSCRIPTIONS} subscriptions at the hub"
                ),
            ));
        }
        let mut options = SubscribeOptions::default();
        if !group.is_empty() {
            let text = serde_json::json!({ "group": group }).to_string();
            options = SubscribeOptions::parse(Some(&text))?;
        }
        let to = Arc::new(PeerSubscription {
            out: live.out.clone(),
            id,
        });
        let bus = Bus {
            shared: self.shared.clone(),
        };
        let hub_id = bus.subscribe_with(pattern, options, Consumer::Forward(to))?;
        live.subs.insert(id, hub_id);
        if id == INBOX {
            self.hub.counts.inboxes.fetch_add(1, SeqCst);
        }
        Ok(())
    }

    /// Answers the flushes whose epochs are done; whether any was.
    fn finish_flushes(&mut self) -> bool {
        let mut any = false;
        while let Some(&(gen, n, token)) = self.flushes.front() {
            if !self.shared.tracker.is_done(gen) {
                break;
            }
            self.flushes.pop_front();
            any = true;
            if let Some(live) = self.peers.get_mut(&n).and_then(|p| p.live.as_mut()) {
                live.flushes -= 1;
            }
            if let Some(live) = self.peers.get(&n).and_then(|p| p.live.as_ref()) {
                let mut body = Vec::new();
                Down::Flushed { token }.encode(&mut body);
                let mut s = live.out.state();
                live.out.send(&mut s, body);
            }
        }
        any
    }

    /// A peer whose process has exited: its subscriptions end and what it held is released at
    /// once; it stays until what it left in its ring is read (every publish it made was
    /// accepted when its call returned), then it is let go.
    fn exited(&mut self, n: u64) {
        let Some(p) = self.peers.get_mut(&n) else {
            return;
        };
        let Some(live) = p.live.as_mut() else {
            return self.let_go(n, Gone::Exited);
        };
        if live.exited {
            return;
        }
        live.exited = true;
        live.exited_at = Some(Instant::now());
        let _ = self.epoll.remove(p.socket.fd());
        if let Some(pidfd) = &p.pidfd {
            let _ = self.epoll.remove(pidfd.fd());
        }
        // Counted as gone once what it left is read and its unused credit is back (`let_go`):
        // when `peers` says it is gone, its room at the hub is free again.
        Self::release(&self.shared, &self.hub, live, false);
        self.flushes.retain(|f| f.1 != n);
    }

    /// From now on the peer counts as gone, or as `dropped`, not in `peers`.
    fn count_gone(hub: &Hub, live: &mut Live, dropped: bool) {
        if std::mem::replace(&mut live.counted, true) {
            return;
        }
        hub.counts.peers.fetch_sub(1, SeqCst);
        match dropped {
            true => hub.counts.dropped.fetch_add(1, SeqCst),
            false => hub.counts.gone.fetch_add(1, SeqCst),
        };
    }

    /// Ends a peer's subscriptions (`PeerGone`) and drops the deliveries it had not
    /// acknowledged (counted as dropped).
    fn release(shared: &Shared, hub: &Hub, live: &mut Live, closing: bool) {
        live.layout.let_go();
        live.out.to_peer.signal();
        let held: Vec<Arc<Message>> = {
            let mut s = live.out.state();
            s.gone = true;
            s.waiting.clear();
            live.out.unacked.store(0, SeqCst);
            std::mem::take(&mut s.unacked)
                .into_values()
                .map(|(m, _)| m)
                .collect()
        };
        for (id, hub_id) in live.subs.drain() {
            if id == INBOX {
                hub.counts.inboxes.fetch_sub(1, SeqCst);
            }
            if let Some(sub) = shared.known_subscription(hub_id) {
                shared.end(&sub, EndReason::PeerGone);
            }
        }
        for m in held {
            // Discarded by a close that ran out of time (the close says TIMEOUT), else dropped.
            match closing {
                true => shared.count_discarded_delivery(m.epoch()),
                false => shared.count_dropped_delivery(),
            }
            drop(m);
        }
    }

    /// Lets a peer go: its subscriptions end (`PeerGone`), what it held is released.
    fn let_go(&mut self, n: u64, why: Gone) {
        let Some(p) = self.peers.remove(&n) else {
            return;
        };
        let _ = self.epoll.remove(p.socket.fd());
        if let Gone::Dropped(why) | Gone::Stopping(why) = &why {
            let mut buf = Vec::new();
            refusal(Status::Disconnected, why.clone()).encode(&mut buf);
            let _ = p.socket.send(&buf, &[], 0);
        }
        p.socket.shutdown();
        if let Some(pidfd) = &p.pidfd {
            let _ = self.epoll.remove(pidfd.fd());
        }
        self.flushes.retain(|f| f.1 != n);
        let Some(mut live) = p.live else {
            return;
        };
        let why = match live.dropped.take() {
            Some(d) => Gone::Dropped(d),
            None => why,
        };
        let _ = self.epoll.remove(live.to_hub.fd());
        if !live.exited {
            Self::release(
                &self.shared,
                &self.hub,
                &mut live,
                matches!(why, Gone::Stopping(_)),
            );
        }
        if live.parked.is_some() {
            // A publish its process made that the hub never took.
            self.shared.count_dropped_delivery();
        }
        let unused = (live.granted - live.used) as usize;
        let unused = unused - usize::from(matches!(live.parked, Some((_, true))));
        // Credit is counted down before its capacity goes back (and, in `top_up`, up after the
        // capacity is taken), so that `credit` never counts a unit the capacity no longer
        // holds: the stats' `queued` (held capacity minus credit) cannot dip below the
        // messages really held while a departed peer's credit is returned.
        self.hub.counts.credit.fetch_sub(unused, SeqCst);
        for _ in 0..unused {
            self.shared.tracker.release();
        }
        Self::count_gone(&self.hub, &mut live, matches!(why, Gone::Dropped(_)));
    }
}

/// A welcome that refuses.
fn refusal(status: Status, message: String) -> Welcome {
    Welcome {
        version: wire::VERSION,
        status: status.code(),
        ring_bytes: 0,
        max_message_bytes: 0,
        max_depth: 0,
        peer: 0,
        message,
    }
}
