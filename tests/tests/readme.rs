//! The README runs as written (issue 31): every fenced block marked `sh try-local` (the admin's
//! shell) or `sh try-local alice` runs, in README order, against the stack `make dev` starts (the
//! same `keysmith-dev` binary, on free ports), in the shell its printed lines set up. A block that
//! fails fails this test, naming its README line.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keysmith_tests::{function_binary, repo_root};

const MARK: &str = "try-local";
const BLOCK_TIMEOUT: Duration = Duration::from_secs(90);
/// What a shell's state file keeps between blocks: every variable but bash's own.
const BASH_OWN: &str = "^declare -[a-zA-Z-]*r|^declare -[a-zA-Z-]* (BASH[A-Z_]*|FUNCNAME|PIPESTATUS|_|SHLVL|PWD|OLDPWD|GROUPS|DIRSTACK|LINENO|SECONDS|RANDOM|SRANDOM|EPOCHSECONDS|EPOCHREALTIME|OPTIND|OPTERR|IFS|PS4|COLUMNS|LINES|HISTCMD)(=|$)";

#[derive(Debug)]
struct Block {
    line: usize,
    shell: String,
    code: String,
}

/// The runnable blocks: an opening fence whose info string is `sh try-local [shell]`.
fn blocks(readme: &str) -> Vec<Block> {
    let mut found = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in readme.lines().enumerate() {
        if let Some(block) = open.as_mut() {
            if line.trim_start().starts_with("```") {
                found.extend(open.take());
            } else {
                block.code.push_str(line);
                block.code.push('\n');
            }
        } else if let Some(info) = line.strip_prefix("```") {
            let words: Vec<&str> = info.split_whitespace().collect();
            if words.len() >= 2 && words[0] == "sh" && words[1] == MARK {
                open = Some(Block {
                    line: i + 1,
                    shell: words.get(2).unwrap_or(&"admin").to_string(),
                    code: String::new(),
                });
            }
        }
    }
    assert!(open.is_none(), "an unclosed runnable block in the README");
    found
}

/// `keysmith-dev up` in a process group of its own, and the blocks of lines it printed.
struct Stack {
    child: Child,
    shells: HashMap<String, String>,
    log: PathBuf,
}

impl Stack {
    fn start(dir: &Path) -> Stack {
        let log = dir.join("keysmith-dev.log");
        let mut child = Command::new(function_binary("keysmith-dev"))
            .args(["up", "--port", "0"])
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).unwrap())
            .process_group(0)
            .spawn()
            .expect("start keysmith-dev");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut shells = HashMap::new();
            let mut current: Option<(String, String)> = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((name, text)) = current.as_mut() {
                    if line.trim().is_empty() || line.starts_with("# As ") {
                        shells.insert(name.clone(), std::mem::take(text));
                        current = None;
                    } else {
                        text.push_str(&line);
                        text.push('\n');
                        if line.starts_with("export AWS_SECRET_ACCESS_KEY=") && name == "alice" {
                            shells.insert(name.clone(), std::mem::take(text));
                            let _ = tx.send(std::mem::take(&mut shells));
                            current = None;
                        }
                    }
                }
                if line.starts_with("# As the admin") {
                    current = Some(("admin".into(), String::new()));
                } else if line.starts_with("# As alice") {
                    current = Some(("alice".into(), String::new()));
                }
            }
        });
        let mut stack = Stack {
            child,
            shells: HashMap::new(),
            log,
        };
        match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(shells) => stack.shells = shells,
            Err(_) => panic!(
                "keysmith-dev printed no lines for the admin and alice within 180 s:\n{}",
                stack.log_tail()
            ),
        }
        stack
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // The whole group: keysmith-dev, its functions and moto (as Ctrl-C does for `make dev`).
        let _ = Command::new("kill")
            .args(["-s", "TERM", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// Runs one block in `state`'s shell; on success the shell's variables and functions are kept
/// for its next block. `Err` holds the output.
fn run(block: &Block, state: &Path, home: &Path) -> Result<String, String> {
    let next = state.with_extension("next");
    let script = format!(
        "exec 2>&1\nsource '{state}' >/dev/null 2>&1\nset -euo pipefail\n{code}set +eu +o pipefail\n{{ declare -p | grep -Ev '{BASH_OWN}'; declare -f; }} > '{next}'\n",
        state = state.display(),
        code = block.code,
        next = next.display(),
    );
    let script_file = state.with_extension("sh");
    std::fs::write(&script_file, script).unwrap();
    let out_file = state.with_extension("out");
    let mut child = Command::new("bash")
        .arg(&script_file)
        .current_dir(repo_root())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", home)
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(File::create(&out_file).unwrap())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > BLOCK_TIMEOUT {
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(&out_file).unwrap_or_default();
    match status {
        Some(s) if s.success() => {
            std::fs::rename(&next, state).unwrap();
            Ok(output)
        }
        Some(s) => Err(format!("{s}\n{output}")),
        None => Err(format!("still running after {BLOCK_TIMEOUT:?}\n{output}")),
    }
}

#[test]
fn the_readme_runs_as_written_against_make_dev() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let blocks = blocks(&readme);
    assert!(
        blocks.iter().any(|b| b.shell == "admin") && blocks.iter().any(|b| b.shell == "alice"),
        "the README marks runnable blocks for both shells: {blocks:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let started = Instant::now();
    let stack = Stack::start(dir.path());
    eprintln!("keysmith-dev ready in {:?}", started.elapsed());
    let mut states = HashMap::new();
    for (name, lines) in &stack.shells {
        let state = dir.path().join(format!("{name}.state"));
        std::fs::write(&state, lines).unwrap();
        states.insert(name.clone(), state);
    }
    for block in &blocks {
        let state = states.get(&block.shell).unwrap_or_else(|| {
            panic!(
                "README line {}: no shell {:?} (make dev prints the admin's and alice's)",
                block.line, block.shell
            )
        });
        let t = Instant::now();
        match run(block, state, &home) {
            Ok(_) => eprintln!(
                "README line {} ({}'s shell): ok in {:?}",
                block.line,
                block.shell,
                t.elapsed()
            ),
            Err(output) => panic!(
                "the README block at line {} ({}'s shell) failed:\n{}--- output ---\n{output}\n--- keysmith-dev (last lines) ---\n{}",
                block.line,
                block.shell,
                block.code,
                stack.log_tail()
            ),
        }
    }
    // A block that breaks is caught (a command that fails, and one whose pipe fails midway).
    for code in [
        "keysmith profiles get no-such-profile\n",
        "keysmith profiles get nope | cat\necho after\n",
    ] {
        let broken = Block {
            line: 0,
            shell: "admin".into(),
            code: code.into(),
        };
        let admin = &states["admin"];
        assert!(
            run(&broken, admin, &home).is_err(),
            "a failing block passed: {code}"
        );
    }
    eprintln!("{} README blocks in {:?}", blocks.len(), started.elapsed());
}

#[test]
fn only_marked_blocks_run_each_in_its_shell() {
    let text = "```sh\nnot me\n```\n```sh try-local\necho admin\n```\n```json\n{}\n```\n```sh try-local alice\necho alice\n```\n";
    let found = blocks(text);
    let got: Vec<(usize, &str, &str)> = found
        .iter()
        .map(|b| (b.line, b.shell.as_str(), b.code.as_str()))
        .collect();
    assert_eq!(
        got,
        [(4, "admin", "echo admin\n"), (10, "alice", "echo alice\n")]
    );
}
