//! Parquet output of `mfh predict --data` (feature `parquet`): `row` INT64, the kept
//! columns as optional UTF-8 strings, `cell` UTF-8, a FLOAT per behaviour; one row group
//! per chunk of scored rows.

use anyhow::{Context, Result};
use parquet::basic::{ConvertedType, Repetition, Type as Physical};
use parquet::data_type::{ByteArray, ByteArrayType, FloatType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;
use std::path::Path;
use std::sync::Arc;

pub(crate) struct ParquetOut {
    w: SerializedFileWriter<std::fs::File>,
    nb: usize,
}

impl ParquetOut {
    pub fn create(path: &Path, header: &[String], n_keep: usize, nb: usize) -> Result<ParquetOut> {
        let mut fields = Vec::new();
        for (i, name) in header.iter().enumerate() {
            let t = if i == 0 {
                Type::primitive_type_builder(name, Physical::INT64)
                    .with_repetition(Repetition::REQUIRED)
                    .build()
            } else if i <= n_keep + 1 {
                Type::primitive_type_builder(name, Physical::BYTE_ARRAY)
                    .with_converted_type(ConvertedType::UTF8)
                    .with_repetition(if i <= n_keep {
                        Repetition::OPTIONAL
                    } else {
                        Repetition::REQUIRED
                    })
                    .build()
            } else {
                Type::primitive_type_builder(name, Physical::FLOAT)
                    .with_repetition(Repetition::REQUIRED)
                    .build()
            };
            fields.push(Arc::new(t.with_context(|| format!("column `{name}`"))?));
        }
        let schema = Type::group_type_builder("predictions")
            .with_fields(fields)
            .build()?;
        let f = std::fs::File::create(path)
            .with_context(|| format!("{}: cannot create", path.display()))?;
        let w = SerializedFileWriter::new(
            f,
            Arc::new(schema),
            Arc::new(WriterProperties::builder().build()),
        )?;
        Ok(ParquetOut { w, nb })
    }

    /// One row group: rows from `first_row` on, the kept cells per column (None:
    /// missing), each row's cell name, the scores (rows × behaviours).
    pub fn write(
        &mut self,
        first_row: u64,
        keep: &[Vec<Option<&[u8]>>],
        cells: &[&str],
        preds: &[f32],
    ) -> Result<()> {
        let n = cells.len();
        let mut rg = self.w.next_row_group()?;
        let mut i = 0usize;
        while let Some(mut col) = rg.next_column()? {
            if i == 0 {
                let rows: Vec<i64> = (0..n as u64).map(|r| (first_row + r) as i64).collect();
                col.typed::<Int64Type>().write_batch(&rows, None, None)?;
            } else if i <= keep.len() {
                let k = &keep[i - 1];
                let defs: Vec<i16> = k.iter().map(|v| v.is_some() as i16).collect();
                let vals: Vec<ByteArray> = k
                    .iter()
                    .flatten()
                    .map(|v| ByteArray::from(v.to_vec()))
                    .collect();
                col.typed::<ByteArrayType>()
                    .write_batch(&vals, Some(&defs), None)?;
            } else if i == keep.len() + 1 {
                let vals: Vec<ByteArray> = cells.iter().map(|s| ByteArray::from(*s)).collect();
                col.typed::<ByteArrayType>()
                    .write_batch(&vals, None, None)?;
            } else {
                let b = i - keep.len() - 2;
                let vals: Vec<f32> = (0..n).map(|r| preds[r * self.nb + b]).collect();
                col.typed::<FloatType>().write_batch(&vals, None, None)?;
            }
            col.close()?;
            i += 1;
        }
        rg.close()?;
        Ok(())
    }

    pub fn finish(self) -> Result<()> {
        let f = self.w.into_inner()?;
        f.sync_all()?;
        Ok(())
    }
}
