//! What the cluster layer keeps on the node's disk: the incarnation
//! counter ([`Incarnations`]) and the cluster configuration as this node
//! last saw it ([`SavedConfig`]). Both are written atomically (temporary
//! file, fsync, rename).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use meshgate_federation::membership::ConfigChange;
use meshgate_storage::{FileSystem, OpenMode, fs::write_atomically};
use parking_lot::Mutex;

use crate::gateway::StartError;

/// Identity renewals a run may make before it writes a new reservation.
const INCARNATIONS_RESERVED: u64 = 1_000;

/// The node's incarnations: the file `incarnation` in the data directory
/// holds the highest one reserved so far. A start takes the next and
/// reserves [`INCARNATIONS_RESERVED`] more for the identity renewals of its
/// run (a node renews its identity when the cluster declared it down), so a
/// restart comes back above every identity the last run used, even one
/// renewed just before a crash; otherwise peers that hold the last run's
/// identity down would ignore the lower one (found by the simulation).
pub(crate) struct Incarnations {
    fs: Arc<dyn FileSystem>,
    path: std::path::PathBuf,
    reserved: Mutex<u64>,
}

impl Incarnations {
    /// Takes the next incarnation and reserves the run's renewals.
    pub(crate) fn start(
        fs: Arc<dyn FileSystem>,
        data_dir: &Path,
    ) -> Result<(Self, u64), StartError> {
        let path = data_dir.join("incarnation");
        // An unreadable counter stops the start: coming back under a low
        // incarnation would leave the node out of the cluster.
        let previous = if fs.exists(&path) {
            let bytes = fs
                .open(&path, OpenMode::Existing)
                .and_then(|file| file.read_all())
                .map_err(|source| {
                    StartError::Cluster(format!("cannot read {}: {source}", path.display()))
                })?;
            String::from_utf8_lossy(&bytes)
                .trim()
                .parse::<u64>()
                .map_err(|_| {
                    StartError::Cluster(format!(
                        "{} does not hold an incarnation number; remove it only if no \
                         peer has seen this node (it would come back as new)",
                        path.display()
                    ))
                })?
        } else {
            0
        };
        let next = previous + 1;
        let incarnations = Incarnations {
            fs,
            path,
            reserved: Mutex::new(0),
        };
        incarnations
            .reserve(next + INCARNATIONS_RESERVED)
            .map_err(StartError::Cluster)?;
        Ok((incarnations, next))
    }

    fn reserve(&self, up_to: u64) -> Result<(), String> {
        write_atomically(&*self.fs, &self.path, format!("{up_to}\n").as_bytes())
            .map_err(|source| format!("cannot store {}: {source}", self.path.display()))?;
        *self.reserved.lock() = up_to;
        Ok(())
    }

    /// After a renewal to `incarnation`: reserves more once half the
    /// reservation is used.
    pub(crate) fn renewed(&self, incarnation: u64) {
        let reserved = *self.reserved.lock();
        if incarnation + INCARNATIONS_RESERVED / 2 < reserved {
            return;
        }
        if let Err(error) = self.reserve(incarnation + INCARNATIONS_RESERVED) {
            tracing::error!(target: "meshgate::cluster", %error, "incarnation reservation not stored; a restart may come back under a used identity");
        }
    }
}

/// The cluster configuration (mirror rules, queue rules, topics, leases)
/// as this node last saw it, in `cluster-config.json` in the data
/// directory. A start merges it back as if gossip had brought it, so the
/// configuration survives a restart of every node at once; before, it lived
/// only in memory and gossip, and three regions crashed in turn lost an
/// acknowledged mirror rule (found by the simulation, chaos seed 3642).
pub(crate) struct SavedConfig {
    fs: Arc<dyn FileSystem>,
    path: PathBuf,
    /// What the file holds.
    written: Mutex<Vec<ConfigChange>>,
}

