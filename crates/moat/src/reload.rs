//! Config reload for `moat up` and `moat serve`: on a change under the project directory
//! (moat.yaml, services/, iam/, armor/) or on SIGHUP, the project is read and loaded again off
//! the request path and, when it loads and changes nothing that needs a restart, swapped into
//! the front door in one step. Anything else leaves the last good config serving.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use moat_server::runtime::{Runtime, metrics};
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

/// The directories under the project whose files are config (as `project_dir::read_files`).
const SUBDIRS: [&str; 3] = ["services", "iam", "armor"];
/// Editors write a file in several steps; a change is acted on once the directory has been
/// quiet this long.
const QUIET: Duration = Duration::from_millis(150);
/// ... or after this long, if it never goes quiet.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// What asks for a reload: file changes (when the directory can be watched) and SIGHUP.
pub(crate) struct Triggers {
    root: PathBuf,
    watcher: Option<notify::RecommendedWatcher>,
    watched: BTreeSet<PathBuf>,
    changes: mpsc::UnboundedReceiver<()>,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl std::fmt::Debug for Triggers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Triggers").field("root", &self.root).field("watched", &self.watched).finish_non_exhaustive()
    }
}

impl Triggers {
    /// Installs the SIGHUP handler and the watch. A directory that cannot be watched is
    /// reported and SIGHUP still works.
    pub(crate) fn install(dir: &Path) -> std::io::Result<Self> {
        #[cfg(unix)]
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let root = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let (tx, changes) = mpsc::unbounded_channel();
        let filter_root = root.clone();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(event) = res
                && is_change(&event.kind)
                && event.paths.iter().any(|p| is_config(&filter_root, p))
            {
                let _ = tx.send(());
            }
        });
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                eprintln!("moat: not watching `{}` for changes ({e}); reload with SIGHUP", dir.display());
                None
            }
        };
        let mut triggers = Self {
            root,
            watcher,
            watched: BTreeSet::new(),
            changes,
            #[cfg(unix)]
            hangup,
        };
        triggers.watch_dirs();
        Ok(triggers)
    }

    /// The project directory and whichever of its config directories exist now (one created
    /// later is picked up at the next reload: its creation is a change of the project
    /// directory). Not recursive: the state directory, usually `PROJECT/.moat`, is written on
    /// every request.
    fn watch_dirs(&mut self) {
        let Some(watcher) = self.watcher.as_mut() else { return };
        let wanted = std::iter::once(self.root.clone()).chain(SUBDIRS.iter().map(|s| self.root.join(s)));
        for d in wanted {
            if self.watched.contains(&d) || !d.is_dir() {
                continue;
            }
            match watcher.watch(&d, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(d);
                }
                Err(e) => eprintln!("moat: not watching `{}` for changes: {e}", d.display()),
            }
        }
    }

    /// Until the next reload is due.
    pub(crate) async fn next(&mut self) {
        #[cfg(unix)]
        let hangup = self.hangup.recv();
        #[cfg(not(unix))]
        let hangup = std::future::pending::<Option<()>>();
        tokio::select! {
            _ = hangup => {}
            Some(()) = self.changes.recv() => {
                let deadline = tokio::time::Instant::now() + MAX_WAIT;
                while tokio::time::Instant::now() < deadline
                    && tokio::time::timeout(QUIET, self.changes.recv()).await.is_ok_and(|c| c.is_some())
                {}
            }
        }
        // Whatever arrived meanwhile is covered by the reload about to run.
        while self.changes.try_recv().is_ok() {}
        self.watch_dirs();
    }
}

/// Writes, creations, removals and renames; not the opens and reads of a reload itself.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any => true,
        EventKind::Access(a) => *a == AccessKind::Close(AccessMode::Write),
        EventKind::Other => false,
    }
}

/// moat.yaml, a config directory, or a file `read_files` would read in one.
fn is_config(root: &Path, path: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(root) else { return false };
    let parts: Vec<&str> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect();
    match parts.as_slice() {
        ["moat.yaml"] => true,
        [dir] => SUBDIRS.contains(dir),
        [dir, name] => {
            SUBDIRS.contains(dir)
                && !name.starts_with('.')
                && [".yaml", ".yml", ".json"].iter().any(|x| name.ends_with(x))
        }
        _ => false,
    }
}

/// Reads and loads the project again and applies it; says on stderr what happened.
pub(crate) async fn reload(dir: &Path, runtime: &Runtime) {
    let owned = dir.to_path_buf();
    let loaded = tokio::task::spawn_blocking(move || crate::project_dir::load(&owned)).await;
    const REFUSED: &str = "moat: reload refused, still serving the previous config";
    match loaded {
        Ok(Ok(project)) => match runtime.reload(project) {
            Ok(n) => eprintln!("moat: reloaded ({n} services)"),
            Err(e) => eprintln!("moat: {e}\n{REFUSED}"),
        },
        Ok(Err(e)) => {
            metrics::reload("invalid");
            eprintln!("{:?}\n{REFUSED}", miette::Report::new(e));
        }
        Err(e) => {
            metrics::reload("invalid");
            eprintln!("moat: the reload failed: {e}\n{REFUSED}");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn only_config_files_trigger_a_reload() {
        let root = Path::new("/p");
        for (path, want) in [
            ("/p/moat.yaml", true),
            ("/p/iam", true),
            ("/p/iam/api.json", true),
            ("/p/services/api.yaml", true),
            ("/p/armor/edge.yml", true),
            ("/p/iam/.api.json.swp", false),
            ("/p/iam/api.json~", false),
            ("/p/.moat/decisions.jsonl", false),
            ("/p/README.md", false),
            ("/p/app/app.py", false),
            ("/other/moat.yaml", false),
        ] {
            assert_eq!(is_config(root, Path::new(path)), want, "{path}");
        }
    }
}
