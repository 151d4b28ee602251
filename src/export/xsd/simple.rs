//! `export::xsd::simple`: simple types. A simple type is a built-in type restricted in zero or
//! more steps (`xs:restriction base="…"`), each step adding facets; a value must satisfy every
//! step, as XML Schema requires (patterns of one step are alternatives, patterns of different
//! steps must all match). Which facets apply to which built-in is checked when the schema is
//! loaded, as are the facet values themselves and `fixed="true"` facets a later step changes.

use regex::Regex;

use super::lexical::{Builtin, Decimal};
use super::pattern;
use super::Refusal::{self, Invalid, Unsupported};
use super::Rule;

/// A built-in type and the restriction steps on it, base first.
#[derive(Debug)]
pub(super) struct SimpleType {
    pub(super) builtin: Builtin,
    steps: Vec<Step>,
}

/// The facets of one restriction step.
#[derive(Debug, Default, Clone)]
struct Step {
    /// The type this step defines, for messages.
    type_name: String,
    patterns: Vec<(String, Regex)>,
    enumeration: Vec<String>,
    /// The values of `enumeration` for a numeric type, compared by value.
    numeric_enumeration: Vec<Decimal>,
    length: Option<usize>,
    min_length: Option<usize>,
    max_length: Option<usize>,
    total_digits: Option<usize>,
    fraction_digits: Option<usize>,
    /// `minInclusive`, `maxInclusive`, `minExclusive`, `maxExclusive`.
    bounds: Vec<Bound>,
    /// Facets declared `fixed="true"`, with their value.
    fixed: Vec<(String, String)>,
}

/// A bound on a numeric value.
#[derive(Debug, Clone)]
struct Bound {
    rule: Rule,
    value: Decimal,
    /// As written in the schema, for messages.
    text: String,
}

impl Bound {
    fn holds(&self, d: &Decimal) -> bool {
        match self.rule {
            Rule::MinInclusive => *d >= self.value,
            Rule::MaxInclusive => *d <= self.value,
            Rule::MinExclusive => *d > self.value,
            _ => *d < self.value,
        }
    }
}

/// One facet as written in the schema.
pub(super) struct Facet<'a> {
    pub(super) name: &'a str,
    pub(super) value: &'a str,
    pub(super) fixed: bool,
}

/// A value cut for a message.
fn shown(value: &str) -> String {
    const MAX_SHOWN: usize = 60;
    if value.chars().count() <= MAX_SHOWN {
        format!("{value:?}")
    } else {
        format!("{:?}…", value.chars().take(MAX_SHOWN).collect::<String>())
    }
}

impl SimpleType {
    /// A built-in type, unrestricted.
    pub(super) fn builtin(builtin: Builtin) -> SimpleType {
        SimpleType {
            builtin,
            steps: Vec::new(),
        }
    }

