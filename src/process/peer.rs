//! The attached side of a bus shared across processes: connecting to a hub, the link that writes
//! this process's publishes, acknowledgements, flushes and subscriptions into its ring, and the
//! link thread that moves deliveries from the hub's ring into the local subscriptions' queues.

use super::layout::{self, Layout};
use super::name;
use super::ring::{Reader, Violation, Writer};
use super::spin::Spin;
use super::wire::{self, Down, Up, Welcome};
use crate::bus::{closed_error, Bus, Shared};
use crate::message::{Acker, Message};
use crate::options::AttachOptions;
use crate::publish::{Published, Wait};
use crate::request::Claim;
use crate::status::{Error, Status};
use crate::subscription::end::EndReason;
use crate::sys::ipc::{self, EventFd, PidFd, SeqPacket};
use crate::sys::shm::SharedMap;
use crate::sys::thread::{self, Thread};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The local id of the subscription that takes this process's request replies.
const INBOX_ID: i64 = 0;
/// Records handled before the link thread looks at anything else.
const BATCH: usize = 256;
/// How long a subscribe waits for the hub's answer.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// An attached process's connection to its hub.
pub struct Link {
    pub name: String,
    /// The process that attached: a child made by `fork` may not use the link.
    pid: u32,
    up: Mutex<Option<Upward>>,
    state: Mutex<State>,
    /// With `up`: room in the ring, or credit, may have come.
    room: Condvar,
    /// With `state`: an answer from the hub may have come.
    answers: Condvar,
    waiters: AtomicUsize,
    disconnected: AtomicBool,
    stop: AtomicBool,
    /// Wakes the link thread (the hub signals the same eventfd); let go at `shutdown`.
    wake: Mutex<Option<EventFd>>,
    thread: Mutex<Option<Thread>>,
    /// Messages published through this handle.
    pub published: AtomicU64,
    /// Records written to the hub (publishes, acknowledgements, subscribes, flushes...).
    records: AtomicU64,
    /// `records` covered by the last flush that returned OK.
    flushed_upto: AtomicU64,
}

/// What the publishing threads share: the writing end of the ring to the hub.
struct Upward {
    writer: Writer,
    layout: Layout,
    to_hub: EventFd,
    scratch: Vec<u8>,
    /// Acknowledgements not yet written.
    acks: Vec<u64>,
    /// Credit used, and credit granted as last seen.
    used: u64,
    granted: u64,
    /// A message of several fragments is being written: nobody else may write.
    busy: bool,
}

#[derive(Default)]
struct State {
    why: Option<(Status, String)>,
    next: u64,
    flushed: HashSet<u64>,
    subscribed: HashMap<u64, (i32, String)>,
    /// The hub's word on requests published here: whether each matched anything.
    routed: HashMap<String, bool>,
    /// Flush tokens and subscribe requests whose callers gave up waiting.
    abandoned: HashSet<u64>,
}

/// What the link thread owns.
struct LinkThread {
    shared: Arc<Shared>,
    link: Arc<Link>,
    reader: Reader,
    socket: SeqPacket,
    /// Registered in `epoll`: readable once the hub's process has exited.
    _hub: Option<PidFd>,
    /// The header, for the hub's word that it has let this process go.
    layout: Layout,
    epoll: ipc::Epoll,
    spin: Spin,
    /// Deliveries read that cannot be queued yet - no local capacity, or their "block"
    /// subscription at its limit - in the order they came: the link goes on reading the hub's
    /// answers meanwhile (they are bounded by what the hub holds for this process).
    held: VecDeque<Held>,
}

/// A delivery waiting in the link (see `LinkThread::held`).
struct Held {
    id: i64,
    message: Arc<Message>,
    seq: u64,
    published_ns: u64,
}

fn disconnected(message: impl Into<String>) -> Error {
    Error::new(Status::Disconnected, message)
}

