//! How the hub's thread and an attached process's link thread wait for their ring: they poll
//! for a while before they sleep on their eventfd, but only while messages come in bursts.
//! On a machine with fewer cores than busy threads a thread that polls takes the core from the
//! one that would produce what it waits for, so a message that comes after a sleep makes the
//! next wait sleep at once, and a poll that finds nothing halves the next one. Between looks
//! the thread yields its core to any other that is ready to run.

use std::time::{Duration, Instant};

pub struct Spin {
    max: Duration,
    budget: Duration,
}

/// A poll budget below this is not worth a look: sleep instead.
const FLOOR: Duration = Duration::from_micros(2);

impl Spin {
    pub fn new(max: Duration) -> Spin {
        Spin { max, budget: max }
    }

    /// The thread found work again without waiting for it: the next wait may poll in full.
    pub fn busy(&mut self) {
        self.budget = self.max;
    }

    /// Polls `ready` for up to the budget; whether it became true. A poll that runs out
    /// halves the next one's budget.
    pub fn wait(&mut self, mut ready: impl FnMut() -> bool) -> bool {
        if self.budget < FLOOR {
            return false;
        }
        let start = Instant::now();
        loop {
            if ready() {
                return true;
            }
            if start.elapsed() >= self.budget {
                self.budget /= 2;
                return false;
            }
            std::thread::yield_now();
        }
    }

    /// The thread slept and was woken: what woke it came too late for any poll.
    pub fn slept(&mut self) {
        self.budget = Duration::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_in_bursts_and_stops_polling_after_sleeps_and_misses() {
        // A long budget for the look that succeeds: a loaded machine may leave this thread
        // off its core for longer than 100 us between two looks (CI: it did).
        let mut burst = Spin::new(Duration::from_secs(5));
        let mut n = 0;
        assert!(burst.wait(|| {
            n += 1;
            n == 3
        }));
        let mut s = Spin::new(Duration::from_micros(100));
        let t = Instant::now();
        assert!(!s.wait(|| false));
        assert!(t.elapsed() >= Duration::from_micros(100));
        assert_eq!(
            s.budget,
            Duration::from_micros(50),
            "a miss halves the budget"
        );
        s.slept();
        let mut looked = false;
        assert!(!s.wait(|| {
            looked = true;
            true
        }));
        assert!(!looked, "after a sleep the next wait does not poll");
        s.busy();
        assert!(s.wait(|| true), "work found without waiting: polling again");
        let mut zero = Spin::new(Duration::ZERO);
        assert!(!zero.wait(|| true), "dispatcher_spin_us 0: never polls");
    }
}
