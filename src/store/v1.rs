//! Schema 1 and the migration from it ([`migrate`], in `schema.rs`'s
//! `MIGRATIONS`). Schema 1 stored the public structs as they are, after a
//! version byte of 1, in bincode's fixed-width form (`bincode::serialize`:
//! 8-byte lengths, 4-byte enum tags, times as RFC 3339 text). Schema 2 stores
//! them in the compact forms of `record.rs`. The trees of ids and counters
//! (`recipients`, `tokens`, `msgids`, `counters`) are the same in both.

use serde::de::DeserializeOwned;

use super::jobs::JobState;
use super::record::{encode, intern_invitation, intern_response, Names, Record, RECORD_VERSION};
use super::responses::StoredResponse;
use super::withdraw::{Counted, WithdrawnRecord, COUNTED_TREE};
use super::{IngestMark, Invitation, OutboxItem, StoreError};

/// The version byte of a schema-1 record.
const V1: u8 = 1;

/// Records rewritten per sled batch.
const BATCH: usize = 10_000;

/// Rewrites every schema-1 record as a schema-2 one. Idempotent: a record
/// already rewritten (version 2) is left alone, so a crash mid-way runs it
/// again over what is left; names are interned before the records that use
/// them are written.
pub(super) fn migrate(db: &sled::Db) -> Result<(), StoreError> {
    let names = Names::load(db)?;
    rewrite::<Invitation>(
        db,
        "invitations",
        "invitation",
        &names,
        &|_| true,
        &|i, n| intern_invitation(i, n),
    )?;
    rewrite::<OutboxItem>(db, "outbox", "outbox item", &names, &|_| true, &|_, _| {
        Ok(())
    })?;
    rewrite::<StoredResponse>(db, "responses", "response", &names, &|_| true, &|r, n| {
        intern_response(r, n)
    })?;
    rewrite::<JobState>(db, "jobs", "job state", &names, &|_| true, &|_, _| Ok(()))?;
    rewrite::<WithdrawnRecord>(
        db,
        super::withdraw::TREE,
        "withdrawal",
        &names,
        &|_| true,
        &|_, _| Ok(()),
    )?;
    rewrite::<Counted>(db, COUNTED_TREE, "counted", &names, &|_| true, &|_, _| {
        Ok(())
    })?;
    // `seen:` entries are empty values, not records.
    rewrite::<IngestMark>(
        db,
        "ingest",
        "ingest mark",
        &names,
        &|k| k.starts_with(b"mark:"),
        &|_, _| Ok(()),
    )?;
    Ok(())
}

type Intern<T> = dyn Fn(&T, &Names) -> Result<(), StoreError>;

fn rewrite<T: Record + DeserializeOwned>(
    db: &sled::Db,
    tree: &str,
    what: &str,
    names: &Names,
    is_record: &dyn Fn(&[u8]) -> bool,
    intern: &Intern<T>,
) -> Result<(), StoreError> {
    let tree = db.open_tree(tree)?;
    let mut batch = sled::Batch::default();
    let mut pending = 0;
    for kv in tree.iter() {
        let (k, v) = kv?;
        if !is_record(&k) {
            continue;
        }
        match v.first() {
            Some(&V1) => {
                let record: T = decode_v1(&v, what)?;
                intern(&record, names)?;
                batch.insert(k, encode(&record, names));
                pending += 1;
                if pending == BATCH {
                    tree.apply_batch(std::mem::take(&mut batch))?;
                    pending = 0;
                }
            }
            Some(&RECORD_VERSION) => {}
            other => {
                return Err(StoreError::Corrupt {
                    what: format!(
                        "{what}: record version {:?} in a schema-1 store",
                        other.copied()
                    ),
                })
            }
        }
    }
    tree.apply_batch(batch)?;
    Ok(())
}

/// A schema-1 record.
fn decode_v1<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&V1, rest)) => bincode::deserialize(rest).map_err(|e| StoreError::Corrupt {
            what: format!("{what} (schema 1): {e}"),
        }),
        _ => Err(StoreError::Corrupt {
            what: format!("{what}: not a schema-1 record"),
        }),
    }
}

/// A record as the schema-1 canvass wrote it.
#[cfg(test)]
fn encode_v1<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![V1];
    out.extend(bincode::serialize(v).expect("a schema-1 record"));
    out
}

