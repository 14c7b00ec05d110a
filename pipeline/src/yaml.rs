//! A YAML tree that remembers where every value came from.
//!
//! Configs are parsed once into [`Node`]s (with serde-saphyr, under a strict budget so an
//! alias bomb is refused rather than expanded). Validation then walks the tree and can report
//! every problem with its line and column, and stage parameters are deserialized from the
//! tree through [`NodeDeserializer`], whose errors carry the location of the offending value.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// Where a value was written: a line and column of the config file, or a `--set` override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Loc {
    #[default]
    Unknown,
    File {
        line: u32,
        column: u32,
    },
    /// The n-th `--set` on the command line (0-based).
    Override(usize),
}

impl Loc {
    fn from_saphyr(loc: serde_saphyr::Location) -> Self {
        match (u32::try_from(loc.line()), u32::try_from(loc.column())) {
            (Ok(line), Ok(column)) if line > 0 => Loc::File { line, column },
            _ => Loc::Unknown,
        }
    }

    /// `file:line:column`, or a description of the override.
    pub fn describe(&self, file: &str) -> String {
        match self {
            Loc::Unknown => file.to_string(),
            Loc::File { line, column } => format!("{file}:{line}:{column}"),
            Loc::Override(n) => format!("--set #{}", n + 1),
        }
    }
}

/// A YAML value and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub loc: Loc,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys keep their order and their own locations.
    Map(Vec<(Key, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub loc: Loc,
}

impl Node {
    pub fn new(value: Value, loc: Loc) -> Self {
        Node { value, loc }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The entry under `key` when this is a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?.iter().find(|(k, _)| k.name == key).map(|(_, v)| v)
    }

    /// A short name of the YAML type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// Sets `path` (creating mappings on the way) to `value`, as `--set a.b=c` does.
    pub fn set_path(&mut self, path: &[&str], value: Node) -> Result<(), String> {
        let Some((first, rest)) = path.split_first() else {
            *self = value;
            return Ok(());
        };
        if matches!(self.value, Value::Null) {
            self.value = Value::Map(Vec::new());
        }
        let Value::Map(entries) = &mut self.value else {
            return Err(format!("`{first}` is inside {}, not a mapping", self.type_name()));
        };
        let index = match entries.iter().position(|(k, _)| k.name == *first) {
            Some(i) => i,
            None => {
                let key = Key { name: first.to_string(), loc: value.loc };
                entries.push((key, Node::new(Value::Null, value.loc)));
                entries.len() - 1
            }
        };
        entries[index].1.set_path(rest, value)
    }

    /// Plain JSON, for hashing and for writing the resolved config.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(entries.iter().map(|(k, v)| (k.name.clone(), v.to_json())).collect()),
        }
    }
}

/// Limits that keep a hostile config from exhausting memory: an alias bomb
/// (`a: &a [x, x]`, `b: &b [*a, *a]`, …) breaches `max_aliases`/the alias ratio long before
/// it is expanded.
fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: Some(4 * 1024 * 1024),
            max_events: 200_000,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_nodes: 100_000,
            max_depth: 32,
            max_documents: 1,
        },
    }
}

/// Parses YAML text into a located tree. The error text is serde-saphyr's, which names the
/// line and column and quotes the offending snippet.
pub fn parse(text: &str) -> Result<Node, String> {
    serde_saphyr::from_str_with_options::<Node>(text, options()).map_err(|e| e.to_string())
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<Value>::deserialize(d)?;
        Ok(Node { value: spanned.value, loc: Loc::from_saphyr(spanned.referenced) })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        i64::try_from(v).map(Value::Int).map_err(|_| E::custom(format!("integer {v} is too large")))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries: Vec<(Key, Node)> = Vec::new();
        while let Some(key) = map.next_key::<serde_saphyr::Spanned<String>>()? {
            let value = map.next_value::<Node>()?;
            entries.push((Key { name: key.value, loc: Loc::from_saphyr(key.referenced) }, value));
        }
        Ok(Value::Map(entries))
    }
}

/// A deserialization error that knows where in the config it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct DeError {
    pub message: String,
    pub loc: Option<Loc>,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError { message: msg.to_string(), loc: None }
    }
}

impl DeError {
    /// Keeps the innermost location: the first one attached wins.
    fn at(mut self, loc: Loc) -> Self {
        self.loc.get_or_insert(loc);
        self
    }
}

/// Deserializes a typed value (a stage's parameter struct) from a located tree.
pub struct NodeDeserializer<'a>(pub &'a Node);

impl<'a> NodeDeserializer<'a> {
    pub fn deserialize<T: de::DeserializeOwned>(node: &'a Node) -> Result<T, DeError> {
        T::deserialize(NodeDeserializer(node)).map_err(|e| e.at(node.loc))
    }
}