/// Attaches to the bus served under `name`.
pub fn attach(name: &str, options: AttachOptions) -> Result<Bus, Error> {
    let (socket_path, _) = name::paths(name)?;
    let until = match options.connect_timeout_ms {
        -1 => None,
        ms => Some(Instant::now() + Duration::from_millis(ms as u64)),
    };
    let socket = loop {
        match SeqPacket::connect(&socket_path) {
            Ok(s) => break s,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                if until.is_some_and(|u| Instant::now() >= u) {
                    return Err(Error::new(
                        Status::NoBus,
                        format!(
                            "no bus is served under \"{name}\" ({} {}) within connect_timeout_ms ({} ms)",
                            socket_path.display(),
                            match e.kind() {
                                std::io::ErrorKind::NotFound => "does not exist",
                                _ => "refuses connections",
                            },
                            options.connect_timeout_ms
                        ),
                    ));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => {
                return Err(Error::new(
                    Status::Internal,
                    format!("cannot connect to {}: {e}", socket_path.display()),
                ))
            }
        }
    };
    let me = ipc::my_credentials();
    let hub = socket
        .peer_credentials()
        .map_err(|e| Error::new(Status::Internal, format!("no credentials of the hub: {e}")))?;
    if hub.uid != me.uid && hub.gid != me.gid {
        return Err(Error::new(
            Status::Permission,
            format!(
                "the process {} serving \"{name}\" belongs to user {} and group {}, not to this process's user {} or group {}",
                hub.pid, hub.uid, hub.gid, me.uid, me.gid
            ),
        ));
    }
    let mut buf = Vec::new();
    wire::hello(&mut buf);
    let peer = |m: String| Error::new(Status::Peer, m);
    socket.send(&buf, &[], 1000).map_err(|e| {
        disconnected(format!(
            "the hub serving \"{name}\" did not take the hello: {e}"
        ))
    })?;
    let mut answer = vec![0u8; 4096];
    let (n, fds) = socket
        .recv(&mut answer, 2000)
        .map_err(|e| disconnected(format!("the hub serving \"{name}\" did not answer: {e}")))?
        .ok_or_else(|| {
            disconnected(format!(
                "the hub serving \"{name}\" did not answer within 2 s"
            ))
        })?;
    let welcome = Welcome::decode(&answer[..n]).ok_or_else(|| {
        peer(format!(
            "the process serving \"{name}\" did not answer as a jsonbus hub"
        ))
    })?;
    if welcome.version != wire::VERSION {
        return Err(peer(format!(
            "the hub serving \"{name}\" speaks protocol version {}; this library speaks {}",
            welcome.version,
            wire::VERSION
        )));
    }
    if welcome.status != 0 {
        let status = Status::from_code(welcome.status).unwrap_or(Status::Peer);
        return Err(Error::new(status, welcome.message));
    }
    let ring = welcome.ring_bytes as usize;
    if !ring.is_power_of_two() || !(65536..=268_435_456).contains(&ring) || fds.len() != 3 {
        return Err(peer(format!(
            "the hub serving \"{name}\" sent rings of {ring} bytes and {} descriptors",
            fds.len()
        )));
    }
    let mut fds = fds.into_iter();
    let (memfd, to_hub, to_peer) = match (fds.next(), fds.next(), fds.next()) {
        (Some(a), Some(b), Some(c)) => (a, b, c),
        _ => return Err(peer("missing descriptors".into())),
    };
    let bad_fd = |what: &str, e: std::io::Error| peer(format!("the hub's {what} is unusable: {e}"));
    let map = Arc::new(
        SharedMap::from_fd(memfd, layout::size(ring)).map_err(|e| bad_fd("shared memory", e))?,
    );
    if !layout::check(&map) {
        return Err(peer("the hub's shared memory has another layout".into()));
    }
    let to_hub = EventFd::from_fd(to_hub).map_err(|e| bad_fd("eventfd", e))?;
    let wake = EventFd::from_fd(to_peer).map_err(|e| bad_fd("eventfd", e))?;
    let epoll =
        ipc::Epoll::new().map_err(|e| Error::new(Status::Internal, format!("epoll: {e}")))?;
    let hub_pidfd = PidFd::open(hub.pid).ok();
    let added = epoll
        .add(wake.fd(), 0)
        .and_then(|_| epoll.add(socket.fd(), 1))
        .and_then(|_| match &hub_pidfd {
            Some(p) => epoll.add(p.fd(), 2),
            None => Ok(()),
        });
    added.map_err(|e| Error::new(Status::Internal, format!("epoll: {e}")))?;

    let mut local = options.local;
    local.max_message_bytes = (welcome.max_message_bytes as usize).clamp(1, 1 << 30);
    local.max_depth = (welcome.max_depth as usize).clamp(1, 65535);
    let spin = Duration::from_micros(local.dispatcher_spin_us as u64);
    let max_message = local.max_message_bytes + 1024;
    let bus = Bus::new(local)?;
    let link = Arc::new(Link {
        name: name.to_string(),
        pid: std::process::id(),
        up: Mutex::new(Some(Upward {
            writer: Writer::new(map.clone(), layout::up(ring)),
            layout: Layout::new(map.clone(), ring),
            to_hub,
            scratch: Vec::new(),
            acks: Vec::new(),
            used: 0,
            granted: 0,
            busy: false,
        })),
        state: Mutex::new(State::default()),
        room: Condvar::new(),
        answers: Condvar::new(),
        waiters: AtomicUsize::new(0),
        disconnected: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        wake: Mutex::new(Some(wake)),
        thread: Mutex::new(None),
        published: AtomicU64::new(0),
        records: AtomicU64::new(0),
        flushed_upto: AtomicU64::new(0),
    });
    bus.shared.set_link(link.clone());
    let state = LinkThread {
        shared: bus.shared.clone(),
        link: link.clone(),
        reader: Reader::new(map.clone(), layout::down(ring), max_message),
        socket,
        _hub: hub_pidfd,
        layout: Layout::new(map.clone(), ring),
        epoll,
        spin: Spin::new(spin),
        held: VecDeque::new(),
    };
    let started = thread::spawn("jsonbus-link", Box::new(move || state.run()));
    match started {
        Ok(t) => *link.thread() = Some(t),
        Err(e) => {
            bus.close_for_free();
            return Err(Error::new(
                Status::Internal,
                format!("the link thread could not start: {e}"),
            ));
        }
    }
    let inbox = format!("{}>", bus.shared.requests.prefix());
    if let Err(e) = link.subscribe(INBOX_ID, &inbox, "") {
        bus.close_for_free();
        return Err(e);
    }
    Ok(bus)
}

impl Link {
    fn up(&self) -> MutexGuard<'_, Option<Upward>> {
        self.up.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn thread(&self) -> MutexGuard<'_, Option<Thread>> {
        self.thread.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this is a child made by `fork` after the attach.
    pub fn forked(&self) -> bool {
        std::process::id() != self.pid
    }

    /// Ok while the link can carry calls.
    pub fn check(&self) -> Result<(), Error> {
        if self.forked() {
            return Err(disconnected(format!(
                "this process is a child made by fork after jsonbus_attach(\"{}\"); attach again in the child",
                self.name
            )));
        }
        if self.disconnected.load(SeqCst) {
            let why = self.state().why.clone();
            let (status, why) = why.unwrap_or((Status::Disconnected, "disconnected".into()));
            return Err(Error::new(
                status,
                format!("the bus \"{}\" is gone: {why}", self.name),
            ));
        }
        Ok(())
    }

    /// Waits on `cv` (the condition variable of the mutex `guard` is from) for up to 1 ms,
    /// or until `until`, with the lock given back.
    fn wait_a_moment<'a, T>(
        &self,
        cv: &Condvar,
        guard: MutexGuard<'a, T>,
        until: Option<Instant>,
    ) -> MutexGuard<'a, T> {
        let mut slice = Duration::from_millis(1);
        if let Some(u) = until {
            slice = slice.min(u.saturating_duration_since(Instant::now()));
        }
        self.waiters.fetch_add(1, SeqCst);
        // A spurious or timed-out wake-up is fine: every caller looks again.
        let (g, _) = cv
            .wait_timeout(guard, slice)
            .unwrap_or_else(|p| p.into_inner());
        self.waiters.fetch_sub(1, SeqCst);
        g
    }

    fn notify(&self) {
        if self.waiters.load(SeqCst) > 0 {
            // Taking the locks orders the notice after a waiter's check of the state.
            drop(self.up());
            self.room.notify_all();
            drop(self.state());
            self.answers.notify_all();
        }
    }

    /// Writes `body` (an encoded record) into the ring, waiting for room until `until` (not
    /// at all with `no_wait`); `credit`: it is a publish and takes one unit of credit. A record
    /// that cannot start in time fails (`FULL` for a publish, else `TIMEOUT`); one that has
    /// started (a message in fragments) is written to its end.
    fn write(
        &self,
        credit: bool,
        no_wait: bool,
        until: Option<Instant>,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), Error> {
        let full = |why: &str| {
            let how = match (no_wait, until.is_some()) {
                (true, _) => "; a callback never waits for room",
                (false, true) => " before its time ran out",
                (false, false) => "",
            };
            Error::new(
                if credit {
                    Status::Full
                } else {
                    Status::Timeout
                },
                format!("the hub of \"{}\" had {why}{how}", self.name),
            )
        };
        let mut guard = self.up();
        loop {
            self.check()?;
            let Some(up) = guard.as_mut() else {
                return Err(closed_error("cannot publish"));
            };
            if !up.busy {
                if !credit || up.used < up.granted {
                    break;
                }
                let granted = up.layout.granted();
                if granted > up.granted {
                    up.granted = granted;
                    continue;
                }
                if no_wait {
                    return Err(full(
                        "no room for this process's publishes (its queue_capacity)",
                    ));
                }
                up.layout.set_wants_credit(true);
            } else if no_wait {
                return Err(full("its ring busy with another message"));
            }
            if until.is_some_and(|u| Instant::now() >= u) {
                return Err(full(
                    "no room for this process's publishes (its queue_capacity)",
                ));
            }
            guard = self.wait_a_moment(&self.room, guard, until);
        }
        let Some(up) = guard.as_mut() else {
            return Err(closed_error("cannot publish"));
        };
        if credit {
            up.layout.set_wants_credit(false);
            up.used += 1;
        }
        let mut body = std::mem::take(&mut up.scratch);
        encode(&mut body);
        let mut done = 0;
        loop {
            let Some(up) = guard.as_mut() else {
                return Err(closed_error("cannot publish"));
            };
            let complete = match up.writer.write(&body, &mut done) {
                Ok(c) => c,
                Err(Violation(v)) => {
                    up.busy = false;
                    drop(guard);
                    let why = format!("the hub broke the ring: {v}");
                    self.disconnect(Status::Peer, why.clone());
                    return Err(Error::new(Status::Peer, why));
                }
            };
            if up.writer.reader_sleeping() {
                up.to_hub.signal();
            }
            if complete {
                self.records.fetch_add(1, SeqCst);
                up.busy = false;
                up.writer.set_waiting(false);
                up.scratch = body;
                self.write_acks(up);
                break;
            }
            if done == 0 && (no_wait || until.is_some_and(|u| Instant::now() >= u)) {
                // Nothing of it is in the ring: it can still fail.
                up.writer.set_waiting(false);
                if credit {
                    up.used -= 1;
                }
                return Err(full("no room in this process's ring"));
            }
            up.busy = done > 0;
            up.writer.set_waiting(true);
            if let Err(e) = self.check() {
                up.busy = false;
                return Err(e);
            }
            guard = self.wait_a_moment(&self.room, guard, if done == 0 { until } else { None });
        }
        drop(guard);
        self.notify();
        Ok(())
    }

    /// Writes the acknowledgements waiting, as far as there is room.
    fn write_acks(&self, up: &mut Upward) {
        if up.busy || up.acks.is_empty() {
            return;
        }
        let mut body = std::mem::take(&mut up.scratch);
        let mut written = 0;
        for &token in &up.acks {
            Up::Ack { token }.encode(&mut body);
            let mut done = 0;
            match up.writer.write(&body, &mut done) {
                Ok(true) => written += 1,
                _ => break,
            }
        }
        up.acks.drain(..written);
        self.records.fetch_add(written as u64, SeqCst);
        up.scratch = body;
        if written > 0 && up.writer.reader_sleeping() {
            up.to_hub.signal();
        }
    }

    /// Hands a publish to the hub (the local unit of capacity `prepare` took is given back).
    pub(crate) fn publish(
        &self,
        shared: &Shared,
        message: Arc<Message>,
        wait: &Wait,
    ) -> Result<Published, Error> {
        let written = self.write(true, wait.never_waits(), wait.until(), |body| {
            Up::Publish {
                parent: wait.parent_token(),
                topic: message.topic(),
                reply: message.reply_to().unwrap_or(""),
                json: message.json(),
            }
            .encode(body)
        });
        shared.tracker.release();
        written?;
        self.published.fetch_add(1, SeqCst);
        let Some(reply) = message.reply_to() else {
            return Ok(Published {
                seq: 0,
                routed: true,
            });
        };
        // A request: whether it has a responder is known once the hub has routed it.
        let mut s = self.state();
        loop {
            if let Some(routed) = s.routed.remove(reply) {
                return Ok(Published { seq: 0, routed });
            }
            drop(s);
            self.check()?;
            s = self.wait_a_moment(&self.answers, self.state(), None);
        }
    }

    /// Registers local subscription `id` at the hub and waits for its answer.
    pub fn subscribe(&self, id: i64, pattern: &str, group: &str) -> Result<(), Error> {
        let request = {
            let mut s = self.state();
            s.next += 1;
            s.next
        };
        let until = Instant::now() + SUBSCRIBE_TIMEOUT;
        self.write(false, false, Some(until), |body| {
            Up::Subscribe {
                request,
                id,
                pattern,
                group,
            }
            .encode(body)
        })?;
        let mut s = self.state();
        loop {
            if let Some((status, message)) = s.subscribed.remove(&request) {
                return match status {
                    0 => Ok(()),
                    code => Err(Error::new(
                        Status::from_code(code).unwrap_or(Status::Peer),
                        message,
                    )),
                };
            }
            drop(s);
            self.check()?;
            if Instant::now() >= until {
                // Its answer, should it come, is for nobody.
                self.state().abandoned.insert(request);
                return Err(Error::new(
                    Status::Timeout,
                    format!(
                        "the hub of \"{}\" did not answer a subscribe within {} s",
                        self.name,
                        SUBSCRIBE_TIMEOUT.as_secs()
                    ),
                ));
            }
            s = self.wait_a_moment(&self.answers, self.state(), Some(until));
        }
    }

    /// Tells the hub that local subscription `id` has ended.
    pub fn unsubscribe(&self, id: i64) {
        if self.check().is_ok() {
            let _ = self.write(
                false,
                false,
                Some(Instant::now() + Duration::from_secs(1)),
                |body| Up::Unsubscribe { id }.encode(body),
            );
        }
    }

    /// Waits until the hub says that everything published through this handle before is done.
    pub fn flush(&self, timeout: Option<Duration>) -> Result<(), Error> {
        // Nothing written to the hub since a flush that returned OK: done.
        let upto = self.records.load(SeqCst);
        if upto == self.flushed_upto.load(SeqCst) {
            return self.check();
        }
        let until = timeout.map(|t| Instant::now() + t);
        let token = {
            let mut s = self.state();
            s.next += 1;
            s.next
        };
        self.write(false, false, until, |body| Up::Flush { token }.encode(body))?;
        let mut s = self.state();
        loop {
            if s.flushed.remove(&token) {
                // Covers the records before it, and itself (if another came between, the next
                // flush asks the hub again).
                self.flushed_upto.fetch_max(upto + 1, SeqCst);
                return Ok(());
            }
            drop(s);
            self.check()?;
            if until.is_some_and(|u| Instant::now() >= u) {
                self.state().abandoned.insert(token);
                return Err(Error::new(
                    Status::Timeout,
                    format!(
                        "flush timed out after {} ms waiting for the hub of \"{}\"",
                        timeout.unwrap_or_default().as_millis(),
                        self.name
                    ),
                ));
            }
            s = self.wait_a_moment(&self.answers, self.state(), until);
        }
    }

    /// Stops the link thread and lets go of the shared memory and the descriptors.
    pub fn shutdown(&self) {
        self.stop.store(true, SeqCst);
        if let Some(w) = self.wake().as_ref() {
            w.signal();
        }
        if !self.forked() {
            if let Some(t) = self.thread().take() {
                t.join();
            }
        }
        self.disconnected.store(true, SeqCst);
        {
            let mut s = self.state();
            if s.why.is_none() {
                s.why = Some((Status::Closed, "this handle was closed".into()));
            }
        }
        self.up().take();
        self.wake().take();
        self.room.notify_all();
        self.answers.notify_all();
    }

    fn wake(&self) -> MutexGuard<'_, Option<EventFd>> {
        self.wake.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn disconnect(&self, status: Status, why: String) {
        self.state().why.get_or_insert((status, why));
        self.disconnected.store(true, SeqCst);
        self.room.notify_all();
        self.answers.notify_all();
    }
}