/// Test support: turns a store written by this canvass back into the
/// schema-1 store the schema-1 code would have written (every record in the
/// schema-1 encoding, no `names` tree, marker 1). `only_every`: downgrade
/// only every n-th record of each tree (a migration that stopped mid-way).
#[cfg(test)]
pub(super) fn downgrade(db: &sled::Db, only_every: usize) {
    use super::record::decode;
    use serde::Serialize;
    fn down<T: Record + Serialize>(
        db: &sled::Db,
        tree: &str,
        names: &Names,
        only_every: usize,
        is_record: &dyn Fn(&[u8]) -> bool,
    ) {
        let tree = db.open_tree(tree).unwrap();
        let entries: Vec<_> = tree.iter().map(|kv| kv.unwrap()).collect();
        for (n, (k, v)) in entries
            .into_iter()
            .filter(|(k, _)| is_record(k))
            .enumerate()
        {
            if n % only_every == 0 {
                let r: T = decode(&v, "test", names).unwrap();
                tree.insert(k, encode_v1(&r)).unwrap();
            }
        }
    }
    let names = Names::load(db).unwrap();
    // Schema 1 indexed every link, and every address.
    let tokens = db.open_tree("tokens").unwrap();
    let recipients = db.open_tree("recipients").unwrap();
    for kv in db.open_tree("invitations").unwrap().iter() {
        let (k, v) = kv.unwrap();
        let i: Invitation = decode(&v, "test", &names).unwrap();
        if tokens.get(i.token_hash.0).unwrap().is_none() {
            tokens.insert(i.token_hash.0, k.clone()).unwrap();
        }
        if recipients.get(i.address_key.0).unwrap().is_none() {
            recipients.insert(i.address_key.0, k).unwrap();
        }
    }
    let all = |_: &[u8]| true;
    down::<Invitation>(db, "invitations", &names, only_every, &all);
    down::<OutboxItem>(db, "outbox", &names, only_every, &all);
    down::<StoredResponse>(db, "responses", &names, only_every, &all);
    down::<JobState>(db, "jobs", &names, only_every, &all);
    down::<WithdrawnRecord>(db, super::withdraw::TREE, &names, only_every, &all);
    down::<Counted>(db, COUNTED_TREE, &names, only_every, &all);
    down::<IngestMark>(db, "ingest", &names, only_every, &|k| {
        k.starts_with(b"mark:")
    });
    if only_every == 1 {
        db.drop_tree(super::record::NAMES_TREE).unwrap();
    }
    db.open_tree("meta")
        .unwrap()
        .insert("schema", &[V1])
        .unwrap();
    db.flush().unwrap();
}

#[cfg(test)]
pub(super) mod tests {
    use std::cell::RefCell;
    use std::path::Path;

    use chrono::{NaiveDate, Utc};

    use super::*;
    use crate::address::parse;
    use crate::answer::{Answers, Value};
    use crate::store::backup::open_after_drop;
    use crate::store::erase::tests::{key, unit};
    use crate::store::{
        counter, CommitView, Committed, Effect, IngestUnit, Link, Outgoing, Purpose, Store,
    };

    /// Everything a store answers, as read through its operations.
    #[derive(Debug, PartialEq)]
    pub(in crate::store) struct Seen {
        invitations: Vec<Invitation>,
        links: Vec<Link>,
        answers: Vec<StoredResponse>,
        outbox: Vec<OutboxItem>,
        counters: Vec<(String, String, u64)>,
        mark: Option<IngestMark>,
        job: JobState,
        withdrawn: Vec<bool>,
    }

    pub(in crate::store) fn seen(store: &Store) -> Seen {
        let invitations: Vec<Invitation> = store.invitations().map(|i| i.unwrap()).collect();
        Seen {
            links: invitations
                .iter()
                .map(|i| store.link(i.link_key()).unwrap())
                .collect(),
            withdrawn: invitations
                .iter()
                .map(|i| store.is_withdrawn(i.id).unwrap())
                .collect(),
            invitations,
            answers: store.responses().map(|r| r.unwrap()).collect(),
            outbox: store
                .outbox_due(Utc::now() + chrono::Duration::days(3650), 1000)
                .unwrap()
                .0,
            counters: store.counters().unwrap(),
            mark: store.ingest_mark("imap").unwrap(),
            job: store.job_state("digest").unwrap(),
        }
    }

