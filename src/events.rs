//! The event stream of every operation. Progress on a terminal, and later the audit log,
//! metrics, webhooks and PR comments, are listeners; the operations only emit.

use std::time::Duration;

use crate::history::Deployment;
use crate::plan::{Plan, Step};

/// Something an operation did or is about to do.
#[derive(Debug)]
pub enum Event<'a> {
    /// An operation started (`rollback`, `apply`, `record`, `prune`, `recover`); `id` names it
    /// in the audit log, the history entry it writes, webhooks and logs.
    Started {
        id: &'a str,
        /// `rollback`, `apply`, `record`, `prune` or `recover`.
        operation: &'a str,
        command: &'a str,
    },
    /// A plan was computed (dry-run or not).
    Planned { plan: &'a Plan },
    /// A changing step is about to be sent to its registry.
    StepStarted { registry: &'a str, step: &'a Step },
    StepFinished {
        registry: &'a str,
        step: &'a Step,
        elapsed: Duration,
        error: Option<&'a str>,
    },
    /// Compensation (or `recover`) reversed a step, or failed to.
    UndoFinished {
        registry: &'a str,
        step: &'a Step,
        error: Option<&'a str>,
    },
    /// A rollback or apply ended.
    Finished {
        plan: &'a Plan,
        outcome: &'a crate::coordinator::Outcome,
    },
    /// `recover` ended.
    Recovered {
        report: &'a crate::coordinator::RecoverReport,
    },
    /// `record` appended an entry.
    Recorded { entry: &'a Deployment },
    /// `versions prune` removed entries.
    Pruned { removed: &'a [Deployment] },
    /// The command is over, with the exit code it returns and its error, if any (emitted by
    /// the CLI, which alone knows the final code).
    Ended { exit: u8, error: Option<&'a str> },
}

/// Receives every event. Listeners must not fail the operation: they log their own trouble.
pub trait Listener: Send + Sync {
    fn on(&self, event: &Event<'_>);
}

/// No-one is listening.
pub struct Silent;

impl Listener for Silent {
    fn on(&self, _event: &Event<'_>) {}
}

/// Every event to every listener, in the order they were added.
#[derive(Default)]
pub struct Fanout {
    listeners: Vec<Box<dyn Listener>>,
}

impl Fanout {
    pub fn new() -> Self {
        Fanout::default()
    }

    pub fn with(mut self, listener: impl Listener + 'static) -> Self {
        self.listeners.push(Box::new(listener));
        self
    }

    pub fn add(&mut self, listener: Box<dyn Listener>) {
        self.listeners.push(listener);
    }
}

impl Listener for Fanout {
    fn on(&self, event: &Event<'_>) {
        for l in &self.listeners {
            l.on(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    struct Log(Arc<Mutex<Vec<String>>>, &'static str);
    impl Listener for Log {
        fn on(&self, event: &Event<'_>) {
            if let Event::Started { command, .. } = event {
                self.0.lock().unwrap().push(format!("{} {command}", self.1));
            }
        }
    }

    #[test]
    fn fans_out_in_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let f = Fanout::new()
            .with(Log(seen.clone(), "a"))
            .with(Log(seen.clone(), "b"));
        f.on(&Event::Started {
            id: "1",
            operation: "rollback",
            command: "x",
        });
        assert_eq!(*seen.lock().unwrap(), vec!["a x", "b x"]);
    }
}