impl Acker for Link {
    fn ack(&self, token: u64) {
        if self.disconnected.load(SeqCst) || self.forked() {
            return;
        }
        let mut guard = self.up();
        if let Some(up) = guard.as_mut() {
            up.acks.push(token);
            self.write_acks(up);
        }
    }
}

impl LinkThread {
    fn run(mut self) {
        let mut buf = Vec::new();
        let mut events = Vec::new();
        let link = self.link.clone();
        // Whether the last look found work: work again right after it is a burst.
        let mut worked = false;
        while !link.stop.load(SeqCst) {
            if self.layout.is_let_go() {
                self.read_all(&mut buf);
                // Its goodbye on the socket says why.
                let mut b = [0u8; 1024];
                let why = match self.socket.recv(&mut b, 100) {
                    Ok(Some((n, _))) => Welcome::decode(&b[..n]).map(|w| w.message),
                    _ => None,
                };
                let why = why.unwrap_or_else(|| "it gave no reason".into());
                self.lost(
                    Status::Disconnected,
                    format!("the hub dropped this process: {why}"),
                    false,
                );
                break;
            }
            let placed = self.place_held();
            match self.read(&mut buf) {
                Ok(0) if placed => {}
                Ok(0) => worked = false,
                Ok(_) => {
                    link.notify();
                    if worked {
                        self.spin.busy();
                    }
                    worked = true;
                    continue;
                }
                Err((status, why)) => {
                    self.lost(status, why, false);
                    break;
                }
            }
            if self
                .spin
                .wait(|| self.reader.has_data() || link.stop.load(SeqCst))
            {
                continue;
            }
            self.reader.set_sleeping(true);
            if !self.reader.has_data() {
                // Room for held deliveries, and acknowledgements waiting for room, are looked
                // for every millisecond.
                let pending =
                    !self.held.is_empty() || link.up().as_ref().is_some_and(|u| !u.acks.is_empty());
                let _ = self.epoll.wait(&mut events, if pending { 1 } else { 20 });
            }
            self.reader.set_sleeping(false);
            self.spin.slept();
            if let Some(w) = link.wake().as_ref() {
                w.drain();
            }
            if let Some(up) = link.up().as_mut() {
                link.write_acks(up);
            }
            link.notify();
            let mut gone = None;
            for e in events.drain(..) {
                match e.token {
                    1 => {
                        let mut b = [0u8; 1024];
                        match self.socket.recv(&mut b, 0) {
                            Ok(None) => {}
                            // A goodbye: why the hub let this process go (it explains the
                            // hang-up that follows).
                            Ok(Some((n, _))) => {
                                gone = Some(match Welcome::decode(&b[..n]) {
                                    Some(w) => (
                                        Status::Disconnected,
                                        format!("the hub dropped this process: {}", w.message),
                                        false,
                                    ),
                                    None => (
                                        Status::Peer,
                                        "the hub sent a control message after the hand-shake"
                                            .to_string(),
                                        false,
                                    ),
                                })
                            }
                            Err(_) if gone.is_none() => gone = Some((
                                Status::Disconnected,
                                "the hub closed the connection without a word (its process died)"
                                    .to_string(),
                                true,
                            )),
                            Err(_) => {}
                        }
                    }
                    2 if gone.is_none() => {
                        gone = Some((
                            Status::Disconnected,
                            "the hub's process exited".to_string(),
                            true,
                        ))
                    }
                    _ => {}
                }
            }
            if let Some((status, why, died)) = gone {
                // What the hub wrote before it went is still delivered.
                self.read_all(&mut buf);
                self.lost(status, why, died);
                break;
            }
        }
    }

