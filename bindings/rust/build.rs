//! Finds libshmring: SHMRING_LIB_DIR (a folder holding libshmring.so, e.g. a CMake build
//! tree) when set, else pkg-config's `shmring` module (PKG_CONFIG_PATH is honoured), as
//! -sys crates do. The library's folder is also put in the rpath of this package's own
//! tests and examples so that they run without LD_LIBRARY_PATH.
use std::env;

fn main() {
    println!("cargo:rerun-if-env-changed=SHMRING_LIB_DIR");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    if let Ok(dir) = env::var("SHMRING_LIB_DIR") {
        println!("cargo:rustc-link-search=native={}", dir);
        println!("cargo:rustc-link-lib=dylib=shmring");
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir);
        return;
    }
    match pkg_config::Config::new().atleast_version("0.1").probe("shmring") {
        Ok(lib) => {
            for dir in &lib.link_paths {
                println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
            }
        }
        Err(e) => panic!(
            "libshmring not found: install it (cmake --install) and point PKG_CONFIG_PATH at \
             <prefix>/lib/pkgconfig, or set SHMRING_LIB_DIR to the folder of libshmring.so\n{}",
            e
        ),
    }
}
