//! The one table writer: a [`Table`]'s columns and rows render both as markdown and as CSV,
//! so the two outputs of a table cannot drift apart.
//!
//! A column has one markdown head and any number of CSV columns (a measure shown as
//! `mean ± sd` is one markdown column and the two CSV columns `<key>_mean,<key>_std`); a
//! [`Cell`] has its markdown text and one CSV value per CSV column of its column. CSV values
//! are written as given (no quoting: the tables' texts have no commas).

/// One cell: its markdown text and its CSV values.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    md: String,
    csv: Vec<String>,
}

impl Cell {
    /// The same text in both outputs (one CSV column).
    pub fn text(s: impl Into<String>) -> Cell {
        let s = s.into();
        Cell {
            csv: vec![s.clone()],
            md: s,
        }
    }

    /// Markdown text `md` and the CSV values `csv`.
    pub fn new(md: impl Into<String>, csv: impl IntoIterator<Item = String>) -> Cell {
        Cell {
            md: md.into(),
            csv: csv.into_iter().collect(),
        }
    }
}

/// A table: columns (markdown head, CSV heads) and rows of cells, one per column.
#[derive(Debug, Clone, Default)]
pub struct Table {
    heads: Vec<(String, Vec<String>)>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    /// An empty table.
    pub fn new() -> Table {
        Table::default()
    }

    /// Adds a column: its markdown head and its CSV heads.
    pub fn column<S: Into<String>>(
        &mut self,
        md: impl Into<String>,
        csv: impl IntoIterator<Item = S>,
    ) -> &mut Table {
        self.heads
            .push((md.into(), csv.into_iter().map(Into::into).collect()));
        self
    }

    /// Adds a column headed `head` in both outputs.
    pub fn same(&mut self, head: &str) -> &mut Table {
        self.column(head, [head])
    }

    /// Adds a row; it has a cell per column, each with a CSV value per CSV head of its column.
    pub fn row(&mut self, cells: Vec<Cell>) {
        assert_eq!(cells.len(), self.heads.len(), "a cell per column");
        for (cell, (md, csv)) in cells.iter().zip(&self.heads) {
            assert_eq!(cell.csv.len(), csv.len(), "CSV values of column {md:?}");
        }
        self.rows.push(cells);
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The markdown: `| head | … |`, the separator, a line per row.
    pub fn markdown(&self) -> String {
        let line = |cells: Vec<&str>| {
            let mut s = String::from("|");
            for c in cells {
                s.push(' ');
                s.push_str(c);
                s.push_str(" |");
            }
            s.push('\n');
            s
        };
        let mut md = line(self.heads.iter().map(|(h, _)| h.as_str()).collect());
        md.push('|');
        md.push_str(&"---|".repeat(self.heads.len()));
        md.push('\n');
        for row in &self.rows {
            md.push_str(&line(row.iter().map(|c| c.md.as_str()).collect()));
        }
        md
    }

    /// The CSV: a line of heads, a line per row.
    pub fn csv(&self) -> String {
        let line = |fields: Vec<&str>| fields.join(",") + "\n";
        let mut csv = line(
            self.heads
                .iter()
                .flat_map(|(_, csv)| csv.iter().map(String::as_str))
                .collect(),
        );
        for row in &self.rows {
            csv.push_str(&line(
                row.iter()
                    .flat_map(|c| c.csv.iter().map(String::as_str))
                    .collect(),
            ));
        }
        csv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_table_renders_as_markdown_and_csv() {
        let mut t = Table::new();
        t.same("model").column("acc. (%)", ["acc_mean", "acc_std"]);
        t.row(vec![
            Cell::text("resnet18"),
            Cell::new("82.00 ± 2.00", ["82.000000".into(), "2.000000".into()]),
        ]);
        assert!(!t.is_empty());
        assert_eq!(
            t.markdown(),
            "| model | acc. (%) |\n|---|---|\n| resnet18 | 82.00 ± 2.00 |\n"
        );
        assert_eq!(
            t.csv(),
            "model,acc_mean,acc_std\nresnet18,82.000000,2.000000\n"
        );
    }

    #[test]
    #[should_panic(expected = "CSV values")]
    fn a_cell_has_a_value_per_csv_column() {
        let mut t = Table::new();
        t.column("acc. (%)", ["acc_mean", "acc_std"]);
        t.row(vec![Cell::text("82.00")]);
    }
}
