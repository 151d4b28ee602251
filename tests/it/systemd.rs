//! Packaging: the systemd unit (verified by `systemd-analyze`, and read for what the daemon
//! relies on: Type=notify, the watchdog, a stop timeout above the drain deadline, hardening,
//! memory and descriptor limits, the one port it may bind, and the credentials the example
//! configurations name), the sysusers file and the Containerfile.
//! Tests that need systemd's tools say "skipped" and pass where they are not installed.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use humantime_serde::re::humantime;
use secrecy::ExposeSecret;
use vipps_ledger_sync::config::{ExporterTarget, Settings, MAX_CONNECTIONS_LIMIT};

const UNIT_NAME: &str = "vipps-ledger-sync.service";
/// Where the unit's credentials appear: `$CREDENTIALS_DIRECTORY` of this unit.
const CREDENTIALS_DIR: &str = "/run/credentials/vipps-ledger-sync.service/";
/// The exposure `systemd-analyze security` gives the unit (0 best, 10 worst) must stay at or
/// below this; it was 1.1 when the unit was written (docs/operations.md).
const MAX_EXPOSURE: f64 = 1.5;

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_file(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The unit as shipped.
fn unit_text() -> String {
    read("systemd/vipps-ledger-sync.service")
}

/// `(section, key, value)` for every assignment of a unit file, in order.
fn parse_unit(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not an assignment: {line}"));
        out.push((
            section.clone(),
            key.trim().to_owned(),
            value.trim().to_owned(),
        ));
    }
    out
}

/// Every value of `key` in `[Service]`.
fn service_values<'a>(unit: &'a [(String, String, String)], key: &str) -> Vec<&'a str> {
    unit.iter()
        .filter(|(s, k, _)| s == "Service" && k == key)
        .map(|(_, _, v)| v.as_str())
        .collect()
}

/// The single value of `key` in `[Service]`.
fn service_value<'a>(unit: &'a [(String, String, String)], key: &str) -> &'a str {
    match service_values(unit, key).as_slice() {
        [v] => v,
        other => panic!("{key}= should be set once in [Service], found {other:?}"),
    }
}

fn span(value: &str) -> Duration {
    humantime::parse_duration(value).unwrap_or_else(|e| panic!("{value:?}: {e}"))
}

/// Runs a systemd tool, or says the test is skipped and returns `None` where it is missing.
fn systemd_tool(program: &str, args: &[&str], stdin: Option<&Path>) -> Option<Output> {
    let mut command = Command::new(program);
    command.args(args);
    if let Some(path) = stdin {
        command.stdin(Stdio::from(std::fs::File::open(path).unwrap()));
    }
    match command.output() {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("skipped: {program} not found");
            None
        }
        Err(e) => panic!("{program}: {e}"),
    }
}

/// `systemd-analyze verify` on `text` saved as the unit, run without a service manager: no
/// generators, no man page lookups, and errors in units it merely references (postgresql.service
/// need not exist here) ignored.
fn verify(text: &str) -> Option<(bool, String)> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(UNIT_NAME);
    std::fs::write(&path, text).unwrap();
    let out = systemd_tool(
        "systemd-analyze",
        &[
            "verify",
            "--man=no",
            "--generators=no",
            "--recursive-errors=no",
            path.to_str().unwrap(),
        ],
        None,
    )?;
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), output))
}

/// The shipped unit with ExecStart= pointing at the binary this test run built, since
/// `verify` checks that the executable exists.
fn unit_with_test_binary() -> String {
    let text = unit_text();
    let installed = "/usr/local/bin/vipps-ledger-sync ";
    assert!(
        text.contains(&format!("ExecStart={installed}")),
        "ExecStart= should run {installed}"
    );
    text.replace(
        installed,
        &format!("{} ", env!("CARGO_BIN_EXE_vipps-ledger-sync")),
    )
}

#[test]
fn the_unit_passes_systemd_analyze_verify_without_warnings() {
    let Some((ok, output)) = verify(&unit_with_test_binary()) else {
        return;
    };
    assert!(ok, "systemd-analyze verify failed:\n{output}");
    // Warnings about our own file (an ignored key, a bad value) come prefixed with its name.
    assert!(
        !output.contains(UNIT_NAME),
        "systemd-analyze verify warned about the unit:\n{output}"
    );
}

