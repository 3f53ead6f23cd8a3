//! Percentages as the agency prints them, one rule for `status`, the digest
//! and the report: whole, rounded half up with integers (79 of 157 is 50),
//! written "50 %" with a no-break space as Danish typography has it (the
//! number and its sign never part at a line break), "–" when there is
//! nothing to divide by. A terminal gets plain spaces ([`for_terminal`]).

/// Whole percent of `count` in `base`, rounded half up with integers (79 of
/// 157 is 50, 2 of 79 is 3); `None` when `base` is 0.
pub fn whole(count: u64, base: u64) -> Option<u64> {
    if base == 0 {
        return None;
    }
    let (c, b) = (u128::from(count), u128::from(base));
    u64::try_from((200 * c + b) / (2 * b)).ok()
}

/// "50 %" (a no-break space), or "–" when there is no percentage.
pub fn format(p: Option<u64>) -> String {
    match p {
        Some(p) => format!("{p}\u{a0}%"),
        None => "–".to_string(),
    }
}

/// `count` of `base` as [`format()`] writes it.
pub fn of(count: u64, base: u64) -> String {
    format(whole(count, base))
}

/// Text for a terminal: no-break spaces become plain ones (a terminal does
/// not break lines for us, and grep looks for plain ones).
pub fn for_terminal(text: &str) -> String {
    text.replace('\u{a0}', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_percent_rounded_half_up_with_a_no_break_space() {
        assert_eq!(of(79, 157), "50\u{a0}%");
        assert_eq!(of(1, 8), "13\u{a0}%");
        assert_eq!(of(0, 0), "–");
        assert_eq!(for_terminal(&of(79, 157)), "50 %");
    }
}
