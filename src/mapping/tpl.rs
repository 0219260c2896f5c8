//! Value templates of the filter dialect and the sort primitive: text with `{hole}`s and
//! JSON trees whose strings are such texts. Parsed and checked once at load (the hole
//! names a context allows are given by the caller); rendering walks the parsed pieces.

use serde_json::Value;

/// A value a filter clause or a sort member refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hole {
    /// The upstream name of the field (`filter_as`, `from`, or the field's `sort` key).
    Field,
    /// The filter's value, its high bound (between), its list of values (in, not_in).
    Value,
    High,
    Values,
    /// The sort direction as a word (`asc`/`desc` or the declared words)…
    Dir,
    /// …or as a JSON boolean (true when descending).
    Desc,
}

impl Hole {
    pub fn name(self) -> &'static str {
        match self {
            Hole::Field => "field",
            Hole::Value => "value",
            Hole::High => "high",
            Hole::Values => "values",
            Hole::Dir => "dir",
            Hole::Desc => "desc",
        }
    }
}

/// The holes of a filter clause.
pub const FILTER_HOLES: &[Hole] = &[Hole::Field, Hole::Value, Hole::High, Hole::Values];
/// The holes of a sort member.
pub const SORT_HOLES: &[Hole] = &[Hole::Field, Hole::Dir, Hole::Desc];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Lit(String),
    Hole(Hole),
}

/// A text template: literal pieces and holes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Text(pub Vec<Part>);

impl Text {
    /// Parses `…{hole}…`; a hole not in `allowed` or an unclosed `{` is an error.
    pub fn parse(s: &str, allowed: &[Hole]) -> Result<Text, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(i) = rest.find('{') {
            if i > 0 {
                parts.push(Part::Lit(rest[..i].to_string()));
            }
            let Some(j) = rest[i..].find('}') else {
                return Err(format!("`{s}`: a `{{` is not closed"));
            };
            let name = &rest[i + 1..i + j];
            match allowed.iter().find(|h| h.name() == name) {
                Some(h) => parts.push(Part::Hole(*h)),
                None => {
                    let names: Vec<&str> = allowed.iter().map(|h| h.name()).collect();
                    let what = if allowed == SORT_HOLES {
                        "sort"
                    } else {
                        "filter"
                    };
                    return Err(format!(
                        "`{{{name}}}` is not a {what} template value ({})",
                        names.join(", ")
                    ));
                }
            }
            rest = &rest[i + j + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Ok(Text(parts))
    }

    pub fn uses(&self, h: Hole) -> bool {
        self.0.contains(&Part::Hole(h))
    }

    /// The single hole this text is, if it is exactly one (`{value}`).
    pub fn exact(&self) -> Option<Hole> {
        match self.0.as_slice() {
            [Part::Hole(h)] => Some(*h),
            _ => None,
        }
    }

    /// Renders the text, each hole's text written by `hole`.
    pub fn render(&self, out: &mut String, mut hole: impl FnMut(Hole, &mut String)) {
        for p in &self.0 {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Hole(h) => hole(*h, out),
            }
        }
    }
}

/// A JSON template: a string that is exactly one hole takes that value as JSON; other
/// strings with holes are texts; everything else is literal.
#[derive(Debug, Clone)]
pub enum Json {
    Lit(Value),
    Exact(Hole),
    Text(Text),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    pub fn parse(v: &Value, allowed: &[Hole]) -> Result<Json, String> {
        Ok(match v {
            Value::String(s) if s.contains('{') => {
                let t = Text::parse(s, allowed)?;
                match t.exact() {
                    Some(h) => Json::Exact(h),
                    None => Json::Text(t),
                }
            }
            Value::Array(a) => Json::Array(
                a.iter()
                    .map(|x| Json::parse(x, allowed))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(m) => Json::Object(
                m.iter()
                    .map(|(k, x)| Ok((k.clone(), Json::parse(x, allowed)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => Json::Lit(other.clone()),
        })
    }

    pub fn uses(&self, h: Hole) -> bool {
        match self {
            Json::Lit(_) => false,
            Json::Exact(x) => *x == h,
            Json::Text(t) => t.uses(h),
            Json::Array(a) => a.iter().any(|x| x.uses(h)),
            Json::Object(m) => m.iter().any(|(_, x)| x.uses(h)),
        }
    }

    /// Renders the tree: `exact` gives a hole's JSON value, `text` its text.
    pub fn render(
        &self,
        exact: &impl Fn(Hole) -> Value,
        text: &impl Fn(Hole, &mut String),
    ) -> Value {
        match self {
            Json::Lit(v) => v.clone(),
            Json::Exact(h) => exact(*h),
            Json::Text(t) => {
                let mut s = String::new();
                t.render(&mut s, text);
                Value::String(s)
            }
            Json::Array(a) => Value::Array(a.iter().map(|x| x.render(exact, text)).collect()),
            Json::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, x)| (k.clone(), x.render(exact, text)))
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn texts_parse_into_pieces_and_refuse_unknown_holes() {
        let t = Text::parse("filter[{field}][eq]={value}", FILTER_HOLES).unwrap();
        assert_eq!(
            t.0,
            vec![
                Part::Lit("filter[".into()),
                Part::Hole(Hole::Field),
                Part::Lit("][eq]=".into()),
                Part::Hole(Hole::Value),
            ]
        );
        assert!(Text::parse("{dir}", FILTER_HOLES)
            .unwrap_err()
            .contains("{dir}"));
        assert!(Text::parse("{field", FILTER_HOLES)
            .unwrap_err()
            .contains("not closed"));
    }

    #[test]
    fn an_exact_hole_keeps_its_json_value_and_a_longer_text_its_text() {
        let j = Json::parse(
            &json!([{"field": "{field}", "desc": "{desc}", "x": "<{dir}>"}]),
            SORT_HOLES,
        )
        .unwrap();
        let v = j.render(
            &|h| match h {
                Hole::Desc => Value::Bool(true),
                _ => Value::from("F"),
            },
            &|h, out: &mut String| out.push_str(h.name()),
        );
        assert_eq!(v, json!([{"field": "F", "desc": true, "x": "<dir>"}]));
    }
}
