//! Arithmetic over columns for regression targets: `play_time_ms / duration_ms`,
//! `(a + b) * 0.5`. Numbers, column names, + − × ÷ and parentheses; nothing else, and
//! nested at most [`Expr::MAX_DEPTH`] levels, so that parsing, evaluating and dropping an
//! expression (all recursive) never run out of stack.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Expr {
    Num(f64),
    Col(String),
    Neg(Box<Expr>),
    Bin(Box<Expr>, char, Box<Expr>),
}

impl Expr {
    /// The deepest an expression may nest: each parenthesised group, unary minus and
    /// binary operator is one level around what it holds (`a` is 0 levels, `-(a + b)` 3,
    /// a sum of 65 terms 64).
    pub const MAX_DEPTH: usize = 64;

    pub fn parse(text: &str) -> Result<Expr, String> {
        let toks = tokenize(text)?;
        let mut p = Parser {
            toks,
            pos: 0,
            open: 0,
        };
        let (e, _) = p.sum()?;
        if p.pos != p.toks.len() {
            return Err(format!("`{text}`: unexpected `{}`", p.toks[p.pos]));
        }
        Ok(e)
    }

    pub fn columns(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.walk(&mut |e| {
            if let Expr::Col(c) = e {
                if !out.contains(c) {
                    out.push(c.clone());
                }
            }
        });
        out
    }

    fn walk(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Neg(a) => a.walk(f),
            Expr::Bin(a, _, b) => {
                a.walk(f);
                b.walk(f);
            }
            _ => {}
        }
    }

    /// Evaluates with `col(name)` giving each column's value (NaN when missing). Division
    /// by zero yields a non-finite value, which callers treat as a missing label.
    pub fn eval(&self, col: &dyn Fn(&str) -> f64) -> f64 {
        match self {
            Expr::Num(x) => *x,
            Expr::Col(c) => col(c),
            Expr::Neg(a) => -a.eval(col),
            Expr::Bin(a, op, b) => {
                let (x, y) = (a.eval(col), b.eval(col));
                match op {
                    '+' => x + y,
                    '-' => x - y,
                    '*' => x * y,
                    _ => x / y,
                }
            }
        }
    }
}

fn tokenize(s: &str) -> Result<Vec<String>, String> {
    let mut toks = Vec::new();
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_whitespace() {
            i += 1;
        } else if "+-*/()".contains(c) {
            toks.push(c.to_string());
            i += 1;
        } else if c.is_alphanumeric() || c == '_' || c == '.' {
            let start = i;
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_' || b[i] == '.') {
                i += 1;
            }
            toks.push(b[start..i].iter().collect());
        } else {
            return Err(format!("`{s}`: unexpected character `{c}`"));
        }
    }
    if toks.is_empty() {
        return Err("empty expression".into());
    }
    Ok(toks)
}

struct Parser {
    toks: Vec<String>,
    pos: usize,
    /// Groups and unary minuses being parsed around the current token: the parser's
    /// recursion, bounded before it goes deeper than the tree it builds may be.
    open: usize,
}

/// An expression and the levels it nests.
type Node = (Expr, usize);

fn too_deep() -> String {
    format!(
        "nested deeper than {} levels (each parenthesis, unary minus and operator is one)",
        Expr::MAX_DEPTH
    )
}

/// `depth` if within [`Expr::MAX_DEPTH`].
fn level(depth: usize) -> Result<usize, String> {
    if depth > Expr::MAX_DEPTH {
        Err(too_deep())
    } else {
        Ok(depth)
    }
}

impl Parser {
    fn peek(&self) -> Option<&str> {
        self.toks.get(self.pos).map(String::as_str)
    }
    fn sum(&mut self) -> Result<Node, String> {
        let (mut e, mut d) = self.product()?;
        while let Some(op @ ("+" | "-")) = self.peek() {
            let op = op.chars().next().unwrap();
            self.pos += 1;
            let (r, rd) = self.product()?;
            d = level(d.max(rd) + 1)?;
            e = Expr::Bin(Box::new(e), op, Box::new(r));
        }
        Ok((e, d))
    }
    fn product(&mut self) -> Result<Node, String> {
        let (mut e, mut d) = self.unary()?;
        while let Some(op @ ("*" | "/")) = self.peek() {
            let op = op.chars().next().unwrap();
            self.pos += 1;
            let (r, rd) = self.unary()?;
            d = level(d.max(rd) + 1)?;
            e = Expr::Bin(Box::new(e), op, Box::new(r));
        }
        Ok((e, d))
    }
    /// Parses what `inner` reads one level further in: refused before recursing past
    /// the limit, and the result's levels counted with this one.
    fn nested(&mut self, inner: fn(&mut Parser) -> Result<Node, String>) -> Result<Node, String> {
        self.open += 1;
        if self.open > Expr::MAX_DEPTH {
            return Err(too_deep());
        }
        let (e, d) = inner(self)?;
        self.open -= 1;
        Ok((e, level(d + 1)?))
    }
    fn unary(&mut self) -> Result<Node, String> {
        match self.peek() {
            Some("-") => {
                self.pos += 1;
                let (e, d) = self.nested(Parser::unary)?;
                Ok((Expr::Neg(Box::new(e)), d))
            }
            Some("(") => {
                self.pos += 1;
                self.nested(Parser::group)
            }
            Some(t) if "+*/)".contains(t) => Err(format!("unexpected `{t}`")),
            Some(t) => {
                let t = t.to_string();
                self.pos += 1;
                if t.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
                    t.parse::<f64>()
                        .map(|x| (Expr::Num(x), 0))
                        .map_err(|_| format!("`{t}` is not a number"))
                } else {
                    Ok((Expr::Col(t), 0))
                }
            }
            None => Err("expression ends too early".into()),
        }
    }
    /// The inside of `( … )`, after the `(`, through the `)`.
    fn group(&mut self) -> Result<Node, String> {
        let e = self.sum()?;
        if self.peek() != Some(")") {
            return Err("missing `)`".into());
        }
        self.pos += 1;
        Ok(e)
    }
}
