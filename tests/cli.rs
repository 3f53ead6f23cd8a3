//! The command line: `--config` anywhere and from `$CANVASS_CONFIG`,
//! check-config's exit codes, explain's text and JSON, invite and status
//! against a store without a daemon.

mod common;

use common::*;

#[test]
fn check_config_summary_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (s, e) = open_window();
    let cfg = file_config(dir.path(), (&s, &e), "");
    let cfg = cfg.to_str().unwrap();

    // --config after the subcommand, and before it.
    let ok = canvass(&["check-config", "--config", cfg]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).contains("is valid"));
    assert!(stdout(&ok).contains("Sjælland"));
    let ok = canvass(&["--config", cfg, "check-config"]);
    assert!(ok.status.success());

    // $CANVASS_CONFIG.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_canvass"))
        .arg("check-config")
        .env("CANVASS_CONFIG", cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    // Every error, each with its key; exit code 2.
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(cfg)
        .unwrap()
        .replace(
            "address = \"undersoegelse@siri.test\"",
            "address = \"undersoegelse\"",
        )
        .replace(
            "consultants = [\"bo.jensen@siri.test\"]",
            "consultants = [\"bo.jensen@siri.test\", \"not an address\"]",
        );
    std::fs::write(&bad, text).unwrap();
    let out = canvass(&["check-config", "--config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("survey.address"), "{err}");
    assert!(err.contains("regions[3].consultants[1]"), "{err}");

    // A typo in a key.
    let typo = dir.path().join("typo.toml");
    std::fs::write(
        &typo,
        std::fs::read_to_string(cfg)
            .unwrap()
            .replace("poll_interval_ms", "poll_intervall_ms"),
    )
    .unwrap();
    let out = canvass(&["check-config", "--config", typo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("poll_intervall_ms"),
        "{}",
        stderr(&out)
    );

    // A missing key file is named.
    std::fs::remove_file(dir.path().join("hmac.key")).unwrap();
    let out = canvass(&["check-config", "--config", cfg]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("secrets.hmac_key_file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn world_readable_key_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (s, e) = open_window();
    let cfg = file_config(dir.path(), (&s, &e), "");
    std::fs::set_permissions(
        dir.path().join("hmac.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = canvass(&["check-config", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
}

#[test]
fn explain_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = file_config(dir.path(), ("2024-08-07", "2024-09-20"), "");
    let cfg = cfg.to_str().unwrap();
    let eml = dir.path().join("t.eml");
    std::fs::write(
        &eml,
        cc_trigger(
            "x1",
            "anne.hansen@siri.test",
            &["Kontakt <kontakt@kommune.test>", "kollega@siri.test"],
        ),
    )
    .unwrap();

    let out = canvass(&[
        "explain",
        "--config",
        cfg,
        "--received",
        "2024-08-12T10:00:00Z",
        eml.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("INVITE"), "{text}");
    assert!(text.contains("kontakt@kommune.test"), "{text}");
    assert!(text.contains("kollega@siri.test  (a colleague"), "{text}");

    let out = canvass(&[
        "explain",
        "--json",
        "--config",
        cfg,
        "--received",
        "2024-08-12T10:00:00Z",
        eml.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["decision"], "invite");
    assert_eq!(v["invitees"][0], "kontakt@kommune.test");
    assert_eq!(v["region"], "Sjælland");

    // Outside the window: refused, and the reason names the window.
    let out = canvass(&[
        "explain",
        "--config",
        cfg,
        "--received",
        "2024-09-21T10:00:00Z",
        eml.to_str().unwrap(),
    ]);
    assert!(stdout(&out).contains("REFUSED"), "{}", stdout(&out));
    assert!(stdout(&out).contains("after the collection window 2024-08-07 to 2024-09-20"));

    // explain touches no store.
    assert!(!dir.path().join("store").exists());

    // A missing file is an error naming it; the others are still explained.
    let out = canvass(&[
        "explain",
        "--config",
        cfg,
        "/nonexistent.eml",
        eml.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("/nonexistent.eml"));
    assert!(stdout(&out).contains("t.eml"));
}

#[test]
fn invite_and_status_without_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let (s, e) = open_window();
    let cfg = file_config(dir.path(), (&s, &e), "");
    let cfg = cfg.to_str().unwrap();

    let out = canvass(&[
        "invite",
        "Lise.Berg@Aarhus.test",
        "ikke-en-adresse",
        "--region",
        "Midtjylland",
        "--config",
        cfg,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("invited          lise.berg@aarhus.test"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("not an address   \"ikke-en-adresse\""),
        "{}",
        stdout(&out)
    );

    // Again, in other spelling: not invited twice.
    let out = canvass(&[
        "invite",
        " lise.berg@AARHUS.test ",
        "--region",
        "Sjælland",
        "--config",
        cfg,
    ]);
    assert!(stdout(&out).contains("already invited"), "{}", stdout(&out));

    let out = canvass(&[
        "invite", "x@y.test", "--region", "Atlantis", "--config", cfg,
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown region \"Atlantis\""),
        "{}",
        stderr(&out)
    );

    let out = canvass(&["status", "--json", "--config", cfg]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let midt = v["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == "Midtjylland")
        .unwrap();
    assert_eq!(midt["invited"], 1);
    assert_eq!(midt["waiting"], 1);
    assert_eq!(v["total"]["invited"], 1);
    assert_eq!(v["outbox"], 1);

    let out = canvass(&["status", "--config", cfg]);
    assert!(stdout(&out).contains("Midtjylland"));
}

#[test]
fn invite_outside_window_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = file_config(dir.path(), ("2024-08-07", "2024-09-20"), "");
    let out = canvass(&[
        "invite",
        "a@b.test",
        "--region",
        "Sjælland",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("outside the collection window"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn shipped_configs_are_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // The demo, as shipped.
    let out = canvass(&[
        "check-config",
        "--config",
        root.join("config/demo.toml").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("region Nordjylland"));
    // The example, with its secret files present.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        root.join("config/canvass.example.toml"),
        dir.path().join("canvass.toml"),
    )
    .unwrap();
    std::fs::copy(
        root.join("config/survey.da.toml"),
        dir.path().join("survey.da.toml"),
    )
    .unwrap();
    canvass::address::generate_key_file(&dir.path().join("hmac.key")).unwrap();
    // Microsoft 365 with a certificate, as shipped (docs/microsoft365.md).
    std::fs::write(dir.path().join("entra-certificate.pem"), "x").unwrap();
    std::fs::write(dir.path().join("entra-private-key.pem"), "x").unwrap();
    let out = canvass(&[
        "check-config",
        "--config",
        dir.path().join("canvass.toml").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("provider        microsoft365"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("IMAP undersoegelse@siri.dk@outlook.office365.com:993"),
        "{}",
        stdout(&out)
    );
    for region in [
        "Hovedstaden",
        "Sjælland",
        "Syddanmark",
        "Midtjylland",
        "Nordjylland",
    ] {
        assert!(stdout(&out).contains(region), "{region}");
    }
}
