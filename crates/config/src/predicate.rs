//! Row predicates for splits: comparisons of a column with a literal, joined by `and`
//! (`date >= 20220428 and date <= 20220504`, `tab == 1`, `kind != "ad"`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Literal {
    Num(f64),
    Str(String),
}

/// One `column op literal` comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clause {
    pub column: String,
    pub op: CmpOp,
    pub value: Literal,
}

/// A conjunction of clauses; an empty predicate matches every row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Predicate {
    pub clauses: Vec<Clause>,
}

impl CmpOp {
    pub fn holds<T: PartialOrd>(self, a: &T, b: &T) -> bool {
        match self {
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
        }
    }
}

impl Predicate {
    pub fn parse(text: &str) -> Result<Predicate, String> {
        let normalised = text.replace("&&", " and ");
        let mut clauses = Vec::new();
        for part in split_and(&normalised) {
            let part = part.trim();
            if part.is_empty() {
                return Err(format!("empty clause in `{text}`"));
            }
            clauses.push(parse_clause(part)?);
        }
        Ok(Predicate { clauses })
    }

    pub fn columns(&self) -> Vec<String> {
        self.clauses.iter().map(|c| c.column.clone()).collect()
    }
}

/// Splits on the word `and` outside quotes.
fn split_and(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    let words: Vec<&str> = s.split(' ').collect();
    for w in words {
        if !in_quote && w.eq_ignore_ascii_case("and") {
            parts.push(std::mem::take(&mut cur));
            continue;
        }
        in_quote ^= w.matches('"').count() % 2 == 1;
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(w);
    }
    parts.push(cur);
    parts
}

fn parse_clause(s: &str) -> Result<Clause, String> {
    const OPS: [(&str, CmpOp); 7] = [
        ("<=", CmpOp::Le),
        (">=", CmpOp::Ge),
        ("==", CmpOp::Eq),
        ("!=", CmpOp::Ne),
        ("<", CmpOp::Lt),
        (">", CmpOp::Gt),
        ("=", CmpOp::Eq),
    ];
    for (tok, op) in OPS {
        if let Some(pos) = s.find(tok) {
            let column = s[..pos].trim();
            let rhs = s[pos + tok.len()..].trim();
            if column.is_empty() || column.contains(['<', '>', '=', '!', '"']) {
                return Err(format!("`{s}`: expected `column op value`"));
            }
            if rhs.is_empty() {
                return Err(format!("`{s}`: no value after `{tok}`"));
            }
            let value = if let Some(q) = rhs.strip_prefix('"') {
                let inner = q
                    .strip_suffix('"')
                    .ok_or_else(|| format!("`{s}`: unterminated string"))?;
                Literal::Str(inner.to_string())
            } else if let Ok(x) = rhs.parse::<f64>() {
                if !x.is_finite() {
                    return Err(format!("`{s}`: the value must be finite"));
                }
                Literal::Num(x)
            } else if rhs.contains(char::is_whitespace) || rhs.contains(['<', '>', '=', '!']) {
                return Err(format!("`{s}`: cannot read the value `{rhs}`"));
            } else {
                Literal::Str(rhs.to_string())
            };
            return Ok(Clause {
                column: column.to_string(),
                op,
                value,
            });
        }
    }
    Err(format!(
        "`{s}`: no comparison (use <, <=, >, >=, ==, != between a column and a value)"
    ))
}
