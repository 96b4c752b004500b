//! `lockstep bundle`'s command line.

use super::{Error, option_value};
use crate::pack;

/// What `lockstep bundle --help` prints.
pub const USAGE: &str = "\
lockstep bundle — lockstep itself as a ConductR bundle, or a configuration for it

Usage: lockstep bundle [--output FILE|DIR]
       lockstep bundle --configuration DIR [--output FILE|DIR]

Writes lockstep-<version>-<digest>.zip: this very binary as the bundle `lockstep`, its
bundle.conf declaring the endpoint `deployments` that ConductR-HAProxy routes /deployments to
(start command: lockstep serve). With --configuration, writes <dir name>-<digest>.zip of the
folder instead: it must hold runtime-config.sh, which ConductR sources before it starts
lockstep (export BINTRAY_WEBHOOK_SECRET and LOCKSTEP_REPOSITORY there), and may hold an overlay
bundle.conf; at most 256 files, 16 MiB in all, 8 folders deep; symbolic links are followed only
to files inside the folder. Nothing of the files' contents is printed.

The digest is the file's SHA-256; ConductR loads a file named <name>-<digest>.zip, so keep that
form when naming the file yourself. Prints the path, then `digest <64 hex>`, then `id <32
hex>` (ConductR's id of the bundle, or its part after the `-` for a configuration). The file
is written under a temporary name and renamed: a failure leaves nothing behind.

Then:  conduct load <bundle zip> <configuration zip>  and  conduct run lockstep --scale 2

Options:
  --output FILE|DIR      The file to write, or the folder to write it into [default: .]
  --configuration DIR    Write a configuration of this folder instead of the bundle
  -h, --help             Print this help
";

/// Parses `lockstep bundle`'s options; `None` for `--help`.
pub fn parse(args: &[String]) -> Result<Option<pack::Options>, Error> {
    use lexopt::prelude::*;

    let mut options = pack::Options::default();
    let mut parser = lexopt::Parser::from_args(args.iter().cloned());
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("output") | Short('o') => {
                options.output = Some(option_value(&mut parser, "--output")?.into());
            }
            Long("configuration") => {
                let dir = option_value(&mut parser, "--configuration")?;
                options.configuration = Some(dir.into());
            }
            _ => {
                return Err(Error::Unexpected {
                    command: "bundle",
                    error: arg.unexpected(),
                });
            }
        }
    }
    Ok(Some(options))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn test_parse_bundle_options() {
        assert_eq!(parse(&[]).unwrap(), Some(pack::Options::default()));
        let options = parse(&args(&["--output", "out", "--configuration", "conf"]))
            .unwrap()
            .unwrap();
        assert_eq!(options.output.as_deref(), Some("out".as_ref()));
        assert_eq!(options.configuration.as_deref(), Some("conf".as_ref()));
        assert_eq!(parse(&args(&["-o=x", "--help"])).unwrap(), None);
    }

    #[test]
    fn test_reject_bundle_arguments() {
        for bad in [
            &["--frob"][..],
            &["extra"],
            &["--output"],
            &["--configuration"],
        ] {
            let e = parse(&args(bad)).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
        }
    }
}
