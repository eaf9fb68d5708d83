//! CSV in and out (README, "Export", "Import"): the export's response, and
//! the import's body read and checked for its shape — RFC 4180 quoting,
//! UTF-8, the header's column names, field counts, the limits — before the
//! database sees a row. What the values may be is the database's business.

use axum::{
    body::{Body, Bytes},
    extract::{FromRequest, Request},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};

use crate::{db::copy::Export, http::problem::Problem};

/// An import's body may be this large (413 `body_too_large` beyond, without
/// reading the rest).
pub const IMPORT_BODY_LIMIT: usize = 10 * 1024 * 1024;
/// And have this many data rows (400 `csv_too_many_rows` beyond).
pub const IMPORT_MAX_ROWS: usize = 50_000;
/// An import's request time limit, when `REQUEST_TIMEOUT_MS` is shorter:
/// 50,000 rows take seconds (each written with every CHECK, key, rule and
/// search word), more on a loaded machine. The statements' own
/// `statement_timeout` is the same (`db::copy::IMPORT_TIMEOUT`).
pub const IMPORT_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// A streamed CSV file: `text/csv; charset=utf-8`, as an attachment.
pub struct CsvFile {
    pub filename: &'static str,
    pub export: Export,
}

impl IntoResponse for CsvFile {
    fn into_response(self) -> Response {
        let disposition = format!("attachment; filename=\"{}\"", self.filename);
        (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/csv; charset=utf-8"),
                ),
                (
                    header::CONTENT_DISPOSITION,
                    HeaderValue::from_str(&disposition).expect("a plain file name"),
                ),
            ],
            Body::from_stream(self.export),
        )
            .into_response()
    }
}

/// The body of an import: `Content-Type: text/csv`, with no charset or
/// `charset=utf-8` (and optionally RFC 4180's `header=present`); anything
/// else is 400 `unsupported_content_type`, as for JSON bodies.
pub struct CsvBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for CsvBody {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let ok = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_csv_utf8);
        if !ok {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "unsupported_content_type",
                "the body must be CSV with Content-Type: text/csv (charset utf-8, or none)",
            ));
        }
        // Announced too large: refused before reading any of it.
        let announced = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|n| n > IMPORT_BODY_LIMIT as u64) {
            return Err(too_large());
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "body_unreadable",
                    "the request body could not be read",
                )
            }
        })?;
        Ok(CsvBody(bytes))
    }
}

fn too_large() -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("an import may be at most {IMPORT_BODY_LIMIT} bytes (10 MiB)"),
    )
}

fn is_csv_utf8(value: &str) -> bool {
    let mut parts = value.split(';');
    let mime = parts.next().unwrap_or_default().trim();
    mime.eq_ignore_ascii_case("text/csv")
        && parts.all(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let (k, v) = (k.trim(), v.trim().trim_matches('"'));
            (k.eq_ignore_ascii_case("charset") && v.eq_ignore_ascii_case("utf-8"))
                || (k.eq_ignore_ascii_case("header") && v.eq_ignore_ascii_case("present"))
        })
}

/// A file's structure problem: 400 with its code and where it is.
fn bad(code: &str, field: String, detail: String) -> Box<Problem> {
    Box::new(Problem::new(StatusCode::BAD_REQUEST, code, detail.clone()).with_field(field, detail))
}

/// A strict RFC 4180 reader: fields separated by commas, records by CRLF (a
/// lone LF is accepted too), a field quoted when it starts with `"`, a `"`
/// in a quoted field written `""`.
struct Reader<'a> {
    s: &'a [u8],
    pos: usize,
    /// The line `pos` is on (1-based).
    line: usize,
}

impl<'a> Reader<'a> {
    /// The next record's fields into `out` (an empty field is None); false
    /// at the end of the file.
    fn record(&mut self, out: &mut Vec<Option<String>>) -> Result<bool, Box<Problem>> {
        out.clear();
        if self.pos >= self.s.len() {
            return Ok(false);
        }
        loop {
            let field = self.field()?;
            out.push(field);
            match self.s.get(self.pos) {
                None => return Ok(true),
                Some(b',') => self.pos += 1,
                Some(b'\n') => {
                    self.pos += 1;
                    self.line += 1;
                    return Ok(true);
                }
                Some(b'\r') if self.s.get(self.pos + 1) == Some(&b'\n') => {
                    self.pos += 2;
                    self.line += 1;
                    return Ok(true);
                }
                Some(_) => unreachable!("a field ends at a comma, a line end or the end"),
            }
        }
    }

