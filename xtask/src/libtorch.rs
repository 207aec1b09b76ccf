//! Provisioning libtorch 2.13.0 (the version tch 0.26 pins) from the PyTorch wheels.
//!
//! Only the package registries are reachable, so libtorch comes out of the `torch`
//! wheel that `pip download` fetches. The CPU flavour keeps the five CPU libraries
//! plus `libcudart.so.13` and `libcupti.so.13` (which `libtorch_cpu.so` needs at
//! load time even for CPU work); the CUDA flavour keeps every library and those of
//! the NVIDIA wheels torch depends on.
//!
//! The install is staged in a private directory beside the destination, verified,
//! marked, then renamed into place: an interrupted run never leaves a directory
//! that a later run trusts, because only a complete rename produces the final name
//! and only a verified directory carries the marker.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The libtorch version tch 0.26 is built against.
pub const TORCH_VERSION: &str = "2.13.0";
const MARKER: &str = ".cloze-libtorch.json";

/// Wheels of the CPU flavour and their SHA-256 digests. Pinning the Python tag and
/// the platform makes the download the same file on every machine.
const CPU_WHEELS: &[(&str, &str)] = &[
    (
        "torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl",
        "60fcdcb2f3876e21146cb4524ef06397d727ca9ad5f020818547e25075fe3cb7",
    ),
    (
        "nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        "7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548",
    ),
    (
        "nvidia_cuda_cupti-13.0.85-py3-none-manylinux_2_25_x86_64.whl",
        "4eb01c08e859bf924d222250d2e8f8b8ff6d3db4721288cf35d14252a4d933c8",
    ),
];
const CPU_REQUIREMENTS: &[&str] = &[
    "torch==2.13.0",
    "nvidia-cuda-runtime==13.0.96",
    "nvidia-cuda-cupti==13.0.85",
];
const CPU_LIBS: &[&str] = &[
    "libc10.so",
    "libtorch_cpu.so",
    "libtorch.so",
    "libgomp.so.1",
    "libshm.so",
];
const RUNTIME_LIBS: &[&str] = &["libcudart.so.13", "libcupti.so.13"];

/// What to provision.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// Keep the CUDA libraries (for GPU machines).
    pub cuda: bool,
    /// Reinstall even when a verified install exists.
    pub force: bool,
}

impl Options {
    fn flavour(&self) -> &'static str {
        if self.cuda {
            "cuda"
        } else {
            "cpu"
        }
    }
}

/// The cache root: `$CLOZE_CACHE_DIR`, else `$XDG_CACHE_HOME/cloze`, else `~/.cache/cloze`.
pub fn cache_root() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("CLOZE_CACHE_DIR") {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(d).join("cloze"));
    }
    match std::env::var_os("HOME") {
        Some(h) => Ok(PathBuf::from(h).join(".cache").join("cloze")),
        None => {
            bail!("cannot choose a cache directory: set CLOZE_CACHE_DIR, XDG_CACHE_HOME or HOME")
        }
    }
}

/// The directory `.libtorch` in the repository points at, if it is a usable install.
pub fn linked_dir(root: &Path) -> Result<PathBuf> {
    let link = root.join(".libtorch");
    let target = fs::canonicalize(&link).with_context(|| {
        format!(
            "{} is missing: run `cargo xtask libtorch` first",
            link.display()
        )
    })?;
    read_version(&target)?;
    Ok(target)
}

