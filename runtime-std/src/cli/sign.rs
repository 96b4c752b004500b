//! `lockstep sign`'s command line.

use super::{Error, option_value};
use crate::sign;

/// What `lockstep sign --help` prints.
pub const USAGE: &str = "\
lockstep sign — print the X-Lockstep-Signature header of a webhook body

Usage: lockstep sign [--secret-file FILE] [BODY-FILE | -]
       lockstep sign [--secret-file FILE] --bintray PACKAGE

Signs the body (a file, or standard input with - or no argument) with the webhook secret
(--secret-file, else the environment variable BINTRAY_WEBHOOK_SECRET) at the current time, and
prints the whole header line, for curl -H:

  X-Lockstep-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, \"<t>.\" + body)>

With --bintray, prints the Bintray scheme's header for a package instead (the same for every
version of it).

Options:
  --secret-file FILE  A file holding the secret (a trailing newline is not part of it)
  --bintray PACKAGE   Print X-Bintray-Hook-Hmac for this package
  -h, --help          Print this help
";

/// Parses `lockstep sign`'s options; `None` for `--help`.
pub fn parse(args: &[String]) -> Result<Option<sign::Options>, Error> {
    use lexopt::prelude::*;

    let mut options = sign::Options::default();
    let mut parser = lexopt::Parser::from_args(args.iter().cloned());
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("secret-file") => {
                let file = option_value(&mut parser, "--secret-file")?;
                options.secret_file = Some(file.into());
            }
            Long("bintray") => {
                options.bintray = Some(option_value(&mut parser, "--bintray")?);
            }
            Value(file) if options.body_file.is_none() => {
                options.body_file = Some(file.into_string().map_err(|_| Error::BodyFileNotUtf8)?);
            }
            _ => {
                return Err(Error::Unexpected {
                    command: "sign",
                    error: arg.unexpected(),
                });
            }
        }
    }
    Ok(Some(options))
}
