//! A Lambda Runtime API emulator: spawns a function binary with `AWS_LAMBDA_RUNTIME_API` pointing
//! at itself and serves it events, exactly as the Lambda service (or `cargo lambda watch`) does:
//! `GET /2018-06-01/runtime/invocation/next`, `POST .../invocation/{id}/response|error`,
//! `POST /2018-06-01/runtime/init/error`. The binary's stdout and stderr are kept for log checks.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

pub type Outcome = Result<Value, String>;

#[derive(Default)]
struct State {
    waiting: HashMap<String, oneshot::Sender<Outcome>>,
    init_error: Option<String>,
    /// When the function first asked for work: the end of its init phase.
    ready: Option<Instant>,
}

pub struct FunctionProcess {
    started: Instant,
    events: mpsc::UnboundedSender<(String, Value)>,
    state: Arc<Mutex<State>>,
    logs: Arc<Mutex<String>>,
    child: Child,
}

impl FunctionProcess {
    /// Starts `binary` with `env` (plus the variables Lambda always sets).
    pub async fn start(binary: &Path, env: &[(&str, &str)]) -> FunctionProcess {
        Self::start_command(binary, &[], env).await
    }

    /// Starts `program args…` (a binary, or an interpreter with a runtime interface client).
    pub async fn start_command(
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> FunctionProcess {
        let binary = program;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind runtime api");
        let addr = listener
            .local_addr()
            .expect("runtime api address")
            .to_string();
        let (events, rx) = mpsc::unbounded_channel::<(String, Value)>();
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let state: Arc<Mutex<State>> = Arc::default();
        let server_state = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (rx, state) = (rx.clone(), server_state.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let (rx, state) = (rx.clone(), state.clone());
                        async move { serve(req, rx, state).await }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });

        let mut cmd = Command::new(binary);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", &addr)
            .env(
                "AWS_LAMBDA_FUNCTION_NAME",
                binary.file_name().and_then(|n| n.to_str()).unwrap_or("fn"),
            )
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "local")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let logs: Arc<Mutex<String>> = Arc::default();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        for pipe in [
            Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(stderr),
        ] {
            let logs = logs.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut l = logs.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        FunctionProcess {
            started,
            events,
            state,
            logs,
            child,
        }
    }

    /// Sends one event and waits (bounded) for the function's response.
    pub async fn invoke(&self, event: &Value) -> Outcome {
        let id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        self.state.lock().unwrap().waiting.insert(id.clone(), tx);
        self.events
            .send((id, event.clone()))
            .expect("runtime api is gone");
        match tokio::time::timeout(Duration::from_secs(60), rx).await {
            Ok(Ok(outcome)) => {
                match &outcome {
                    Ok(response) => crate::leaks::record_from(response),
                    Err(error) => crate::leaks::check(error, "a function error"),
                }
                outcome
            }
            _ => panic!(
                "the function did not answer within 60 s; logs:\n{}",
                self.logs()
            ),
        }
    }

    /// Waits for the process to exit (e.g. after an init error); returns its exit code.
    pub async fn wait_exit(&mut self) -> Option<i32> {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the function did not exit within 30 s")
            .expect("wait");
        // Let the log readers drain the pipes.
        tokio::time::sleep(Duration::from_millis(100)).await;
        status.code()
    }

    /// Spawn to the first `GET /invocation/next`: the init phase. Waits (bounded) for it.
    pub async fn init_duration(&self) -> Duration {
        for _ in 0..3000 {
            if let Some(ready) = self.state.lock().unwrap().ready {
                return ready - self.started;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!(
            "the function did not ask for work within 30 s; logs:\n{}",
            self.logs()
        );
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn init_error(&self) -> Option<String> {
        self.state.lock().unwrap().init_error.clone()
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }
}

/// The leak scan of everything the function logged, when it is done with.
impl Drop for FunctionProcess {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            crate::leaks::check(&self.logs(), "a function's logs");
        }
    }
}

type Events = Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<(String, Value)>>>;

async fn serve(
    req: Request<Incoming>,
    events: Events,
    state: Arc<Mutex<State>>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let path = req.uri().path().to_owned();
    let body = req.into_body().collect().await?.to_bytes();
    let reply = |status: u16, body: String| {
        Ok(Response::builder()
            .status(status)
            .body(Full::new(Bytes::from(body)))
            .unwrap())
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["2018-06-01", "runtime", "invocation", "next"] => {
            state.lock().unwrap().ready.get_or_insert_with(Instant::now);
            let next = events.lock().await.recv().await;
            let Some((id, event)) = next else {
                return reply(410, String::new());
            };
            let deadline = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis()
                + 30_000;
            Ok(Response::builder()
                .status(200)
                .header("lambda-runtime-aws-request-id", &id)
                // Lambda always sends it; awslambdaric's native client crashes without it.
                .header("content-type", "application/json")
                .header("lambda-runtime-deadline-ms", deadline.to_string())
                .header(
                    "lambda-runtime-invoked-function-arn",
                    "arn:aws:lambda:us-east-1:123456789012:function:local",
                )
                .header(
                    "lambda-runtime-trace-id",
                    "Root=1-00000000-000000000000000000000000",
                )
                .body(Full::new(Bytes::from(event.to_string())))
                .unwrap())
        }
        ["2018-06-01", "runtime", "invocation", id, kind @ ("response" | "error")] => {
            let text = String::from_utf8_lossy(&body).into_owned();
            let outcome = if *kind == "response" {
                serde_json::from_str(&text)
                    .map_err(|e| format!("response is not JSON ({e}): {text}"))
            } else {
                Err(text)
            };
            if let Some(tx) = state.lock().unwrap().waiting.remove(*id) {
                let _ = tx.send(outcome);
            }
            reply(202, String::new())
        }
        ["2018-06-01", "runtime", "init", "error"] => {
            state.lock().unwrap().init_error = Some(String::from_utf8_lossy(&body).into_owned());
            reply(202, String::new())
        }
        _ => reply(404, String::new()),
    }
}
