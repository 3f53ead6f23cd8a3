//! Privacy operations end to end: retention (the scheduler's purge, once, and
//! `canvass purge`), `canvass forget`, `canvass backup` while the daemon runs
//! and `canvass restore` (identical status and report afterwards), and the
//! store's schema checks as an operator meets them.
//!
//! No fixed sleeps: every wait polls for an event with a time-out.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use canvass::config::Config;
use canvass::control::{self, Request};
use canvass::pipeline::Pipeline;
use canvass::scheduler::{Scheduler, RETENTION_JOB};
use canvass::store::{InviteOutcome, Purpose, StoredResponse};
use chrono::{Duration as Days, Utc};
use common::*;

const STEP: Duration = Duration::from_secs(20);

/// Every queued item, due or not.
fn queued(p: &Pipeline) -> Vec<canvass::store::OutboxItem> {
    let far = Utc::now() + Days::days(3650);
    p.store.outbox_due(far, 100_000).unwrap().0
}

/// Answers the invitation queued to `to` (as the web form would).
async fn answer(p: &Pipeline, to: &str) {
    let item = queued(p)
        .into_iter()
        .find(|i| i.to == [to.to_string()] && matches!(i.purpose, Purpose::Invitation { .. }))
        .expect("a queued invitation");
    let link = link_in(&as_sent(p, &item)).expect("a link");
    let token = canvass::token::Token::from_url(link.trim_start_matches("/s/")).unwrap();
    let mut answers = canvass::answer::Answers::new();
    answers.insert(
        "kommentarer".into(),
        canvass::answer::Value::Text {
            text: "Tak – æøå".into(),
        },
    );
    let response = StoredResponse {
        survey_id: "s".into(),
        survey_version: 1,
        region: None,
        day: Utc::now().date_naive(),
        answers,
    };
    p.store
        .submit_response(&token, response, true)
        .await
        .unwrap();
}

fn json_of(p: &Arc<Pipeline>, req: Request) -> serde_json::Value {
    let a = control::handle(p, req);
    assert!(a.ok, "{}", a.text);
    a.json
}

