//! `keysmith env PROFILE`: the export lines for a shell.

use crate::client::{Api, Target};
use crate::issued::{self, IssueArgs, IssueError, Issued};

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    Sh,
    Fish,
    Powershell,
}

/// Print the credentials as shell export lines.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  eval \"$(keysmith env deploy)\"\n  keysmith env deploy --shell fish | source"
)]
pub struct Args {
    #[command(flatten)]
    pub issue: IssueArgs,
    /// The shell whose syntax to print.
    #[arg(long, value_enum, default_value_t = Shell::Sh)]
    pub shell: Shell,
}

/// The variables that carry credentials to a process (SPEC §9).
pub fn variables(issued: &Issued) -> Vec<(&'static str, String)> {
    let mut vars = vec![
        ("AWS_ACCESS_KEY_ID", issued.access_key_id.clone()),
        (
            "AWS_SECRET_ACCESS_KEY",
            issued.secret_access_key.expose().to_owned(),
        ),
    ];
    if let Some(t) = &issued.session_token {
        vars.push(("AWS_SESSION_TOKEN", t.expose().to_owned()));
    }
    vars.push(("AWS_CREDENTIAL_EXPIRATION", issued.expiration.clone()));
    vars
}

/// Variables a process must not see beside them (they would pick another identity).
pub const REMOVED: [&str; 2] = ["AWS_PROFILE", "AWS_DEFAULT_PROFILE"];

pub fn render(issued: &Issued, shell: Shell) -> String {
    let mut out = String::new();
    for name in REMOVED {
        out.push_str(&match shell {
            Shell::Sh => format!("unset {name}\n"),
            Shell::Fish => format!("set -e {name};\n"),
            Shell::Powershell => {
                format!("Remove-Item Env:{name} -ErrorAction SilentlyContinue\n")
            }
        });
    }
    for (name, value) in variables(issued) {
        out.push_str(&match shell {
            Shell::Sh => format!("export {name}={}\n", quote(&value, "'\\''")),
            Shell::Fish => format!("set -gx {name} {};\n", quote(&value, "\\'")),
            Shell::Powershell => format!("$Env:{name} = {}\n", quote(&value, "''")),
        });
    }
    out
}

/// Single-quotes `value`, writing each `'` as `escaped`.
fn quote(value: &str, escaped: &str) -> String {
    format!("'{}'", value.replace('\'', escaped))
}

pub async fn run(target: &Target, args: &Args) -> Result<(), IssueError> {
    let api = Api::connect(target).await?;
    let issued = issued::get(&api, &args.issue).await?;
    print!("{}", render(&issued, args.shell));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn each_shell_gets_its_syntax() {
        let i = Issued {
            access_key_id: "ASIA1".into(),
            secret_access_key: Secret::new("a'b"),
            session_token: None,
            expiration: "2030-01-01T00:00:00Z".into(),
            credential_type: "iam_user".into(),
            lease_id: None,
        };
        let sh = render(&i, Shell::Sh);
        assert!(sh.contains("unset AWS_PROFILE\n"));
        assert!(sh.contains("export AWS_SECRET_ACCESS_KEY='a'\\''b'\n"));
        assert!(!sh.contains("AWS_SESSION_TOKEN"));
        assert!(render(&i, Shell::Fish).contains("set -gx AWS_ACCESS_KEY_ID 'ASIA1';"));
        assert!(render(&i, Shell::Powershell).contains("$Env:AWS_SECRET_ACCESS_KEY = 'a''b'"));
    }
}
