//! The `keysmith ui` page in a real headless browser: Debian's `chromium` (`KEYSMITH_CHROMIUM`
//! overrides the path; `make test` installs it), driven over the DevTools protocol by
//! `tests/js/browser.mjs` with Node's built-in WebSocket. A plan of steps goes in; the values of
//! its `eval` steps come out. Screenshots go to `target/test-output/ui/`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

use crate::cli::{CliStack, User};

/// Where the ui tests leave their screenshots.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join("target"));
    let dir = target.join("test-output/ui");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn chromium() -> String {
    let path = std::env::var("KEYSMITH_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let works = Command::new(&path)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        works,
        "no headless browser: `{path} --version` fails. Install Debian's chromium \
         (`apt-get install chromium`; `make test` does), or set KEYSMITH_CHROMIUM"
    );
    path
}

/// Runs the steps in a fresh headless Chromium; panics with the driver's message when one fails.
pub fn run(steps: &[Value]) -> Vec<Value> {
    let plan = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        plan.path(),
        json!({"chromium": chromium(), "steps": steps}).to_string(),
    )
    .unwrap();
    let out = Command::new("node")
        .arg("--experimental-websocket")
        .arg("--no-warnings")
        .arg(crate::repo_root().join("tests/js/browser.mjs"))
        .arg(plan.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the browser run failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["results"].as_array().cloned().unwrap_or_default()
}

/// A running `keysmith ui` (killed when dropped) and the URL it printed.
pub struct Page {
    pub child: Child,
    /// `http://127.0.0.1:<port>/?token=…`
    pub url: String,
}

impl Drop for Page {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Page {
    /// `keysmith ui` as `user`.
    pub fn start(stack: &CliStack, user: &User) -> Page {
        let mut child = stack
            .command(user)
            .arg("ui")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let line = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .next()
            .unwrap()
            .unwrap();
        let url = line
            .strip_prefix("keysmith ui: open ")
            .unwrap_or_else(|| panic!("ui printed {line:?}"))
            .to_owned();
        Page { child, url }
    }

    /// The page's origin, `http://127.0.0.1:<port>`.
    pub fn origin(&self) -> &str {
        self.url.split("/?").next().unwrap()
    }

    /// The token in the URL.
    pub fn token(&self) -> &str {
        self.url.split("token=").nth(1).unwrap()
    }

    /// The page opened at view `view` (`requests`, `leases`, `audit`).
    pub fn view(&self, view: &str) -> String {
        format!("{}#{view}", self.url)
    }
}

/// A step waiting until the page shows `view` in `states`.
pub fn shown(view: &str, states: &[&str]) -> Value {
    json!({"wait": format!(
        "(() => {{ const v = document.getElementById('view'); return v.dataset.view === '{view}' && {states:?}.includes(v.dataset.state); }})()"
    )})
}
