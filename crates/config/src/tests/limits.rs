//! The stated limits: a task grid of at most `MAX_TASKS` tasks, an expression at most
//! `Expr::MAX_DEPTH` levels deep. Past them a config is refused naming the key, instead
//! of overflowing a count or the stack.

use super::{err_of, parse, GOOD};
use crate::{Expr, MAX_TASKS};

/// GOOD (2 behaviours × 2 facets of 2 values: 8 tasks) with `n` more two-valued facets.
fn with_facets(n: usize) -> String {
    let mut text = GOOD.to_string();
    for i in 0..n {
        text += &format!("\n[[facets]]\nname = \"f{i}\"\ncolumn = \"c{i}\"\nthresholds = [0]\nnames = [\"lo\", \"hi\"]\n");
    }
    text
}

#[test]
fn a_grid_of_max_tasks_is_accepted() {
    assert_eq!(MAX_TASKS, 1 << 16);
    let c = parse(&with_facets(13)).unwrap();
    assert_eq!(c.grid().n_tasks(), MAX_TASKS);
}

#[test]
fn a_grid_beyond_max_tasks_is_refused_naming_the_facet() {
    let e = err_of(&with_facets(14));
    assert!(e.contains("key `facets[15]`"), "{e}");
    assert!(e.contains("more than 65536 tasks"), "{e}");
}

#[test]
fn a_grid_whose_cell_count_overflows_is_refused_not_a_panic() {
    // 2^70 cells: more than usize (and the u32 cell ids of a batch) can count.
    let e = err_of(&with_facets(70));
    assert!(e.contains("key `facets[15]`"), "{e}");
}

#[test]
fn too_many_behaviours_are_refused_naming_behaviours() {
    let mut text = GOOD.replace(
        "[[facets]]\nname = \"user\"\ncolumn = \"user.register_days\"\nthresholds = [365]\nnames = [\"new\", \"old\"]\n",
        "",
    );
    text = text.replace(
        "[[facets]]\nname = \"item\"\ncolumn = \"prior_impressions\"\nthresholds = [9]\nnames = [\"tail\", \"head\"]\n",
        "",
    );
    for i in 0..MAX_TASKS {
        text += &format!("[[behaviours]]\ntype = \"binary\"\nname = \"b{i}\"\ncolumn = \"c\"\n");
    }
    // 2 + 65536 behaviours, one cell.
    let e = err_of(&text);
    assert!(e.contains("key `behaviours`") && e.contains("65536"), "{e}");
}

fn nested(open: &str, depth: usize, close: &str) -> String {
    format!("{}a{}", open.repeat(depth), close.repeat(depth))
}

#[test]
fn expressions_nest_up_to_max_depth() {
    assert_eq!(Expr::MAX_DEPTH, 64);
    let d = Expr::MAX_DEPTH;
    for ok in [
        nested("(", d, ")"),
        nested("-", d, ""),
        vec!["a"; d + 1].join(" + "),
        format!("-({})", nested("(", d - 2, ")")),
    ] {
        assert!(Expr::parse(&ok).is_ok(), "{ok}");
    }
    for deep in [
        nested("(", d + 1, ")"),
        nested("-", d + 1, ""),
        vec!["a"; d + 2].join(" * "),
        format!("-({})", nested("(", d - 1, ")")),
    ] {
        let e = Expr::parse(&deep).unwrap_err();
        assert!(e.contains("nested deeper than 64 levels"), "{deep}: {e}");
    }
}

#[test]
fn a_deeply_nested_expression_is_a_config_error_not_a_stack_overflow() {
    for deep in [
        nested("(", 100_000, ")"),
        nested("-", 100_000, ""),
        nested("(-", 100_000, ")"),
        vec!["a"; 100_000].join(" + "),
        nested("(", Expr::MAX_DEPTH + 1, ")"),
    ] {
        let text = GOOD.replace("play_time_ms / duration_ms", &deep);
        let e = err_of(&text);
        assert!(
            e.contains("key `behaviours[1].expr`") && e.contains("nested deeper than 64 levels"),
            "{}",
            &e[..e.len().min(300)]
        );
    }
}
