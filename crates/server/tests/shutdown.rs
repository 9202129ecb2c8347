//! `ferrocd` stops cleanly on SIGTERM and SIGINT, even with open watch streams, and keeps
//! its data across restarts.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Background, Ferrocd};

fn signal_and_wait(f: &mut Ferrocd, signal: &str) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &f.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut child = f.child.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ferrocd did not exit within 15 s of SIG{signal}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigterm_with_an_open_watch_exits_zero() {
    let mut f = Ferrocd::start();
    f.ok(&["put", "k", "v"]);
    let _watch = Background::start(&f.endpoint(), &["watch", "k"]);
    std::thread::sleep(Duration::from_millis(500));
    let status = signal_and_wait(&mut f, "TERM");
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn sigint_exits_zero() {
    let mut f = Ferrocd::start();
    let status = signal_and_wait(&mut f, "INT");
    assert_eq!(status.code(), Some(0), "{status}");
}