#[test]
fn systemd_analyze_verify_rejects_a_unit_with_an_unknown_directive() {
    let broken = unit_with_test_binary().replace("NoNewPrivileges=yes", "NoNewPrivilegez=yes");
    let Some((ok, output)) = verify(&broken) else {
        return;
    };
    assert!(!ok, "a misspelt directive passed verify:\n{output}");
    assert!(output.contains("NoNewPrivilegez"), "{output}");
}

#[test]
fn the_unit_is_notify_watched_restarted_and_stops_after_the_drain_deadline() {
    let unit = parse_unit(&unit_text());
    assert_eq!(service_value(&unit, "Type"), "notify");
    assert_eq!(service_value(&unit, "NotifyAccess"), "main");
    let watchdog = span(service_value(&unit, "WatchdogSec"));
    assert!(
        watchdog >= Duration::from_secs(30),
        "WatchdogSec={watchdog:?}: the scheduler loop pings every WatchdogSec/2"
    );
    assert!(span(service_value(&unit, "TimeoutStartSec")) >= Duration::from_secs(120));
    assert_eq!(service_value(&unit, "Restart"), "on-failure");

    // The built-in defaults are config/default.toml, compiled in.
    let defaults = Settings::load_with_env(None, HashMap::new()).unwrap();
    let stop = span(service_value(&unit, "TimeoutStopSec"));
    assert!(
        stop >= defaults.sync.drain_deadline + Duration::from_secs(15),
        "TimeoutStopSec={stop:?} leaves too little beyond sync.drain_deadline = {:?}",
        defaults.sync.drain_deadline
    );

    let exec = service_value(&unit, "ExecStart");
    assert!(exec.ends_with(" run"), "{exec}");
    assert!(
        exec.contains("--config /etc/vipps-ledger-sync/config.toml"),
        "{exec}"
    );
}

#[test]
fn the_unit_has_every_required_hardening_directive() {
    let unit = parse_unit(&unit_text());
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("CapabilityBoundingSet", ""),
        ("MemoryDenyWriteExecute", "yes"),
        ("User", "vipps-ledger-sync"),
    ] {
        assert_eq!(service_value(&unit, key), value, "{key}=");
    }
    let filters = service_values(&unit, "SystemCallFilter");
    assert!(filters.contains(&"@system-service"), "{filters:?}");
    assert!(filters.contains(&"~@privileged @resources"), "{filters:?}");
    // Exports go to the state directory; nothing else is writable.
    let state = service_value(&unit, "StateDirectory");
    assert!(
        state
            .split_whitespace()
            .eq(["vipps-ledger-sync", "vipps-ledger-sync/exports"]),
        "{state}"
    );
    assert!(service_values(&unit, "ReadWritePaths").is_empty());
}

/// A unit file size (`256M`, `1G`, plain bytes) in bytes.
fn bytes(value: &str) -> u64 {
    let (number, unit) = value.split_at(
        value
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(value.len()),
    );
    let number: u64 = number.parse().unwrap_or_else(|_| panic!("{value:?}"));
    number
        * match unit {
            "" => 1,
            "K" => 1 << 10,
            "M" => 1 << 20,
            "G" => 1 << 30,
            other => panic!("{value:?}: unit {other:?}"),
        }
}