/// Makes sure a verified libtorch exists and `.libtorch` points at it; returns its path.
pub fn ensure(opts: &Options) -> Result<PathBuf> {
    let root = crate::repo_root();
    // A user's own LIBTORCH wins, unless it is our own link (cargo's [env] sets that).
    if let Some(user) = std::env::var_os("LIBTORCH") {
        let user = PathBuf::from(user);
        // cargo's [env] passes our own `.libtorch` link through as LIBTORCH.
        if user != root.join(".libtorch") {
            let version = read_version(&user)
                .with_context(|| format!("LIBTORCH={} is not a usable libtorch", user.display()))?;
            check_version(&version, &user)?;
            link(&root, &user)?;
            eprintln!("using LIBTORCH={} (version {version})", user.display());
            return Ok(user);
        }
    }
    let cache = cache_root()?;
    let name = format!("libtorch-{TORCH_VERSION}-{}", opts.flavour());
    let dest = cache.join(&name);
    if !opts.force {
        if let Ok(v) = verify(&dest, opts) {
            link(&root, &dest)?;
            eprintln!(
                "libtorch {v} ({}) already provisioned at {}",
                opts.flavour(),
                dest.display()
            );
            return Ok(dest);
        }
        if dest.exists() {
            eprintln!(
                "{} exists but does not verify; reinstalling",
                dest.display()
            );
        }
    }
    fs::create_dir_all(&cache).with_context(|| format!("creating cache {}", cache.display()))?;
    clean_stale_partials(&cache, &name);
    let staging = cache.join(format!(".{name}.partial-{}", std::process::id()));
    if staging.exists() {
        fs::remove_dir_all(&staging)?;
    }
    fs::create_dir_all(&staging)?;
    let result = install_into(&staging, opts);
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }
    // Swap into place: the old directory (if any) is moved aside first, so the final
    // name only ever refers to a complete, verified install.
    if dest.exists() {
        let old = cache.join(format!(".{name}.old-{}", std::process::id()));
        fs::rename(&dest, &old)?;
        fs::remove_dir_all(&old).ok();
    }
    fs::rename(&staging, &dest).with_context(|| format!("moving {} into place", dest.display()))?;
    let v = verify(&dest, opts)?;
    link(&root, &dest)?;
    eprintln!(
        "libtorch {v} ({}) provisioned at {}",
        opts.flavour(),
        dest.display()
    );
    Ok(dest)
}

