//! Every process group the node started, so that all of them end with the node.
//!
//! Each container runs as the leader of its own process group (as a container's PID 1 is
//! the root of its own PID namespace on a real node), so killing the group ends everything
//! the container forked, e.g. PostgreSQL's backends, not only the first process.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The live process groups of one node.
#[derive(Debug)]
pub(crate) struct Processes {
    /// `None` once the node has stopped: a group started after that (by a task not yet
    /// cancelled) is killed at once instead of recorded.
    groups: Mutex<Option<BTreeSet<i32>>>,
}

impl Processes {
    /// An empty registry of a running node.
    pub(crate) fn new() -> Self {
        Self {
            groups: Mutex::new(Some(BTreeSet::new())),
        }
    }

    /// Records a newly started group; a node that has stopped kills it instead.
    pub(crate) fn add(&self, pgid: i32) {
        match self.lock().as_mut() {
            Some(groups) => {
                groups.insert(pgid);
            }
            None => signal_group(pgid, libc::SIGKILL),
        }
    }

    /// Ends a group (its leader has exited or is being torn down): SIGKILL to every member
    /// left, as a container runtime does when a container's PID 1 ends.
    pub(crate) fn end(&self, pgid: i32) {
        signal_group(pgid, libc::SIGKILL);
        if let Some(groups) = self.lock().as_mut() {
            groups.remove(&pgid);
        }
    }

    /// The groups started and not yet ended.
    pub(crate) fn groups(&self) -> Vec<i32> {
        self.lock().iter().flatten().copied().collect()
    }

    /// SIGKILLs every group and waits (up to `limit`) until none has a running member.
    pub(crate) fn end_all(&self, limit: Duration) {
        let groups: Vec<i32> = self.lock().take().into_iter().flatten().collect();
        for pgid in &groups {
            signal_group(*pgid, libc::SIGKILL);
        }
        let started = Instant::now();
        while !running_in_groups(&groups).is_empty() && started.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<BTreeSet<i32>>> {
        // A panic elsewhere must not stop the clean-up that runs on that very panic.
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Sends `signal` to every process of group `pgid`.
pub(crate) fn signal_group(pgid: i32, signal: i32) {
    // SAFETY: kill(2) with a negative pid only sends a signal; ESRCH (group gone) is fine.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Sends `signal` to the process `pid` alone.
pub(crate) fn signal_process(pid: i32, signal: i32) {
    // SAFETY: kill(2) only sends a signal; ESRCH (process gone) is fine.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// The processes that are in one of `groups` and still running (not zombies), read from
/// `/proc`. A test uses it to check that nothing it started outlives it.
pub fn running_in_groups(groups: &[i32]) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // "pid (comm) state ppid pgrp …"; comm may hold spaces and parentheses.
            let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                return false;
            };
            let mut fields = after.split_whitespace();
            let state = fields.next();
            let pgrp = fields.nth(1).and_then(|p| p.parse::<i32>().ok());
            state != Some("Z") && pgrp.is_some_and(|g| groups.contains(&g))
        })
        .collect()
}