impl SavedConfig {
    /// Opens the file and returns what it holds. An unreadable file is set
    /// aside (`.corrupt`) and the node starts from what gossip brings.
    pub(crate) fn open(fs: Arc<dyn FileSystem>, data_dir: &Path) -> (Self, Vec<ConfigChange>) {
        let path = data_dir.join("cluster-config.json");
        let saved = if fs.exists(&path) {
            let read = fs
                .open(&path, OpenMode::Existing)
                .and_then(|file| file.read_all())
                .map_err(|error| error.to_string())
                .and_then(|bytes| {
                    serde_json::from_slice::<Vec<ConfigChange>>(&bytes)
                        .map_err(|error| error.to_string())
                });
            match read {
                Ok(saved) => saved,
                Err(error) => {
                    tracing::error!(target: "meshgate::cluster", path = %path.display(), %error, "saved cluster configuration unreadable; set aside, starting from what peers send");
                    let _ = fs.rename(&path, &path.with_extension("corrupt"));
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let store = SavedConfig {
            fs,
            path,
            written: Mutex::new(saved.clone()),
        };
        (store, saved)
    }

    /// Writes `entries` unless the file holds them already.
    pub(crate) fn save(&self, entries: Vec<ConfigChange>) {
        let mut written = self.written.lock();
        if *written == entries {
            return;
        }
        let json = match serde_json::to_vec(&entries) {
            Ok(json) => json,
            Err(error) => {
                tracing::error!(target: "meshgate::cluster", %error, "cluster configuration not encodable");
                return;
            }
        };
        match write_atomically(&*self.fs, &self.path, &json) {
            Ok(()) => *written = entries,
            Err(error) => {
                tracing::error!(target: "meshgate::cluster", path = %self.path.display(), %error, "cluster configuration not saved; a restart of every node would lose changes made since");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshgate_storage::MemFs;

    #[test]
    fn a_restart_comes_back_above_every_identity_the_last_run_renewed_to() {
        let fs: Arc<dyn FileSystem> = Arc::new(MemFs::new());
        let dir = Path::new("/data");
        fs.create_dir_all(dir).expect("dir");
        let (first, incarnation) = Incarnations::start(fs.clone(), dir).expect("first start");
        assert_eq!(incarnation, 1);
        // Renewals inside the reservation write nothing; past half of it,
        // a new reservation.
        first.renewed(2);
        first.renewed(1 + INCARNATIONS_RESERVED / 2 + 10);
        let renewed_to = 1 + INCARNATIONS_RESERVED / 2 + 10;
        let (_, restarted) = Incarnations::start(fs.clone(), dir).expect("second start");
        assert!(
            restarted > renewed_to,
            "{restarted} must be above {renewed_to}"
        );
        let (_, again) = Incarnations::start(fs.clone(), dir).expect("third start");
        assert!(again > restarted);

        write_atomically(&*fs, &dir.join("incarnation"), b"garbage\n").expect("write");
        let refused = Incarnations::start(fs, dir).err().expect("refused");
        assert!(
            refused.to_string().contains("incarnation number"),
            "{refused}"
        );
    }

    #[test]
    fn the_saved_configuration_comes_back_and_a_corrupt_file_is_set_aside() {
        use meshgate_federation::membership::NodeId;
        let fs: Arc<dyn FileSystem> = Arc::new(MemFs::new());
        let dir = Path::new("/data");
        fs.create_dir_all(dir).expect("dir");
        let (store, saved) = SavedConfig::open(fs.clone(), dir);
        assert!(saved.is_empty());
        let entries = vec![ConfigChange {
            key: "mirror-rule/orders".into(),
            version: 3,
            author: NodeId::parse("use-1").expect("node id"),
            value: Some(b"rule".to_vec()),
        }];
        store.save(entries.clone());
        let (_, saved) = SavedConfig::open(fs.clone(), dir);
        assert_eq!(saved, entries);

        write_atomically(&*fs, &dir.join("cluster-config.json"), b"{oops").expect("write");
        let (_, saved) = SavedConfig::open(fs.clone(), dir);
        assert!(saved.is_empty());
        assert!(fs.exists(&dir.join("cluster-config.corrupt")));
    }
}
