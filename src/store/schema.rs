//! The store schema's life cycle: [`migrate`] is called by [`Store::open`]
//! for a store of an older schema; it runs the steps in [`MIGRATIONS`] one
//! schema at a time, or refuses naming both versions.
//!
//! [`Store::open`]: super::Store::open

use super::{StoreError, SCHEMA_VERSION};

/// The oldest schema this canvass migrates from: a store marked older is
/// refused, never guessed at.
pub const OLDEST_MIGRATABLE: u8 = 1;

/// One step: turns a store of schema `n` into one of schema `n + 1` (rewrites
/// records, adds or renames trees). It runs before any tree is used, and must
/// be idempotent: a crash before the new marker is flushed runs it again.
pub type Migration = fn(&sled::Db) -> Result<(), StoreError>;

/// `MIGRATIONS[i]` migrates schema `OLDEST_MIGRATABLE + i` to the next one.
/// To change the layout: bump [`SCHEMA_VERSION`], append the step here.
///
/// - 1 → 2 (`v1.rs`): compact records (times as integers, names as numbers
///   through the `names` tree, variable-length integers).
/// - 2 → 3 ([`keyed_invitations`]): new invitations are keyed by their
///   address (`keyed_id`), without a `recipients` entry.
pub const MIGRATIONS: &[Migration] = &[super::v1::migrate, keyed_invitations];

/// 2 → 3: nothing to rewrite. The invitations already made keep their ids
/// (their links and Message-IDs carry them) and their `recipients` entries,
/// which schema 3 reads as it reads a keyed id's fallback; only invitations
/// made from now on are keyed by their address. The new marker is what
/// matters: a canvass of schema 2 would not see those invitations in
/// `recipients` and could invite their addresses again, so it must refuse
/// the store (`StoreError::TooNew`) rather than open it.
fn keyed_invitations(_db: &sled::Db) -> Result<(), StoreError> {
    Ok(())
}

const _: () = assert!(
    MIGRATIONS.len() == (SCHEMA_VERSION - OLDEST_MIGRATABLE) as usize,
    "one migration per schema version between OLDEST_MIGRATABLE and SCHEMA_VERSION"
);

/// Brings a store marked with schema `found` (older than [`SCHEMA_VERSION`])
/// up to date, or refuses with the versions named.
pub(super) fn migrate(
    db: &sled::Db,
    meta: &sled::Tree,
    found: u8,
    path: &str,
) -> Result<(), StoreError> {
    run_migrations(
        db,
        meta,
        found,
        SCHEMA_VERSION,
        OLDEST_MIGRATABLE,
        MIGRATIONS,
        path,
    )
}

