//! Writes badges rendered by `hitcore::badge` to SVG files, one per `NAME=QUERY VALUE` argument,
//! and prints each file's name, so that `scripts/render-badges` can put them in a page and
//! screenshot it. An example rather than a subcommand: the server has no use for it.
//!
//! `cargo run --example badges -- DIR 'flat=style=flat 1234' 'views=text=views&bgcolor=green 42'`
//!
//! It writes only `DIR/NAME.svg` files; a bad query is reported with the badge module's own error
//! message and exit status 2, as the route would answer 400.

use std::path::PathBuf;
use std::process::ExitCode;

use hitcore::badge::Badge;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: badges DIR NAME=QUERY VALUE...");
        return ExitCode::from(2);
    };
    for spec in args {
        // NAME=QUERY VALUE: the query may itself contain '=', the value is the last word.
        let parsed = spec.split_once('=').and_then(|(name, rest)| {
            let (query, value) = rest.rsplit_once(' ')?;
            Some((name, query, value.parse::<i64>().ok()?))
        });
        let Some((name, query, value)) = parsed else {
            eprintln!("badges: {spec:?} is not NAME=QUERY VALUE");
            return ExitCode::from(2);
        };
        let badge = match Badge::from_query(query) {
            Ok(badge) => badge,
            Err(e) => {
                eprintln!("badges: {name}: {e}");
                return ExitCode::from(2);
            }
        };
        let mut svg = Vec::new();
        badge.render(value, &mut svg);
        let path = dir.join(format!("{name}.svg"));
        if let Err(e) = std::fs::write(&path, &svg) {
            eprintln!("badges: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("{}", path.display());
    }
    ExitCode::SUCCESS
}