/// Invitations are queued without their body: the outbox renders each one
/// from the invitation when it sends it (the same Message-ID and personal
/// link on every attempt), and sends nothing once the address is erased.
#[test]
fn a_queued_invitation_is_rendered_when_sent_and_not_after_forget() {
    let dir = tempfile::tempdir().unwrap();
    let (s, e) = open_window();
    let path = file_config(dir.path(), (&s, &e), "");
    let p = pipeline(&path);
    p.invite_manual(&["d@kommune.test".to_string()], "Sjælland")
        .unwrap();
    let item = queued(&p).into_iter().next().expect("queued");
    assert!(item.raw.is_empty(), "queued without its body");
    let Purpose::Invitation { invitation_id } = item.purpose else {
        panic!("{:?}", item.purpose)
    };
    let invitation = p.store.invitation(invitation_id).unwrap().unwrap();

    let first = as_sent(&p, &item);
    let text = String::from_utf8_lossy(&first).replace("=\r\n", "");
    assert!(
        text.contains(&format!("Message-ID: <{}>", item.message_id)),
        "the Message-ID it was queued with"
    );
    assert!(text.contains("To: d@kommune.test"), "{text}");
    let link = link_in(&first).expect("a personal link");
    let token = canvass::token::Token::from_url(link.trim_start_matches("/s/")).unwrap();
    assert_eq!(
        token.hash(),
        invitation.token_hash,
        "the invitee's own link"
    );
    assert_eq!(
        link_in(&as_sent(&p, &item)),
        Some(link),
        "the same link again"
    );

    let addr = canvass::address::parse("d@kommune.test").unwrap();
    p.store.forget(&p.key.key_of(&addr), &addr).unwrap();
    match p.ready_to_send(item) {
        // Forgetting drops the queued mail itself; a copy read before that
        // finds nothing to render from.
        Ok(canvass::pipeline::Ready::Gone(_)) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_erases_addresses_once_keeps_dedup_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (s, e) = open_window();
    let path = file_config(dir.path(), (&s, &e), "");
    let p = pipeline(&path);
    let contacts = ["a@kommune.test", "b@kommune.test", "c@kommune.test"];
    p.invite_manual(&contacts.map(String::from), "Sjælland")
        .unwrap();
    // a's invitation went out; b answered (before it was sent); c's waits.
    let a_item = queued(&p)
        .into_iter()
        .find(|i| i.to == ["a@kommune.test"])
        .unwrap();
    p.store.mark_sent(&a_item, Utc::now()).unwrap();
    answer(&p, "b@kommune.test").await;
    let report_before = serde_json::to_value(control::report(&p).unwrap()).unwrap();
    let answers_before: Vec<StoredResponse> = p.store.responses().map(|r| r.unwrap()).collect();

    let cfg = p.config();
    let erase_at = canvass::retention::erase_at(&cfg.window, 30);
    let sched = Scheduler {
        pipeline: p.clone(),
    };

    // Not due: the scheduler only plans it; `purge` without --now erases nothing.
    let next = sched.tick(Utc::now()).await.unwrap();
    assert!(next.is_some_and(|n| n <= erase_at), "{next:?}");
    let a = control::handle(
        &p,
        Request::Purge {
            dry_run: false,
            now: false,
        },
    );
    assert!(a.ok);
    assert!(a.text.contains("not due yet"), "{}", a.text);
    assert_eq!(a.json["dry_run"], true, "{}", a.json);
    assert!(p.store.invitations().all(|i| i.unwrap().address.is_some()));

    // Due: the scheduler erases every address, once, and records the deadline.
    sched.tick(erase_at + Days::hours(1)).await.unwrap();
    let invs: Vec<_> = p.store.invitations().map(|i| i.unwrap()).collect();
    assert_eq!(invs.len(), 3);
    for i in &invs {
        assert_eq!(i.address, None);
        assert_eq!(i.token_nonce, None);
        assert_eq!(i.region, "Sjælland");
    }
    assert!(invs.iter().any(|i| i.answered), "flags stay");
    let state = p.store.job_state(RETENTION_JOB).unwrap();
    assert_eq!(state.last, Some(erase_at));
    let recorded: serde_json::Value = serde_json::from_str(state.data.as_deref().unwrap()).unwrap();
    assert_eq!(recorded["erased"], 3, "{recorded}");
    // The unsent invitations (b, c) carried the address: dropped.
    assert_eq!(recorded["dropped_invitations"], 2, "{recorded}");
    assert!(
        queued(&p)
            .iter()
            .all(|i| !i.to.iter().any(|t| t.ends_with("@kommune.test"))),
        "no queued mail to an invitee is left"
    );
    let status = control::current_status(&p).unwrap();
    assert_eq!(
        status.total.waiting, 0,
        "dropped invitations do not wait forever"
    );

    // Once: a later tick does nothing more (the job state says so).
    sched.tick(erase_at + Days::days(2)).await.unwrap();
    assert_eq!(p.store.job_state(RETENTION_JOB).unwrap(), state);

    // Answers and the report are untouched.
    let answers_after: Vec<StoredResponse> = p.store.responses().map(|r| r.unwrap()).collect();
    assert_eq!(answers_before, answers_after);
    assert_eq!(
        report_before,
        serde_json::to_value(control::report(&p).unwrap()).unwrap()
    );

    // Dedup still works on the HMAC: a purged contact CC'd again is "already invited".
    let again = p
        .invite_manual(&["A@Kommune.test".to_string()], "Hovedstaden")
        .unwrap();
    assert!(
        matches!(again.outcomes[..], [InviteOutcome::AlreadyInvited(_)]),
        "{:?}",
        again.outcomes
    );

    // `canvass purge` after the fact: nothing left to erase, says so.
    let j = json_of(
        &p,
        Request::Purge {
            dry_run: false,
            now: true,
        },
    );
    assert_eq!(
        (j["erased"].as_u64(), j["already_erased"].as_u64()),
        (Some(0), Some(3))
    );
}

/// The commands as an operator runs them (no daemon: they open the store).
#[test]
fn purge_and_forget_commands() {
    let dir = tempfile::tempdir().unwrap();
    let (s, e) = open_window();
    let cfg = file_config(dir.path(), (&s, &e), "delay_minutes = 60");
    let cfg = cfg.to_str().unwrap();
    let out = canvass(&[
        "--config",
        cfg,
        "invite",
        "a@kommune.test",
        "b@kommune.test",
        "--region",
        "Sjælland",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    // forget: the address and nonce, the link, the queued invitation; the HMAC stays.
    let out = canvass(&["--config", cfg, "forget", "A@Kommune.test"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("forget a@kommune.test:\n"), "{text}");
    assert!(
        text.contains("erased   the plain address and the link nonce of invitation"),
        "{text}"
    );
    assert!(text.contains("(region Sjælland, invited "), "{text}");
    assert!(text.contains("disabled their personal link"), "{text}");
    assert!(
        text.contains("dropped  the queued invitation to them, unsent"),
        "{text}"
    );
    assert!(
        text.contains("kept     the HMAC of the address: they are never invited again"),
        "{text}"
    );
    assert!(text.contains("answers are anonymous"), "{text}");
    // They are not invited again.
    let out = canvass(&[
        "--config",
        cfg,
        "invite",
        "a@kommune.test",
        "--region",
        "Hovedstaden",
    ]);
    assert!(
        stdout(&out).contains("already invited  a@kommune.test"),
        "{}",
        stdout(&out)
    );
    // Someone never invited: nothing held, the HMAC added so nobody invites them.
    let out = canvass(&["--config", cfg, "forget", "ukendt@kommune.test", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["invitation"], serde_json::Value::Null, "{j}");
    assert_eq!(j["key_was_held"], false, "{j}");
    let out = canvass(&["--config", cfg, "forget", "not an address"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is not an address"),
        "{}",
        stderr(&out)
    );

    // purge: a dry run, then at once.
    let out = canvass(&["--config", cfg, "purge", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("addresses are erased 30 day(s) after the window closed"),
        "{text}"
    );
    assert!(
        text.contains("would erase the address and link nonce of 1 invitation(s) (Sjælland 1)"),
        "{text}"
    );
    assert!(
        text.contains("would drop 1 queued invitation(s) and 0 reminder(s)"),
        "{text}"
    );
    assert!(text.contains("nothing was changed"), "{text}");
    let out = canvass(&["--config", cfg, "purge", "--now", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["dry_run"], false, "{j}");
    assert_eq!(j["erased"], 1, "{j}");
    assert_eq!(j["already_erased"], 1, "{j}");
    assert_eq!(j["dropped_invitations"], 1, "{j}");
    assert_eq!(j["after_days"], 30, "{j}");
    let out = canvass(&["--config", cfg, "status", "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["outbox"], 0, "{st}");
}

fn json_cmd(cfg: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--config", cfg];
    all.extend_from_slice(args);
    let out = canvass(&all);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", stdout(&out)))
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn backup_while_the_daemon_runs_restores_identical_status_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let (s, e) = open_window();
    let cfg_path = file_config(dir.path(), (&s, &e), "");
    let cfg = cfg_path.to_str().unwrap();
    let daemon = process::Daemon::start(&cfg_path, "warn,canvass=info");
    let web = daemon.web();
    deliver(
        &dir.path().join("inbox"),
        "1.eml",
        &cc_trigger(
            "p1",
            "anne.hansen@siri.test",
            &["x@kunde.test", "y@kunde.test"],
        ),
    );
    deliver(
        &dir.path().join("inbox"),
        "2.eml",
        &cc_trigger("p2", "bo.jensen@siri.test", &["z@kunde.test"]),
    );
    // Three invitations written as .eml files; one contact answers over HTTP.
    let sent = wait_for("three invitations sent", STEP, || {
        let f = files_in(&dir.path().join("sent"));
        (f.len() == 3).then_some(f)
    });
    let link = link_in(&std::fs::read(&sent[0]).unwrap()).unwrap();
    let fields = complete_answer();
    let (code, _, body) = http(
        &web,
        "POST",
        &link,
        "application/x-www-form-urlencoded",
        &form_body(&fields),
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("Tak for dit svar"));

    // The backup, through the control socket, while the daemon runs.
    let file = dir.path().join("backups").join("canvass.backup");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let out = canvass(&["--config", cfg, "backup", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!(
            "wrote {}: 3 invitation(s), 1 answer(s)",
            file.display()
        )),
        "{text}"
    );
    assert_eq!(mode(&file), 0o600);
    let status = json_cmd(cfg, &["status", "--json"]);
    let report = json_cmd(cfg, &["report", "--json"]);
    assert_eq!(status["total"]["answered"], 1, "{status}");

    // Restore refuses while the daemon holds the store.
    let out = canvass(&["--config", cfg, "restore", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("a canvass daemon is running"),
        "{}",
        stderr(&out)
    );
    daemon.stop();

    // Into a fresh place: identical status and report.
    let other = tempfile::tempdir().unwrap();
    std::fs::copy(dir.path().join("hmac.key"), other.path().join("hmac.key")).unwrap();
    let other_cfg: PathBuf = file_config(other.path(), (&s, &e), "");
    let other_cfg = other_cfg.to_str().unwrap();
    let out = canvass(&["--config", other_cfg, "restore", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("restored ") && text.contains("3 invitation(s), 1 answer(s)"),
        "{text}"
    );
    assert!(
        text.contains("erasures made after the backup was taken are undone"),
        "{text}"
    );
    assert_eq!(json_cmd(other_cfg, &["status", "--json"]), status);
    assert_eq!(json_cmd(other_cfg, &["report", "--json"]), report);

    // Over the original store (it holds data): only with --force.
    let out = canvass(&["--config", cfg, "restore", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("is not empty (3 invitation(s), 1 answer(s))") && err.contains("--force"),
        "{err}"
    );
    let out = canvass(&[
        "--config",
        cfg,
        "restore",
        "--force",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("is replaced"), "{}", stdout(&out));
    assert_eq!(json_cmd(cfg, &["status", "--json"]), status);

    // The restored store runs: dedup holds, and new invitations get new ids.
    let out = canvass(&[
        "--config",
        cfg,
        "invite",
        "x@kunde.test",
        "w@kunde.test",
        "--region",
        "Sjælland",
    ]);
    let text = stdout(&out);
    assert!(text.contains("already invited  x@kunde.test"), "{text}");
    assert!(text.contains("invited          w@kunde.test"), "{text}");
    assert_eq!(json_cmd(cfg, &["status", "--json"])["total"]["invited"], 4);

    // Not a backup: a clear refusal.
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"hello").unwrap();
    let out = canvass(&[
        "--config",
        cfg,
        "restore",
        "--force",
        junk.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is not a canvass backup"),
        "{}",
        stderr(&out)
    );
}

/// The store's sled database, opened behind canvass' back (canvass creates
/// its stores with compressed pages: src/store/mod.rs).
fn open_sled(store: &Path) -> sled::Db {
    sled::Config::new()
        .path(store)
        .use_compression(true)
        .open()
        .unwrap()
}

fn mark_schema(store: &Path, schema: u8) {
    let db = open_sled(store);
    db.open_tree("meta")
        .unwrap()
        .insert("schema", &[schema])
        .unwrap();
    db.flush().unwrap();
}

#[test]
fn schema_and_record_versions_are_checked_with_clear_messages() {
    let dir = tempfile::tempdir().unwrap();
    let (s, e) = open_window();
    let cfg = file_config(dir.path(), (&s, &e), "");
    let cfg = cfg.to_str().unwrap();
    let store = dir.path().join("store");
    let out = canvass(&[
        "--config",
        cfg,
        "invite",
        "a@kommune.test",
        "--region",
        "Sjælland",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Newer: refused.
    mark_schema(&store, canvass::store::SCHEMA_VERSION + 1);
    let out = canvass(&["--config", cfg, "status"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "written by a newer canvass (schema {}, this one reads {})",
            canvass::store::SCHEMA_VERSION + 1,
            canvass::store::SCHEMA_VERSION
        )),
        "{err}"
    );
    // Older than any migration: refused, naming both versions.
    mark_schema(&store, 0);
    let out = canvass(&["--config", cfg, "status"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("has schema 0, older than this canvass can migrate"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "it reads schema {}",
            canvass::store::SCHEMA_VERSION
        )),
        "{err}"
    );
    // The current one: fine.
    mark_schema(&store, canvass::store::SCHEMA_VERSION);
    assert!(canvass(&["--config", cfg, "status"]).status.success());

    // A record of an unknown version: a clear error, never misread or skipped.
    {
        let db = open_sled(&store);
        let inv = db.open_tree("invitations").unwrap();
        let (k, v) = inv.iter().next().unwrap().unwrap();
        let mut v = v.to_vec();
        v[0] = 42;
        inv.insert(k, v).unwrap();
        db.flush().unwrap();
    }
    let out = canvass(&["--config", cfg, "purge", "--dry-run"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    // (Records have versions of their own: schema 3 kept schema 2's records.)
    assert!(
        err.contains("invitation: record version 42, this canvass reads version 2"),
        "{err}"
    );
}

/// `canvass withdraw` for an invitation that should never have been made
/// (issue 12): offline, then through a running daemon's control socket. The
/// invitation leaves every count and the rate, the link shows its own page,
/// the person is never invited again, and withdrawing twice changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdraw_offline_and_through_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let (s, e) = open_window();
    let path = file_config(dir.path(), (&s, &e), "");
    let cfg = path.to_str().unwrap().to_string();
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            canvass(&args)
        })
    };
    let args = |v: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = vec!["--config".into(), cfg.clone()];
        a.extend(v.iter().map(|s| s.to_string()));
        a
    };
    let out = run(args(&[
        "invite",
        "a@kommune.test",
        "b@kommune.test",
        "c@kommune.test",
        "--region",
        "Syddanmark",
    ]))
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    // Offline (no daemon): a forged sender's invitation to a.
    let out = run(args(&[
        "withdraw",
        "A@Kommune.test",
        "--reason",
        "forged consultant From",
    ]))
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("withdrawn        a@kommune.test (invitation "),
        "{text}"
    );
    assert!(
        text.contains("region Syddanmark): out of every count, link disabled"),
        "{text}"
    );
    // A reason is required; a bad address withdraws nothing.
    let out = run(args(&["withdraw", "b@kommune.test"])).await.unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--reason"), "{}", stderr(&out));
    let out = run(args(&[
        "withdraw",
        "b@kommune.test",
        "ikke en adresse",
        "--reason",
        "x",
    ]))
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("nothing was withdrawn"),
        "{}",
        stderr(&out)
    );

    // Through the daemon: the CLI cannot open the store, so it uses the socket.
    let config = Config::load(&path).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shutdown = canvass::shutdown::Shutdown::new();
    let d = canvass::daemon::start(config, listener, shutdown.clone())
        .await
        .unwrap();
    let web = d.web_addr.to_string();
    let sent = dir.path().join("sent");
    let b_mail = tokio::task::spawn_blocking(move || {
        wait_for("b's invitation in the sent folder", STEP, || {
            files_in(&sent)
                .into_iter()
                .map(|f| std::fs::read(f).unwrap())
                .find(|m| String::from_utf8_lossy(m).contains("To: b@kommune.test"))
        })
    })
    .await
    .unwrap();
    let link = link_in(&b_mail).expect("b's link");
    // a's invitation, queued when it was withdrawn offline, was dropped: the
    // daemon sends b's and c's (queued after it) and never a's.
    let sent = dir.path().join("sent");
    let sent_to = tokio::task::spawn_blocking(move || {
        wait_for("c's invitation in the sent folder", STEP, || {
            let to: Vec<String> = files_in(&sent)
                .into_iter()
                .map(|f| String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned())
                .collect();
            to.iter()
                .any(|m| m.contains("To: c@kommune.test"))
                .then_some(to)
        })
    })
    .await
    .unwrap();
    assert!(
        !sent_to.iter().any(|m| m.contains("a@kommune.test")),
        "a's withdrawn invitation was never sent"
    );
    let out = run(args(&[
        "withdraw",
        "b@kommune.test",
        "a@kommune.test",
        "x@kommune.test",
        "--reason",
        "wrong address",
        "--json",
    ]))
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results: Vec<&str> = j["withdrawn"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["result"]["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        results,
        ["withdrawn", "already_withdrawn", "not_invited"],
        "{j}"
    );

    // The link shows its own page.
    let (code, body) = tokio::task::spawn_blocking(move || http_get(&web, &link))
        .await
        .unwrap();
    assert_eq!(code, 410);
    assert!(body.contains("Invitationen er trukket tilbage"), "{body}");

    // Out of every count and the rate; counted as withdrawn; never invited again.
    let out = run(args(&["status", "--json"])).await.unwrap();
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let syd = st["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == "Syddanmark")
        .unwrap()
        .clone();
    assert_eq!(
        (syd["invited"].as_u64(), syd["withdrawn"].as_u64()),
        (Some(1), Some(2)),
        "{syd}"
    );
    assert_eq!(st["total"]["withdrawn"], 2);
    let out = run(args(&["status"])).await.unwrap();
    assert!(
        stdout(&out).contains("withdrawn invitations (in no other column): 2 (Syddanmark 2)"),
        "{}",
        stdout(&out)
    );
    let out = run(args(&["invite", "b@kommune.test", "--region", "Sjælland"]))
        .await
        .unwrap();
    assert!(
        stdout(&out).contains("already invited  b@kommune.test"),
        "{}",
        stdout(&out)
    );
    let out = run(args(&["digest", "--print"])).await.unwrap();
    assert!(
        stdout(&out).contains("Trukket tilbage: 2 invitation(er)"),
        "{}",
        stdout(&out)
    );
    let out = run(args(&["report"])).await.unwrap();
    assert!(
        stdout(&out).contains("2 invitation(er) er trukket tilbage"),
        "{}",
        stdout(&out)
    );
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(30), d.wait())
        .await
        .expect("drained in time")
        .unwrap();
}
