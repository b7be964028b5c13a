//! `keysmith console PROFILE`: an AWS console sign-in URL through the federation endpoint
//! (`getSigninToken` with the session, then `login`), for `assumed_role` and `federation_token`
//! credentials.

use bytes::Bytes;
use http_body_util::Full;
use serde_json::{json, Value};
use url::Url;

use crate::client::{self, check_scheme, Api, ClientError, Target};
use crate::issued::{self, IssueArgs, IssueError};

pub const SIGNIN: &str = "https://signin.aws.amazon.com/federation";
const CONSOLE: &str = "https://console.aws.amazon.com/";

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(transparent)]
    Issue(#[from] IssueError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the AWS console takes only assumed_role or federation_token credentials; profile {profile} issues {kind} credentials")]
    Unsupported { profile: String, kind: String },
    #[error("--signin-endpoint {0}: not a URL")]
    BadEndpoint(String),
    #[error("the federation endpoint answered HTTP {status} without a sign-in token")]
    NoToken { status: u16 },
}

/// Print an AWS console sign-in URL for the profile's credentials.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  keysmith console deploy\n  open \"$(keysmith console deploy --destination https://console.aws.amazon.com/s3/)\""
)]
pub struct Args {
    #[command(flatten)]
    pub issue: IssueArgs,
    /// The console page to land on.
    #[arg(long, value_name = "URL", default_value = CONSOLE)]
    pub destination: String,
    /// The federation endpoint.
    #[arg(long, value_name = "URL", default_value = SIGNIN)]
    pub signin_endpoint: String,
}

fn endpoint(args: &Args) -> Result<Url, ConsoleError> {
    let url = Url::parse(&args.signin_endpoint)
        .map_err(|_| ConsoleError::BadEndpoint(args.signin_endpoint.clone()))?;
    check_scheme(&url, &args.signin_endpoint)?;
    Ok(url)
}

pub async fn run(target: &Target, args: &Args) -> Result<(), ConsoleError> {
    let federation = endpoint(args)?;
    let api = Api::connect(target).await?;
    let issued = issued::get(&api, &args.issue).await?;
    let token = match (&issued.session_token, issued.credential_type.as_str()) {
        (Some(t), "assumed_role" | "federation_token") => t,
        (_, kind) => {
            return Err(ConsoleError::Unsupported {
                profile: args.issue.profile.clone(),
                kind: kind.to_owned(),
            })
        }
    };
    let session = json!({
        "sessionId": issued.access_key_id,
        "sessionKey": issued.secret_access_key.expose(),
        "sessionToken": token.expose(),
    });
    let mut ask = federation.clone();
    ask.query_pairs_mut()
        .append_pair("Action", "getSigninToken")
        .append_pair("Session", &session.to_string());
    let req = hyper::Request::get(ask.as_str())
        .body(Full::new(Bytes::new()))
        .map_err(|_| ConsoleError::BadEndpoint(args.signin_endpoint.clone()))?;
    let (status, body) = client::send(api.http()?, req).await?;
    let signin_token = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["SigninToken"].as_str().map(str::to_owned))
        .filter(|_| status == 200)
        .ok_or(ConsoleError::NoToken { status })?;
    let mut login = federation;
    login
        .query_pairs_mut()
        .append_pair("Action", "login")
        .append_pair("Issuer", "keysmith")
        .append_pair("Destination", &args.destination)
        .append_pair("SigninToken", &signin_token);
    // The URL is what this command exists to print.
    println!("{login}");
    Ok(())
}
