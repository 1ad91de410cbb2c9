//! Architecture support. Only x86_64 exists; its modules are re-exported so
//! the rest of the demo writes `arch::serial`, `arch::cpu`, ...

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use x86_64::*;
