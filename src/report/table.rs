//! A minimal aligned text table (numbers right-aligned).

/// A table with a header row.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names.
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Table {
        Table {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Add a row (missing cells are blank).
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Render with two spaces between columns.
    pub fn render(&self) -> String {
        let cols = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.header.len()])
            .max()
            .unwrap_or(0);
        let cell = |r: &Vec<String>, i: usize| r.get(i).cloned().unwrap_or_default();
        let mut widths = vec![0usize; cols];
        for r in std::iter::once(&self.header).chain(&self.rows) {
            for (i, w) in widths.iter_mut().enumerate() {
                *w = (*w).max(cell(r, i).chars().count());
            }
        }
        let numeric = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_digit() || c == '.' || c == ',' || c == '%')
        };
        let mut out = String::new();
        for r in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, w) in widths.iter().enumerate() {
                let c = cell(r, i);
                let pad = w - c.chars().count();
                if i > 0 {
                    line.push_str("  ");
                }
                if numeric(&c) && !std::ptr::eq(r, &self.header) {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(&c);
                } else {
                    line.push_str(&c);
                    line.push_str(&" ".repeat(pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Format a duration for people: `47m`, `2h 10m`, `3.2s`.
pub fn human_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s < 10 && d.as_millis() > 0 && s < 1 {
        return format!("{}ms", d.as_millis());
    }
    if s < 60 {
        return format!("{:.1}s", d.as_secs_f64());
    }
    let (h, m) = (s / 3600, (s % 3600) / 60);
    match (h / 24, h % 24) {
        (0, 0) => format!("{m}m {}s", s % 60),
        (0, h) => format!("{h}h {m}m"),
        (d, h) => format!("{d}d {h}h {m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns_and_right_aligns_numbers() {
        let mut t = Table::new(["step", "done"]);
        t.row(["inspect", "200"]);
        t.row(["assign-oc-number", "7"]);
        let out = t.render();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "step              done");
        assert_eq!(lines[1], "inspect            200");
        assert_eq!(lines[2], "assign-oc-number     7");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(
            human_duration(std::time::Duration::from_secs(47 * 60)),
            "47m 0s"
        );
        assert_eq!(
            human_duration(std::time::Duration::from_secs(7800)),
            "2h 10m"
        );
        assert_eq!(
            human_duration(std::time::Duration::from_millis(250)),
            "250ms"
        );
    }
}
