//! Plain-text tables laid out like kubectl's: Go's `tabwriter` with kubectl's settings
//! (cells padded by three spaces to at least six columns, the last column not padded).

/// A table of string cells with a header row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Column headers, upper case by convention (`NAME`, `READY`, ...).
    pub headers: Vec<String>,
    /// One row per object; each has as many cells as there are headers.
    pub rows: Vec<Vec<String>>,
}

/// Spaces between columns, as kubectl prints them.
const PADDING: usize = 3;

/// kubectl's `tabwriterMinWidth`: a column, padding included, is at least this wide.
const MIN_WIDTH: usize = 6;

impl Table {
    /// A table with these headers and no rows yet.
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a column in front of every row (the `NAMESPACE` column of `-A`).
    pub fn prepend_column(&mut self, header: &str, cells: Vec<String>) {
        self.headers.insert(0, header.to_owned());
        for (row, cell) in self.rows.iter_mut().zip(cells) {
            row.insert(0, cell);
        }
    }

    /// Renders the table: every column but the last padded to its widest cell plus three
    /// spaces (at least six), each line ending in a newline and carrying no trailing spaces.
    pub fn render(&self) -> String {
        self.render_lines(std::iter::once(&self.headers).chain(&self.rows))
    }

    /// Renders the rows only (`--no-headers`): widths come from the rows alone.
    pub fn render_without_headers(&self) -> String {
        self.render_lines(self.rows.iter())
    }

    fn render_lines<'a>(&self, lines: impl Iterator<Item = &'a Vec<String>> + Clone) -> String {
        let widths = self.widths(lines.clone());
        let mut out = String::new();
        for row in lines {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 < row.len() {
                    let width = widths.get(i).copied().unwrap_or(0);
                    let width = (width + PADDING).max(MIN_WIDTH);
                    line.push_str(&format!("{cell:<width$}"));
                } else {
                    line.push_str(cell);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    fn widths<'a>(&self, lines: impl Iterator<Item = &'a Vec<String>>) -> Vec<usize> {
        let mut widths = vec![0; self.headers.len()];
        for row in lines {
            for (i, cell) in row.iter().enumerate() {
                if let Some(width) = widths.get_mut(i) {
                    *width = (*width).max(cell.chars().count());
                }
            }
        }
        widths
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_columns_to_the_widest_cell_plus_three_spaces() {
        let mut table = Table::new(&["NAME", "STATUS", "AGE"]);
        table
            .rows
            .push(vec!["hello".into(), "Running".into(), "5s".into()]);
        table
            .rows
            .push(vec!["a".into(), "Completed".into(), "10m".into()]);
        assert_eq!(
            table.render(),
            "NAME    STATUS      AGE\nhello   Running     5s\na       Completed   10m\n"
        );
    }

    #[test]
    fn narrow_columns_are_six_wide_like_kubectls_tabwriter() {
        let mut table = Table::new(&["A", "IP", "NODE"]);
        table
            .rows
            .push(vec!["x".into(), "<none>".into(), "n".into()]);
        assert_eq!(table.render(), "A     IP       NODE\nx     <none>   n\n");
        assert_eq!(table.render_without_headers(), "x     <none>   n\n");
    }

    #[test]
    fn without_headers_the_widths_come_from_the_rows() {
        let mut table = Table::new(&["NAME", "STATUS"]);
        table.rows.push(vec!["a-long-name".into(), "Ready".into()]);
        table.rows.push(vec!["b".into(), "NotReady".into()]);
        assert_eq!(
            table.render_without_headers(),
            "a-long-name   Ready\nb             NotReady\n"
        );
    }

    #[test]
    fn prepending_a_column_shifts_every_row() {
        let mut table = Table::new(&["NAME"]);
        table.rows.push(vec!["p".into()]);
        table.prepend_column("NAMESPACE", vec!["default".into()]);
        assert_eq!(table.render(), "NAMESPACE   NAME\ndefault     p\n");
    }
}
