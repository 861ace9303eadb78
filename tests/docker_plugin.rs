//! The Docker volume plugin (`goldenfs daemon --docker-plugin`), spoken to
//! over its Unix socket the way dockerd does: HTTP POSTs with JSON bodies.
//! Real daemon, real FUSE mounts.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// A daemon serving the plugin on `<root>/plugin.sock`, volumes in `<root>/vols`.
fn start() -> Daemon {
    Daemon::start_with(&[
        "--docker-plugin={root}/plugin.sock",
        "--docker-volume-dir",
        "{root}/vols",
    ])
}

fn plugin_socket(d: &Daemon) -> PathBuf {
    d.root().join("plugin.sock")
}

fn vol_path(d: &Daemon, name: &str) -> PathBuf {
    d.root().join("vols").join(name)
}

/// One HTTP exchange: `METHOD /endpoint` with `body`; returns the status,
/// the Content-Type header and the parsed JSON body.
fn http(sock: &Path, method: &str, endpoint: &str, body: &str) -> (u16, String, Value) {
    let mut s = UnixStream::connect(sock).unwrap_or_else(|e| panic!("connect {}: {e}", sock.display()));
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        s,
        "{method} /{endpoint} HTTP/1.1\r\nHost: goldenfs\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).expect("UTF-8 reply");
    let (head, payload) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in:\n{text}"));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in:\n{head}"));
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    let value = serde_json::from_str(payload).unwrap_or_else(|e| panic!("reply body is not JSON ({e}):\n{text}"));
    (status, content_type, value)
}

/// POSTs to the plugin; returns the reply (HTTP 200 expected).
fn post(d: &Daemon, endpoint: &str, body: Value) -> Value {
    let (status, _, v) = http(&plugin_socket(d), "POST", endpoint, &body.to_string());
    assert_eq!(
        status,
        200,
        "{endpoint} {body}: {v}\n--- daemon log ---\n{}",
        d.log_text()
    );
    v
}

/// POSTs and expects success (`"Err":""`).
fn ok(d: &Daemon, endpoint: &str, body: Value) -> Value {
    let v = post(d, endpoint, body.clone());
    assert_eq!(
        v["Err"],
        json!(""),
        "{endpoint} {body} failed: {v}\n--- daemon log ---\n{}",
        d.log_text()
    );
    v
}

/// POSTs and expects a non-empty `Err`; returns it.
fn err(d: &Daemon, endpoint: &str, body: Value) -> String {
    let v = post(d, endpoint, body.clone());
    let e = v["Err"].as_str().unwrap_or_default().to_string();
    assert!(!e.is_empty(), "{endpoint} {body} should have failed: {v}");
    e
}

fn create(d: &Daemon, name: &str, opts: Value) {
    ok(d, "VolumeDriver.Create", json!({"Name": name, "Opts": opts}));
}

fn mount(d: &Daemon, name: &str, id: &str) -> String {
    let v = ok(d, "VolumeDriver.Mount", json!({"Name": name, "ID": id}));
    v["Mountpoint"].as_str().expect("Mountpoint").to_string()
}

fn unmount(d: &Daemon, name: &str, id: &str) {
    ok(d, "VolumeDriver.Unmount", json!({"Name": name, "ID": id}));
}

fn get(d: &Daemon, name: &str) -> Value {
    ok(d, "VolumeDriver.Get", json!({"Name": name}))["Volume"].clone()
}

fn list_names(d: &Daemon) -> Vec<String> {
    let v = ok(d, "VolumeDriver.List", json!({}));
    v["Volumes"]
        .as_array()
        .expect("Volumes array")
        .iter()
        .map(|x| x["Name"].as_str().expect("Name").to_string())
        .collect()
}

#[test]
fn activate_and_capabilities_announce_a_local_volume_driver() {
    let d = start();
    let sock = plugin_socket(&d);
    let (status, ctype, v) = http(&sock, "POST", "Plugin.Activate", "");
    assert_eq!((status, v), (200, json!({"Implements": ["VolumeDriver"]})));
    assert_eq!(ctype, "application/vnd.docker.plugins.v1.2+json");
    let (status, _, v) = http(&sock, "POST", "VolumeDriver.Capabilities", "");
    assert_eq!((status, v), (200, json!({"Capabilities": {"Scope": "local"}})));
    let (status, _, v) = http(&sock, "POST", "VolumeDriver.List", "");
    assert_eq!((status, v), (200, json!({"Volumes": [], "Err": ""})));
    let status = d.ok(&["status"]);
    assert!(
        status.contains(&format!("docker plugin: {}", sock.display())),
        "status does not show the plugin:\n{status}"
    );
    assert_eq!(d.json(&["status"])["docker_plugin"]["volumes"], json!(0));
}

