//! Quiet panics while a mutant is being hunted: the detectors report a
//! seeded bug by panicking, and the suites record the payload instead of
//! printing hundreds of expected backtraces.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use magbuddy::mutant::Mutant;

/// Set while a mutant is expected to make its detector panic.
static HUNTING: AtomicBool = AtomicBool::new(false);

/// Installs a panic hook that stays silent while a mutant is hunted (the
/// message is recorded from the payload instead) and otherwise is the
/// default hook.
pub fn install_quiet_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // Relaxed: a flag of this test thread's own run.
        if !HUNTING.load(Relaxed) {
            default(info);
        }
    }));
}

/// Runs `f` with panics silenced when `mutant` is a real defect.
pub fn hunting<R>(mutant: Mutant, f: impl FnOnce() -> R) -> R {
    HUNTING.store(mutant != Mutant::None, Relaxed);
    let r = f();
    HUNTING.store(false, Relaxed);
    r
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}

/// Runs `f` with panics silenced (a hunt that expects failures and records
/// their payloads).
pub fn quietly<R>(f: impl FnOnce() -> R) -> R {
    HUNTING.store(true, Relaxed);
    let r = f();
    HUNTING.store(false, Relaxed);
    r
}