    /// `base` restricted by `facets` into the type `type_name`; Err names what is wrong.
    pub(super) fn restrict(
        base: &SimpleType,
        type_name: &str,
        facets: &[Facet<'_>],
    ) -> Result<SimpleType, Refusal> {
        let b = base.builtin;
        let mut step = Step {
            type_name: type_name.to_owned(),
            ..Step::default()
        };
        let count = |v: &str| {
            v.parse::<usize>()
                .map_err(|_| Invalid(format!("{v:?} is not a non-negative integer")))
        };
        for f in facets {
            let applies = match f.name {
                "length" | "minLength" | "maxLength" => b.is_textual(),
                "totalDigits" | "fractionDigits" | "minInclusive" | "maxInclusive"
                | "minExclusive" | "maxExclusive" => b.is_numeric(),
                "enumeration" => b.is_textual() || b.is_numeric(),
                "pattern" => true,
                other => return Err(Unsupported(format!("the facet {other}"))),
            };
            if !applies {
                return Err(Invalid(format!(
                    "the facet {} does not apply to {}",
                    f.name,
                    b.name()
                )));
            }
            let value = b.normalize(f.value);
            let bound = || {
                Decimal::parse(&value)
                    .ok_or_else(|| Invalid(format!("{} {:?} is not a number", f.name, f.value)))
            };
            match f.name {
                "pattern" => step
                    .patterns
                    .push((f.value.to_owned(), pattern::compile(f.value)?)),
                "enumeration" => {
                    base.check(f.value)
                        .map_err(|(_, m)| Invalid(format!("enumeration value: {m}")))?;
                    if b.is_numeric() {
                        step.numeric_enumeration.push(bound()?);
                    }
                    step.enumeration.push(value.clone());
                }
                "length" => step.length = Some(count(f.value)?),
                "minLength" => step.min_length = Some(count(f.value)?),
                "maxLength" => step.max_length = Some(count(f.value)?),
                "totalDigits" => match count(f.value)? {
                    0 => return Err(Invalid("totalDigits must be at least 1".to_owned())),
                    n => step.total_digits = Some(n),
                },
                "fractionDigits" => step.fraction_digits = Some(count(f.value)?),
                bound_name => step.bounds.push(Bound {
                    rule: match bound_name {
                        "minInclusive" => Rule::MinInclusive,
                        "maxInclusive" => Rule::MaxInclusive,
                        "minExclusive" => Rule::MinExclusive,
                        _ => Rule::MaxExclusive,
                    },
                    value: bound()?,
                    text: value.clone(),
                }),
            }
            let fixed = base.steps.iter().flat_map(|s| &s.fixed);
            if let Some((_, v)) = fixed
                .filter(|(n, _)| n == f.name)
                .find(|(_, v)| v != f.value)
            {
                return Err(Invalid(format!(
                    "{} is fixed at {v:?} in the base type and cannot become {:?}",
                    f.name, f.value
                )));
            }
            if f.fixed {
                step.fixed.push((f.name.to_owned(), f.value.to_owned()));
            }
        }
        let mut steps = base.steps.clone();
        steps.push(step);
        Ok(SimpleType { builtin: b, steps })
    }

    /// Checks a value (text or attribute value, before whitespace handling): the rule it
    /// breaks and why.
    pub(super) fn check(&self, raw: &str) -> Result<(), (Rule, String)> {
        let value = self.builtin.normalize(raw);
        let number = self
            .builtin
            .check(&value)
            .map_err(|m| (Rule::Datatype, m))?;
        // Only a failing value is quoted in a message.
        let v = || shown(&value);
        for s in &self.steps {
            let t = &s.type_name;
            let chars = value.chars().count();
            let fail = |rule, m: String| Err((rule, m));
            if let Some(n) = s.length.filter(|&n| n != chars) {
                return fail(
                    Rule::Length,
                    format!("{} has {chars} characters; length of {t} is {n}", v()),
                );
            }
            if let Some(n) = s.min_length.filter(|&n| chars < n) {
                return fail(
                    Rule::MinLength,
                    format!(
                        "{} has {chars} characters, fewer than minLength {n} of {t}",
                        v()
                    ),
                );
            }
            if let Some(n) = s.max_length.filter(|&n| chars > n) {
                return fail(
                    Rule::MaxLength,
                    format!(
                        "{} has {chars} characters, more than maxLength {n} of {t}",
                        v()
                    ),
                );
            }
            if let Some(d) = &number {
                let (total, fraction) = (d.total_digits(), d.fraction_digits());
                if let Some(n) = s.total_digits.filter(|&n| total > n) {
                    let m = format!("{} has {total} significant digits,", v());
                    return fail(
                        Rule::TotalDigits,
                        format!("{m} more than totalDigits {n} of {t}"),
                    );
                }
                if let Some(n) = s.fraction_digits.filter(|&n| fraction > n) {
                    let m = format!("{} has {fraction} fraction digits,", v());
                    return fail(
                        Rule::FractionDigits,
                        format!("{m} more than fractionDigits {n} of {t}"),
                    );
                }
                if let Some(b) = s.bounds.iter().find(|b| !b.holds(d)) {
                    return fail(
                        b.rule,
                        format!("{} breaks {} {} of {t}", v(), b.rule, b.text),
                    );
                }
            }
            let listed = match &number {
                Some(d) if !s.numeric_enumeration.is_empty() => s.numeric_enumeration.contains(d),
                _ => s.enumeration.is_empty() || s.enumeration.contains(&value),
            };
            if !listed {
                /// Enumeration values named in a message, at most.
                const MAX_LISTED: usize = 12;
                let mut values = s
                    .enumeration
                    .iter()
                    .take(MAX_LISTED)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
                if s.enumeration.len() > MAX_LISTED {
                    values.push_str(", …");
                }
                return fail(
                    Rule::Enumeration,
                    format!("{} is not one of the values of {t} ({values})", v()),
                );
            }
            if !s.patterns.is_empty() && !s.patterns.iter().any(|(_, re)| re.is_match(&value)) {
                let p = s
                    .patterns
                    .iter()
                    .map(|(p, _)| p.as_str())
                    .collect::<Vec<_>>()
                    .join(" | ");
                return fail(
                    Rule::Pattern,
                    format!("{} does not match the pattern {p} of {t}", v()),
                );
            }
        }
        Ok(())
    }
}
