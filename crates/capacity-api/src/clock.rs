//! The one clock of the process. `CAPACITY_NOW` pins it for a whole process;
//! tests pin it and move it forward to watch scheduled changes take effect.

use capacity_domain::Instant;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

const SYSTEM: i64 = i64::MIN;

#[derive(Clone, Debug)]
pub struct Clock(Arc<AtomicI64>);

impl Clock {
    pub fn system() -> Clock {
        Clock(Arc::new(AtomicI64::new(SYSTEM)))
    }
    pub fn pinned(at: Instant) -> Clock {
        Clock(Arc::new(AtomicI64::new(at.micros())))
    }
    pub fn now(&self) -> Instant {
        match self.0.load(Ordering::Relaxed) {
            SYSTEM => {
                let us = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_micros() as i64)
                    .unwrap_or(0);
                Instant::from_micros(us)
            }
            us => Instant::from_micros(us),
        }
    }
    /// Pins the clock at `at` (tests).
    pub fn set(&self, at: Instant) {
        self.0.store(at.micros(), Ordering::Relaxed);
    }
    pub fn is_pinned(&self) -> bool {
        self.0.load(Ordering::Relaxed) != SYSTEM
    }
}
