//! `cfg(magbuddy_std)` when the `magbuddy` of this build links `std` (see
//! its `build.rs`): the shim is `no_std` with its own panic handler only
//! when nothing else brings `std` in, e.g. `cargo build --release -p
//! magbuddy-preload`, but not in a workspace build where other packages
//! enable `magbuddy/std`.

fn main() {
    println!("cargo:rustc-check-cfg=cfg(magbuddy_std)");
    if std::env::var_os("DEP_MAGBUDDY_STD").is_some() {
        println!("cargo:rustc-cfg=magbuddy_std");
    }
}