fn run_migrations(
    db: &sled::Db,
    meta: &sled::Tree,
    found: u8,
    target: u8,
    oldest: u8,
    steps: &[Migration],
    path: &str,
) -> Result<(), StoreError> {
    if found < oldest || usize::from(target.saturating_sub(oldest)) != steps.len() {
        return Err(StoreError::TooOld {
            path: path.to_string(),
            found,
            reads: target,
            oldest,
        });
    }
    for from in found..target {
        let step = steps[usize::from(from - oldest)];
        step(db).map_err(|e| StoreError::Migration {
            path: path.to_string(),
            from,
            to: from + 1,
            error: e.to_string(),
        })?;
        meta.insert("schema", &[from + 1])?;
        db.flush()?;
        tracing::info!(
            store = path,
            from,
            to = from + 1,
            "store migrated to a newer schema"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backup::open_after_drop;
    use crate::store::erase::tests::{all, invite};
    use crate::store::Store;
    use std::path::Path;

    fn raw_store_with_schema(path: &Path, schema: u8) {
        let db = sled::open(path).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert("schema", &[schema])
            .unwrap();
        db.flush().unwrap();
    }

    #[test]
    fn an_older_schema_is_refused_naming_the_versions() {
        let dir = tempfile::tempdir().unwrap();
        raw_store_with_schema(dir.path(), 0);
        // (The raw store was dropped a moment ago: wait out sled's lock.)
        let err = open_after_drop(dir.path()).err().expect("refused");
        assert!(matches!(err, StoreError::TooOld { found: 0, .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("schema 0"), "{text}");
        assert!(text.contains(&format!("schema {SCHEMA_VERSION}")), "{text}");
    }

    #[test]
    fn the_current_schema_opens_as_is() {
        let dir = tempfile::tempdir().unwrap();
        raw_store_with_schema(dir.path(), SCHEMA_VERSION);
        open_after_drop(dir.path()).unwrap();
    }

    fn step_1_to_2(db: &sled::Db) -> Result<(), StoreError> {
        db.open_tree("steps")?.insert("1to2", b"done")?;
        Ok(())
    }

    fn step_2_to_3(db: &sled::Db) -> Result<(), StoreError> {
        let steps = db.open_tree("steps")?;
        if steps.get("1to2")?.is_none() {
            return Err(StoreError::Corrupt {
                what: "2→3 before 1→2".into(),
            });
        }
        steps.insert("2to3", b"done")?;
        Ok(())
    }

    fn failing_step(_: &sled::Db) -> Result<(), StoreError> {
        Err(StoreError::Corrupt {
            what: "cannot".into(),
        })
    }

    #[test]
    fn migrations_run_one_schema_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert("schema", &[1]).unwrap();
        let steps: &[Migration] = &[step_1_to_2, step_2_to_3];
        run_migrations(&db, &meta, 1, 3, 1, steps, "s").unwrap();
        assert_eq!(meta.get("schema").unwrap().unwrap().as_ref(), &[3]);
        let done = db.open_tree("steps").unwrap();
        assert!(done.get("1to2").unwrap().is_some() && done.get("2to3").unwrap().is_some());
        // From the middle: only the missing step.
        let db2 = sled::open(dir.path().join("two")).unwrap();
        let meta2 = db2.open_tree("meta").unwrap();
        db2.open_tree("steps")
            .unwrap()
            .insert("1to2", b"done")
            .unwrap();
        run_migrations(&db2, &meta2, 2, 3, 1, steps, "s").unwrap();
        assert_eq!(meta2.get("schema").unwrap().unwrap().as_ref(), &[3]);
        // Older than the oldest step: refused, naming the versions.
        let err = run_migrations(&db2, &meta2, 0, 3, 1, steps, "s").unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::TooOld {
                    found: 0,
                    reads: 3,
                    oldest: 1,
                    ..
                }
            ),
            "{err}"
        );
        // A failing step names where it failed and leaves the old marker.
        let meta3 = db2.open_tree("meta3").unwrap();
        let err = run_migrations(&db2, &meta3, 1, 2, 1, &[failing_step], "s").unwrap_err();
        assert!(
            matches!(err, StoreError::Migration { from: 1, to: 2, .. }),
            "{err}"
        );
        assert!(meta3.get("schema").unwrap().is_none());
    }

    /// Rewrites the store at `path` as a canvass of schema 2 wrote it:
    /// every invitation under an id from sled's counter, with a
    /// `recipients` entry, and the `tokens` and `msgids` entries that named
    /// its keyed id naming that one. (Its outbox must be empty.)
    /// Returns (address, schema-2 id).
    fn as_schema_2(path: &Path) -> Vec<(String, u64)> {
        use crate::store::record::{decode, encode, Names};
        use crate::store::v1::tests::open_db_again;
        use crate::store::Invitation;
        let db = open_db_again(path);
        let names = Names::load(&db).unwrap();
        let (inv, rcp) = (
            db.open_tree("invitations").unwrap(),
            db.open_tree("recipients").unwrap(),
        );
        let mut ids = Vec::new();
        for kv in inv.iter().collect::<Vec<_>>() {
            let (k, v) = kv.unwrap();
            let mut i: Invitation = decode(&v, "test", &names).unwrap();
            let old = i.id;
            i.id = db.generate_id().unwrap();
            inv.remove(&k).unwrap();
            inv.insert(i.id.to_be_bytes(), encode(&i, &names)).unwrap();
            rcp.insert(i.address_key.0, &i.id.to_be_bytes()).unwrap();
            for index in ["tokens", "msgids"] {
                let t = db.open_tree(index).unwrap();
                for kv in t.iter() {
                    let (k, v) = kv.unwrap();
                    if v.as_ref() == old.to_be_bytes() {
                        t.insert(k, &i.id.to_be_bytes()).unwrap();
                    }
                }
            }
            ids.push((i.address.unwrap().to_string(), i.id));
        }
        assert!(db.open_tree("outbox").unwrap().is_empty());
        db.open_tree("meta")
            .unwrap()
            .insert("schema", &[2])
            .unwrap();
        db.flush().unwrap();
        ids
    }

    /// A store of schema 2 opens as schema 3 with nothing rewritten: its
    /// invitations keep their ids (links, Message-IDs) and are found by
    /// their `recipients` entries (nobody invited twice across the
    /// upgrade); invitations made after it are keyed by their address.
    #[test]
    fn a_schema_2_store_keeps_its_invitations_and_new_ones_are_keyed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            invite(&store, &["a@x.dk", "b@x.dk"], 1);
            let (due, _) = store.outbox_due(chrono::Utc::now(), 10).unwrap();
            store.mark_sent_all(&due, chrono::Utc::now()).unwrap();
            store.flush_blocking().unwrap();
        }
        let old = as_schema_2(dir.path());
        assert!(old.iter().all(|(_, id)| *id < crate::store::KEYED_ID_BASE));
        let store = open_after_drop(dir.path()).unwrap();
        let marker = store.db.open_tree("meta").unwrap().get("schema").unwrap();
        assert_eq!(marker.unwrap().as_ref(), &[SCHEMA_VERSION]);
        for (addr, id) in &old {
            let i = all(&store)
                .into_iter()
                .find(|i| i.address.as_ref().is_some_and(|a| a.as_str() == addr))
                .unwrap();
            assert_eq!(i.id, *id);
            assert_eq!(
                store.invitation_by_address(&i.address_key).unwrap(),
                Some(i.clone())
            );
            // Its link, which carries its schema-2 id.
            assert_eq!(
                store.link(i.link_key()).unwrap(),
                crate::store::Link::Invitation(Box::new(i))
            );
        }
        // Neither is invited again; a newcomer is keyed by the address.
        invite(&store, &["b@x.dk", "a@x.dk", "c@x.dk"], 2);
        assert_eq!(store.invitation_count(), 3);
        let c = all(&store)
            .into_iter()
            .find(|i| i.message_id == "canvass.c@x.dk")
            .unwrap();
        assert_eq!(c.id, crate::store::keyed_id(&c.address_key));
        assert_eq!(store.recipients.len(), 2, "a's and b's, none for c");
    }

    #[test]
    fn a_record_of_an_unknown_version_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        invite(&store, &["a@x.dk"], 1);
        let id = all(&store)[0].id;
        let mut raw = store
            .invitations
            .get(id.to_be_bytes())
            .unwrap()
            .unwrap()
            .to_vec();
        raw[0] = SCHEMA_VERSION + 7;
        store.invitations.insert(id.to_be_bytes(), raw).unwrap();
        let err = store.invitation(id).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{text}");
        assert!(
            text.contains(&format!("version {}", SCHEMA_VERSION + 7)),
            "{text}"
        );
        // Never silently skipped by the operations that must see everything.
        assert!(store.purge_addresses(true).is_err());
    }
}