/// Removes `.NAME.partial-PID` and `.NAME.old-PID` directories in `cache` whose process
/// is gone: what an interrupted install of `NAME` left behind.
pub(crate) fn clean_stale_partials(cache: &Path, name: &str) {
    let Ok(rd) = fs::read_dir(cache) else { return };
    for e in rd.flatten() {
        let fname = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = fname
            .strip_prefix(&format!(".{name}.partial-"))
            .or_else(|| fname.strip_prefix(&format!(".{name}.old-")))
        else {
            continue;
        };
        // A directory left by a process that is no longer running is garbage.
        if !Path::new("/proc").join(pid).exists() {
            eprintln!("removing an interrupted install: {}", e.path().display());
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

fn python() -> Result<String> {
    for py in ["python3", "python"] {
        let ok = Command::new(py)
            .args(["-m", "pip", "--version"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return Ok(py.to_owned());
        }
    }
    bail!(
        "pip is needed to fetch libtorch but neither `python3 -m pip` nor `python -m pip` works; \
         install Python 3 with pip (e.g. `apt-get install python3-pip`), or set LIBTORCH to an \
         existing libtorch {TORCH_VERSION} directory"
    )
}

fn install_into(staging: &Path, opts: &Options) -> Result<()> {
    let py = python()?;
    let wheels = staging.join("wheels");
    fs::create_dir_all(&wheels)?;
    eprintln!("downloading the torch {TORCH_VERSION} wheel with pip (about 530 MB)...");
    let mut cmd = Command::new(&py);
    cmd.args([
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
    ])
    .args([
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        "3.11",
    ])
    .args([
        "--platform",
        "manylinux_2_28_x86_64",
        "--platform",
        "manylinux_2_25_x86_64",
    ])
    .args([
        "--platform",
        "manylinux_2_17_x86_64",
        "--platform",
        "manylinux2014_x86_64",
        "--dest",
    ])
    .arg(&wheels);
    if opts.cuda {
        // torch's own dependency list names the NVIDIA wheels; pure-Python ones come too.
        cmd.arg(format!("torch=={TORCH_VERSION}"));
    } else {
        cmd.arg("--no-deps").args(CPU_REQUIREMENTS);
    }
    let status = cmd
        .status()
        .with_context(|| format!("running {py} -m pip download"))?;
    if !status.success() {
        bail!(
            "pip download failed ({status}); check that the package registry is reachable \
             and that there is disk space in {}",
            staging.display()
        );
    }
    if !opts.cuda {
        for (file, want) in CPU_WHEELS {
            let path = wheels.join(file);
            let got = sha256_file(&path).with_context(|| format!("pip did not produce {file}"))?;
            if got != *want {
                bail!("checksum mismatch for {file}: expected {want}, got {got}");
            }
        }
    }
    eprintln!("extracting libtorch...");
    let script = r#"
import sys, zipfile, os, glob, shutil
wheels, out, cuda, keep = sys.argv[1], sys.argv[2], sys.argv[3] == "1", set(sys.argv[4].split(","))
lib = os.path.join(out, "lib"); os.makedirs(lib, exist_ok=True)
for w in sorted(glob.glob(os.path.join(wheels, "*.whl"))):
    z = zipfile.ZipFile(w)
    for info in z.infolist():
        n = info.filename
        if n.endswith("/"):
            continue
        if n.startswith("torch/"):
            rel = n[len("torch/"):]
            if rel.startswith("include/") or rel.startswith("share/"):
                dst = os.path.join(out, rel)
            elif rel.startswith("lib/") and rel.count("/") == 1:
                base = rel[4:]
                if not (cuda and ".so" in base) and base not in keep:
                    continue
                dst = os.path.join(out, rel)
            elif rel == "version.py":
                dst = os.path.join(out, "torch-version.py")
            else:
                continue
        elif n.startswith("nvidia/") and "/lib/" in n and ".so" in os.path.basename(n):
            base = os.path.basename(n)
            if not cuda and base not in keep:
                continue
            dst = os.path.join(lib, base)
        else:
            continue
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with z.open(info) as src, open(dst, "wb") as f:
            shutil.copyfileobj(src, f, 1 << 20)
"#;
    let keep: Vec<&str> = CPU_LIBS.iter().chain(RUNTIME_LIBS).copied().collect();
    let status = Command::new(&py)
        .arg("-c")
        .arg(script)
        .arg(&wheels)
        .arg(staging)
        .arg(if opts.cuda { "1" } else { "0" })
        .arg(keep.join(","))
        .status()
        .context("running the wheel extractor")?;
    if !status.success() {
        bail!("extracting the wheels failed ({status})");
    }
    fs::remove_dir_all(&wheels)?;
    let version = version_from_py(&staging.join("torch-version.py"))?;
    check_version(&version, staging)?;
    // tch's build script reads `build-version`, as in the official libtorch archives.
    fs::write(staging.join("build-version"), format!("{version}\n"))?;
    let gomp = staging.join("lib/libgomp.so");
    if !gomp.exists() {
        std::os::unix::fs::symlink("libgomp.so.1", &gomp)?;
    }
    let mut files = Vec::new();
    for name in required_libs(opts) {
        let p = staging.join("lib").join(name);
        let len = fs::metadata(&p)
            .with_context(|| format!("the wheels did not contain lib/{name}"))?
            .len();
        files.push(format!("{{\"file\":\"lib/{name}\",\"bytes\":{len}}}"));
    }
    for f in [
        "include/torch/csrc/api/include/torch/torch.h",
        "include/ATen/ATen.h",
    ] {
        if !staging.join(f).exists() {
            bail!("the wheel did not contain {f}");
        }
    }
    let marker = format!(
        "{{\"version\":\"{version}\",\"flavour\":\"{}\",\"files\":[{}]}}\n",
        opts.flavour(),
        files.join(",")
    );
    let mpath = staging.join(MARKER);
    fs::write(&mpath, marker)?;
    fs::File::open(&mpath)?.sync_all()?;
    Ok(())
}

fn required_libs(opts: &Options) -> Vec<&'static str> {
    let mut v: Vec<&str> = CPU_LIBS.iter().chain(RUNTIME_LIBS).copied().collect();
    if opts.cuda {
        v.push("libtorch_cuda.so");
        v.push("libc10_cuda.so");
    }
    v
}

/// Checks an install made by `ensure`: its marker, and every listed file with its size.
fn verify(dir: &Path, opts: &Options) -> Result<String> {
    let marker = fs::read_to_string(dir.join(MARKER)).context("no provisioning marker")?;
    if !marker.contains(&format!("\"flavour\":\"{}\"", opts.flavour())) {
        bail!("flavour differs");
    }
    for entry in marker.split("{\"file\":\"").skip(1) {
        let (file, rest) = entry.split_once('"').context("bad marker")?;
        let bytes: u64 = rest
            .trim_start_matches(",\"bytes\":")
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|s| s.parse().ok())
            .context("bad marker")?;
        let len = fs::metadata(dir.join(file))
            .with_context(|| format!("{file} missing"))?
            .len();
        if len != bytes {
            bail!("{file} has {len} bytes, expected {bytes}");
        }
    }
    let v = read_version(dir)?;
    check_version(&v, dir)?;
    Ok(v)
}

/// Reads libtorch's version from its files (`build-version`, or torch's `version.py`).
fn read_version(dir: &Path) -> Result<String> {
    if let Ok(s) = fs::read_to_string(dir.join("build-version")) {
        return Ok(s.trim().to_owned());
    }
    for p in ["torch-version.py", "version.py"] {
        if dir.join(p).exists() {
            return version_from_py(&dir.join(p));
        }
    }
    if dir.join("lib/libtorch_cpu.so").exists() {
        bail!(
            "{} has no build-version file, so its version cannot be checked",
            dir.display()
        );
    }
    bail!(
        "{} does not look like libtorch (no lib/libtorch_cpu.so)",
        dir.display()
    )
}

fn version_from_py(path: &Path) -> Result<String> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix("__version__ = "))
        .map(|v| v.trim().trim_matches(|c| c == '\'' || c == '"').to_owned())
        .with_context(|| format!("no __version__ in {}", path.display()))
}