#[test]
fn the_unit_bounds_memory_and_descriptors_and_binds_only_the_status_endpoints_port() {
    let unit = parse_unit(&unit_text());
    // The daemon's worst case against a hostile API stays under 256 MB: throttling starts
    // above it, the OOM kill later still.
    let high = bytes(service_value(&unit, "MemoryHigh"));
    let max = bytes(service_value(&unit, "MemoryMax"));
    assert!(high >= 256 << 20, "MemoryHigh={high}");
    assert!(
        max > high,
        "MemoryMax={max} must leave room above MemoryHigh={high}"
    );
    let files: usize = service_value(&unit, "LimitNOFILE").parse().unwrap();
    assert!(
        files >= 2 * MAX_CONNECTIONS_LIMIT,
        "LimitNOFILE={files}: http.max_connections may be {MAX_CONNECTIONS_LIMIT}, plus the rest"
    );

    // Binding: the status endpoint's port, as the configuration operators are told to write
    // sets it, and nothing else.
    assert_eq!(service_value(&unit, "SocketBindDeny"), "any");
    let credentials = tempfile::tempdir().unwrap();
    for v in service_values(&unit, "LoadCredential") {
        let name = v.split_once(':').unwrap().0;
        let value = match name {
            "database-url" => "postgres://vls@127.0.0.1/vls".to_owned(),
            _ => format!("value-of-{name}"),
        };
        std::fs::write(credentials.path().join(name), value).unwrap();
    }
    let config = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(config.path(), operations_config()).unwrap();
    let env = HashMap::from([(
        "CREDENTIALS_DIRECTORY".to_owned(),
        credentials.path().to_str().unwrap().to_owned(),
    )]);
    let settings = Settings::load_with_env(Some(config.path()), env).unwrap();
    let port = settings
        .http
        .listen
        .expect("the status endpoint is on")
        .port();
    assert_eq!(
        service_values(&unit, "SocketBindAllow"),
        [format!("tcp:{port}")],
        "http.listen and SocketBindAllow= must name the same port"
    );
}

/// The systemd credential a `*_file` value names: a relative name, or a path in this unit's
/// credentials directory.
fn credential_name(key: &str, value: &str) -> String {
    if Path::new(value).is_relative() {
        return value.to_owned();
    }
    value
        .strip_prefix(CREDENTIALS_DIR)
        .unwrap_or_else(|| panic!("{key} = {value:?} is not a credential of {UNIT_NAME}"))
        .to_owned()
}

/// `key = value` of every `*_file` key in a TOML document, at any depth.
fn file_keys(toml: &str) -> Vec<(String, String)> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let key = format!("{prefix}{k}");
                    match v {
                        serde_json::Value::String(s) if k.ends_with("_file") => {
                            out.push((key, s.clone()))
                        }
                        _ => walk(&format!("{key}."), v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(&format!("{}[{i}].", prefix.trim_end_matches('.')), v, out);
                }
            }
            _ => {}
        }
    }
    let value: serde_json::Value = config::Config::builder()
        .add_source(config::File::from_str(toml, config::FileFormat::Toml))
        .build()
        .unwrap()
        .try_deserialize()
        .unwrap();
    let mut out = Vec::new();
    walk("", &value, &mut out);
    out
}

