//! Link the kernel with our linker script as a non-PIE `ET_EXEC` at 1 MiB, so
//! QEMU's PVH loader (`qemu -kernel`) can place it at its physical address.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
    println!("cargo:rustc-link-arg-bins=-no-pie");
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=src/arch/x86_64/boot.s");
}