    fn field(&mut self) -> Result<Option<String>, Box<Problem>> {
        let line = self.line;
        if self.s.get(self.pos) == Some(&b'"') {
            self.pos += 1;
            let mut value = Vec::new();
            loop {
                match self.s.get(self.pos) {
                    None => {
                        return Err(bad(
                            "csv_bad_quoting",
                            format!("line {line}"),
                            format!("the quoted field that starts on line {line} is never closed"),
                        ))
                    }
                    Some(b'"') if self.s.get(self.pos + 1) == Some(&b'"') => {
                        value.push(b'"');
                        self.pos += 2;
                    }
                    Some(b'"') => {
                        self.pos += 1;
                        break;
                    }
                    Some(&b) => {
                        if b == b'\n' {
                            self.line += 1;
                        }
                        value.push(b);
                        self.pos += 1;
                    }
                }
            }
            match self.s.get(self.pos) {
                None | Some(b',') | Some(b'\n') => {}
                Some(b'\r') if self.s.get(self.pos + 1) == Some(&b'\n') => {}
                Some(_) => {
                    return Err(bad(
                        "csv_bad_quoting",
                        format!("line {}", self.line),
                        format!(
                            "line {}: a quoted field must end with its closing quote (write a quote inside it as \"\")",
                            self.line
                        ),
                    ))
                }
            }
            // The input is UTF-8 and quotes are ASCII: still UTF-8.
            let value = String::from_utf8(value).expect("UTF-8");
            return Ok((!value.is_empty()).then_some(value));
        }
        let start = self.pos;
        loop {
            match self.s.get(self.pos) {
                None | Some(b',') | Some(b'\n') => break,
                Some(b'\r') if self.s.get(self.pos + 1) == Some(&b'\n') => break,
                Some(b'\r') => {
                    return Err(bad(
                        "csv_bad_quoting",
                        format!("line {line}"),
                        format!("line {line}: a carriage return that does not end a line must be in a quoted field"),
                    ))
                }
                Some(b'"') => {
                    return Err(bad(
                        "csv_bad_quoting",
                        format!("line {line}"),
                        format!("line {line}: a quote inside a field that does not start with one (quote the field and write the quote as \"\")"),
                    ))
                }
                Some(_) => self.pos += 1,
            }
        }
        let value = std::str::from_utf8(&self.s[start..self.pos]).expect("UTF-8");
        Ok((!value.is_empty()).then(|| value.to_owned()))
    }
}

/// A checked import file: the columns it sets (in the staging table's
/// names) and its rows as the text of `COPY <staging> (row_no, <columns>)
/// FROM STDIN`, each with its row number as a spreadsheet shows it (the
/// header is row 1).
#[derive(Debug)]
pub struct ImportFile {
    pub columns: Vec<&'static str>,
    pub copy: Bytes,
    pub rows: usize,
}