impl<'de, 'a> Deserializer<'de> for NodeDeserializer<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let node = self.0;
        let result = match &node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_str(s),
            Value::Seq(items) => visitor.visit_seq(SeqDe { items: items.iter() }),
            Value::Map(entries) => visitor.visit_map(MapDe { entries: entries.iter(), value: None }),
        };
        result.map_err(|e| e.at(node.loc))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let node = self.0;
        match &node.value {
            Value::Str(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            Value::Map(entries) if entries.len() == 1 => {
                visitor.visit_enum(EnumDe { key: &entries[0].0, value: &entries[0].1 })
            }
            _ => Err(<DeError as de::Error>::custom(format!(
                "expected a name or a one-key mapping, found {}",
                node.type_name()
            ))),
        }
        .map_err(|e| e.at(node.loc))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

struct SeqDe<'a> {
    items: std::slice::Iter<'a, Node>,
}

impl<'de, 'a> SeqAccess<'de> for SeqDe<'a> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some(node) => seed.deserialize(NodeDeserializer(node)).map(Some).map_err(|e| e.at(node.loc)),
            None => Ok(None),
        }
    }
}

struct MapDe<'a> {
    entries: std::slice::Iter<'a, (Key, Node)>,
    value: Option<&'a Node>,
}

impl<'de, 'a> MapAccess<'de> for MapDe<'a> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        // An unknown field is reported while its key is read: point at the key.
        seed.deserialize(key.name.as_str().into_deserializer()).map(Some).map_err(|e: DeError| e.at(key.loc))
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let node = self.value.take().expect("next_value_seed is called after next_key_seed");
        seed.deserialize(NodeDeserializer(node)).map_err(|e| e.at(node.loc))
    }
}

struct EnumDe<'a> {
    key: &'a Key,
    value: &'a Node,
}

impl<'de, 'a> de::EnumAccess<'de> for EnumDe<'a> {
    type Error = DeError;
    type Variant = NodeDeserializer<'a>;
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, NodeDeserializer<'a>), DeError> {
        let variant =
            seed.deserialize(self.key.name.as_str().into_deserializer()).map_err(|e: DeError| e.at(self.key.loc))?;
        Ok((variant, NodeDeserializer(self.value)))
    }
}

impl<'de, 'a> de::VariantAccess<'de> for NodeDeserializer<'a> {
    type Error = DeError;
    fn unit_variant(self) -> Result<(), DeError> {
        Deserialize::deserialize(self)
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Params {
        step: u32,
        #[serde(default)]
        names: Vec<String>,
    }

    #[test]
    fn locations_point_at_values_and_keys() {
        let node = parse("a: 1\nb:\n  c: [x, y]\n").unwrap();
        assert_eq!(node.get("a").unwrap().loc, Loc::File { line: 1, column: 4 });
        let c = node.get("b").unwrap().get("c").unwrap();
        assert_eq!(c.loc, Loc::File { line: 3, column: 6 });
        let Value::Map(entries) = &node.get("b").unwrap().value else { panic!() };
        assert_eq!(entries[0].0.loc, Loc::File { line: 3, column: 3 });
    }

    #[test]
    fn typed_errors_carry_the_location_of_the_bad_value() {
        let node = parse("step: five\n").unwrap();
        let err = NodeDeserializer::deserialize::<Params>(&node).unwrap_err();
        assert_eq!(err.loc, Some(Loc::File { line: 1, column: 7 }));
        assert!(err.message.contains("invalid type"), "{}", err.message);

        let node = parse("step: 5\nnmes: [a]\n").unwrap();
        let err = NodeDeserializer::deserialize::<Params>(&node).unwrap_err();
        assert_eq!(err.loc, Some(Loc::File { line: 2, column: 1 }));
        assert!(err.message.contains("unknown field `nmes`"), "{}", err.message);

        let node = parse("step: 5\nnames: [a, b]\n").unwrap();
        let params = NodeDeserializer::deserialize::<Params>(&node).unwrap();
        assert_eq!(params, Params { step: 5, names: vec!["a".into(), "b".into()] });
    }

    #[test]
    fn an_alias_bomb_is_refused_not_expanded() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            text.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
        }
        let err = parse(&text).unwrap_err();
        assert!(err.to_lowercase().contains("budget") || err.contains("alias"), "{err}");
    }

    #[test]
    fn set_path_creates_nested_mappings() {
        let mut node = parse("with: {a: 1}\n").unwrap();
        node.set_path(&["with", "b", "c"], Node::new(Value::Bool(true), Loc::Override(0))).unwrap();
        assert_eq!(node.to_json(), serde_json::json!({"with": {"a": 1, "b": {"c": true}}}));
    }
}
