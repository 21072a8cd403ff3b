//! Locking a mutex whose holder may have panicked.
//!
//! **Invariant:** [`MutexExt::lock_unpoisoned`] is used only on mutexes whose every critical section
//! leaves the protected value consistent at each step (a single insert, remove, take or assignment), so
//! a panic in a holder cannot leave it half-updated. For those, the standard library's poisoning adds
//! nothing but a second panic: one failed turn (or test) would take every later caller down with it.
//!
//! When a critical section makes several dependent changes, a panic between them *can* leave the value
//! inconsistent; such a mutex should keep `lock().unwrap()` (or recover explicitly), not use this.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Poison-tolerant locking (see the module docs for when that is right).
pub trait MutexExt<T: ?Sized> {
    /// Locks the mutex, taking the guard even if an earlier holder panicked.
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> MutexExt<T> for Mutex<T> {
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_mutex_still_locks_with_its_value() {
        let mutex = std::sync::Arc::new(Mutex::new(vec![1]));
        let held = mutex.clone();
        let _ = std::thread::spawn(move || {
            let mut guard = held.lock_unpoisoned();
            guard.push(2);
            panic!("holder failed with the lock held");
        })
        .join();
        assert!(mutex.is_poisoned());
        assert_eq!(*mutex.lock_unpoisoned(), vec![1, 2]);
    }
}