#[test]
fn create_makes_an_unmounted_session_on_the_current_generation() {
    let d = start();
    d.create_project_with("web", fill_sample);
    create(&d, "v1", json!({"project": "web"}));
    let info = d.session_info("v1");
    assert_eq!(info["project"], json!("web"));
    assert_eq!(info["base_generation"], json!(1));
    assert_eq!(info["mounted"], json!(false));
    assert_eq!(list_names(&d), vec!["v1"]);
    let vol = get(&d, "v1");
    assert_eq!(vol["Name"], json!("v1"));
    assert_eq!(vol["Mountpoint"], json!(""));
    assert_eq!(
        vol["Status"],
        json!({"project": "web", "promote": false, "mounts": 0, "base_generation": 1, "state": "unmounted"})
    );
    // Docker may create again: same options are fine, other ones are not.
    create(&d, "v1", json!({"project": "web"}));
    d.ok(&["project", "create", "api"]);
    let e = err(
        &d,
        "VolumeDriver.Create",
        json!({"Name": "v1", "Opts": {"project": "api"}}),
    );
    assert!(e.contains("already exists with options project=web"), "{e}");
    // A session made with the CLI is not taken over.
    d.mount("web", "cli1");
    let e = err(
        &d,
        "VolumeDriver.Create",
        json!({"Name": "cli1", "Opts": {"project": "web"}}),
    );
    assert!(e.contains("not created by the Docker plugin"), "{e}");
    assert_eq!(list_names(&d), vec!["v1"]);
}

#[test]
fn mounts_are_shared_between_containers_and_the_last_unmount_unmounts() {
    let d = start();
    d.create_project_with("web", fill_sample);
    create(&d, "v1", json!({"project": "web"}));
    let p1 = mount(&d, "v1", "container-a");
    let p2 = mount(&d, "v1", "container-b");
    assert_eq!(p1, p2, "both containers get the same view");
    let mp = PathBuf::from(&p1);
    assert_eq!(mp, vol_path(&d, "v1"));
    assert!(is_mounted(&mp), "{p1} is not a mount");
    assert_eq!(generation_of(&mp), 1);
    assert_eq!(read(mp.join("a.txt")), "alpha\n");
    write(mp.join("new.txt"), "from a container\n");
    let vol = get(&d, "v1");
    assert_eq!(vol["Mountpoint"], json!(p1));
    assert_eq!(vol["Status"]["mounts"], json!(2));
    assert_eq!(vol["Status"]["state"], json!("mounted"));
    assert_eq!(d.session_info("v1")["mounted"], json!(true));

    unmount(&d, "v1", "container-a");
    assert!(is_mounted(&mp), "still used by container-b");
    let path = ok(&d, "VolumeDriver.Path", json!({"Name": "v1"}));
    assert_eq!(path["Mountpoint"], json!(p1));

    unmount(&d, "v1", "container-b");
    assert!(!is_mounted(&mp), "the last unmount unmounts the view");
    assert_eq!(
        ok(&d, "VolumeDriver.Path", json!({"Name": "v1"}))["Mountpoint"],
        json!("")
    );
    assert_eq!(d.session_info("v1")["mounted"], json!(false));
    // An unmount by an ID that does not use it changes nothing.
    unmount(&d, "v1", "container-b");

    // The session (and its writes) is kept for the next container.
    let p3 = mount(&d, "v1", "container-c");
    assert_eq!(read(Path::new(&p3).join("new.txt")), "from a container\n");
    assert_eq!(d.current_generation("web"), 1, "promote=false never promotes");
    unmount(&d, "v1", "container-c");
}

