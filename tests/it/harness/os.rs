//! Small OS helpers for the harness: users and groups, signals to process
//! groups, listening-socket checks, loopback port reservation, TLS material.

use std::collections::HashSet;
use std::fs;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

pub(crate) const SIGKILL: i32 = 9;

extern "C" {
    // From the C library that std already links; avoids a `libc` dev-dependency.
    fn kill(pid: i32, sig: i32) -> i32;
    fn geteuid() -> u32;
}

pub(crate) fn is_root() -> bool {
    // SAFETY: no arguments, cannot fail.
    unsafe { geteuid() == 0 }
}

/// Sends `signal` to every process of process group `pgid`.
pub(crate) fn kill_group(pgid: u32, signal: i32) {
    let pgid = i32::try_from(pgid).expect("pid fits in i32");
    assert!(pgid > 1, "refusing to signal process group {pgid}");
    // SAFETY: plain syscall wrapper; a negative pid addresses the group.
    unsafe {
        kill(-pgid, signal);
    }
}

/// Processes of group `pgid` that are still alive (zombies excluded).
pub(crate) fn live_group_members(pgid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp ..."; comm may contain spaces and parens.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("");
        let _ppid = fields.next();
        let pgrp = fields.next().and_then(|s| s.parse::<u32>().ok());
        if pgrp == Some(pgid) && state != "Z" && state != "X" {
            out.push(pid);
        }
    }
    out
}

/// Kills a whole process group with SIGKILL and waits (bounded) until none
/// of its processes is alive any more.
pub(crate) fn kill_group_and_wait(pgid: u32) {
    kill_group(pgid, SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(3);
    while !live_group_members(pgid).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// True if some socket is in LISTEN state on 127.0.0.1:`port` (or 0.0.0.0).
pub(crate) fn is_listening(port: u16) -> bool {
    let Ok(table) = fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let wanted = [
        format!("0100007F:{port:04X}"),
        format!("00000000:{port:04X}"),
    ];
    table.lines().skip(1).any(|line| {
        let mut f = line.split_whitespace();
        let (_sl, local, _remote, state) = (f.next(), f.next(), f.next(), f.next());
        state == Some("0A") && local.is_some_and(|l| wanted.iter().any(|w| w == l))
    })
}

/// Whether 127.0.0.1:`port` can be bound right now.
pub(crate) fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn reserved_ports() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Picks `n` distinct free loopback ports that no other stack of this
/// process holds. They stay reserved until [`release_ports`].
pub(crate) fn reserve_ports(n: usize) -> Vec<u16> {
    let mut reserved = reserved_ports().lock().unwrap_or_else(|e| e.into_inner());
    let mut listeners = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < n {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local_addr").port();
        // Keep every listener open until all are picked, so the kernel hands
        // out distinct ports.
        listeners.push(l);
        if reserved.insert(port) {
            ports.push(port);
        }
    }
    ports
}

pub(crate) fn release_ports(ports: &[u16]) {
    let mut reserved = reserved_ports().lock().unwrap_or_else(|e| e.into_inner());
    for p in ports {
        reserved.remove(p);
    }
}

/// Looks a user up in /etc/passwd: (uid, gid).
pub(crate) fn user_ids(name: &str) -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == name {
            return (
                f[2].parse().expect("uid in /etc/passwd"),
                f[3].parse().expect("gid in /etc/passwd"),
            );
        }
    }
    panic!("user `{name}` does not exist: run scripts/install-test-deps (as root)")
}

/// Looks a group up in /etc/group.
pub(crate) fn group_id(name: &str) -> u32 {
    let group = fs::read_to_string("/etc/group").expect("read /etc/group");
    for line in group.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 2 && f[0] == name {
            return f[2].parse().expect("gid in /etc/group");
        }
    }
    panic!("group `{name}` does not exist: run scripts/install-test-deps (as root)")
}

pub(crate) fn mkdir(path: &Path, mode: u32, owner: Option<(u32, u32)>) {
    use std::os::unix::fs::PermissionsExt;
    match fs::create_dir(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => panic!("mkdir {}: {e}", path.display()),
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    }
}

pub(crate) fn write_file(path: &Path, contents: impl AsRef<[u8]>, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Writes `path` atomically (temp file + rename), so readers never see half a file.
pub(crate) fn write_file_atomic(path: &Path, contents: impl AsRef<[u8]>, mode: u32) {
    let tmp = path.with_extension("tmp");
    write_file(&tmp, contents, mode);
    fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
}

/// Sets a file's mtime `secs` seconds into the past. Postfix's master waits
/// until its configuration files are a couple of seconds old.
pub(crate) fn backdate(path: &Path, secs: u64) {
    let when = SystemTime::now() - Duration::from_secs(secs);
    let f = fs::File::options()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.set_times(fs::FileTimes::new().set_modified(when).set_accessed(when))
        .unwrap_or_else(|e| panic!("set mtime of {}: {e}", path.display()));
}

/// Last `n` lines of a file, or a note that it is missing.
pub(crate) fn tail(path: &Path, n: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(n);
            lines[start..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

/// PEM files of a CA and of a server certificate it signed for `localhost`
/// and 127.0.0.1.
pub(crate) struct TlsMaterial {
    pub ca_pem: Vec<u8>,
    pub server_pem: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// Generated once per test binary with the `openssl` CLI (EC P-256, fast),
/// then copied into every stack.
pub(crate) fn tls_material() -> &'static TlsMaterial {
    static TLS: OnceLock<TlsMaterial> = OnceLock::new();
    TLS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir for TLS material");
        let d = dir.path();
        let p = |name: &str| d.join(name).display().to_string();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        openssl(
            &[
                &["req", "-x509", "-nodes", "-days", "3650"][..],
                &ec,
                &["-keyout", &p("ca.key"), "-out", &p("ca.pem")],
                &["-subj", "/CN=canvass test CA"],
                &["-addext", "basicConstraints=critical,CA:TRUE"],
                &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req", "-x509", "-nodes", "-days", "3650"][..],
                &ec,
                &["-keyout", &p("server.key"), "-out", &p("server.pem")],
                &["-CA", &p("ca.pem"), "-CAkey", &p("ca.key")],
                &["-subj", "/CN=localhost"],
                &["-addext", "basicConstraints=critical,CA:FALSE"],
                &["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                &["-addext", "keyUsage=critical,digitalSignature"],
                &["-addext", "extendedKeyUsage=serverAuth"],
            ]
            .concat(),
        );
        let read = |name: &str| fs::read(d.join(name)).expect("read generated TLS file");
        TlsMaterial {
            ca_pem: read("ca.pem"),
            server_pem: read("server.pem"),
            server_key: read("server.key"),
        }
    })
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}): run scripts/install-test-deps"));
    assert!(
        out.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// First existing path among `candidates`, else the bare program name.
pub(crate) fn find_program(candidates: &[&str]) -> String {
    candidates
        .iter()
        .find(|c| Path::new(c).exists())
        .map(|c| c.to_string())
        .unwrap_or_else(|| {
            Path::new(candidates[0])
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
}

/// True if process `pid` itself holds a socket listening on 127.0.0.1:`port`
/// (so a foreign process on that port does not count).
pub(crate) fn is_listening_by(port: u16, pid: u32) -> bool {
    let Ok(table) = fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let wanted = format!("0100007F:{port:04X}");
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.len() > 9 && f[1] == wanted && f[3] == "0A").then(|| format!("socket:[{}]", f[9]))
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        fs::read_link(fd.path())
            .map(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
            .unwrap_or(false)
    })
}
