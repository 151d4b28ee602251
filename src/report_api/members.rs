//! A JSON object read once into its members: each name with its value's text, unparsed.
//! An entry is read this way so that its typed fields and its raw JSON come from one pass
//! over the text, with no JSON tree built and none written back (the initial sync reads
//! hundreds of thousands of entries; README, "Why it is fast").

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, Serializer};
use serde_json::value::RawValue;

/// The members of one JSON object, in the order sent; a name sent twice is kept twice.
pub(super) struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Members<'a> {
    /// The value of a member that must be present; the error names the member, never its
    /// value (which may be personal).
    pub(super) fn required<T: Deserialize<'a>>(&self, name: &str) -> Result<T, String> {
        let value = self
            .find(name)?
            .ok_or_else(|| format!("missing field `{name}`"))?;
        serde_json::from_str(value.get()).map_err(|e| value_error(name, &e))
    }

    /// The value of a member that may be absent or `null`.
    pub(super) fn optional<T: Deserialize<'a>>(&self, name: &str) -> Result<Option<T>, String> {
        match self.find(name)? {
            None => Ok(None),
            Some(value) => serde_json::from_str(value.get()).map_err(|e| value_error(name, &e)),
        }
    }

    /// The value's text of the member called `name`, if sent; sent twice is an error.
    fn find(&self, name: &str) -> Result<Option<&'a RawValue>, String> {
        let mut found = self.0.iter().filter(|(n, _)| n == name).map(|(_, v)| *v);
        let first = found.next();
        if found.next().is_some() {
            return Err(format!("duplicate field `{name}`"));
        }
        Ok(first)
    }

    /// Whether a member is called by one of `names`.
    pub(super) fn has_any(&self, names: &[&str]) -> bool {
        self.0
            .iter()
            .any(|(name, _)| names.contains(&name.as_ref()))
    }

    /// The object's JSON text without the members named in `left_out`, the other members'
    /// values written back exactly as they came.
    pub(super) fn without(&self, left_out: &[&str]) -> Result<Box<RawValue>, String> {
        serde_json::value::to_raw_value(&Kept {
            members: self,
            left_out,
        })
        .map_err(|e| format!("the entry cannot be written back as JSON ({e})"))
    }
}

/// A member's value that is not of the documented type: the member named, the value's kind
/// kept, the value itself dropped (serde quotes it: `invalid type: string "Kari", …`).
fn value_error(name: &str, e: &serde_json::Error) -> String {
    let message = e.to_string();
    // The position is within the value's own text: no help to anyone.
    let message = message.split(" at line ").next().unwrap_or_default();
    match without_value(message) {
        Some(shape) => format!("field `{name}`: {shape}"),
        None if !message.contains(['"', '`']) => format!("field `{name}`: {message}"),
        None => format!("field `{name}` does not match the documented schema"),
    }
}

/// serde's "invalid type: string \"x\", expected i64" as "invalid type: string (expected
/// i64)": the shape kept, the value (which may be personal) dropped; `None` for a message of
/// another form.
pub(super) fn without_value(message: &str) -> Option<String> {
    let (what, expected) = message.split_once(", expected")?;
    let kind = what
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    Some(format!(
        "{} (expected{expected})",
        kind.trim_end_matches(':')
    ))
}

struct Kept<'m, 'a> {
    members: &'m Members<'a>,
    left_out: &'m [&'m str],
}

impl Serialize for Kept<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(
            self.members
                .0
                .iter()
                .filter(|(name, _)| !self.left_out.contains(&name.as_ref()))
                .map(|(name, value)| (name.as_ref(), *value)),
        )
    }
}

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;

        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = Members<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some(Name(name)) = map.next_key()? {
                    members.push((name, map.next_value()?));
                }
                Ok(Members(members))
            }
        }

        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// A member's name, borrowed from the text unless it holds an escape.
struct Name<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;

        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Name<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(v.to_owned())))
            }
        }

        deserializer.deserialize_str(NameVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn members(text: &str) -> Members<'_> {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn members_are_read_by_name_and_written_back_without_the_ones_left_out() {
        let text = r#"{"a": 1, "b\u0041": "x", "name": "Kari", "c": {"d": [1, 2.50]}}"#;
        let m = members(text);
        assert_eq!(m.required::<i64>("a"), Ok(1));
        assert_eq!(m.optional::<String>("bA"), Ok(Some("x".to_owned())));
        assert_eq!(m.optional::<String>("zz"), Ok(None));
        let kept = m.without(&["name"]).unwrap();
        let kept: Value = serde_json::from_str(kept.get()).unwrap();
        assert_eq!(kept, json!({"a": 1, "bA": "x", "c": {"d": [1, 2.50]}}));
        // Values come back as sent, not as a number type would print them.
        assert!(m.without(&[]).unwrap().get().contains("2.50"));
    }

    #[test]
    fn a_bad_or_repeated_member_is_named_and_its_value_never_quoted() {
        let m = members(r#"{"amount": "Kari Nordmann", "x": 1, "x": 2, "n": null}"#);
        let err = m.required::<i64>("amount").unwrap_err();
        assert_eq!(err, "field `amount`: invalid type: string (expected i64)");
        assert_eq!(m.required::<i64>("x").unwrap_err(), "duplicate field `x`");
        assert_eq!(m.optional::<String>("n"), Ok(None));
        assert_eq!(
            m.required::<String>("n").unwrap_err(),
            "field `n`: invalid type: null (expected a string)"
        );
        assert_eq!(
            m.required::<String>("absent").unwrap_err(),
            "missing field `absent`"
        );
        let huge = members(r#"{"amount": 99999999999999999999}"#);
        let err = huge.required::<i64>("amount").unwrap_err();
        assert!(err.starts_with("field `amount`"), "{err}");
        assert!(!err.contains("9999"), "{err}");
    }

    #[test]
    fn only_an_object_has_members() {
        for text in ["[1, 2]", "\"x\"", "3", "null"] {
            assert!(serde_json::from_str::<Members>(text).is_err(), "{text}");
        }
    }
}
