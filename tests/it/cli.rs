//! The command line: `--config` anywhere and from `$CANVASS_CONFIG`,
//! check-config's exit codes, explain's text and JSON, invite and status
//! against a store without a daemon.

use crate::common;

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

/// Issue 13 "through `explain`": the return-mail fixtures as an operator
/// runs them, one `canvass explain` over many files: each kind says what
/// it is and what it changes.
#[test]
fn explain_reads_the_return_mail_fixtures() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/classify");
    let expected: &[(&str, &[&str])] = &[
        (
            "bounce-postfix-dsn",
            &[
                "BOUNCE (rfc3464 report)",
                "PERMANENT 5.1.1",
                "original  <canvass.",
            ],
        ),
        (
            "bounce-postfix-expired",
            &[
                "EXPIRED (the mail server gave up)",
                "counted bounced / expired",
            ],
        ),
        (
            "bounce-postfix-dsn-delayed",
            &["temporary", "temporary ones change nothing"],
        ),
        (
            "bounce-empty-sender-named-by-message-id",
            &["(named by the returned Message-ID)  PERMANENT"],
        ),
        (
            "bounce-null-sender-text-only",
            &["kim.bertelsen@bofaellesskab.dk  PERMANENT 5.1.1"],
        ),
        (
            "bounce-exchange-2003-did-not-reach",
            &["kontakt@kommune-gammel.dk  PERMANENT"],
        ),
        (
            "bounce-domain-does-not-exist-text",
            &["BOUNCE", "PERMANENT"],
        ),
        (
            "bounce-lotus-domino",
            &["jens.hansen@domino.region.dk  PERMANENT"],
        ),
        (
            "bounce-forged-dsn-from-evil",
            &["BOUNCE", "counted as unproven"],
        ),
        (
            "complaint-arf-feedback-report",
            &[
                "SPAM COMPLAINT (arf report, feedback type abuse)",
                "is opted out (no reminders), counted as complained; never a trigger",
            ],
        ),
        (
            "complaint-provider-notice",
            &["SPAM COMPLAINT (notice report)"],
        ),
        (
            "complaint-arf-address-only-no-trust-setting",
            &[
                "SPAM COMPLAINT (arf report, feedback type abuse)",
                "names     klager@yahoo.dk",
                "believed only from an authenticated trust.complaint_senders sender",
            ],
        ),
        (
            "auto-reply-fravaersbesked-inbox-rules-loop",
            &["IGNORED: an automatic reply (X-MS-Exchange-Inbox-Rules-Loop"],
        ),
        (
            "auto-reply-webmail-no-header",
            &["IGNORED: an automatic reply (body: "],
        ),
        (
            "opt-out-outlook-oensker-ikke-at-deltage",
            &[
                "OPT-OUT from birgitte.holm@roskilde.dk",
                "the invitation it answers is marked opted out",
            ],
        ),
        ("opt-out-gmail-fjern-min-mail", &["OPT-OUT"]),
        (
            "reply-opt-out-question",
            &[
                "REPLY from kasper.vang@gmail.com",
                "forwarded to the consultant",
            ],
        ),
        (
            "reply-afmeld-only-in-quoted-invitation",
            &["REPLY from birgitte.holm@roskilde.dk"],
        ),
        (
            "opt-out-forged-bare-afmeld",
            &["REPLY from mette.larsen@aarhus.dk"],
        ),
        (
            "unreadable-no-header",
            &["IGNORED: not a readable message: the daemon moves it to the quarantine"],
        ),
    ];
    let files: Vec<String> = expected
        .iter()
        .map(|(name, _)| dir.join(format!("{name}.eml")).display().to_string())
        .collect();
    let cfg = dir.join("config.toml");
    let mut args = vec![
        "explain",
        "--config",
        cfg.to_str().unwrap(),
        "--received",
        "2024-08-12T10:00:00Z",
    ];
    args.extend(files.iter().map(String::as_str));
    let out = canvass(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // One block per file: its name, then indented lines.
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with("  ") {
            if let Some((_, b)) = blocks.last_mut() {
                b.push_str(line);
                b.push('\n');
            }
        } else if !line.is_empty() {
            blocks.push((line.to_string(), String::new()));
        }
    }
    assert_eq!(blocks.len(), expected.len(), "{text}");
    for ((file, block), (name, wants)) in blocks.iter().zip(expected) {
        assert!(file.ends_with(&format!("{name}.eml")), "{file} vs {name}");
        for w in *wants {
            assert!(block.contains(w), "{name}: {w:?} not in\n{block}");
        }
    }
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
    for survey in ["survey.da.toml", "survey.en.toml"] {
        std::fs::copy(root.join("config").join(survey), dir.path().join(survey)).unwrap();
    }
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