    /// A store with some of everything: invitations in two regions (sent,
    /// failed, bounced, opted out, answered, reminded, withdrawn, forgotten),
    /// answers, queued mail, a mark and a job's state.
    pub(in crate::store) async fn rich_store(path: &Path) -> Seen {
        let store = Store::open(path).unwrap();
        let none = |_: &CommitView| None;
        let mut u = unit(&["a@x.dk", "b@x.dk", "c@x.dk", "d@x.dk"], 1, "Sjælland");
        u.consultant = Some(parse("anne@siri.dk").unwrap());
        store.commit_ingest(&u, &none).unwrap();
        let mut u = unit(&["e@x.dk", "f@x.dk", "g@x.dk"], 2, "Nordjylland");
        u.consultant = Some(parse("bo@siri.dk").unwrap());
        u.received_at = Some(Utc::now() - chrono::Duration::weeks(2));
        store.commit_ingest(&u, &none).unwrap();
        // Tests' invitations without a consultant (the invitee's own address).
        store
            .commit_ingest(&unit(&["h@x.dk"], 3, "Fyn"), &none)
            .unwrap();
        let (due, _) = store.outbox_due(Utc::now(), 2).unwrap();
        store.mark_sent_all(&due, Utc::now()).unwrap();
        let (due, _) = store.outbox_due(Utc::now(), 1).unwrap();
        store.mark_failed(&due[0], Utc::now(), "550 nope").unwrap();
        let invs: Vec<Invitation> = store.invitations().map(|i| i.unwrap()).collect();
        let effect = |e: Effect, seen: u8| {
            let u = IngestUnit {
                seen_key: Some([seen; 32]),
                effect: Some(e),
                ..IngestUnit::at(Utc::now())
            };
            store.commit_ingest(&u, &none).unwrap();
        };
        effect(
            Effect::Bounce {
                recipients: vec![(None, crate::store::Failure::Permanent)],
                message_ids: vec![invs[4].message_id.clone()],
                by_address: false,
            },
            10,
        );
        effect(
            Effect::Complaint {
                message_ids: vec![invs[5].message_id.clone()],
            },
            11,
        );
        let reminder = Outgoing {
            from: "s@siri.dk".into(),
            to: vec!["a@x.dk".into()],
            message_id: "canvass.reminder-a".into(),
            raw: b"Subject: husk\r\n\r\nbody".to_vec(),
            not_before: Utc::now() + chrono::Duration::hours(1),
        };
        assert!(store
            .queue_reminder(invs[0].id, &reminder, 2, Utc::now())
            .unwrap());
        let response = StoredResponse {
            region: None,
            ..scale_answer()
        };
        let k = key();
        store
            .submit_response(invs[1].link_key(), response.clone(), true)
            .await
            .unwrap();
        store
            .submit_response(invs[6].link_key(), response, false)
            .await
            .unwrap();
        let c = parse("c@x.dk").unwrap();
        store
            .withdraw(&k.key_of(&c), &c, "by mistake", Utc::now())
            .unwrap();
        let d = parse("d@x.dk").unwrap();
        store.forget(&k.key_of(&d), &d).unwrap();
        store
            .set_ingest_mark(
                "imap",
                IngestMark {
                    uid_validity: 7,
                    last_uid: 99,
                },
            )
            .unwrap();
        store
            .set_job_state(
                "digest",
                &JobState {
                    last: Some(Utc::now()),
                    data: Some("{\"n\":1}".into()),
                },
            )
            .await
            .unwrap();
        store
            .enqueue(
                Purpose::Digest,
                &Outgoing {
                    from: "s@siri.dk".into(),
                    to: vec!["chef@siri.dk".into()],
                    message_id: "canvass.digest".into(),
                    raw: b"Subject: uge\r\n\r\n".to_vec(),
                    not_before: Utc::now(),
                },
            )
            .unwrap();
        store.flush_blocking().unwrap();
        seen(&store)
    }

