//! Ignition's config merging (`ignition.config.merge`): a child config
//! merged into its parent, by Ignition's rules (config/merge in
//! Ignition's sources), on the JSON form of two 3.6 configs:
//!
//! - objects merge field by field; a field the child leaves out or sets
//!   to null keeps the parent's value, any other value of the child wins;
//! - lists of options (`append`, `options`, `mountOptions`,
//!   `openOptions`) are the parent's entries followed by the child's;
//! - every other list is keyed (files by path, units by name, partitions
//!   by number or label, resources by source, strings by value): entries
//!   with the same key merge, the child's other entries are appended;
//! - `storage.files`, `directories` and `links` share one key space, as
//!   do `kernelArguments.shouldExist` and `shouldNotExist`: a child entry
//!   in one of them drops the parent's entry with its key from the others;
//! - an HTTP header the child lists with a null value removes the
//!   parent's header of that name.

use std::collections::{HashMap, HashSet};

use ignition_config::v3_6::Config;
use serde_json::{Map, Value};

/// `child` merged into `parent`.
pub fn merge(parent: &Config, child: &Config) -> Config {
    let to_value = |c: &Config| serde_json::to_value(c).unwrap_or(Value::Null);
    let merged = merge_value(to_value(parent), to_value(child), "");
    // Both sides came from the same type, so the result has its shape.
    serde_json::from_value(merged).unwrap_or_else(|_| child.clone())
}

/// Lists whose entries are simply concatenated.
const APPENDED: [&str; 4] = ["append", "options", "mountOptions", "openOptions"];

/// Lists that share a key space, as (object holding them, lists).
const SHARED: [(&str, &[&str]); 2] = [
    ("storage", &["files", "directories", "links"]),
    ("kernelArguments", &["shouldExist", "shouldNotExist"]),
];

fn merge_value(parent: Value, child: Value, name: &str) -> Value {
    match (parent, child) {
        (p, Value::Null) => p,
        (Value::Object(p), Value::Object(c)) => Value::Object(merge_object(p, c, name)),
        (Value::Array(p), Value::Array(c)) if APPENDED.contains(&name) => {
            Value::Array(p.into_iter().chain(c).collect())
        }
        (Value::Array(p), Value::Array(c)) => {
            let own: Vec<(String, Value)> = keyed(name, &c);
            Value::Array(merge_list(name, p, &c, &own))
        }
        (_, c) => c,
    }
}

fn merge_object(
    mut parent: Map<String, Value>,
    mut child: Map<String, Value>,
    name: &str,
) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some((_, lists)) = SHARED.iter().find(|(n, _)| *n == name) {
        // Which shared lists each of the child's keys is in.
        let mut child_keys: HashMap<String, Vec<&str>> = HashMap::new();
        for list in lists.iter() {
            if let Some(Value::Array(items)) = child.get(*list) {
                for item in items {
                    child_keys.entry(key(list, item)).or_default().push(list);
                }
            }
        }
        for list in lists.iter() {
            let p = take_array(&mut parent, list);
            let c = take_array(&mut child, list);
            if p.is_empty() && c.is_empty() {
                continue;
            }
            let own = keyed(list, &c);
            // A parent entry whose key the child has in another shared
            // list is dropped.
            let p: Vec<Value> = p
                .into_iter()
                .filter(|item| {
                    let k = key(list, item);
                    !child_keys
                        .get(&k)
                        .is_some_and(|ls| ls.iter().any(|l| l != list))
                })
                .collect();
            out.insert(
                list.to_string(),
                Value::Array(merge_list(list, p, &c, &own)),
            );
        }
    }
    let keys: Vec<String> = parent.keys().chain(child.keys()).cloned().collect();
    for k in keys {
        if out.contains_key(&k) {
            continue;
        }
        let p = parent.remove(&k).unwrap_or(Value::Null);
        let c = child.remove(&k).unwrap_or(Value::Null);
        out.insert(k.clone(), merge_value(p, c, &k));
    }
    out
}

fn take_array(map: &mut Map<String, Value>, name: &str) -> Vec<Value> {
    match map.remove(name) {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    }
}

/// Parent entries in order, each merged with the child's entry of the same
/// key (the last one, as in Ignition), then the child's entries with keys
/// the parent did not have. Keys are looked up in maps: linear in the
/// entries, however many there are.
fn merge_list(
    name: &str,
    parent: Vec<Value>,
    child: &[Value],
    own: &[(String, Value)],
) -> Vec<Value> {
    let parent_keys: Vec<String> = parent.iter().map(|i| key(name, i)).collect();
    let parent_set: HashSet<&str> = parent_keys.iter().map(String::as_str).collect();
    // The child's last entry of each key.
    let last: HashMap<&str, &Value> = own.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = Vec::new();
    for (item, k) in parent.into_iter().zip(&parent_keys) {
        match last.get(k.as_str()).copied() {
            Some(c) => {
                if name == "httpHeaders" && c.get("value").is_none_or(Value::is_null) {
                    continue;
                }
                out.push(merge_value(item, c.clone(), ""));
            }
            None => out.push(item),
        }
    }
    for item in child {
        if !parent_set.contains(key(name, item).as_str()) {
            out.push(item.clone());
        }
    }
    out
}

fn keyed(name: &str, items: &[Value]) -> Vec<(String, Value)> {
    items.iter().map(|i| (key(name, i), i.clone())).collect()
}

