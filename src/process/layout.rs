//! What one peer's shared memory holds, and where: a header (a magic word, the protocol
//! version, the credit the hub has granted, the peer's wish for more, whether the hub has let
//! the peer go), the control blocks of
//! the two rings, then the peer-to-hub ring and the hub-to-peer ring.

use super::ring::{Place, CONTROL_BYTES};
use super::wire::{MAGIC, VERSION};
use crate::sys::shm::SharedMap;
use std::sync::atomic::Ordering::{Acquire, Release, SeqCst};
use std::sync::Arc;

const HEADER_BYTES: usize = 4096;
const MAGIC_AT: usize = 0;
const VERSION_AT: usize = 8;
/// Written by the hub only: credit granted in all (one unit per message the peer may publish).
const GRANTED_AT: usize = 64;
/// Written by the peer only: non-zero while a publisher waits for credit.
const WANTS_CREDIT_AT: usize = 128;
/// Written by the hub only: non-zero once it has let the peer go (then the peer stops).
const LET_GO_AT: usize = 192;
const UP_CONTROL: usize = 1024;
const DOWN_CONTROL: usize = UP_CONTROL + CONTROL_BYTES;

/// Bytes of the mapping for rings of `ring` bytes each.
pub fn size(ring: usize) -> usize {
    HEADER_BYTES + 2 * ring
}

/// The ring a peer writes and the hub reads.
pub fn up(ring: usize) -> Place {
    Place {
        control: UP_CONTROL,
        data: HEADER_BYTES,
        bytes: ring,
    }
}

/// The ring the hub writes and a peer reads.
pub fn down(ring: usize) -> Place {
    Place {
        control: DOWN_CONTROL,
        data: HEADER_BYTES + ring,
        bytes: ring,
    }
}

/// Writes the header of a new mapping (all else is zero).
pub fn init(map: &SharedMap, _ring: usize) {
    map.write(MAGIC_AT, MAGIC);
    map.atomic_u32(VERSION_AT).store(VERSION, SeqCst);
}

/// Whether a mapping received from a hub has the header this version writes.
pub fn check(map: &SharedMap) -> bool {
    let mut magic = [0u8; 8];
    map.read(MAGIC_AT, &mut magic);
    &magic == MAGIC && map.atomic_u32(VERSION_AT).load(SeqCst) == VERSION
}

/// The header's credit words.
pub struct Layout {
    map: Arc<SharedMap>,
}

impl Layout {
    pub fn new(map: Arc<SharedMap>, _ring: usize) -> Layout {
        Layout { map }
    }

    /// The hub: grants credit up to `total` in all (then it looks whether the peer waits for
    /// it; the fence orders the two, as the peer says it waits before it looks again).
    pub fn grant(&self, total: u64) {
        self.map.atomic_u64(GRANTED_AT).store(total, Release);
        std::sync::atomic::fence(SeqCst);
    }

    /// The peer: credit granted in all (it checks that it only grows).
    pub fn granted(&self) -> u64 {
        self.map.atomic_u64(GRANTED_AT).load(Acquire)
    }

    pub fn set_wants_credit(&self, wants: bool) {
        self.map
            .atomic_u32(WANTS_CREDIT_AT)
            .store(wants as u32, SeqCst);
    }

    pub fn peer_wants_credit(&self) -> bool {
        self.map.atomic_u32(WANTS_CREDIT_AT).load(SeqCst) != 0
    }

    /// The hub: says that it has let the peer go (dropped it, or stopped serving).
    pub fn let_go(&self) {
        self.map.atomic_u32(LET_GO_AT).store(1, SeqCst);
    }

    /// The peer: whether the hub has let it go.
    pub fn is_let_go(&self) -> bool {
        self.map.atomic_u32(LET_GO_AT).load(SeqCst) != 0
    }
}
