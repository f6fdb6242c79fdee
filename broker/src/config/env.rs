//! `HERALD__SECTION__KEY=value` overrides. Segments are lowercased; a numeric segment
//! indexes an array (`HERALD__APPS__0__BASE_URL`). A value that parses as a TOML value
//! (number, boolean, array, inline table, quoted string) is taken as that; anything else is
//! a plain string — so `HERALD__NODE__ID='"123"'` keeps a numeric-looking id a string.

use std::collections::HashMap;

use super::ConfigError;

const PREFIX: &str = "HERALD__";

pub(super) fn apply_overrides(
    table: &mut toml::Table,
    env: &HashMap<String, String>,
) -> Result<(), ConfigError> {
    let mut names: Vec<&String> = env.keys().filter(|k| k.starts_with(PREFIX)).collect();
    names.sort();
    for name in names {
        let path: Vec<String> = name[PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        if path.iter().any(String::is_empty) {
            return Err(env_error(name, "has an empty segment"));
        }
        set(table, &path, parse_value(&env[name])).map_err(|m| env_error(name, &m))?;
    }
    Ok(())
}

fn env_error(name: &str, message: &str) -> ConfigError {
    ConfigError::Env {
        name: name.to_owned(),
        message: message.to_owned(),
    }
}

fn parse_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn set(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (first, rest) = path.split_first().ok_or("names no key")?;
    let mut node = entry(table, first, rest.first(), first)?;
    let mut walked = vec![first.as_str()];
    for (i, segment) in rest.iter().enumerate() {
        let here = walked.join(".");
        node = match node {
            toml::Value::Array(items) => {
                let index: usize = segment
                    .parse()
                    .map_err(|_| format!("{here} is a list: index it with a number"))?;
                let len = items.len();
                items
                    .get_mut(index)
                    .ok_or_else(|| format!("{here} has {len} entries, not {}", index + 1))?
            }
            toml::Value::Table(t) => entry(t, segment, rest.get(i + 1), &here)?,
            _ => return Err(format!("{here} is a value, not a section")),
        };
        walked.push(segment);
    }
    *node = value;
    Ok(())
}

/// The value at `key`, created as an empty section when absent — unless the next segment
/// indexes a list, which cannot be created from the environment.
fn entry<'a>(
    table: &'a mut toml::Table,
    key: &str,
    next: Option<&String>,
    here: &str,
) -> Result<&'a mut toml::Value, String> {
    if !table.contains_key(key) && next.is_some_and(|n| n.parse::<usize>().is_ok()) {
        return Err(format!(
            "{here}.{key} has no entries to index: define them in the file"
        ));
    }
    Ok(table
        .entry(key.to_owned())
        .or_insert_with(|| toml::Value::Table(toml::Table::new())))
}
