//! One text column of a parquet file, as the Hub stores text datasets.

use std::path::{Path, PathBuf};

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;

#[derive(Debug, thiserror::Error)]
pub enum ColumnError {
    #[error("cannot read parquet file `{path}`: {reason}")]
    Parquet { path: PathBuf, reason: String },
    #[error("`{path}` has no column `{column}`; its columns are {columns}. Set data.column to the one holding the text")]
    NoColumn {
        path: PathBuf,
        column: String,
        columns: String,
    },
    #[error(
        "column `{column}` of `{path}` holds {kind}, not text; set data.column to a text column"
    )]
    NotText {
        path: PathBuf,
        column: String,
        kind: String,
    },
    #[error("row {row} of `{path}` has no value in column `{column}`; the rows of a text column must all hold text")]
    Null {
        path: PathBuf,
        column: String,
        row: usize,
    },
}

/// Appends the values of `column` of a parquet file to `rows`, in row order.
pub fn read_column(path: &Path, column: &str, rows: &mut Vec<String>) -> Result<(), ColumnError> {
    let parquet_err = |e: parquet::errors::ParquetError| ColumnError::Parquet {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(|e| ColumnError::Parquet {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let reader = SerializedFileReader::new(file).map_err(parquet_err)?;
    let schema = reader.metadata().file_metadata().schema();
    let fields = schema.get_fields();
    let Some(field) = fields.iter().find(|f| f.name() == column) else {
        return Err(ColumnError::NoColumn {
            path: path.to_path_buf(),
            column: column.to_string(),
            columns: fields
                .iter()
                .map(|f| format!("`{}`", f.name()))
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    let not_text = |kind: String| ColumnError::NotText {
        path: path.to_path_buf(),
        column: column.to_string(),
        kind,
    };
    if !field.is_primitive() {
        return Err(not_text("a nested value (list or struct)".into()));
    }
    let physical = field.get_physical_type();
    if physical != parquet::basic::Type::BYTE_ARRAY {
        return Err(not_text(format!("{physical} values")));
    }
    // Only the text column is decoded.
    let projection = parquet::schema::types::Type::group_type_builder(schema.name())
        .with_fields(vec![field.clone()])
        .build()
        .map_err(parquet_err)?;
    for (i, row) in reader
        .get_row_iter(Some(projection))
        .map_err(parquet_err)?
        .enumerate()
    {
        let row = row.map_err(parquet_err)?;
        let Some((_, value)) = row.into_columns().into_iter().next() else {
            return Err(not_text("no value".into()));
        };
        rows.push(match value {
            Field::Str(s) => s,
            // A binary column without the string annotation: text if it is UTF-8.
            Field::Bytes(b) => String::from_utf8(b.data().to_vec())
                .map_err(|_| not_text("binary data that is not UTF-8".into()))?,
            Field::Null => {
                return Err(ColumnError::Null {
                    path: path.to_path_buf(),
                    column: column.to_string(),
                    row: i,
                })
            }
            other => return Err(not_text(format!("{other} (row {i})"))),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parquet file as the Hub stores a text dataset: one optional UTF-8 column, snappy.
    fn write_parquet(path: &Path, column: &str, rows: &[Option<&str>], rows_per_group: usize) {
        use parquet::data_type::{ByteArray, ByteArrayType};
        use parquet::file::properties::WriterProperties;
        use parquet::file::writer::SerializedFileWriter;
        let schema = parquet::schema::parser::parse_message_type(&format!(
            "message schema {{ optional binary {column} (UTF8); optional int64 id; }}"
        ))
        .unwrap();
        let props = WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build();
        let file = std::fs::File::create(path).unwrap();
        let mut writer =
            SerializedFileWriter::new(file, std::sync::Arc::new(schema), props.into()).unwrap();
        for chunk in rows.chunks(rows_per_group) {
            let mut group = writer.next_row_group().unwrap();
            let defs: Vec<i16> = chunk.iter().map(|r| i16::from(r.is_some())).collect();
            let mut text = group.next_column().unwrap().unwrap();
            let values: Vec<ByteArray> = chunk
                .iter()
                .flatten()
                .map(|r| ByteArray::from(*r))
                .collect();
            text.typed::<ByteArrayType>()
                .write_batch(&values, Some(&defs), None)
                .unwrap();
            text.close().unwrap();
            let mut id = group.next_column().unwrap().unwrap();
            let ids: Vec<i64> = (0..chunk.len() as i64).collect();
            id.typed::<parquet::data_type::Int64Type>()
                .write_batch(&ids, Some(&vec![1; chunk.len()]), None)
                .unwrap();
            id.close().unwrap();
            group.close().unwrap();
        }
        writer.close().unwrap();
    }

    #[test]
    fn parquet_rows_in_order_across_row_groups() {
        let dir = crate::scratch::ScratchDir::new("parquet");
        let path = dir.join("test-00000-of-00001.parquet");
        let rows = [
            "",
            " = Robert Boulter = \n",
            "",
            " Robert Boulter is an actor . \n",
            "é\n",
        ];
        let some: Vec<Option<&str>> = rows.iter().map(|r| Some(*r)).collect();
        write_parquet(&path, "text", &some, 2);
        let mut read = Vec::new();
        read_column(&path, "text", &mut read).unwrap();
        assert_eq!(read, rows);
        // Appends: a second file continues the rows.
        read_column(&path, "text", &mut read).unwrap();
        assert_eq!(read.len(), 10);

        let err = read_column(&path, "sentence", &mut read)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no column `sentence`") && err.contains("`text`, `id`"),
            "{err}"
        );
        let err = read_column(&path, "id", &mut read).unwrap_err().to_string();
        assert!(err.contains("INT64 values, not text"), "{err}");

        write_parquet(&path, "text", &[Some("a"), None], 8);
        let err = read_column(&path, "text", &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("row 1") && err.contains("no value"), "{err}");

        std::fs::write(&path, b"not parquet").unwrap();
        let err = read_column(&path, "text", &mut Vec::new()).unwrap_err();
        assert!(matches!(err, ColumnError::Parquet { .. }), "{err}");
    }
}