    /// Handles what the hub has written; how many records.
    fn read(&mut self, buf: &mut Vec<u8>) -> Result<usize, (Status, String)> {
        let mut n = 0;
        let epoch = self.shared.current_epoch();
        while n < BATCH {
            match self.reader.next(buf) {
                Ok(true) => {}
                Ok(false) => break,
                Err(Violation(v)) => {
                    return Err((Status::Peer, format!("the hub broke its ring: {v}")))
                }
            }
            n += 1;
            let Some(down) = Down::decode(buf) else {
                return Err((
                    Status::Peer,
                    format!(
                        "the hub wrote a record of {} bytes that the protocol does not know",
                        buf.len()
                    ),
                ));
            };
            match down {
                Down::Deliver {
                    token,
                    id,
                    seq,
                    published_ns,
                    topic,
                    reply,
                    json,
                } => {
                    let mut message = self.shared.spares.message(topic, json, reply);
                    Message::set_origin(&mut message, self.link.clone(), token);
                    let held = Held {
                        id,
                        message,
                        seq,
                        published_ns,
                    };
                    self.deliver(held, &epoch);
                }
                Down::Flushed { token } => {
                    let mut s = self.link.state();
                    if !s.abandoned.remove(&token) {
                        s.flushed.insert(token);
                    }
                    drop(s);
                    self.link.answers.notify_all();
                }
                Down::Subscribed {
                    request,
                    status,
                    message,
                } => {
                    let mut s = self.link.state();
                    if !s.abandoned.remove(&request) {
                        s.subscribed.insert(request, (status, message.to_string()));
                    }
                    drop(s);
                    self.link.answers.notify_all();
                }
                Down::Routed { reply, routed } => {
                    self.link.state().routed.insert(reply.to_string(), routed);
                    self.link.answers.notify_all();
                }
            }
        }
        if n > 0 && self.reader.writer_waiting() {
            if let Some(up) = self.link.up().as_ref() {
                up.to_hub.signal();
            }
        }
        Ok(n)
    }

