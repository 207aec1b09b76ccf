//! Compiles `csrc/shim.cpp` against the provisioned libtorch's c10d headers
//! and the gloo headers `cargo xtask libtorch` installs (`CLOZE_GLOO_INCLUDE`).

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc/shim.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=CLOZE_GLOO_INCLUDE");
    let Some(libtorch) = env::var_os("LIBTORCH").map(PathBuf::from) else {
        panic!("LIBTORCH is not set: run `cargo xtask libtorch` (the repository's .cargo/config.toml points LIBTORCH at the install)");
    };
    let gloo = env::var_os("CLOZE_GLOO_INCLUDE").map(PathBuf::from);
    let gloo =
        match gloo {
            Some(dir) if dir.join("gloo").join("allreduce.h").is_file() => dir,
            other => panic!(
            "the gloo C++ headers are missing{}: run `cargo xtask libtorch`, which installs them, \
             or set CLOZE_GLOO_INCLUDE to a directory holding gloo/ (a PyTorch source tree's \
             third_party/gloo, or Debian's libgloo-dev)",
            other.map(|d| format!(" (CLOZE_GLOO_INCLUDE={})", d.display())).unwrap_or_default()
        ),
        };
    let include = libtorch.join("include");
    if !include
        .join("torch/csrc/distributed/c10d/ProcessGroupGloo.hpp")
        .is_file()
    {
        panic!(
            "{} has no c10d headers (torch/csrc/distributed/c10d): provision libtorch with `cargo xtask libtorch`",
            include.display()
        );
    }
    let abi = env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .file("csrc/shim.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .include(&gloo)
        .flag("-std=c++17")
        .flag("-DUSE_C10D_GLOO")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        // libtorch's headers trip many warnings that are not ours.
        .warnings(false)
        .extra_warnings(false)
        .flag_if_supported("-w")
        .compile("cloze_dist_shim");
    let lib = libtorch.join("lib");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}
