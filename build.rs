//! Tells dependents whether this build links `std`: its `std` feature, which
//! another package of the same build may have enabled (cargo unifies
//! features). The C shim reads it as `DEP_MAGBUDDY_STD` and leaves the
//! panic handler to `std` when it is there (`preload/build.rs`).

fn main() {
    if std::env::var_os("CARGO_FEATURE_STD").is_some() {
        println!("cargo:std=1");
    }
}
