//! A tiny `--key value` / `--key=value` argument parser (no dependency needed for a few flags).
use std::collections::HashMap;
use std::str::FromStr;

/// Parsed command-line flags.
#[derive(Debug, Default)]
pub struct Args {
    flags: HashMap<String, String>,
    used: std::cell::RefCell<Vec<String>>,
}

impl Args {
    /// Parses `std::env::args()` (skipping the program name). A flag without a value is `"true"`.
    pub fn from_env() -> Result<Args, String> {
        Args::parse(std::env::args().skip(1))
    }

    /// Parses flags from `it`.
    pub fn parse(it: impl IntoIterator<Item = String>) -> Result<Args, String> {
        let mut flags = HashMap::new();
        let mut it = it.into_iter().peekable();
        while let Some(arg) = it.next() {
            let Some(key) = arg.strip_prefix("--") else {
                return Err(format!(
                    "unexpected argument {arg:?} (flags look like --key value)"
                ));
            };
            if let Some((k, v)) = key.split_once('=') {
                flags.insert(k.to_string(), v.to_string());
                continue;
            }
            let value = match it.peek() {
                Some(next) if !next.starts_with("--") => it.next().unwrap_or_default(),
                _ => "true".to_string(),
            };
            flags.insert(key.to_string(), value);
        }
        Ok(Args {
            flags,
            used: Default::default(),
        })
    }

    /// The value of `--key` parsed as `T`, or `default` when absent.
    pub fn get<T: FromStr>(&self, key: &str, default: T) -> Result<T, String> {
        self.used.borrow_mut().push(key.to_string());
        match self.flags.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{key}: cannot parse {v:?}")),
        }
    }

    /// The value of `--key` parsed as `T`, if present.
    pub fn opt<T: FromStr>(&self, key: &str) -> Result<Option<T>, String> {
        self.used.borrow_mut().push(key.to_string());
        match self.flags.get(key) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| format!("--{key}: cannot parse {v:?}")),
        }
    }

    /// Whether `--key` was given (as a bare flag or `=true`).
    pub fn flag(&self, key: &str) -> bool {
        self.used.borrow_mut().push(key.to_string());
        self.flags.get(key).is_some_and(|v| v != "false")
    }

    /// Fails on flags no `get`/`opt`/`flag` call asked about (typos should not pass silently).
    pub fn finish(&self) -> Result<(), String> {
        let used = self.used.borrow();
        let mut unknown: Vec<&String> = self.flags.keys().filter(|k| !used.contains(k)).collect();
        unknown.sort();
        match unknown.first() {
            None => Ok(()),
            Some(k) => Err(format!("unknown flag --{k}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms_and_bare_flags() {
        let a = Args::parse(
            [
                "--conns",
                "50",
                "--bytes=64",
                "--udp",
                "--addr",
                "127.0.0.1:1",
            ]
            .into_iter()
            .map(String::from),
        )
        .unwrap();
        assert_eq!(a.get("conns", 0usize).unwrap(), 50);
        assert_eq!(a.get("bytes", 0usize).unwrap(), 64);
        assert!(a.flag("udp"));
        assert_eq!(a.get("addr", String::new()).unwrap(), "127.0.0.1:1");
        assert_eq!(a.get("missing", 7u32).unwrap(), 7);
        assert!(a.finish().is_ok());
        let b = Args::parse(["--typo", "1"].into_iter().map(String::from)).unwrap();
        assert!(b.finish().is_err());
        assert!(Args::parse(["positional".to_string()]).is_err());
    }
}
