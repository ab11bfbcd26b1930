//! Background tasks whose loss would leave a replica answering ready while no
//! longer doing part of its job: when one dies, the process ends with one line,
//! so that its supervisor restarts it.

use tokio::task::JoinHandle;

/// Watches `task` (spawned on the current runtime) and ends the process if it
/// panics or is cancelled; a task that returns has finished its work.
pub fn exit_if_it_dies(what: &'static str, task: JoinHandle<()>) {
    tokio::spawn(async move {
        if let Err(e) = task.await {
            log::error!("{what} stopped ({e}); exiting");
            crate::access_log::flush();
            std::process::exit(1);
        }
    });
}
