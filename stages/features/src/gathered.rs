//! The features table's rows and the scalers, gathered a series at a time.

use std::sync::Arc;

use applearner_pipeline::BoxError;
use applearner_pipeline::arrow::array::{
    ArrayRef, BooleanBuilder, Float32Builder, Float64Array, RecordBatch, StringArray, TimestampMillisecondBuilder,
    UInt32Builder,
};
use applearner_pipeline::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use applearner_pipeline::columns::as_dictionaries;
use serde::Serialize;

use applearner_contracts::tables::{features as feature_table, scalers, windows as window_table};

use super::index::Rows;
use super::series::Series;
use super::*;

/// The features table's rows being gathered, and the scalers fitted so far.
pub(super) struct Gathered {
    /// Per row, its series' index in `series`.
    pub(super) keys: Vec<u32>,
    pub(super) segments: UInt32Builder,
    pub(super) times: TimestampMillisecondBuilder,
    pub(super) flags: Vec<BooleanBuilder>,
    pub(super) features: Vec<Float32Builder>,
    pub(super) schema: SchemaRef,
    pub(super) scalers: Vec<(String, String, f64, f64)>,
    pub(super) columns: Vec<String>,
    /// The series gathered (key and rows) and each row's part, for the window index.
    pub(super) series: Vec<(String, usize)>,
    pub(super) parts: Vec<u8>,
}

impl Gathered {
    pub(super) fn new(layout: &Layout) -> Gathered {
        Gathered {
            keys: Vec::new(),
            segments: UInt32Builder::new(),
            times: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            flags: layout.flags.iter().map(|_| BooleanBuilder::new()).collect(),
            features: layout.names.iter().map(|_| Float32Builder::new()).collect(),
            // A series' key and a part's name once per batch, not copied onto every row.
            schema: as_dictionaries(&features_schema(layout), &[feature_table::KEY, feature_table::SPLIT]),
            scalers: Vec::new(),
            columns: layout.columns.clone(),
            series: Vec::new(),
            parts: Vec::new(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The rows of a series whose features [`derive::derive`] appended.
    pub(super) fn push(&mut self, key: &str, one: &Series, parts: &[u8], scalers: &[(f64, f64)]) {
        self.keys.resize(self.keys.len() + parts.len(), self.series.len() as u32);
        self.series.push((key.to_string(), parts.len()));
        self.parts.extend_from_slice(parts);
        self.segments.append_slice(&one.points.segments);
        self.times.append_slice(&one.points.times);
        for (b, f) in self.flags.iter_mut().zip(&one.flags) {
            b.append_slice(f);
        }
        for (c, (center, scale)) in self.columns.iter().zip(scalers) {
            self.scalers.push((key.to_string(), c.clone(), *center, *scale));
        }
    }

    /// What the window index reads of the rows gathered.
    pub(super) fn rows(&self) -> Rows<'_> {
        Rows {
            series: &self.series,
            segments: self.segments.values_slice(),
            parts: &self.parts,
            times: self.times.values_slice(),
        }
    }

    /// The rows gathered as a batch; the builders start again empty.
    pub(super) fn finish(&mut self) -> Result<RecordBatch, BoxError> {
        let keys = StringArray::from_iter_values(self.series.drain(..).map(|(key, _)| key));
        let mut columns: Vec<ArrayRef> = vec![
            strings(std::mem::take(&mut self.keys), keys),
            Arc::new(self.segments.finish()),
            Arc::new(self.times.finish()),
            part_names(&self.parts),
        ];
        self.parts.clear();
        columns.extend(self.flags.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        columns.extend(self.features.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    /// The scalers of every series built, in key and column order.
    pub(super) fn scalers(&mut self, params: &FeaturesParams) -> Result<RecordBatch, BoxError> {
        let mut rows = std::mem::take(&mut self.scalers);
        rows.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let n = rows.len();
        let text = |v: String| Arc::new(StringArray::from(vec![v; n])) as ArrayRef;
        Ok(RecordBatch::try_new(
            scalers_schema(),
            vec![
                Arc::new(rows.iter().map(|r| Some(r.0.as_str())).collect::<StringArray>()),
                Arc::new(rows.iter().map(|r| Some(r.1.as_str())).collect::<StringArray>()),
                text(serde_plain(&params.transform)),
                text(serde_plain(&params.scale)),
                Arc::new(rows.iter().map(|r| r.2).collect::<Float64Array>()),
                Arc::new(rows.iter().map(|r| r.3).collect::<Float64Array>()),
            ],
        )?)
    }
}

/// Per series and value column: the transform and scaling, and the centre and scale fitted
/// on its training part (value = centre + scale × feature, before the transform's inverse).
pub fn scalers_schema() -> SchemaRef {
    let text = |name: &str| Field::new(name, DataType::Utf8, false);
    Arc::new(Schema::new(vec![
        text(scalers::KEY),
        text(scalers::COLUMN),
        text(scalers::TRANSFORM),
        text(scalers::METHOD),
        Field::new(scalers::CENTER, DataType::Float64, false),
        Field::new(scalers::SCALE, DataType::Float64, false),
    ]))
}

/// Lowercase name of a unit enum variant as users write it.
fn serde_plain<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

pub fn features_schema(layout: &Layout) -> SchemaRef {
    let mut fields = vec![
        Field::new(feature_table::KEY, DataType::Utf8, false),
        Field::new(feature_table::SEGMENT, DataType::UInt32, false),
        Field::new(feature_table::TIMESTAMP, DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
        Field::new(feature_table::SPLIT, DataType::Utf8, false),
    ];
    fields.extend(layout.flags.iter().map(|f| Field::new(f, DataType::Boolean, false)));
    fields.extend(layout.names.iter().map(|n| Field::new(n, DataType::Float32, true)));
    // Written only where there are covariates: a table without them is as it always was.
    let (columns, features) = &layout.covariates;
    let metadata = match columns.is_empty() {
        true => Default::default(),
        false => [
            (feature_table::COVARIATES_KEY.to_string(), columns.join(",")),
            (feature_table::COVARIATE_FEATURES_KEY.to_string(), features.join(",")),
        ]
        .into(),
    };
    Arc::new(Schema::new_with_metadata(fields, metadata))
}

pub fn windows_schema(spec: &WindowSpec, warmup: u32) -> SchemaRef {
    let metadata = [
        (window_table::LOOKBACK_KEY.to_string(), spec.lookback.to_string()),
        (window_table::HORIZON_KEY.to_string(), spec.horizon.to_string()),
        (window_table::STRIDE_KEY.to_string(), spec.stride.to_string()),
        (window_table::WARMUP_KEY.to_string(), warmup.to_string()),
    ]
    .into_iter()
    .collect();
    Arc::new(Schema::new_with_metadata(
        vec![
            Field::new(window_table::SPLIT, DataType::Utf8, false),
            Field::new(window_table::KEY, DataType::Utf8, false),
            Field::new(window_table::SEGMENT, DataType::UInt32, false),
            Field::new(window_table::START, DataType::UInt64, false),
            Field::new(window_table::ORIGIN, DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
            Field::new(window_table::WINDOWS, DataType::UInt32, false),
        ],
        metadata,
    ))
}