#[test]
fn promote_true_volume_becomes_the_next_generation_when_its_last_container_leaves() {
    let d = start();
    d.create_project_with("web", fill_sample);
    create(&d, "warm", json!({"project": "web", "promote": "true"}));
    let mp = PathBuf::from(mount(&d, "warm", "c1"));
    write(mp.join("cache/built.txt"), "warm cache\n");
    mount(&d, "warm", "c2");
    unmount(&d, "warm", "c1");
    assert_eq!(d.current_generation("web"), 1, "not promoted while a container uses it");
    unmount(&d, "warm", "c2");
    assert_eq!(d.current_generation("web"), 2);
    assert!(
        !d.session_names().contains(&"warm".to_string()),
        "promotion consumes the session"
    );

    let vol = get(&d, "warm");
    assert_eq!(vol["Mountpoint"], json!(""));
    assert_eq!(vol["Status"]["state"], json!("promoted"));
    assert_eq!(vol["Status"]["promoted_to"], json!(2));
    let e = err(&d, "VolumeDriver.Mount", json!({"Name": "warm", "ID": "c3"}));
    assert!(
        e.contains("promoted to generation 2") && e.contains("create a new volume"),
        "{e}"
    );

    // A new volume of the project starts from generation 2 with the file.
    create(&d, "next", json!({"project": "web"}));
    let mp = PathBuf::from(mount(&d, "next", "c4"));
    assert_eq!(generation_of(&mp), 2);
    assert_eq!(version_of(&mp)["session_id"], json!("warm"));
    assert_eq!(read(mp.join("cache/built.txt")), "warm cache\n");
    unmount(&d, "next", "c4");

    // Removing a promoted volume just forgets it.
    ok(&d, "VolumeDriver.Remove", json!({"Name": "warm"}));
    assert_eq!(list_names(&d), vec!["next"]);
    assert_eq!(d.current_generation("web"), 2);
}

#[test]
fn an_unchanged_promote_true_volume_is_not_promoted_by_dockerds_copy_in_unmount() {
    let d = start();
    d.create_project_with("web", fill_sample);
    create(&d, "warm", json!({"project": "web", "promote": "true"}));
    // dockerd's populateVolumes at container creation: a mount and an
    // unmount under an ID of its own, nothing written.
    mount(&d, "warm", "copy-in");
    unmount(&d, "warm", "copy-in");
    assert_eq!(d.current_generation("web"), 1, "an unchanged session is not promoted");
    assert_eq!(get(&d, "warm")["Status"]["state"], json!("unmounted"));
    // The container's own mount follows; its changes are promoted.
    let mp = PathBuf::from(mount(&d, "warm", "container"));
    write(mp.join("cache/built.txt"), "warm cache\n");
    unmount(&d, "warm", "container");
    assert_eq!(d.current_generation("web"), 2);
    assert_eq!(get(&d, "warm")["Status"]["promoted_to"], json!(2));
}

#[test]
fn a_volume_promoted_with_the_cli_after_its_container_exits_shows_as_promoted() {
    let d = start();
    d.create_project_with("web", fill_sample);
    create(&d, "v1", json!({"project": "web"}));
    let mp = PathBuf::from(mount(&d, "v1", "c1"));
    write(mp.join("f"), "x");
    unmount(&d, "v1", "c1");
    d.ok(&["promote", "web", "v1"]);
    let vol = get(&d, "v1");
    assert_eq!(vol["Status"]["state"], json!("promoted"));
    assert_eq!(vol["Status"]["promoted_to"], json!(2));
    ok(&d, "VolumeDriver.Remove", json!({"Name": "v1"}));
    assert!(list_names(&d).is_empty());
}

#[test]
fn remove_is_refused_while_mounted_and_discards_the_session_afterwards() {
    let d = start();
    d.create_project_with("web", fill_sample);
    create(&d, "v1", json!({"project": "web"}));
    let mp = PathBuf::from(mount(&d, "v1", "c1"));
    mount(&d, "v1", "c2");
    let e = err(&d, "VolumeDriver.Remove", json!({"Name": "v1"}));
    assert!(e.contains("mounted by 2 container(s)"), "{e}");
    assert!(is_mounted(&mp));
    unmount(&d, "v1", "c1");
    unmount(&d, "v1", "c2");
    ok(&d, "VolumeDriver.Remove", json!({"Name": "v1"}));
    assert!(
        !d.session_names().contains(&"v1".to_string()),
        "the session is discarded"
    );
    assert!(list_names(&d).is_empty());
    assert!(!exists(&mp), "the mountpoint directory is removed");
    let e = err(&d, "VolumeDriver.Get", json!({"Name": "v1"}));
    assert!(e.contains("no goldenfs volume named v1"), "{e}");
    let e = err(&d, "VolumeDriver.Remove", json!({"Name": "v1"}));
    assert!(e.contains("no goldenfs volume named v1"), "{e}");
}

