//! The scheduler against a real store: the digest is missed-run safe (a slot
//! missed while the daemon was down goes out once when it comes back, never
//! twice, also across a restart), the final digest goes out once when the
//! window closes, and reminders go to exactly those who should get one.

use crate::common;

use canvass::config::Config;
use canvass::pipeline::Pipeline;
use canvass::scheduler::Scheduler;
use canvass::store::Purpose;
use chrono::{DateTime, Duration, Utc};
use common::*;

fn queued(p: &Pipeline, what: fn(&Purpose) -> bool) -> usize {
    let far = Utc::now() + Duration::days(3650);
    p.store
        .outbox_due(far, 100_000)
        .unwrap()
        .0
        .iter()
        .filter(|i| what(&i.purpose))
        .count()
}

fn digests(p: &Pipeline) -> usize {
    queued(p, |p| matches!(p, Purpose::Digest))
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[tokio::test]
async fn a_missed_digest_goes_out_once_also_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_config(dir.path(), ("2024-08-07", "2024-09-20"), "");
    let managers = Config::load(&path).unwrap().managers().len();
    assert_eq!(managers, 5);
    {
        let p = pipeline(&path);
        let s = Scheduler {
            pipeline: p.clone(),
        };
        // First start (Wednesday): nothing is owed yet.
        let next = s.tick(utc("2024-08-07T10:00:00Z")).await.unwrap();
        assert_eq!(digests(&p), 0);
        assert_eq!(
            next,
            Some(utc("2024-08-12T06:00:00Z")),
            "Monday 08:00 Copenhagen"
        );
        // Down over two Mondays; back on Tuesday 20 Aug: one digest per manager.
        s.tick(utc("2024-08-20T09:00:00Z")).await.unwrap();
        assert_eq!(digests(&p), managers);
        // Again the same day: nothing more.
        s.tick(utc("2024-08-20T12:00:00Z")).await.unwrap();
        assert_eq!(digests(&p), managers);
        p.store.flush().await.unwrap();
    }
    // A restart: the completed slot is remembered.
    let p = pipeline(&path);
    let s = Scheduler {
        pipeline: p.clone(),
    };
    s.tick(utc("2024-08-20T13:00:00Z")).await.unwrap();
    assert_eq!(digests(&p), managers);
    // The next Monday's slot, once.
    s.tick(utc("2024-08-26T06:00:00Z")).await.unwrap();
    s.tick(utc("2024-08-26T06:00:01Z")).await.unwrap();
    assert_eq!(digests(&p), 2 * managers);
    // Monday 16 Sep, the last slot inside the window.
    s.tick(utc("2024-09-16T06:00:00Z")).await.unwrap();
    assert_eq!(digests(&p), 3 * managers);
    // The window closes (21 Sep, Copenhagen): one final digest.
    s.tick(utc("2024-09-21T10:00:00Z")).await.unwrap();
    s.tick(utc("2024-09-22T10:00:00Z")).await.unwrap();
    assert_eq!(digests(&p), 4 * managers);
}

#[tokio::test]
async fn reminders_go_to_exactly_the_non_answerers() {
    let dir = tempfile::tempdir().unwrap();
    let (s, e) = open_window();
    let path = file_config(dir.path(), (&s, &e), "");
    let text = std::fs::read_to_string(&path).unwrap() + "\n[reminders]\nafter_days = 7\nmax = 1\n";
    std::fs::write(&path, text).unwrap();
    let p = pipeline(&path);
    let contacts = ["a@kommune.test", "b@kommune.test", "c@kommune.test"];
    p.invite_manual(&contacts.map(String::from), "Sjælland")
        .unwrap();
    // Send them (as the outbox would), then "a" answers.
    let (due, _) = p.store.outbox_due(Utc::now(), 100).unwrap();
    let mut links = std::collections::HashMap::new();
    for item in &due {
        links.insert(item.to[0].clone(), link_in(&as_sent(&p, item)).unwrap());
        p.store.mark_sent(item, Utc::now()).unwrap();
    }
    let token =
        canvass::token::Token::from_url(links["a@kommune.test"].trim_start_matches("/s/")).unwrap();
    let answer = canvass::store::StoredResponse {
        survey_id: "x".into(),
        survey_version: 1,
        region: None,
        day: Utc::now().date_naive(),
        answers: Default::default(),
    };
    p.store.submit_response(&token, answer, true).await.unwrap();

    let sched = Scheduler {
        pipeline: p.clone(),
    };
    // Too early: nothing.
    assert_eq!(
        sched
            .queue_reminders(Utc::now() + Duration::days(6))
            .unwrap(),
        0
    );
    // After 7 days: b and c, each with the same personal link as before.
    assert_eq!(
        sched
            .queue_reminders(Utc::now() + Duration::days(8))
            .unwrap(),
        2
    );
    let (due, _) = p
        .store
        .outbox_due(Utc::now() + Duration::minutes(1), 100)
        .unwrap();
    let reminders: Vec<_> = due
        .iter()
        .filter(|i| matches!(i.purpose, Purpose::Reminder { .. }))
        .collect();
    let mut to: Vec<&str> = reminders.iter().map(|r| r.to[0].as_str()).collect();
    to.sort();
    assert_eq!(to, ["b@kommune.test", "c@kommune.test"]);
    for r in &reminders {
        assert_eq!(link_in(&r.raw).unwrap(), links[&r.to[0]], "the same link");
        assert!(String::from_utf8_lossy(&r.raw).contains("Auto-Submitted: auto-generated"));
    }
    // At most `max`: not again.
    assert_eq!(
        sched
            .queue_reminders(Utc::now() + Duration::days(20))
            .unwrap(),
        0
    );
    let st = canvass::control::current_status(&p).unwrap();
    assert_eq!(st.total.answered, 1);
}