    /// The invitation a Message-ID leads to (a reply matched by it).
    pub(in crate::store) fn matched(store: &Store, message_id: &str, seen: u8) -> Option<u64> {
        let got = RefCell::new(None);
        let u = IngestUnit {
            seen_key: Some([seen; 32]),
            effect: Some(Effect::Reply {
                from: key().key_of(&parse("nobody@y.dk").unwrap()),
                message_ids: vec![message_id.to_string()],
            }),
            ..IngestUnit::at(Utc::now())
        };
        let respond = |v: &CommitView| {
            *got.borrow_mut() = v.matched.map(|i| i.id);
            None
        };
        assert!(matches!(
            store.commit_ingest(&u, &respond).unwrap(),
            Committed::Effect(_)
        ));
        got.into_inner()
    }

    /// sled lets go of its file lock shortly after the last handle drops.
    pub(in crate::store) fn open_db_again(path: &Path) -> sled::Db {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match crate::store::open_db(path) {
                Ok(db) => return db,
                Err(e) if std::time::Instant::now() > deadline => panic!("{e}"),
                Err(_) => std::thread::yield_now(),
            }
        }
    }

    pub(in crate::store) fn reopen_as_v1(path: &Path, only_every: usize) {
        let db = open_db_again(path);
        downgrade(&db, only_every);
    }

    #[tokio::test]
    async fn a_schema_1_store_reads_the_same_after_migrating() {
        let dir = tempfile::tempdir().unwrap();
        let before = rich_store(dir.path()).await;
        reopen_as_v1(dir.path(), 1);
        {
            let db = open_db_again(dir.path());
            let v = db.open_tree("invitations").unwrap();
            let (_, first) = v.iter().next().unwrap().unwrap();
            assert_eq!(first[0], V1, "the fixture is schema 1");
            assert!(!db.tree_names().iter().any(|n| n == b"names"));
        }
        let store = open_after_drop(dir.path()).unwrap();
        assert_eq!(
            store
                .db
                .open_tree("meta")
                .unwrap()
                .get("schema")
                .unwrap()
                .unwrap()
                .as_ref(),
            &[crate::store::SCHEMA_VERSION]
        );
        assert_eq!(seen(&store), before);
        // Schema-1 links (no id in them) go on working through `tokens`.
        for i in &before.invitations {
            assert_eq!(
                store.link(&i.token_hash).unwrap(),
                store.link(i.link_key()).unwrap()
            );
        }
        // Regions, consultants, the survey and the answer codes became names;
        // the invitee's own address (no consultant) and free text did not.
        let names: Vec<String> = store
            .db
            .open_tree("names")
            .unwrap()
            .iter()
            .map(|kv| String::from_utf8(kv.unwrap().1.to_vec()).unwrap())
            .collect();
        for n in [
            "Sjælland",
            "anne@siri.dk",
            "siri-raadgivning",
            "boern",
            "andet",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} in {names:?}");
        }
        for n in [
            "h@x.dk",
            "Netværk på tværs – æøå ÆØÅ 🙂",
            "Rigtig god hjælp, tak! Søren & Åse <3 🎉",
        ] {
            assert!(!names.iter().any(|x| x == n), "{n} in {names:?}");
        }
        // Message-IDs still lead to their invitations, reminders too.
        let invs = &before.invitations;
        assert_eq!(matched(&store, &invs[1].message_id, 40), Some(invs[1].id));
        assert_eq!(matched(&store, "canvass.reminder-a", 41), Some(invs[0].id));
        assert_eq!(matched(&store, "canvass.unknown", 42), None);
        // And the store goes on working: a new invitation, counted.
        store
            .commit_ingest(&unit(&["z@x.dk"], 50, "Sjælland"), &|_: &CommitView| None)
            .unwrap();
        let invited: u64 = store
            .counters()
            .unwrap()
            .iter()
            .filter(|(r, n, _)| r == "Sjælland" && n == counter::INVITED)
            .map(|c| c.2)
            .sum();
        // a, b, c, d and z; c was withdrawn (uncounted).
        assert_eq!(invited, 4);
    }

    #[tokio::test]
    async fn a_migration_stopped_mid_way_runs_again() {
        let dir = tempfile::tempdir().unwrap();
        let before = rich_store(dir.path()).await;
        // Every other record still schema 1, the names tree kept: what a
        // crash after part of the rewrite leaves.
        reopen_as_v1(dir.path(), 2);
        let store = open_after_drop(dir.path()).unwrap();
        assert_eq!(seen(&store), before);
        drop(store);
        // Run over a store already migrated: nothing changes.
        let db = open_db_again(dir.path());
        migrate(&db).unwrap();
        db.flush().unwrap();
        drop(db);
        let store = open_after_drop(dir.path()).unwrap();
        assert_eq!(seen(&store), before);
    }

    /// The answer of the scale bench (the integration tests' complete one).
    fn scale_answer() -> StoredResponse {
        let single = |c: &str| Value::Single {
            code: c.into(),
            other: None,
        };
        let mut answers = Answers::new();
        for (q, c) in [
            ("organisation", "krisecenter"),
            ("antal_sager", "2_5"),
            ("boern", "ja"),
            ("tilgaengelighed", "meget_hoej"),
            ("hjulpet_videre", "hoej"),
            ("anbefale", "meget_hoej"),
        ] {
            answers.insert(q.into(), single(c));
        }
        answers.insert(
            "raadgivning".into(),
            Value::Multi {
                codes: vec!["risiko".into(), "andet".into()],
                other: Some("Netværk på tværs – æøå ÆØÅ 🙂".into()),
            },
        );
        answers.insert(
            "kommentarer".into(),
            Value::Text {
                text: "Rigtig god hjælp, tak! Søren & Åse <3 🎉".into(),
            },
        );
        StoredResponse {
            survey_id: "siri-raadgivning".into(),
            survey_version: 1,
            region: Some("Hovedstaden".into()),
            day: NaiveDate::from_ymd_opt(2026, 11, 25).unwrap(),
            answers,
        }
    }

    /// The records of the scale bench (a pipeline invitation, sent; the
    /// integration tests' complete answer), schema 1 against schema 2. The
    /// sizes are reported in BENCHMARKS.md and model the `floor` bench.
    #[test]
    fn compact_records_are_much_smaller() {
        use crate::address::HmacKey;
        use crate::store::Delivery;
        use crate::token::{Token, TokenNonce};
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let names = Names::load(&db).unwrap();
        let address = parse("kontakt+123456@kommune.test").unwrap();
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-25T19:02:33.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        let inv = Invitation {
            id: 123_456,
            address_key: HmacKey::from_bytes(&[1; 32]).key_of(&address),
            address: Some(address),
            region: "Hovedstaden".into(),
            consultant: parse("mette.larsen@siri.test").unwrap(),
            created_at: at,
            token_hash: Token::generate().hash(),
            token_nonce: Some(TokenNonce::generate()),
            message_id: "canvass.0123456789abcdef01234567@siri.test".into(),
            delivery: Delivery::Sent { at },
            answered: true,
            opted_out: false,
            bounced: false,
            reminders: 0,
            last_reminder_at: None,
        };
        intern_invitation(&inv, &names).unwrap();
        let answer = scale_answer();
        intern_response(&answer, &names).unwrap();
        // Schema 1 wrote the planned Message-ID; schema 2 writes it with the
        // id in front (message_id.rs), and keeps only its random half.
        let new = Invitation {
            message_id: crate::message_id::of_invitation(&inv.message_id, inv.id).unwrap(),
            ..inv.clone()
        };
        let (inv1, inv2) = (encode_v1(&inv).len(), encode(&new, &names).len());
        let migrated = encode(&inv, &names).len();
        eprintln!("a schema-1 invitation migrated: {migrated} B");
        let (ans1, ans2) = (encode_v1(&answer).len(), encode(&answer, &names).len());
        eprintln!("invitation: {inv1} B → {inv2} B; answer: {ans1} B → {ans2} B");
        // 80 bytes of it are hashes and the nonce: about half the old size.
        assert!(inv2 * 100 < inv1 * 55, "invitation {inv1} → {inv2}");
        assert!(migrated < inv1 * 2 / 3, "migrated {inv1} → {migrated}");
        assert!(ans2 * 2 < ans1, "answer {ans1} → {ans2}");
        // And they read back as they were.
        for i in [&inv, &new] {
            let back: Invitation =
                crate::store::record::decode(&encode(i, &names), "i", &names).unwrap();
            assert_eq!(&back, i);
        }
        let back: StoredResponse =
            crate::store::record::decode(&encode(&answer, &names), "a", &names).unwrap();
        assert_eq!(back, answer);
    }

    /// A measurement, not a check (`cargo test --lib store::v1 -- --ignored
    /// --nocapture`): 10,000 pipeline-shaped invitations (sent) and 5,000
    /// answers through the store's own operations; per tree, its keys and
    /// bytes per invitation, as written (schema 2) and as schema 1 wrote
    /// the same records.
    #[tokio::test]
    #[ignore]
    async fn measure_a_10k_store() {
        use crate::address::HmacKey;
        use crate::store::NewInvitation;
        use crate::token::Token;
        const N: usize = 10_000;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let k = HmacKey::from_bytes(&[5; 32]);
        for batch in 0..N / 25 {
            let units: Vec<IngestUnit> = (0..25)
                .map(|j| {
                    let n = batch * 25 + j;
                    let address = parse(&format!("kontakt+{n}@kommune.test")).unwrap();
                    let token = Token::generate();
                    IngestUnit {
                        seen_key: Some(crate::apply::seen_key(None, format!("{n}").as_bytes())),
                        region: "Hovedstaden".into(),
                        consultant: Some(parse("mette.larsen@siri.test").unwrap()),
                        invitations: vec![NewInvitation {
                            address_key: k.key_of(&address),
                            token_hash: token.hash(),
                            token_nonce: Some(crate::token::TokenNonce::generate()),
                            outgoing: Outgoing {
                                from: "undersoegelse@siri.test".into(),
                                to: vec![address.to_string()],
                                message_id: format!("canvass.{n:024x}@siri.test"),
                                raw: Vec::new(),
                                not_before: Utc::now(),
                            },
                            address,
                        }],
                        ..IngestUnit::at(Utc::now())
                    }
                })
                .collect();
            let none = |_: &CommitView| None;
            let all: Vec<(&IngestUnit, crate::store::Responder<'_>)> =
                units.iter().map(|u| (u, &none as _)).collect();
            store.commit_ingest_all(&all).unwrap();
            let (due, _) = store.outbox_due(Utc::now(), 25).unwrap();
            store.mark_sent_all(&due, Utc::now()).unwrap();
        }
        let response = scale_answer();
        let links: Vec<_> = store.invitations().map(|i| i.unwrap().link_key()).collect();
        for t in links.iter().step_by(2) {
            store
                .submit_response(t, response.clone(), true)
                .await
                .unwrap();
        }
        store.flush_blocking().unwrap();
        let names = &store.names;
        let mut rows = Vec::new();
        for tree in [
            "invitations",
            "recipients",
            "tokens",
            "msgids",
            "responses",
            "names",
        ] {
            let t = store.db.open_tree(tree).unwrap();
            let (mut keys, mut v2, mut v1) = (0usize, 0usize, 0usize);
            for kv in t.iter() {
                let (key, v) = kv.unwrap();
                keys += 1;
                v2 += key.len() + v.len();
                v1 += key.len()
                    + match tree {
                        "invitations" => {
                            let i: Invitation = decode(&v, "i", names).unwrap();
                            // Schema 1 kept the planned Message-ID.
                            let planned = format!("canvass.{:024x}@siri.test", i.id);
                            encode_v1(&Invitation {
                                message_id: planned,
                                ..i
                            })
                            .len()
                        }
                        "responses" => {
                            encode_v1(&decode::<StoredResponse>(&v, "r", names).unwrap()).len()
                        }
                        "names" => 0,
                        _ => v.len(),
                    };
            }
            match tree {
                // Schema 1 indexed every invitation's Message-ID (42 + 8
                // bytes) and token (32 + 8 bytes).
                "msgids" => v1 = 50 * N,
                "tokens" => v1 = 40 * N,
                _ => {}
            }
            rows.push(format!(
                "{tree}: {keys} keys, {:.1} B/invitation (schema 1: {:.1})",
                v2 as f64 / N as f64,
                v1 as f64 / N as f64
            ));
        }
        let disk: u64 = walk(dir.path());
        eprintln!(
            "{}\non disk {:.0} B/invitation",
            rows.join("\n"),
            disk as f64 / N as f64
        );
        use crate::store::record::decode;
        fn walk(p: &Path) -> u64 {
            std::fs::read_dir(p)
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    let m = e.metadata().unwrap();
                    if m.is_dir() {
                        walk(&e.path())
                    } else {
                        m.len()
                    }
                })
                .sum()
        }
    }
}