#[test]
fn a_session_mounted_with_the_cli_cannot_be_mounted_as_a_volume() {
    let d = start();
    d.create_project_with("web", fill_sample);
    create(&d, "v1", json!({"project": "web"}));
    let cli_mp = d.mount("web", "v1");
    let e = err(&d, "VolumeDriver.Mount", json!({"Name": "v1", "ID": "c1"}));
    assert!(
        e.contains(&format!("mounted at {}", cli_mp.display())) && e.contains("goldenfs session unmount v1"),
        "{e}"
    );
    let e = err(&d, "VolumeDriver.Remove", json!({"Name": "v1"}));
    assert!(e.contains("goldenfs session unmount v1"), "{e}");
    d.unmount("v1");
    let mp = mount(&d, "v1", "c1");
    assert_eq!(PathBuf::from(mp), vol_path(&d, "v1"));
    unmount(&d, "v1", "c1");
}

#[test]
fn bad_requests_get_clear_errors_and_change_nothing() {
    let d = start();
    d.create_project_with("web", fill_sample);
    let sock = plugin_socket(&d);
    let before = snapshot(d.state_dir());
    let cases: &[(Value, &str)] = &[
        (json!({"Name": "v1", "Opts": {}}), "needs a project"),
        (json!({"Name": "v1"}), "needs a project"),
        (
            json!({"Name": "v1", "Opts": {"project": "web", "size": "1G"}}),
            "unknown option \"size\"",
        ),
        (
            json!({"Name": "v1", "Opts": {"project": "web", "promote": "yes"}}),
            "promote=true or promote=false",
        ),
        (json!({"Name": "v1", "Opts": {"project": "nope"}}), "no project named"),
        (
            json!({"Name": "../etc", "Opts": {"project": "web"}}),
            "invalid volume name",
        ),
        (json!({"Name": "", "Opts": {"project": "web"}}), "invalid volume name"),
        (
            json!({"Name": "v1", "Opts": {"project": "../x"}}),
            "invalid project name",
        ),
    ];
    for (body, want) in cases {
        let e = err(&d, "VolumeDriver.Create", body.clone());
        assert!(e.contains(want), "Create {body}: {e:?} should mention {want:?}");
    }
    for endpoint in ["Mount", "Unmount", "Path", "Get", "Remove"] {
        let e = err(
            &d,
            &format!("VolumeDriver.{endpoint}"),
            json!({"Name": "ghost", "ID": "c"}),
        );
        assert!(e.contains("no goldenfs volume named ghost"), "{endpoint}: {e}");
    }
    // Malformed bodies, unknown endpoints, wrong methods: an Err, never a crash.
    for (method, endpoint, body, status, want) in [
        (
            "POST",
            "VolumeDriver.Create",
            "{not json",
            400,
            "malformed VolumeDriver.Create request",
        ),
        ("POST", "VolumeDriver.Mount", "", 400, "needs a JSON body"),
        (
            "POST",
            "VolumeDriver.Get",
            r#"{"Name": 7}"#,
            400,
            "malformed VolumeDriver.Get request",
        ),
        (
            "POST",
            "VolumeDriver.Create",
            r#"{"Name":"v1","Opts":{"project":1}}"#,
            400,
            "malformed",
        ),
        ("POST", "VolumeDriver.Frobnicate", "{}", 404, "unknown endpoint"),
        ("POST", "", "", 404, "unknown endpoint"),
        ("GET", "VolumeDriver.List", "", 405, "takes POST"),
    ] {
        let (st, _, v) = http(&sock, method, endpoint, body);
        let e = v["Err"].as_str().unwrap_or_default();
        assert_eq!(st, status, "{method} /{endpoint} {body}: {v}");
        assert!(
            e.contains(want),
            "{method} /{endpoint} {body}: {e:?} should mention {want:?}"
        );
    }
    let big = format!(r#"{{"Name":"{}"}}"#, "x".repeat(100_000));
    let (st, _, v) = http(&sock, "POST", "VolumeDriver.Get", &big);
    assert_eq!(st, 413, "{v}");
    assert!(list_names(&d).is_empty());
    assert!(d.session_names().is_empty());
    assert_eq!(snapshot(d.state_dir()), before, "the store changed");
    assert!(d.is_running());
}

#[test]
fn volume_options_survive_a_daemon_restart_and_nothing_stays_mounted() {
    let d = start();
    d.create_project_with("web", fill_sample);
    create(&d, "keep", json!({"project": "web", "promote": "true"}));
    create(&d, "plain", json!({"project": "web"}));
    let mp = PathBuf::from(mount(&d, "plain", "c1"));
    write(mp.join("f.txt"), "kept\n");
    d.restart();
    assert!(!is_mounted(&mp), "no volume is mounted after a restart");
    assert_eq!(list_names(&d), vec!["keep", "plain"]);
    let vol = get(&d, "keep");
    assert_eq!(vol["Mountpoint"], json!(""));
    assert_eq!(vol["Status"]["project"], json!("web"));
    assert_eq!(vol["Status"]["promote"], json!(true));
    assert_eq!(vol["Status"]["mounts"], json!(0));
    assert_eq!(get(&d, "plain")["Status"]["promote"], json!(false));
    // dockerd's Unmount for a container of before the restart is harmless.
    unmount(&d, "plain", "c1");
    let mp = PathBuf::from(mount(&d, "plain", "c2"));
    assert_eq!(read(mp.join("f.txt")), "kept\n");
    unmount(&d, "plain", "c2");
    // The promote option still applies.
    let mp = PathBuf::from(mount(&d, "keep", "c3"));
    write(mp.join("g.txt"), "promoted\n");
    unmount(&d, "keep", "c3");
    assert_eq!(get(&d, "keep")["Status"]["promoted_to"], json!(2));
    d.stop();
    assert!(!exists(plugin_socket(&d)), "the plugin socket is removed at shutdown");
}

#[test]
fn a_busy_last_unmount_detaches_lazily_and_does_not_promote() {
    let d = start();
    d.create_project_with("web", fill_sample);
    create(&d, "warm", json!({"project": "web", "promote": "true"}));
    let mp = PathBuf::from(mount(&d, "warm", "c1"));
    write(mp.join("f.txt"), "x\n");
    // A process outside the container keeps a file of the view open.
    let held = std::fs::File::open(mp.join("f.txt")).unwrap();
    let e = err(&d, "VolumeDriver.Unmount", json!({"Name": "warm", "ID": "c1"}));
    assert!(
        e.contains("detached lazily and NOT promoted") && e.contains("goldenfs promote web warm"),
        "{e}"
    );
    assert!(!is_mounted(&mp), "detached");
    assert_eq!(d.current_generation("web"), 1, "a lazily detached view is not promoted");
    assert_eq!(get(&d, "warm")["Status"]["state"], json!("unmounted"));
    drop(held);
    d.ok(&["promote", "web", "warm"]);
    assert_eq!(get(&d, "warm")["Status"]["promoted_to"], json!(2));
}

#[test]
fn concurrent_mounts_of_one_volume_share_one_view() {
    let d = start();
    d.create_project_with("web", fill_sample);
    create(&d, "v1", json!({"project": "web"}));
    let paths: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let d = &d;
                s.spawn(move || mount(d, "v1", &format!("c{i}")))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(paths.iter().all(|p| *p == paths[0]), "{paths:?}");
    assert_eq!(get(&d, "v1")["Status"]["mounts"], json!(6));
    for i in 0..6 {
        assert!(is_mounted(Path::new(&paths[0])), "unmounted before c{i} left");
        unmount(&d, "v1", &format!("c{i}"));
    }
    assert!(!is_mounted(Path::new(&paths[0])));
}

#[test]
fn a_volume_dir_inside_the_store_is_refused_at_start() {
    let tmp = tempdir("plugin-vols-");
    let state = tmp.path().join("state");
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("daemon")
        .arg("--state-dir")
        .arg(&state)
        .arg("--socket")
        .arg(tmp.path().join("g.sock"))
        .arg(format!("--docker-plugin={}", tmp.path().join("p.sock").display()))
        .arg("--docker-volume-dir")
        .arg(state.join("vols"));
    let out = output_with_timeout(cmd, Duration::from_secs(60), "goldenfs daemon");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the daemon started:\n{stderr}");
    assert!(stderr.contains("overlaps the state directory"), "{stderr}");
    assert!(!exists(state.join("vols")), "nothing is created in the store");
    assert!(!exists(tmp.path().join("p.sock")));
}

/// Sends `bytes` as they are, closes the sending side and returns whatever
/// comes back.
fn raw_exchange(sock: &Path, bytes: &[u8]) -> Vec<u8> {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn random_and_garbled_requests_never_harm_the_daemon_or_the_store() {
    let d = start();
    d.create_project_with("web", fill_sample);
    let sock = plugin_socket(&d);
    let before = snapshot(d.state_dir());
    let names = [
        json!("../x"),
        json!(""),
        json!(7),
        json!(null),
        json!("a".repeat(300)),
        json!("ghost"),
        json!({"a": 1}),
        json!("v1/.."),
        json!(".hidden"),
    ];
    let opts = [
        json!(null),
        json!({}),
        json!({"project": "nope"}),
        json!({"project": "../p"}),
        json!({"project": "web", "x": "y"}),
        json!([1, 2]),
        json!({"project": 5}),
        json!({"promote": "true"}),
    ];
    let endpoints = [
        "Plugin.Activate",
        "VolumeDriver.Create",
        "VolumeDriver.Remove",
        "VolumeDriver.Mount",
        "VolumeDriver.Unmount",
        "VolumeDriver.Path",
        "VolumeDriver.Get",
        "VolumeDriver.List",
        "VolumeDriver.Capabilities",
        "VolumeDriver.Create/../x",
    ];
    let mut rng = Rng::new(0x9f5e_d0c4);
    for round in 0..300 {
        let endpoint = rng.pick(&endpoints).unwrap();
        let mut body = json!({"Name": rng.pick(&names).unwrap(), "ID": rng.pick(&names).unwrap(), "Opts": rng.pick(&opts).unwrap()})
            .to_string();
        if rng.one_in(3) {
            body.truncate(rng.below(body.len() + 1));
        }
        if rng.one_in(5) {
            // Not HTTP at all, or HTTP cut short.
            let mut bytes = format!("POST /{endpoint} HTTP/1.1\r\nContent-Length: 999\r\n").into_bytes();
            bytes.truncate(rng.below(bytes.len() + 1));
            bytes.extend(rng.data(200));
            raw_exchange(&sock, &bytes);
            continue;
        }
        let (status, _, v) = http(&sock, "POST", endpoint, &body);
        assert!(
            matches!(status, 200 | 400 | 404),
            "round {round}: {endpoint} {body}: HTTP {status} {v}"
        );
        assert!(v.is_object(), "round {round}: {endpoint} {body}: {v}");
    }
    assert!(d.is_running());
    assert!(list_names(&d).is_empty());
    assert!(d.session_names().is_empty());
    assert_eq!(snapshot(d.state_dir()), before, "the store changed");
    // Still fully working.
    create(&d, "v1", json!({"project": "web"}));
    let mp = mount(&d, "v1", "c1");
    assert_eq!(generation_of(Path::new(&mp)), 1);
    unmount(&d, "v1", "c1");
}

#[test]
fn a_volume_whose_session_was_discarded_says_so_and_can_be_created_again() {
    let d = start();
    d.create_project_with("web", fill_sample);
    create(&d, "v1", json!({"project": "web"}));
    d.ok(&["session", "discard", "v1"]);
    assert_eq!(get(&d, "v1")["Status"]["state"], json!("session gone"));
    let e = err(&d, "VolumeDriver.Mount", json!({"Name": "v1", "ID": "c1"}));
    assert!(
        e.contains("no session any more") && e.contains("docker volume rm v1"),
        "{e}"
    );
    create(&d, "v1", json!({"project": "web"}));
    assert_eq!(get(&d, "v1")["Status"]["state"], json!("unmounted"));
    let mp = mount(&d, "v1", "c1");
    assert_eq!(generation_of(Path::new(&mp)), 1);
    unmount(&d, "v1", "c1");
    ok(&d, "VolumeDriver.Remove", json!({"Name": "v1"}));
    assert!(d.session_names().is_empty());
}
