//! The one tolerant decoding layer for Opencast's XML-born JSON.
//!
//! Opencast serialises through JAXB/Jettison, so a one-element list arrives as a bare object,
//! an empty list as a missing key (or `""`), numbers as strings, and text-with-attributes under
//! `"$"`. Everything here accepts all of those shapes and hands strict Rust types onwards; nothing
//! outside `src/opencast/` sees a loosely typed value.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// A list that may arrive as an array, a single bare object, an absent key, `""` or `null`.
#[derive(Debug, Clone, PartialEq)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        OneOrMany(Vec::new())
    }
}

impl<T> OneOrMany<T> {
    pub fn into_vec(self) -> Vec<T> {
        self.0
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array, a single object, or an empty value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(item) = seq.next_element()? {
                    out.push(item);
                }
                Ok(OneOrMany(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let one = T::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(OneOrMany(vec![one]))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v.trim().is_empty() {
                    Ok(OneOrMany(Vec::new()))
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(v), &self))
                }
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(OneOrMany(Vec::new()))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(OneOrMany(Vec::new()))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// An integer that may arrive as a JSON number (integral float included) or a numeric string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LenientI64(pub i64);

impl<'de> Deserialize<'de> for LenientI64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LenientI64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer or a string holding one")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LenientI64, E> {
                Ok(LenientI64(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LenientI64, E> {
                i64::try_from(v)
                    .map(LenientI64)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<LenientI64, E> {
                if v.fract() == 0.0 && v.abs() < 9.0e15 {
                    Ok(LenientI64(v as i64))
                } else {
                    Err(E::invalid_value(de::Unexpected::Float(v), &self))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LenientI64, E> {
                let t = v.trim();
                if let Ok(n) = t.parse::<i64>() {
                    return Ok(LenientI64(n));
                }
                match t.parse::<f64>() {
                    Ok(f) => self.visit_f64(f),
                    Err(_) => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A string that may arrive as a number (`"series": 20150221144`) or as `{"$": "text", ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LenientString(pub String);

impl<'de> Deserialize<'de> for LenientString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LenientString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, a number, or an object with a \"$\" text")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LenientString, E> {
                Ok(LenientString(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<LenientString, E> {
                Ok(LenientString(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LenientString, E> {
                Ok(LenientString(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LenientString, E> {
                Ok(LenientString(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<LenientString, E> {
                if v.fract() == 0.0 && v.abs() < 9.0e15 {
                    Ok(LenientString(format!("{}", v as i64)))
                } else {
                    Ok(LenientString(v.to_string()))
                }
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<LenientString, E> {
                Ok(LenientString(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LenientString, A::Error> {
                let mut text = None;
                while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if k == "$" {
                        text = Some(map.next_value::<LenientString>()?.0);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(LenientString(text.unwrap_or_default()))
            }
        }
        d.deserialize_any(V)
    }
}

/// [`LenientString`] borrowed from the page body when it holds no escapes: the hot path of a
/// harvest decodes millions of these and most need no copy at all.
///
/// Stricter than [`LenientString`], because a user action is a record: an object is text
/// only when it carries a `"$"` text (an element with attributes); any other object or an array
/// is the wrong shape, an error (the action becomes a dead letter), never an empty string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LenientStr<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for LenientStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor { element: true })
            .map(LenientStr)
    }
}

/// The text of a scalar, or (when `element`) of an object's `"$"` scalar.
struct TextVisitor {
    element: bool,
}

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.element {
            f.write_str("a string, a number, or an object with a \"$\" text")
        } else {
            f.write_str("a string or a number as the \"$\" text")
        }
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        LenientString::deserialize(de::value::F64Deserializer::<E>::new(v)).map(|s| Cow::Owned(s.0))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        if !self.element {
            return Err(de::Error::invalid_type(de::Unexpected::Map, &self));
        }
        let mut text = None;
        while let Some(k) = map.next_key::<Cow<'de, str>>()? {
            if k == "$" && text.is_none() {
                text = Some(map.next_value_seed(TextSeed)?);
            } else if k == "$" {
                return Err(de::Error::duplicate_field("$"));
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        text.ok_or_else(|| {
            de::Error::custom("an object without a \"$\" text where a string belongs")
        })
    }
}

/// Reads an element's `"$"` text: a scalar, never another object.
struct TextSeed;

impl<'de> de::DeserializeSeed<'de> for TextSeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(TextVisitor { element: false })
    }
}

/// `isPlaying`: a boolean in stock Opencast, `0`/`1`/`2` in the DCE build (2 = live stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IsPlaying(pub i64);

impl<'de> Deserialize<'de> for IsPlaying {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IsPlaying;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false, 0, 1 or 2")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<IsPlaying, E> {
                Ok(IsPlaying(v as i64))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IsPlaying, E> {
                // Anything else has no meaning in either build: a record never guesses one.
                match v {
                    0..=2 => Ok(IsPlaying(v)),
                    _ => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IsPlaying, E> {
                match v {
                    0..=2 => Ok(IsPlaying(v as i64)),
                    _ => Err(E::invalid_value(de::Unexpected::Unsigned(v), &self)),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IsPlaying, E> {
                match v.trim() {
                    "true" | "1" => Ok(IsPlaying(1)),
                    "false" | "0" | "" => Ok(IsPlaying(0)),
                    "2" => Ok(IsPlaying(2)),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_unit<E: de::Error>(self) -> Result<IsPlaying, E> {
                Ok(IsPlaying(0))
            }
        }
        d.deserialize_any(V)
    }
}

/// An object that may also arrive as `""` (an empty XML element) or `null`.
#[derive(Debug, Clone, PartialEq)]
pub struct MaybeEmpty<T>(pub Option<T>);

impl<T> Default for MaybeEmpty<T> {
    fn default() -> Self {
        MaybeEmpty(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MaybeEmpty<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = MaybeEmpty<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object or an empty value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Ok(MaybeEmpty(Some(T::deserialize(
                    de::value::MapAccessDeserializer::new(map),
                )?)))
            }
            fn visit_str<E: de::Error>(self, _v: &str) -> Result<Self::Value, E> {
                Ok(MaybeEmpty(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(MaybeEmpty(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                // An array where an object was expected: take its first element.
                let first: Option<T> = seq.next_element()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(MaybeEmpty(first))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

// ---------------------------------------------------------------------------------------------
// /usertracking/actions.json

/// The actions of a page: decoded in one pass when every element has the expected shape,
/// else kept raw so that each can be judged alone. Both borrow from the page body.
#[derive(Debug)]
pub enum PageActions<'a> {
    Decoded(Vec<WireAction<'a>>),
    Raw(Vec<&'a RawValue>),
}

/// One page of `/usertracking/actions.json`, borrowing the body it was read from, so that the
/// exact text of an action that turns out malformed can be quarantined with it.
#[derive(Debug)]
pub struct ActionsPage<'a> {
    pub total: i64,
    pub offset: i64,
    pub limit: i64,
    pub actions: PageActions<'a>,
    pub body: &'a [u8],
}

#[derive(Deserialize)]
struct ActionsEnvelope<'a> {
    #[serde(borrow)]
    actions: MaybeEmpty<ActionsBody<'a>>,
}

#[derive(Deserialize)]
struct ActionsBody<'a> {
    total: Option<LenientI64>,
    offset: Option<LenientI64>,
    limit: Option<LenientI64>,
    #[serde(borrow)]
    action: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct DecodedEnvelope<'a> {
    #[serde(borrow)]
    actions: MaybeEmpty<DecodedBody<'a>>,
}

#[derive(Deserialize)]
struct DecodedBody<'a> {
    total: Option<LenientI64>,
    offset: Option<LenientI64>,
    limit: Option<LenientI64>,
    #[serde(default, borrow)]
    action: OneOrMany<WireAction<'a>>,
}

/// Why a response body could not be read as the expected document.
///
/// Two different faults: a body cut short (the connection dropped mid-body, a proxy gave up)
/// is worth another request; a complete document of the wrong shape (another endpoint, another
/// release's envelope, an HTML page) will be the same next time, and retrying it only delays a
/// clear error by the whole retry budget.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    message: String,
    truncated: bool,
}

impl DecodeError {
    /// A complete body of the wrong shape: final.
    pub fn wrong_shape(message: impl Into<String>) -> DecodeError {
        DecodeError {
            message: message.into(),
            truncated: false,
        }
    }

    /// The error of decoding `what` with serde_json: a truncation when the text ended before
    /// the document did (or could not be read), a wrong shape otherwise.
    pub fn json(what: &str, e: &serde_json::Error) -> DecodeError {
        use serde_json::error::Category;
        DecodeError {
            message: format!("{what}: {e}"),
            truncated: matches!(e.classify(), Category::Eof | Category::Io),
        }
    }

    /// The body ended before the document did: another request may well bring all of it.
    pub fn is_truncation(&self) -> bool {
        self.truncated
    }
}

/// Every release sends `actions` as an object with a `total` attribute (`ActionListImpl`, an
/// `int` JAXB attribute, so never left out), even for no rows. An `actions` that is `""`,
/// `null` or an array, or an object without a count, is not a page: read as "no actions" it
/// once let a day pass as proven with most of its rows never read.
fn no_actions_object() -> DecodeError {
    DecodeError::wrong_shape(
        "not a user-actions page: `actions` is not an object with a `total` (an empty, null or \
         array value)",
    )
}

fn page_total(total: Option<LenientI64>) -> Result<i64, DecodeError> {
    match total {
        Some(LenientI64(n)) if n >= 0 => Ok(n),
        Some(LenientI64(n)) => Err(DecodeError::wrong_shape(format!(
            "not a user-actions page: its `total` is negative ({n})"
        ))),
        None => Err(DecodeError::wrong_shape(
            "not a user-actions page: it has no `total` (every Opencast release sends one)",
        )),
    }
}

impl<'a> ActionsPage<'a> {
    /// Decodes a page body. A body that is not the expected envelope (truncated, HTML, ...) is an
    /// error; an individual action that is odd is not (it is judged later, alone).
    pub fn parse(body: &'a [u8]) -> Result<ActionsPage<'a>, DecodeError> {
        // One pass over the body in the common case. The text is checked to be UTF-8 once, as a
        // whole: `from_str` then skips the per-string check of `from_slice`, a third of the
        // decoding time of a page. A body that is not UTF-8 takes the slow path, whose error
        // says where it broke.
        let decoded = match std::str::from_utf8(body) {
            Ok(text) => serde_json::from_str::<DecodedEnvelope<'a>>(text),
            Err(_) => serde_json::from_slice::<DecodedEnvelope<'a>>(body),
        };
        if let Ok(env) = decoded {
            let b = env.actions.0.ok_or_else(no_actions_object)?;
            let total = page_total(b.total)?;
            let actions = b.action.0;
            return Ok(ActionsPage {
                total,
                offset: b.offset.map(|n| n.0).unwrap_or(0),
                limit: b.limit.map(|n| n.0).unwrap_or(0),
                actions: PageActions::Decoded(actions),
                body,
            });
        }
        // Some element has an unexpected shape (or the body is broken): split it raw.
        let env: ActionsEnvelope<'a> = serde_json::from_slice(body)
            .map_err(|e| DecodeError::json("not a user-actions page", &e))?;
        let b = env.actions.0.ok_or_else(no_actions_object)?;
        let total = page_total(b.total)?;
        let actions = match b.action {
            None => Vec::new(),
            Some(raw) => split_one_or_many(raw)?,
        };
        Ok(ActionsPage {
            total,
            offset: b.offset.map(|n| n.0).unwrap_or(0),
            limit: b.limit.map(|n| n.0).unwrap_or(0),
            actions: PageActions::Raw(actions),
            body,
        })
    }

    /// Number of actions on the page.
    pub fn len(&self) -> usize {
        match &self.actions {
            PageActions::Decoded(v) => v.len(),
            PageActions::Raw(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The exact JSON text of each action, in page order.
    pub fn raw_actions(&self) -> Vec<&'a RawValue> {
        match &self.actions {
            PageActions::Raw(v) => v.clone(),
            PageActions::Decoded(_) => ActionsPage::raw_actions_of(self.body),
        }
    }

    /// Splits a page body into the raw text of its actions.
    pub fn raw_actions_of(body: &'a [u8]) -> Vec<&'a RawValue> {
        serde_json::from_slice::<ActionsEnvelope<'a>>(body)
            .ok()
            .and_then(|e| e.actions.0)
            .and_then(|b| b.action)
            .map(|raw| split_one_or_many(raw).unwrap_or_default())
            .unwrap_or_default()
    }
}

fn split_one_or_many(raw: &RawValue) -> Result<Vec<&RawValue>, DecodeError> {
    match raw.get().trim_start().as_bytes().first() {
        Some(b'[') => serde_json::from_str::<Vec<&RawValue>>(raw.get())
            .map_err(|e| DecodeError::json("bad action list", &e)),
        Some(b'{') => Ok(vec![raw]),
        // `""` or `null`: an empty element.
        _ => Ok(Vec::new()),
    }
}

/// One user action as Opencast sends it; every field optional, judged in `types.rs`.
///
/// Two shapes of the session: Matterhorn 1.4–1.6 (`UserActionImpl` before commit b4f039421b)
/// writes `sessionId`, `userId` and `userIp` as flat strings on the action and has no user
/// agent; from 2.0 `sessionId` is an object holding all four. Both decode here; which one an
/// action uses, and that it does not mix them, is judged in `types.rs`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireAction<'a> {
    pub id: Option<LenientI64>,
    #[serde(borrow)]
    pub mediapackage_id: Option<LenientStr<'a>>,
    #[serde(borrow)]
    pub session_id: Option<WireSessionField<'a>>,
    /// Matterhorn 1.4–1.6 only: the user, flat on the action.
    #[serde(borrow)]
    pub user_id: Option<LenientStr<'a>>,
    /// Matterhorn 1.4–1.6 only: the `X-Forwarded-For` chain, flat on the action.
    #[serde(borrow)]
    pub user_ip: Option<LenientStr<'a>>,
    pub inpoint: Option<LenientI64>,
    pub outpoint: Option<LenientI64>,
    pub length: Option<LenientI64>,
    #[serde(rename = "type", borrow)]
    pub kind: Option<LenientStr<'a>>,
    pub is_playing: Option<IsPlaying>,
    #[serde(borrow)]
    pub created: Option<LenientStr<'a>>,
}

/// `sessionId` in either release's shape: the object (2.0+) or a flat string (1.4–1.6).
#[derive(Debug)]
pub enum WireSessionField<'a> {
    Object(WireSession<'a>),
    Flat(Cow<'a, str>),
}

impl<'de: 'a, 'a> Deserialize<'de> for WireSessionField<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = WireSessionField<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("the session object or a session id")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                WireSession::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(WireSessionField::Object)
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(WireSessionField::Flat(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(WireSessionField::Flat(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(WireSessionField::Flat(Cow::Owned(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(WireSessionField::Flat(Cow::Owned(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(WireSessionField::Flat(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

/// The `sessionId` object: session, user, the `X-Forwarded-For` chain and the user agent.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireSession<'a> {
    #[serde(borrow)]
    pub session_id: Option<LenientStr<'a>>,
    #[serde(borrow)]
    pub user_id: Option<LenientStr<'a>>,
    #[serde(borrow)]
    pub user_ip: Option<LenientStr<'a>>,
    #[serde(borrow)]
    pub user_agent: Option<LenientStr<'a>>,
}

// ---------------------------------------------------------------------------------------------
// /search/episode.json

/// A search answer of either generation: `{"search-results": {…}}` (Solr, up to 15.x) or
/// `{"result": […], "total", "offset", "limit"}` (OpenSearch, 16.0+:
/// `SearchRestService.getEpisodes` and `SearchResult.dehydrateForREST`). A body with neither
/// is not a search result.
#[derive(Debug, Deserialize)]
pub struct SearchEnvelope {
    #[serde(rename = "search-results", default)]
    pub results: Option<MaybeEmpty<SearchBody>>,
    /// 16.0+.
    #[serde(default)]
    pub result: Option<OneOrMany<WireEpisode16>>,
    pub total: Option<LenientI64>,
}

/// A 16.0+ search result: the media package (Jettison's shape, passed through Gson, so every
/// number is a double: `"duration": 4160.0`) and the episode's Dublin Core under `dc`, each
/// term a list of values (`"created": ["2024-05-07T16:24Z"]`).
#[derive(Debug, Deserialize)]
pub struct WireEpisode16 {
    #[serde(default)]
    pub mediapackage: MaybeEmpty<WireMediapackage>,
    /// When the index entry last changed (ISO instant); `created` ≤ `modified`.
    pub modified: Option<LenientString>,
    #[serde(default)]
    pub dc: MaybeEmpty<WireDublinCore>,
}

/// The Dublin Core terms the harvester reads, by local name (`dehydrateDC`).
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct WireDublinCore {
    #[serde(default)]
    pub identifier: DcValues,
    #[serde(default)]
    pub title: DcValues,
    #[serde(default)]
    pub created: DcValues,
    #[serde(default, rename = "type")]
    pub kind: DcValues,
    #[serde(default)]
    pub description: DcValues,
    #[serde(default)]
    pub is_part_of: DcValues,
    #[serde(default)]
    pub temporal: DcValues,
}

/// The values of one Dublin Core term: a list, or (leniently) one bare value.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DcValues(pub Vec<String>);

impl DcValues {
    /// The first non-empty value.
    pub fn first(&self) -> Option<String> {
        self.0.iter().find(|v| !v.trim().is_empty()).cloned()
    }
}

impl<'de> Deserialize<'de> for DcValues {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DcValues;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of Dublin Core values")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DcValues, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<Option<LenientString>>()? {
                    out.extend(v.map(|s| s.0));
                }
                Ok(DcValues(out))
            }
            fn visit_unit<E: de::Error>(self) -> Result<DcValues, E> {
                Ok(DcValues::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<DcValues, E> {
                Ok(DcValues::default())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DcValues, E> {
                Ok(DcValues(vec![v.to_owned()]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DcValues, E> {
                Ok(DcValues(vec![v.to_string()]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DcValues, E> {
                Ok(DcValues(vec![v.to_string()]))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<DcValues, E> {
                LenientString::deserialize(de::value::F64Deserializer::<E>::new(v))
                    .map(|s| DcValues(vec![s.0]))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<DcValues, A::Error> {
                LenientString::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|s| DcValues(vec![s.0]))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
pub struct SearchBody {
    pub total: Option<LenientI64>,
    #[serde(default)]
    pub result: OneOrMany<WireEpisode>,
}

/// A search result: Dublin Core fields at the top, the media package below.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireEpisode {
    pub id: Option<LenientString>,
    #[serde(default)]
    pub mediapackage: MaybeEmpty<WireMediapackage>,
    pub dc_title: Option<LenientString>,
    pub dc_created: Option<LenientString>,
    pub dc_type: Option<LenientString>,
    pub dc_description: Option<LenientString>,
    pub dc_is_part_of: Option<LenientString>,
}

#[derive(Debug, Deserialize)]
pub struct WireMediapackage {
    pub id: Option<LenientString>,
    pub title: Option<LenientString>,
    pub duration: Option<LenientI64>,
    pub start: Option<LenientString>,
    pub series: Option<LenientString>,
    pub seriestitle: Option<LenientString>,
    #[serde(default)]
    pub attachments: MaybeEmpty<WireAttachments>,
}

#[derive(Debug, Deserialize)]
pub struct WireAttachments {
    #[serde(default)]
    pub attachment: OneOrMany<WireAttachment>,
}

#[derive(Debug, Deserialize)]
pub struct WireAttachment {
    #[serde(rename = "type")]
    pub kind: Option<LenientString>,
    pub url: Option<LenientString>,
    #[serde(rename = "ref")]
    pub reference: Option<LenientString>,
}

// ---------------------------------------------------------------------------------------------
// /workflow/instances.json

#[derive(Debug, Deserialize)]
pub struct WorkflowsEnvelope {
    pub workflows: MaybeEmpty<WorkflowsBody>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowsBody {
    pub total_count: Option<LenientI64>,
    #[serde(default)]
    pub workflow: OneOrMany<WireWorkflow>,
}

/// A workflow instance: the same element in both endpoints (`/workflow/instances.json` up to
/// 11.x, `/workflow/mediaPackage/{id}/instances.json` from 12.0), its definition in `template`.
#[derive(Debug, Deserialize)]
pub struct WireWorkflow {
    pub id: Option<LenientI64>,
    pub state: Option<LenientString>,
    pub template: Option<LenientString>,
    #[serde(default)]
    pub operations: MaybeEmpty<WireOperations>,
}

#[derive(Debug, Deserialize)]
pub struct WireOperations {
    #[serde(default)]
    pub operation: OneOrMany<WireOperation>,
}

/// An operation: up to 11.x its `id` attribute is the operation's name (`capture`); from 12.0
/// (`JaxbWorkflowOperationInstance`) `id` is a numeric database id and the name is `template`.
#[derive(Debug, Deserialize)]
pub struct WireOperation {
    pub id: Option<LenientString>,
    pub template: Option<LenientString>,
    pub state: Option<LenientString>,
    pub started: Option<LenientI64>,
    pub completed: Option<LenientI64>,
}

// ---------------------------------------------------------------------------------------------
// /recordings/{id}/technical.json (4.0+)

/// The scheduler's technical metadata of a scheduled event (`SchedulerRestService.
/// getTechnicalMetadataJSON`, from 4.0): its planned start and end in UTC
/// (`DateTimeSupport.toUTC`, `2024-05-07T16:24:00Z`).
#[derive(Debug, Deserialize)]
pub struct WireTechnical {
    pub id: Option<LenientString>,
    pub start: Option<LenientString>,
    pub end: Option<LenientString>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_or_many_accepts_every_shape() {
        #[derive(Deserialize)]
        struct W {
            #[serde(default)]
            v: OneOrMany<LenientI64>,
        }
        let p = |s: &str| serde_json::from_str::<W>(s).unwrap().v.0.len();
        assert_eq!(p(r#"{"v":[1,"2"]}"#), 2);
        assert_eq!(p(r#"{}"#), 0);
        assert_eq!(p(r#"{"v":""}"#), 0);
        assert_eq!(p(r#"{"v":null}"#), 0);
    }

    #[test]
    fn lenient_scalars() {
        let n: LenientI64 = serde_json::from_str(r#""6875847""#).unwrap();
        assert_eq!(n.0, 6875847);
        let s: LenientString = serde_json::from_str("20150221144").unwrap();
        assert_eq!(s.0, "20150221144");
        let s: LenientString = serde_json::from_str(r#"{"type":"md5","$":"abc"}"#).unwrap();
        assert_eq!(s.0, "abc");
        for (j, v) in [("true", 1), ("false", 0), ("2", 2), ("\"2\"", 2), ("0", 0)] {
            assert_eq!(serde_json::from_str::<IsPlaying>(j).unwrap().0, v);
        }
    }

    #[test]
    fn a_wrong_shape_is_an_error_never_an_altered_value() {
        let s = |j: &str| serde_json::from_str::<LenientStr>(j).map(|s| s.0.into_owned());
        assert_eq!(s(r#"{"lang":"en","$":"PLAY"}"#).unwrap(), "PLAY");
        assert_eq!(s("12").unwrap(), "12");
        for bad in [
            r#"{"nested":{"deeper":1}}"#,
            r#"{}"#,
            r#"["a"]"#,
            r#"{"$":{"$":"x"}}"#,
            r#"{"$":"a","$":"b"}"#,
        ] {
            assert!(s(bad).is_err(), "{bad} must not become a string");
        }
        for bad in ["3", "-1", "7", "\"yes\"", "1.5", "18446744073709551615"] {
            assert!(serde_json::from_str::<IsPlaying>(bad).is_err(), "{bad}");
        }
    }
}