/// An entry's key in the list `name` (Ignition's `Key()` methods).
fn key(name: &str, item: &Value) -> String {
    let field = |f: &str| match item.get(f) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    };
    match item {
        Value::String(s) => s.clone(),
        Value::Object(_) => match name {
            "partitions" => match item.get("number").and_then(Value::as_i64) {
                Some(n) if n != 0 => format!("number:{n}"),
                _ => match item.get("label") {
                    Some(Value::String(l)) => format!("label:{l}"),
                    _ => String::new(),
                },
            },
            "merge" | "certificateAuthorities" => field("source"),
            "tang" => field("url"),
            "disks" | "filesystems" => field("device"),
            "files" | "directories" | "links" => field("path"),
            _ => field("name"),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(v: Value) -> Config {
        serde_json::from_value(v).unwrap()
    }

    fn json(c: &Config) -> Value {
        serde_json::to_value(c).unwrap()
    }

    #[test]
    fn keyed_entries_merge_field_by_field_and_new_ones_are_appended() {
        let parent = cfg(serde_json::json!({
            "ignition": {"version": "3.6.0", "timeouts": {"httpTotal": 30}},
            "storage": {"files": [
                {"path": "/etc/a", "mode": 420, "contents": {"source": "data:,a"}},
                {"path": "/etc/b", "append": [{"source": "data:,1"}]}
            ]},
            "passwd": {"users": [{"name": "core", "sshAuthorizedKeys": ["k1", "k2"], "shell": "/bin/sh"}]},
            "systemd": {"units": [{"name": "a.service", "enabled": true, "dropins": [{"name": "x.conf", "contents": "[Unit]"}]}]}
        }));
        let child = cfg(serde_json::json!({
            "ignition": {"version": "3.3.0"},
            "storage": {"files": [
                {"path": "/etc/a", "mode": 384},
                {"path": "/etc/b", "append": [{"source": "data:,2"}]},
                {"path": "/etc/c"}
            ]},
            "passwd": {"users": [{"name": "core", "sshAuthorizedKeys": ["k2", "k3"]}]},
            "systemd": {"units": [{"name": "a.service", "dropins": [{"name": "y.conf"}]}]}
        }));
        let m = json(&merge(&parent, &child));
        let files = &m["storage"]["files"];
        assert_eq!(files[0]["mode"], 384);
        assert_eq!(files[0]["contents"]["source"], "data:,a");
        let appended: Vec<&Value> = files[1]["append"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| &a["source"])
            .collect();
        assert_eq!(appended, ["data:,1", "data:,2"]);
        assert_eq!(files[2]["path"], "/etc/c");
        assert_eq!(m["ignition"]["version"], "3.3.0");
        assert_eq!(m["ignition"]["timeouts"]["httpTotal"], 30);
        let user = &m["passwd"]["users"][0];
        assert_eq!(
            user["sshAuthorizedKeys"],
            serde_json::json!(["k1", "k2", "k3"])
        );
        assert_eq!(user["shell"], "/bin/sh");
        let unit = &m["systemd"]["units"][0];
        assert_eq!(unit["enabled"], true);
        assert_eq!(unit["dropins"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn shared_key_spaces_drop_the_parents_entry_of_another_kind() {
        let parent = cfg(serde_json::json!({
            "ignition": {"version": "3.6.0"},
            "storage": {"files": [{"path": "/etc/x"}], "directories": [{"path": "/etc/d"}]},
            "kernelArguments": {"shouldExist": ["quiet", "mitigations=off"]}
        }));
        let child = cfg(serde_json::json!({
            "ignition": {"version": "3.6.0"},
            "storage": {"links": [{"path": "/etc/x", "target": "/etc/y"}]},
            "kernelArguments": {"shouldNotExist": ["mitigations=off"]}
        }));
        let m = json(&merge(&parent, &child));
        assert!(m["storage"]["files"].as_array().unwrap().is_empty(), "{m}");
        assert_eq!(m["storage"]["directories"][0]["path"], "/etc/d");
        assert_eq!(m["storage"]["links"][0]["target"], "/etc/y");
        assert_eq!(
            m["kernelArguments"]["shouldExist"],
            serde_json::json!(["quiet"])
        );
        assert_eq!(
            m["kernelArguments"]["shouldNotExist"],
            serde_json::json!(["mitigations=off"])
        );
    }

    #[test]
    fn a_null_header_removes_the_parents_and_partitions_key_by_number_or_label() {
        let parent = cfg(serde_json::json!({
            "ignition": {"version": "3.6.0", "config": {"merge": [
                {"source": "http://10.0.2.2/a", "httpHeaders": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
            ]}},
            "storage": {"disks": [{"device": "/dev/vdb", "partitions": [
                {"number": 1, "label": "one"}, {"label": "two", "sizeMiB": 10}
            ]}]}
        }));
        let child = cfg(serde_json::json!({
            "ignition": {"version": "3.6.0", "config": {"merge": [
                {"source": "http://10.0.2.2/a", "httpHeaders": [{"name": "A"}]}
            ]}},
            "storage": {"disks": [{"device": "/dev/vdb", "wipeTable": true, "partitions": [
                {"number": 1, "sizeMiB": 5}, {"label": "two", "sizeMiB": 20}
            ]}]}
        }));
        let m = json(&merge(&parent, &child));
        let headers = &m["ignition"]["config"]["merge"][0]["httpHeaders"];
        assert_eq!(headers, &serde_json::json!([{"name": "B", "value": "2"}]));
        let parts = &m["storage"]["disks"][0]["partitions"];
        assert_eq!(parts[0]["label"], "one");
        assert_eq!(parts[0]["sizeMiB"], 5);
        assert_eq!(parts[1]["sizeMiB"], 20);
        assert_eq!(parts.as_array().unwrap().len(), 2);
        assert_eq!(m["storage"]["disks"][0]["wipeTable"], true);
    }
}