/// Reads an import file. `columns` are the columns the import writes, in
/// the staging table's order; `ignored` the other columns an export has,
/// accepted and skipped so an export can be imported as it is. A leading
/// byte order mark (Excel writes one) is skipped; empty lines are skipped
/// (and counted, as a spreadsheet shows them).
pub fn read_import(
    body: &[u8],
    columns: &[&'static str],
    ignored: &[&str],
) -> Result<ImportFile, Box<Problem>> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    if let Err(e) = std::str::from_utf8(body) {
        let line = 1 + body[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        return Err(bad(
            "csv_invalid_encoding",
            format!("line {line}"),
            format!("line {line}: the file must be UTF-8"),
        ));
    }
    if let Some(at) = body.iter().position(|&b| b == 0) {
        let line = 1 + body[..at].iter().filter(|&&b| b == b'\n').count();
        return Err(bad(
            "csv_invalid_encoding",
            format!("line {line}"),
            format!("line {line}: the file has a NUL character"),
        ));
    }
    let mut reader = Reader {
        s: body,
        pos: 0,
        line: 1,
    };
    let mut record = Vec::new();
    if !reader.record(&mut record)? || record.iter().all(Option::is_none) {
        return Err(Box::new(Problem::new(
            StatusCode::BAD_REQUEST,
            "csv_empty",
            format!(
                "the file is empty: its first line must name its columns (any of {})",
                columns.join(", ")
            ),
        )));
    }
    // Where each field of a row goes: the staging column's index, or None.
    let mut slots: Vec<Option<usize>> = Vec::with_capacity(record.len());
    for (i, name) in record.iter().enumerate() {
        let name = name.as_deref().unwrap_or_default().trim();
        if record[..i]
            .iter()
            .any(|n| n.as_deref().unwrap_or_default().trim() == name)
        {
            return Err(bad(
                "csv_duplicate_column",
                format!("header: {name}"),
                format!("the header names the column {name} twice"),
            ));
        }
        match columns.iter().position(|c| *c == name) {
            Some(slot) => slots.push(Some(slot)),
            None if ignored.contains(&name) => slots.push(None),
            None => {
                return Err(bad(
                    "csv_unknown_column",
                    format!("header: {name}"),
                    format!(
                        "unknown column {name:?}: the columns are {} (and an export's {}, which are ignored)",
                        columns.join(", "),
                        ignored.join(", ")
                    ),
                ))
            }
        }
    }
    let present: Vec<&'static str> = columns
        .iter()
        .enumerate()
        .filter(|(i, _)| slots.contains(&Some(*i)))
        .map(|(_, c)| *c)
        .collect();
    let mut copy = Vec::with_capacity(body.len() + body.len() / 8);
    let mut row_no = 1;
    let mut rows = 0;
    // For each staging column, the field of the row that fills it.
    let mut fields: Vec<Option<usize>> = vec![None; columns.len()];
    for (field, slot) in slots.iter().enumerate() {
        if let Some(slot) = slot {
            fields[*slot] = Some(field);
        }
    }
    while reader.record(&mut record)? {
        row_no += 1;
        if record.len() == 1 && record[0].is_none() && slots.len() > 1 {
            continue; // an empty line
        }
        if record.len() != slots.len() {
            return Err(bad(
                "csv_field_count",
                format!("row {row_no}"),
                format!(
                    "row {row_no} has {} fields, the header {}",
                    record.len(),
                    slots.len()
                ),
            ));
        }
        rows += 1;
        if rows > IMPORT_MAX_ROWS {
            return Err(Box::new(Problem::new(
                StatusCode::BAD_REQUEST,
                "csv_too_many_rows",
                format!("an import may have at most {IMPORT_MAX_ROWS} rows"),
            )));
        }
        copy.extend_from_slice(row_no.to_string().as_bytes());
        for field in &fields {
            copy.push(b'\t');
            match field.and_then(|f| record[f].as_deref()) {
                None => copy.extend_from_slice(b"\\N"),
                Some(v) => copy_text(v, &mut copy),
            }
        }
        copy.push(b'\n');
    }
    if rows == 0 {
        return Err(Box::new(Problem::new(
            StatusCode::BAD_REQUEST,
            "csv_no_rows",
            "the file has a header but no rows",
        )));
    }
    Ok(ImportFile {
        columns: present,
        copy: Bytes::from(copy),
        rows,
    })
}

/// A value in COPY's text format: backslash, tab, LF and CR escaped.
fn copy_text(value: &str, out: &mut Vec<u8>) {
    for &b in value.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: [&str; 3] = ["name", "email", "phone"];

    fn read(body: &str) -> Result<ImportFile, Box<Problem>> {
        read_import(body.as_bytes(), &COLUMNS, &["id"])
    }

    fn code(body: &[u8]) -> String {
        read_import(body, &COLUMNS, &["id"]).unwrap_err().code
    }

    #[test]
    fn reads_quoting_line_ends_and_empty_fields() {
        let file =
            read("\u{feff}phone,id,name\r\n1,x,\"A, \"\"B\"\"\r\nC\"\r\n,,\\d\t\n\r\n").unwrap();
        assert_eq!(file.columns, ["name", "phone"]);
        assert_eq!(
            std::str::from_utf8(&file.copy).unwrap(),
            "2\tA, \"B\"\\r\\nC\t\\N\t1\n3\t\\\\d\\t\t\\N\t\\N\n"
        );
        assert_eq!(file.rows, 2);
    }

    #[test]
    fn refuses_what_is_not_a_clean_file() {
        assert_eq!(code(b""), "csv_empty");
        assert_eq!(code(b"name\r\n"), "csv_no_rows");
        assert_eq!(code(b"name,nom\r\nA,B\r\n"), "csv_unknown_column");
        assert_eq!(code(b"name,name\r\nA,B\r\n"), "csv_duplicate_column");
        assert_eq!(code(b"name,email\r\nA\r\n"), "csv_field_count");
        assert_eq!(code(b"name\r\n\"A\r\n"), "csv_bad_quoting");
        assert_eq!(code(b"name\r\nA\"B\r\n"), "csv_bad_quoting");
        assert_eq!(code(b"name\r\n\"A\"B\r\n"), "csv_bad_quoting");
        assert_eq!(code(b"name\r\nA\rB\r\n"), "csv_bad_quoting");
        assert_eq!(code(b"name\r\n\xff\r\n"), "csv_invalid_encoding");
        assert_eq!(code(b"name\r\nA\0\r\n"), "csv_invalid_encoding");
        let many = format!("name\n{}", "A\n".repeat(IMPORT_MAX_ROWS + 1));
        assert_eq!(code(many.as_bytes()), "csv_too_many_rows");
        assert_eq!(
            read(&format!("name\n{}", "A\n".repeat(IMPORT_MAX_ROWS)))
                .unwrap()
                .rows,
            IMPORT_MAX_ROWS
        );
    }

    #[test]
    fn row_numbers_are_the_spreadsheets() {
        let p = read("name,email\r\nA,\r\n\"B\nb\",\r\nC\r\n").unwrap_err();
        assert_eq!(p.errors[0].field, "row 4");
    }

    #[test]
    fn content_types() {
        assert!(is_csv_utf8("text/csv"));
        assert!(is_csv_utf8("Text/CSV; charset=UTF-8"));
        assert!(is_csv_utf8("text/csv; charset=\"utf-8\"; header=present"));
        assert!(!is_csv_utf8("text/csv; charset=latin1"));
        assert!(!is_csv_utf8("text/plain"));
        assert!(!is_csv_utf8("application/json"));
    }
}
