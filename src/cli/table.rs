//! Column output as the docker CLI prints it (Go's tabwriter with minwidth 10, padding 3).

/// Collects rows of cells and prints them aligned.
#[derive(Default)]
pub struct TableWriter {
    rows: Vec<Vec<String>>,
}

impl TableWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn row<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, cells: I) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// The aligned lines (no trailing newline on each).
    pub fn lines(&self) -> Vec<String> {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0usize; cols];
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                if i + 1 < r.len() {
                    widths[i] = widths[i].max((c.chars().count() + 3).max(10));
                }
            }
        }
        self.rows
            .iter()
            .map(|r| {
                let mut line = String::new();
                for (i, c) in r.iter().enumerate() {
                    line.push_str(c);
                    if i + 1 < r.len() {
                        line.push_str(&" ".repeat(widths[i] - c.chars().count()));
                    }
                }
                line
            })
            .collect()
    }
}