    /// Reads everything the hub left in its ring (it is gone, or has let this process go).
    fn read_all(&mut self, buf: &mut Vec<u8>) {
        while let Ok(n) = self.read(buf) {
            if n == 0 {
                break;
            }
        }
    }

    /// Queues a delivery for local subscription `id` (or answers a request), behind those
    /// held already.
    fn deliver(&mut self, held: Held, epoch: &Arc<crate::flush::Epoch>) {
        if !self.held.is_empty() {
            return self.held.push_back(held);
        }
        if let Some(h) = self.place(held, epoch) {
            self.held.push_back(h);
        }
    }

    /// Queues held deliveries as far as there is room; whether any went.
    fn place_held(&mut self) -> bool {
        if self.held.is_empty() {
            return false;
        }
        let epoch = self.shared.current_epoch();
        let mut placed = false;
        while let Some(h) = self.held.pop_front() {
            if let Some(h) = self.place(h, &epoch) {
                self.held.push_front(h);
                break;
            }
            placed = true;
        }
        placed
    }

    /// Queues a delivery if it can go now (with a unit of local capacity, and room in its
    /// subscription if that is "block"), or gives it back to be held. One for a subscription
    /// that is no more is dropped (counted; dropping it acknowledges it to the hub).
    fn place(&self, h: Held, epoch: &Arc<crate::flush::Epoch>) -> Option<Held> {
        let s = &self.shared;
        let sub = match h.id {
            INBOX_ID => None,
            id => match s.known_subscription(id) {
                Some(sub) if !sub.is_ended() => Some(sub),
                _ => {
                    s.count_dropped_delivery();
                    return None;
                }
            },
        };
        if s.tracker.is_closed() {
            s.count_dropped_delivery();
            return None;
        }
        if sub.as_ref().is_some_and(|sub| sub.blocks_now()) || !s.tracker.try_reserve() {
            return Some(h);
        }
        let Held {
            mut message,
            seq,
            published_ns,
            ..
        } = h;
        Message::stamp(&mut message, seq, published_ns, epoch.clone());
        match sub {
            None => {
                if let Claim::Ours(waiter) = s.requests.claim(message.topic()) {
                    s.answer(waiter, Ok(message));
                }
            }
            Some(sub) => s.offer_one(&sub, message),
        }
        None
    }