/// The agency's texts: a templates directory overrides the built-ins;
/// check-config names file and line of every problem (syntax, unknown
/// variable, an invitation without its link, a file that is no template);
/// `preview` shows the result with sample data.
#[test]
fn agency_templates_are_checked_and_previewed() {
    let dir = tempfile::tempdir().unwrap();
    let (s, e) = open_window();
    let cfg = file_config(dir.path(), (&s, &e), "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "base_url = \"http://127.0.0.1:1\"\n",
        "base_url = \"http://127.0.0.1:1\"\ntemplates_dir = \"tekster\"\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let cfg = cfg.to_str().unwrap();
    let texts = dir.path().join("tekster");
    std::fs::create_dir(&texts).unwrap();
    std::fs::write(
        texts.join("invitation.txt"),
        "Hej\n\n{{ link }}\n\nSvar senest {{ deadlin }}.\n",
    )
    .unwrap();
    std::fs::write(
        texts.join("reminder.txt"),
        "Hej\n{% if link %}\nglemt endif\n",
    )
    .unwrap();
    std::fs::write(texts.join("invitation.html"), "<p>Kære {{ agency }}</p>\n").unwrap();
    std::fs::write(texts.join("invitaton_subject.txt"), "stavefejl").unwrap();
    let out = canvass(&["check-config", "--config", cfg]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    for must in [
        "tekster/invitation.txt line 5: unknown variable `deadlin`",
        "tekster/reminder.txt line ",
        "syntax error",
        "tekster/invitation.html: does not show the personal link",
        "tekster/invitaton_subject.txt: is not a canvass template",
    ] {
        assert!(err.contains(must), "{must:?} not in:\n{err}");
    }

    // Fixed: the override is used, the rest stays built in.
    std::fs::write(
        texts.join("invitation.txt"),
        "Hej fra {{ agency }}\n\n{{ link }}\n\nSvar senest {{ deadline }}.\n",
    )
    .unwrap();
    std::fs::remove_file(texts.join("reminder.txt")).unwrap();
    std::fs::write(
        texts.join("invitation.html"),
        "<p><a href=\"{{ link }}\">Svar</a></p>\n",
    )
    .unwrap();
    std::fs::remove_file(texts.join("invitaton_subject.txt")).unwrap();
    std::fs::write(
        texts.join("invitation_subject.txt"),
        "Et par spørgsmål fra {{ agency }}",
    )
    .unwrap();
    std::fs::write(texts.join("digest_subject.txt"), "Ugens tal: {{ rate }}").unwrap();
    // The digest's body too, table and all.
    std::fs::write(
        texts.join("digest.txt"),
        "{{ intro }}\n\n{% for l in lines %}{{ l.region }}: {{ l.answered }} svar af {{ l.invited }}\n{% endfor %}\
         Samlet: {{ total.answered }} svar; Returneret: {{ total.returned }}.\n",
    )
    .unwrap();
    let out = canvass(&["check-config", "--config", cfg]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("templates"), "{}", stdout(&out));

    let html = dir.path().join("invitation.html");
    let out = canvass(&[
        "preview",
        "invitation",
        "--html",
        html.to_str().unwrap(),
        "--config",
        cfg,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("Subject: Et par spørgsmål fra SIRI"),
        "{text}"
    );
    assert!(text.contains("Hej fra SIRI"), "{text}");
    assert!(text.contains("http://127.0.0.1:1/s/"), "{text}");
    assert!(std::fs::read_to_string(&html).unwrap().contains("Svar</a>"));
    // The reminder is built in again: it carries the art. 14 paragraph.
    let out = canvass(&["preview", "reminder", "--config", cfg]);
    assert!(stdout(&out).contains("Datatilsynet"), "{}", stdout(&out));
    let out = canvass(&["preview", "confirmation", "--config", cfg]);
    assert!(
        stdout(&out).contains("Inviteret til spørgeskemaet"),
        "{}",
        stdout(&out)
    );
    let out = canvass(&["preview", "digest", "--config", cfg]);
    assert!(stdout(&out).contains("Returneret"), "{}", stdout(&out));
    assert!(stdout(&out).starts_with("Ugens tal: "), "{}", stdout(&out));
    assert!(stdout(&out).contains("svar af "), "{}", stdout(&out));
    assert!(stdout(&out).contains("Samlet: "), "{}", stdout(&out));
    let form = dir.path().join("form.html");
    let out = canvass(&[
        "preview",
        "form",
        "--html",
        form.to_str().unwrap(),
        "--config",
        cfg,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let form = std::fs::read_to_string(&form).unwrap();
    assert!(form.contains("Hvilken type organisation") && form.contains("site-footer"));
    let out = canvass(&["preview", "nyhedsbrev", "--config", cfg]);
    assert!(!out.status.success());
}

/// Outside the demo (a public base_url) check-config requires [privacy]
/// (GDPR art. 14) and the accessibility statement link.
#[test]
fn a_public_survey_needs_privacy_and_the_accessibility_statement() {
    let dir = tempfile::tempdir().unwrap();
    let (s, e) = open_window();
    let cfg = file_config(dir.path(), (&s, &e), "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("http://127.0.0.1:1", "https://undersoegelse.siri.test");
    std::fs::write(&cfg, &text).unwrap();
    let out = canvass(&["check-config", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("privacy: the [privacy] section is missing"),
        "{err}"
    );
    assert!(
        err.contains("web.accessibility_statement_url: is missing"),
        "{err}"
    );
    let text = text.replace(
        "[web]\n",
        "[privacy]\ncontroller = \"SIRI\"\ndpo = \"dpo@siri.test\"\npurpose = \"at evaluere ordningen\"\nlegal_basis = \"artikel 6, stk. 1, litra e\"\ncontact = \"undersoegelse@siri.test\"\n\n[web]\naccessibility_statement_url = \"https://was.digst.dk/undersoegelse\"\n",
    );
    std::fs::write(&cfg, &text).unwrap();
    let out = canvass(&["check-config", "--config", cfg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `send-test` through the configured transport (here the .eml files; the
/// SMTP case is in tests/it/browser.rs): marked as a test, its link the test
/// page, and nobody is invited.
#[test]
fn send_test_is_marked_and_invites_no_one() {
    let dir = tempfile::tempdir().unwrap();
    let (s, e) = open_window();
    let cfg = file_config(dir.path(), (&s, &e), "");
    let cfg = cfg.to_str().unwrap();
    let out = canvass(&["send-test", "redaktoer@siri.test", "--config", cfg]);
    assert!(out.status.success(), "{}", stderr(&out));
    let sent = files_in(&dir.path().join("sent"));
    assert_eq!(sent.len(), 1);
    let raw = std::fs::read(&sent[0]).unwrap();
    let msg = mail_parser::MessageParser::default().parse(&raw).unwrap();
    assert!(
        msg.subject().unwrap().starts_with("[PRØVE] "),
        "{:?}",
        msg.subject()
    );
    assert_eq!(msg.header_raw("X-Canvass-Test").map(str::trim), Some("yes"));
    let text = msg.body_text(0).unwrap();
    assert!(
        text.contains("PRØVE") && text.contains("http://127.0.0.1:1/proeve"),
        "{text}"
    );
    assert!(!text.contains("/s/"), "{text}");
    let out = canvass(&["status", "--json", "--config", cfg]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["total"]["invited"], 0, "{v}");
}

/// `export --format xlsx`: answers with the questions as headers and
/// numbers typed as numbers, response rates per region with the small-group
/// flag; read back with calamine.
#[test]
fn xlsx_export_reads_back() {
    use calamine::{open_workbook, Data, Reader, Xlsx};
    let dir = tempfile::tempdir().unwrap();
    let (s, e) = open_window();
    let cfg_path = file_config(dir.path(), (&s, &e), "");
    {
        let cfg = canvass::config::Config::load(&cfg_path).unwrap();
        let p = canvass::pipeline::Pipeline::open_offline(cfg).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        for (i, a) in ["a@kommune.test", "b@kommune.test", "c@kommune.test"]
            .iter()
            .enumerate()
        {
            p.invite_manual(&[a.to_string()], "Sjælland").unwrap();
            if i == 2 {
                continue;
            }
            let (due, _) = p
                .store
                .outbox_due(chrono::Utc::now() + chrono::Duration::days(1), 100)
                .unwrap();
            let item = due.iter().find(|d| d.to == [a.to_string()]).unwrap();
            let link = link_in(&as_sent(&p, item)).unwrap();
            let token = canvass::token::Token::from_url(link.trim_start_matches("/s/")).unwrap();
            let fields: Vec<(String, String)> = complete_answer()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let answers = canvass::form::validate(&p.config().survey, &fields).unwrap();
            let r = canvass::store::StoredResponse {
                survey_id: p.config().survey.id.clone(),
                survey_version: p.config().survey.version,
                region: None,
                day: chrono::NaiveDate::from_ymd_opt(2024, 8, 20).unwrap(),
                answers,
            };
            rt.block_on(p.store.submit_response(&token, r, true))
                .unwrap();
        }
    }
    let out_path = dir.path().join("svar.xlsx");
    let out = canvass(&[
        "export",
        "--format",
        "xlsx",
        "--out",
        out_path.to_str().unwrap(),
        "--config",
        cfg_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut wb: Xlsx<_> = open_workbook(&out_path).expect("a workbook calamine opens");
    assert_eq!(wb.sheet_names(), ["Svar", "Svarprocent", "Kolonner"]);

    let svar = wb.worksheet_range("Svar").unwrap();
    let rows: Vec<&[Data]> = svar.rows().collect();
    assert_eq!(rows.len(), 3, "a header and two answers");
    let header: Vec<String> = rows[0].iter().map(|c| c.to_string()).collect();
    let col = |h: &str| {
        header
            .iter()
            .position(|x| x == h)
            .unwrap_or_else(|| panic!("no column {h:?} in {header:?}"))
    };
    assert_eq!(rows[1][col("Nr.")], Data::Float(1.0));
    assert_eq!(rows[1][col("Skemaversion")], Data::Float(1.0));
    assert!(
        matches!(rows[1][col("Dato")], Data::DateTime(_)),
        "{:?}",
        rows[1][col("Dato")]
    );
    assert_eq!(rows[1][col("Region")], Data::String("Sjælland".into()));
    assert_eq!(
        rows[1][col("1. Hvilken type organisation arbejder du i?")],
        Data::String("Krisecenter".into())
    );
    // Multiple choice: a 0/1 number per option.
    assert_eq!(
        rows[1][col("4. Rådgivning om at vurdere risiko i en konkret sag")],
        Data::Float(1.0)
    );
    assert_eq!(
        rows[1][col("4. Rådgivning om at skabe sikkerhed for en borger, der er truet")],
        Data::Float(0.0)
    );
    assert_eq!(
        rows[2][col("8. Har du nogle øvrige kommentarer til din brug af og/eller tilfredshed med sikkerhedskonsulenterne?")],
        Data::String("Rigtig god hjælp, tak! Søren & Åse <3 🎉".into())
    );

    let rates = wb.worksheet_range("Svarprocent").unwrap();
    let rows: Vec<&[Data]> = rates.rows().collect();
    let sj = rows
        .iter()
        .find(|r| r[0] == Data::String("Sjælland".into()))
        .expect("a row for Sjælland");
    assert_eq!(sj[1], Data::Float(3.0));
    assert_eq!(sj[2], Data::Float(2.0));
    match sj[3] {
        Data::Float(f) => assert!((f - 2.0 / 3.0).abs() < 1e-9, "{f}"),
        ref other => panic!("the rate is not a number: {other:?}"),
    }
    assert_eq!(
        sj[4],
        Data::String("Ja".into()),
        "two answers: a small group"
    );
    let total = rows
        .iter()
        .find(|r| matches!(&r[0], Data::String(s) if s.starts_with("I alt") || s == "Total"))
        .expect("a total row");
    assert_eq!(total[1], Data::Float(3.0));
}