fn check_version(version: &str, dir: &Path) -> Result<()> {
    let base = version.split('+').next().unwrap_or(version);
    if base != TORCH_VERSION {
        bail!(
            "{} holds libtorch {version}, but tch 0.26 needs {TORCH_VERSION}",
            dir.display()
        );
    }
    Ok(())
}

fn link(root: &Path, target: &Path) -> Result<()> {
    let link = root.join(".libtorch");
    if fs::read_link(&link).ok().as_deref() == Some(target) {
        return Ok(());
    }
    let previous = fs::read_link(&link).ok();
    let tmp = root.join(format!(".libtorch.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    fs::rename(&tmp, &link).with_context(|| format!("updating {}", link.display()))?;
    if previous.is_some() {
        // tch's build script only reruns when LIBTORCH's value changes, and the link's
        // path stays the same, so a switch of install must rebuild it explicitly.
        eprintln!("libtorch changed; rebuilding torch-sys on the next build");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let _ = std::process::Command::new(cargo)
            .args(["clean", "-p", "torch-sys"])
            .current_dir(root)
            .status();
    }
    Ok(())
}

/// The SHA-256 digest of a file, in lower-case hex.
pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_install(dir: &Path) {
        fs::create_dir_all(dir.join("lib")).unwrap();
        let mut files = Vec::new();
        for name in required_libs(&Options::default()) {
            fs::write(dir.join("lib").join(name), name.as_bytes()).unwrap();
            files.push(format!(
                "{{\"file\":\"lib/{name}\",\"bytes\":{}}}",
                name.len()
            ));
        }
        fs::write(dir.join("build-version"), "2.13.0+cu130\n").unwrap();
        let marker = format!(
            "{{\"version\":\"2.13.0\",\"flavour\":\"cpu\",\"files\":[{}]}}",
            files.join(",")
        );
        fs::write(dir.join(MARKER), marker).unwrap();
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn complete_install_verifies() {
        let d = scratch("ok");
        fake_install(&d);
        assert_eq!(verify(&d, &Options::default()).unwrap(), "2.13.0+cu130");
        assert!(
            verify(
                &d,
                &Options {
                    cuda: true,
                    force: false
                }
            )
            .is_err(),
            "flavour must match"
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn truncated_library_or_missing_marker_is_not_trusted() {
        let d = scratch("trunc");
        fake_install(&d);
        fs::write(d.join("lib/libtorch_cpu.so"), b"x").unwrap();
        assert!(verify(&d, &Options::default()).is_err());
        fake_install(&d);
        fs::remove_file(d.join(MARKER)).unwrap();
        assert!(verify(&d, &Options::default()).is_err());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn wrong_version_is_refused() {
        let d = scratch("ver");
        fake_install(&d);
        fs::write(d.join("build-version"), "2.12.1+cpu\n").unwrap();
        let err = verify(&d, &Options::default()).unwrap_err().to_string();
        assert!(err.contains("2.12.1"), "{err}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn partial_dirs_of_dead_processes_are_removed() {
        let d = scratch("partial");
        let dead = d.join(".libtorch-2.13.0-cpu.partial-999999999");
        let alive = d.join(format!(
            ".libtorch-2.13.0-cpu.partial-{}",
            std::process::id()
        ));
        fs::create_dir_all(&dead).unwrap();
        fs::create_dir_all(&alive).unwrap();
        clean_stale_partials(&d, "libtorch-2.13.0-cpu");
        assert!(!dead.exists());
        assert!(alive.exists());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn version_is_read_from_version_py() {
        let d = scratch("py");
        fs::create_dir_all(&d).unwrap();
        fs::write(
            d.join("torch-version.py"),
            "x = 1\n__version__ = '2.13.0+cu130'\n",
        )
        .unwrap();
        assert_eq!(read_version(&d).unwrap(), "2.13.0+cu130");
        fs::remove_dir_all(&d).unwrap();
    }
}
