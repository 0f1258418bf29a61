//! Watching the repository: file-system events (inotify through `notify`), debounced, trigger a
//! reload; an optional periodic rescan covers file systems that send no events. Events under a
//! hidden path (a component starting with `.`) are ignored: that is where a new version is
//! written before it is renamed into place, so a half-copied directory never triggers a load
//! (and a directory not named as a version is never loaded anyway).

use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher as _};

use super::reload::Reloader;

/// How the watcher reacts.
#[derive(Debug, Clone, Copy)]
pub struct WatchConfig {
    /// Quiet time after the last event before the reload starts.
    pub debounce: Duration,
    /// Rescan this often even without events (None: only on events).
    pub poll: Option<Duration>,
}

/// A running watcher; dropping it stops the thread (after any reload in progress).
pub struct RepositoryWatcher {
    events: Option<notify::RecommendedWatcher>,
    stop: Option<mpsc::Sender<Signal>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RepositoryWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RepositoryWatcher")
    }
}

enum Signal {
    Changed,
    Stop,
}

/// Starts watching `reloader`'s repository on a thread named `infera-watcher`.
pub fn watch(reloader: Arc<Reloader>, config: WatchConfig) -> std::io::Result<RepositoryWatcher> {
    let (tx, rx) = mpsc::channel::<Signal>();
    let root = reloader.root().to_path_buf();
    let events_tx = tx.clone();
    let handler = move |event: notify::Result<notify::Event>| match event {
        Ok(e) if relevant(&root, &e) => {
            let _ = events_tx.send(Signal::Changed);
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "repository watcher error"),
    };
    let events = match notify::recommended_watcher(handler).and_then(|mut w| {
        w.watch(reloader.root(), RecursiveMode::Recursive)?;
        Ok(w)
    }) {
        Ok(w) => Some(w),
        Err(e) if config.poll.is_some() => {
            tracing::warn!(error = %e, "cannot watch the repository for events; rescanning periodically only");
            None
        }
        Err(e) => return Err(std::io::Error::other(e)),
    };
    let thread = std::thread::Builder::new()
        .name("infera-watcher".into())
        .spawn(move || run(&reloader, &rx, config))?;
    Ok(RepositoryWatcher {
        events,
        stop: Some(tx),
        thread: Some(thread),
    })
}

impl Drop for RepositoryWatcher {
    fn drop(&mut self) {
        self.events.take();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(Signal::Stop);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether an event can change what is served: anything but reads, outside hidden paths.
fn relevant(root: &Path, event: &notify::Event) -> bool {
    if matches!(event.kind, EventKind::Access(_)) {
        return false;
    }
    event.paths.iter().any(|p| {
        p.strip_prefix(root).is_ok_and(|rel| {
            !rel.components()
                .any(|c| c.as_os_str().to_str().is_some_and(|s| s.starts_with('.')))
        })
    })
}

fn run(reloader: &Reloader, rx: &Receiver<Signal>, config: WatchConfig) {
    let idle = config.poll.unwrap_or(Duration::from_secs(3600));
    loop {
        match rx.recv_timeout(idle) {
            Ok(Signal::Changed) => {
                // Debounce: wait until the repository has been quiet for `debounce`.
                loop {
                    match rx.recv_timeout(config.debounce) {
                        Ok(Signal::Changed) => continue,
                        Ok(Signal::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                        Err(RecvTimeoutError::Timeout) => break,
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) if config.poll.is_some() => {}
            Err(RecvTimeoutError::Timeout) => continue,
            Ok(Signal::Stop) | Err(RecvTimeoutError::Disconnected) => return,
        }
        if let Err(e) = reloader.reload() {
            tracing::warn!(error = %e, "repository reload failed; serving as before");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_staging_paths_and_reads_are_ignored() {
        let root = Path::new("/repo");
        let event = |kind, path: &str| notify::Event::new(kind).add_path(root.join(path));
        let create = EventKind::Create(notify::event::CreateKind::Any);
        assert!(relevant(root, &event(create, "iris/2/model.onnx")));
        assert!(!relevant(
            root,
            &event(create, "iris/.incoming-2/model.onnx")
        ));
        assert!(!relevant(
            root,
            &event(create, ".staging/iris/2/model.onnx")
        ));
        let read = EventKind::Access(notify::event::AccessKind::Any);
        assert!(!relevant(root, &event(read, "iris/2/model.onnx")));
        assert!(!relevant(root, &event(create, "/elsewhere/x")));
    }
}
