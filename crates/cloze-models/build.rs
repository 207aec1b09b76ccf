//! Compiles `csrc/int8.cpp` (the dynamic int8 linear, which tch does not bind)
//! against the provisioned libtorch's headers.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc/int8.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(libtorch) = env::var_os("LIBTORCH").map(PathBuf::from) else {
        panic!("LIBTORCH is not set: run `cargo xtask libtorch` (the repository's .cargo/config.toml points LIBTORCH at the install)");
    };
    let include = libtorch.join("include");
    if !include
        .join("ATen/native/quantized/PackedParams.h")
        .is_file()
    {
        panic!(
            "{} has no ATen quantised headers: provision libtorch with `cargo xtask libtorch`",
            include.display()
        );
    }
    let abi = env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .file("csrc/int8.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        // libtorch's headers trip many warnings that are not ours.
        .warnings(false)
        .extra_warnings(false)
        .flag_if_supported("-w")
        .compile("cloze_models_int8");
    let lib = libtorch.join("lib");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}
