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
pub const MIGRATIONS: &[Migration] = &[super::v1::migrate];

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