    /// The hub is gone: calls fail from now on; the local subscriptions end once what they
    /// have received is delivered.
    fn lost(&mut self, status: Status, why: String, died: bool) {
        self.link.disconnect(status, why);
        for waiter in self.shared.requests.take_waiting() {
            self.shared.answer(waiter, Err(Status::Disconnected));
        }
        if died {
            // Nobody else would remove what a dead hub left in the name directory.
            name::clean_up(&self.link.name);
        }
        // What was received still runs: held deliveries are queued as room comes, and a
        // callback subscription ends once its queue is empty and no dispatcher runs it (a
        // dispatcher may hold a batch it took from the queue).
        let (link, shared) = (self.link.clone(), self.shared.clone());
        let stop = || link.stop.load(SeqCst) || shared.tracker.is_closed();
        while !self.held.is_empty() && !stop() {
            if !self.place_held() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        for h in self.held.drain(..) {
            self.shared.count_dropped_delivery();
            drop(h);
        }
        // One that ends on its own meanwhile (its callback returned JSONBUS_UNSUBSCRIBE, or
        // failed too often) stays scheduled for good while its dispatcher completes its end:
        // it is not waited for.
        let subs = self.shared.live_subscriptions();
        for sub in subs {
            while !sub.is_pull()
                && !sub.is_ended()
                && (sub.has_queued() || sub.is_scheduled())
                && !stop()
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            self.shared.end_keeping_queue(&sub, EndReason::PeerGone);
        }
    }
}
