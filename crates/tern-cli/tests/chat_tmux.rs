//! `tern chat` driven through a real terminal (tmux send-keys / capture-pane) on the real SmolLM2
//! GGUF: a streamed reply, KV-cache reuse on the second turn, Ctrl-C stopping a reply without
//! leaving the session, `/reset` and `/exit`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn smollm2() -> PathBuf {
    let root = std::env::var_os("TERN_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/testdata"));
    let p = root.join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.is_file(), "{} is missing: run tools/testdata/fetch.sh smollm2", p.display());
    p
}

struct Tmux {
    session: String,
}

impl Tmux {
    fn tmux(args: &[&str]) -> String {
        let out =
            Command::new("tmux").args(args).output().expect("tmux is required for this test (apt-get install tmux)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    fn send(&self, keys: &[&str]) {
        let mut a = vec!["send-keys", "-t", &self.session];
        a.extend_from_slice(keys);
        Self::tmux(&a);
    }
    fn screen(&self) -> String {
        Self::tmux(&["capture-pane", "-p", "-J", "-S", "-2000", "-t", &self.session])
    }
    fn alive(&self) -> bool {
        Command::new("tmux").args(["has-session", "-t", &self.session]).status().map(|s| s.success()).unwrap_or(false)
    }
    /// Waits until `pred(screen)` holds; panics with the screen after `secs`.
    fn wait(&self, secs: u64, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            if t0.elapsed() > Duration::from_secs(secs) {
                panic!("timed out waiting for {what}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.session]).status();
    }
}

#[test]
fn chat_in_a_real_terminal() {
    let model = smollm2();
    let session = format!("tern-chat-test-{}", std::process::id());
    let cmd = format!(
        "{} chat -m {} --temp 0 -n 400 -t 2 --system 'You are a helpful assistant.'; echo TERN_EXITED_$?; sleep 30",
        env!("CARGO_BIN_EXE_tern"),
        model.display()
    );
    let status = Command::new("tmux")
        .args(["new-session", "-d", "-s", &session, "-x", "160", "-y", "50", &cmd])
        .status()
        .expect("tmux is required for this test (apt-get install tmux)");
    assert!(status.success(), "tmux new-session failed");
    let t = Tmux { session };
    t.wait(60, "the first prompt", |s| s.lines().any(|l| l.starts_with("> ")) || s.contains("\n> "));

    // Turn 1: a short factual question, streamed, with a stats line.
    t.send(&["What is the capital of France?", "Enter"]);
    let s = t.wait(120, "the first reply's stats", |s| s.contains("[prompt:"));
    assert!(s.contains("Paris"), "reply should mention Paris:\n{s}");
    assert!(s.contains("(0 reused)"), "first turn reuses nothing:\n{s}");

    // Turn 2: the rendered history is unchanged up to the new turn, so the cache is reused.
    t.send(&["Tell me a very long story about a dragon and a knight.", "Enter"]);
    t.wait(60, "the second reply to start", |s| {
        s.matches("[prompt:").count() == 1
            && s.split("dragon and a knight.").nth(1).is_some_and(|rest| rest.trim().len() > 20)
    });
    // Ctrl-C stops the reply but not the session.
    t.send(&["C-c"]);
    let s = t.wait(60, "the stopped reply", |s| s.matches("[prompt:").count() == 2);
    assert!(s.contains("(stopped)"), "Ctrl-C should stop the reply:\n{s}");
    let second = s.lines().filter(|l| l.starts_with("[prompt:")).nth(1).unwrap().to_string();
    let reused: usize = second.split('(').nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(reused > 20, "second turn should reuse the cached prefix: {second}");
    assert!(t.alive() && !s.contains("TERN_EXITED"), "session must survive Ctrl-C:\n{s}");

    // /reset and /exit.
    t.send(&["/reset", "Enter"]);
    t.wait(30, "the reset notice", |s| s.contains("(conversation reset)"));
    t.send(&["/exit", "Enter"]);
    let s = t.wait(30, "exit", |s| s.contains("TERN_EXITED_"));
    assert!(s.contains("TERN_EXITED_0"), "tern chat should exit 0:\n{s}");
}
