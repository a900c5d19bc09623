//! The process-wide default bus behind the quick API: opened on first use, closed by
//! `shutdown`, and opened afresh by the next use after that.

use crate::bus::Bus;
use crate::dispatch;
use crate::options::Options;
use crate::stats::Stats;
use crate::status::{Error, Status};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Environment variable holding the default bus's options (a JSON object, as for `jsonbus_new`).
pub const OPTIONS_ENV: &str = "JSONBUS_DEFAULT_OPTIONS";

static DEFAULT: Mutex<Option<Bus>> = Mutex::new(None);

fn slot() -> MutexGuard<'static, Option<Bus>> {
    DEFAULT.lock().unwrap_or_else(|p| p.into_inner())
}

/// The options the default bus opens with: the defaults, or `$JSONBUS_DEFAULT_OPTIONS`.
pub fn options() -> Result<Options, Error> {
    match std::env::var(OPTIONS_ENV) {
        Ok(text) => Options::parse(Some(&text))
            .map_err(|e| Error::new(e.status, format!("${OPTIONS_ENV}: {}", e.message))),
        Err(_) => Ok(Options::default()),
    }
}

/// The default bus, opening it if it is not open.
pub fn open() -> Result<Bus, Error> {
    let mut slot = slot();
    if let Some(bus) = &*slot {
        return Ok(bus.clone());
    }
    let bus = Bus::new(options()?)?;
    *slot = Some(bus.clone());
    Ok(bus)
}

/// The default bus if it is open (calls that need no bus do not open one).
pub fn current() -> Option<Bus> {
    slot().clone()
}

/// Stats of the default bus; those of a fresh bus if it is not open.
pub fn stats() -> Result<Stats, Error> {
    match current() {
        Some(bus) => Ok(bus.stats()),
        None => Ok(Stats::empty(&options()?)),
    }
}

/// Closes the default bus (as `Bus::close`); the next use opens a fresh one.
pub fn shutdown(timeout: Option<Duration>) -> Result<(), Error> {
    let bus = {
        let mut slot = slot();
        match &*slot {
            None => return Ok(()),
            Some(bus) if dispatch::in_callback_of(bus.id()) => {
                return Err(Error::new(
                    Status::Deadlock,
                    "jsonbus_shutdown was called from a callback of the default bus, which it would wait for",
                ))
            }
            Some(_) => slot.take(),
        }
    };
    bus.map_or(Ok(()), |b| b.close(timeout))
}
