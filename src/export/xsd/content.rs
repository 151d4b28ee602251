//! `export::xsd::content`: matching an element's children against its content model. The
//! matcher follows every way of reading the children at once (a set of positions per
//! particle), so it is exact whatever the model; when no way reads them all, the diagnosis is
//! made where the reading got furthest: what was expected there, and what was found instead.

use std::collections::BTreeSet;

use super::model::{Model, Particle, Term};
use super::tree::Name;
use super::Schema;

/// Why the children do not fit the model.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Mismatch {
    /// The children end (or reach `before`) while `expected` (required) must come first.
    Missing {
        expected: Vec<Name>,
        before: Option<usize>,
    },
    /// Child `index` is not in the model at all.
    Unknown { index: usize },
    /// Child `index` has a local name of the model, in another namespace.
    Namespace { index: usize, expected: Name },
    /// Child `index` is one more of an element that may occur at most `max` times.
    TooMany { index: usize, max: Option<u32> },
    /// Child `index` comes after the content is complete: nothing more may follow.
    Complete { index: usize },
    /// Child `index` is in the model, but not here; `expected` could have come.
    OutOfOrder { index: usize, expected: Vec<Name> },
}

/// Checks `children` (by name) against `model`.
pub(super) fn check(schema: &Schema, model: &Model, children: &[&Name]) -> Result<(), Mismatch> {
    // run[i]: where the run of children named like child i, from i, ends.
    let mut run = vec![children.len(); children.len()];
    for i in (0..children.len().saturating_sub(1)).rev() {
        if children[i] == children[i + 1] {
            run[i] = run[i + 1];
        } else {
            run[i] = i + 1;
        }
    }
    let mut m = Matcher {
        schema,
        children,
        run,
        furthest: 0,
        expected: Vec::new(),
    };
    let ends = m.particle(&model.root, BTreeSet::from([0]));
    if ends.contains(&children.len()) {
        return Ok(());
    }
    for &end in &ends {
        m.reach(end);
    }
    Err(m.diagnose(model))
}

struct Matcher<'a> {
    schema: &'a Schema,
    children: &'a [&'a Name],
    run: Vec<usize>,
    /// The furthest position any reading reached, and what could have come there:
    /// (element name, whether it was required).
    furthest: usize,
    expected: Vec<(&'a Name, bool)>,
}

impl<'a> Matcher<'a> {
    fn reach(&mut self, position: usize) {
        if position > self.furthest {
            self.furthest = position;
            self.expected.clear();
        }
    }

    fn expect(&mut self, position: usize, name: &'a Name, required: bool) {
        self.reach(position);
        if position == self.furthest {
            self.expected.push((name, required));
        }
    }

    /// The positions after `p` from each of `starts`.
    fn particle(&mut self, p: &'a Particle, starts: BTreeSet<usize>) -> BTreeSet<usize> {
        if let Term::Element(id) = p.term {
            return self.element(&self.schema.elements[id].name, p, starts);
        }
        let mut ends = if p.min == 0 {
            starts.clone()
        } else {
            BTreeSet::new()
        };
        let mut frontier = starts;
        // Each pass that adds no new position ends an unbounded repetition.
        let passes = p
            .max
            .unwrap_or(u32::MAX)
            .min(p.min.saturating_add(self.children.len() as u32 + 1));
        for pass in 1..=passes {
            frontier = match &p.term {
                Term::Sequence(items) => items
                    .iter()
                    .fold(frontier, |at, item| self.particle(item, at)),
                Term::Choice(items) => {
                    let mut out = BTreeSet::new();
                    for item in items {
                        out.extend(self.particle(item, frontier.clone()));
                    }
                    out
                }
                Term::Element(_) => unreachable!(),
            };
            if frontier.is_empty() {
                break;
            }
            if pass >= p.min {
                let before = ends.len();
                ends.extend(frontier.iter().copied());
                if ends.len() == before && pass > p.min {
                    break;
                }
            }
        }
        ends
    }

    /// An element particle: from each start, any count within its bounds of consecutive
    /// children of its name.
    fn element(
        &mut self,
        name: &'a Name,
        p: &Particle,
        starts: BTreeSet<usize>,
    ) -> BTreeSet<usize> {
        let mut ends = BTreeSet::new();
        for start in starts {
            let available = match self.children.get(start) {
                Some(&child) if child == name => self.run[start] - start,
                _ => 0,
            };
            let taken = p.max.map_or(available, |max| available.min(max as usize));
            if p.max.is_none_or(|max| taken < max as usize) {
                self.expect(start + taken, name, taken < p.min as usize);
            }
            if taken >= p.min as usize {
                ends.extend(start + p.min as usize..=start + taken);
            }
        }
        ends
    }

    fn diagnose(&self, model: &Model) -> Mismatch {
        let at = self.furthest;
        let required: Vec<Name> = self
            .expected
            .iter()
            .filter(|(_, r)| *r)
            .map(|(n, _)| (*n).clone())
            .collect();
        let Some(&found) = self.children.get(at) else {
            let all = self.expected.iter().map(|(n, _)| (*n).clone()).collect();
            let expected = if required.is_empty() { all } else { required };
            return Mismatch::Missing {
                expected,
                before: None,
            };
        };
        let Some(entry) = model.names.get(found) else {
            return match model.names.keys().find(|n| n.1 == found.1) {
                Some(name) => Mismatch::Namespace {
                    index: at,
                    expected: name.clone(),
                },
                None => Mismatch::Unknown { index: at },
            };
        };
        let expected_here = self.expected.iter().any(|(n, _)| *n == found);
        if at > 0 && self.children[at - 1] == found && !expected_here {
            return Mismatch::TooMany {
                index: at,
                max: entry.max,
            };
        }
        if self.expected.is_empty() {
            return Mismatch::Complete { index: at };
        }
        let later = &self.children[at + 1..];
        if required.is_empty() || required.iter().any(|r| later.contains(&r)) {
            let mut expected: Vec<Name> = Vec::new();
            for (n, _) in &self.expected {
                if !expected.contains(n) {
                    expected.push((*n).clone());
                }
            }
            return Mismatch::OutOfOrder {
                index: at,
                expected,
            };
        }
        Mismatch::Missing {
            expected: required,
            before: Some(at),
        }
    }
}