/// The configuration docs/operations.md tells operators to write: its one ```toml block.
fn operations_config() -> String {
    let doc = read("docs/operations.md");
    let blocks: Vec<&str> = doc
        .split("```toml\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .collect();
    assert_eq!(blocks.len(), 1, "docs/operations.md: one ```toml block");
    blocks[0].to_owned()
}

#[test]
fn the_unit_loads_exactly_the_credentials_the_example_configurations_name() {
    let unit = parse_unit(&unit_text());
    let loaded: BTreeSet<String> = service_values(&unit, "LoadCredential")
        .iter()
        .map(|v| {
            let (name, source) = v.split_once(':').unwrap_or_else(|| panic!("{v}"));
            assert!(
                source.starts_with("/etc/vipps-ledger-sync/credentials/"),
                "LoadCredential={v}"
            );
            name.to_owned()
        })
        .collect();
    assert!(loaded.contains("database-url"), "{loaded:?}");

    let mut named = BTreeSet::new();
    for (source, toml) in [
        ("config/example.toml", read("config/example.toml")),
        ("docs/operations.md", operations_config()),
    ] {
        let keys = file_keys(&toml);
        assert!(!keys.is_empty(), "{source} names no *_file");
        for (key, value) in keys {
            let name = credential_name(&key, &value);
            assert!(
                loaded.contains(&name),
                "{source}: {key} = {value:?}, but the unit has no LoadCredential={name}:…"
            );
            named.insert(name);
        }
    }
    assert_eq!(loaded, named, "credentials loaded but named by no config");
}

#[test]
fn the_operations_config_starts_with_the_units_credentials_and_exports_to_its_state_directory() {
    let credentials = tempfile::tempdir().unwrap();
    let unit = parse_unit(&unit_text());
    for v in service_values(&unit, "LoadCredential") {
        let name = v.split_once(':').unwrap().0;
        // The database URL must be one (a remote one needs sslmode=verify-full).
        let value = match name {
            "database-url" => "postgres://vls@db.internal/vls?sslmode=verify-full".to_owned(),
            _ => format!("value-of-{name}"),
        };
        std::fs::write(credentials.path().join(name), format!("{value}\n")).unwrap();
    }
    let config = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(config.path(), operations_config()).unwrap();
    let env = HashMap::from([(
        "CREDENTIALS_DIRECTORY".to_owned(),
        credentials.path().to_str().unwrap().to_owned(),
    )]);

    let s = Settings::load_with_env(Some(config.path()), env).unwrap();
    assert_eq!(
        s.database.url.expose_secret(),
        "postgres://vls@db.internal/vls?sslmode=verify-full"
    );
    assert!(!s.partners.is_empty());
    for p in &s.partners {
        assert!(p.client_secret.expose_secret().starts_with("value-of-"));
    }
    let listen = s.http.listen.expect("the status endpoint is on");
    assert!(listen.ip().is_loopback(), "{listen}");
    assert!(!s.exporters.is_empty());
    for e in &s.exporters {
        if let ExporterTarget::Directory { path, .. } = &e.target {
            assert!(
                path.starts_with("/var/lib/vipps-ledger-sync/exports"),
                "exporter {} writes to {}, outside StateDirectory=",
                e.name,
                path.display()
            );
        }
    }
}

#[test]
fn the_unit_keeps_its_systemd_analyze_security_exposure_low() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(UNIT_NAME);
    std::fs::write(&path, unit_text()).unwrap();
    let Some(out) = systemd_tool(
        "systemd-analyze",
        &["security", "--offline=true", path.to_str().unwrap()],
        None,
    ) else {
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("--offline") {
        eprintln!("skipped: this systemd-analyze has no --offline (systemd < 250)");
        return;
    }
    let marker = format!("Overall exposure level for {UNIT_NAME}: ");
    let score: f64 = stdout
        .lines()
        .find_map(|l| l.trim_start_matches('→').trim().strip_prefix(&marker))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no score in:\n{stdout}{stderr}"));
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} > {MAX_EXPOSURE}:\n{stdout}"
    );
}

#[test]
fn the_sysusers_file_creates_the_units_user_with_the_state_directory_as_home() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    let Some(out) = systemd_tool(
        "systemd-sysusers",
        &[&format!("--root={}", root.path().display()), "-"],
        Some(&repo_file("systemd/vipps-ledger-sync.sysusers")),
    ) else {
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let fields: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("vipps-ledger-sync:"))
        .unwrap_or_else(|| panic!("no user in:\n{passwd}"))
        .split(':')
        .collect();
    assert_ne!(fields[2], "0", "a system user, not root");
    assert_eq!(fields[5], "/var/lib/vipps-ledger-sync");
    assert_eq!(fields[6], "/usr/sbin/nologin");

    let unit = parse_unit(&unit_text());
    assert_eq!(service_value(&unit, "User"), fields[0]);
    assert_eq!(service_value(&unit, "Group"), fields[0]);
    assert_eq!(service_value(&unit, "WorkingDirectory"), fields[5]);
}

#[test]
fn the_containerfile_builds_locked_and_runs_the_daemon_as_a_numeric_non_root_user() {
    let text = read("Containerfile");
    assert!(text.contains("cargo build --release --locked"), "{text}");
    let user = text
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("USER "))
        .expect("a USER line");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("USER {user}: numeric, so runAsNonRoot can check it"));
    assert_ne!(uid, 0);
    assert!(text.contains(
        r#"ENTRYPOINT ["/usr/local/bin/vipps-ledger-sync", "--config", "/etc/vipps-ledger-sync/config.toml"]"#
    ));
    assert!(text.contains(r#"CMD ["run"]"#));
    let ignore = read(".containerignore");
    for entry in ["target", ".git"] {
        assert!(
            ignore.lines().any(|l| l.trim_matches('/') == entry),
            "{entry}"
        );
    }
}
