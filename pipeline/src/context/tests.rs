use super::*;
use arrow::array::Int64Array;
use arrow::datatypes::{DataType, Field, Schema};

fn context<'a>(store: &'a Store, progress: &'a MultiProgress, cancel: &'a AtomicBool) -> StageContext<'a> {
    StageContext {
        stage: "s",
        run_id: "r",
        seed: 0,
        store,
        inputs: BTreeMap::new(),
        outputs: vec![Output::table("a"), Output::table("b")],
        dir: "r/s".into(),
        scratch: "_cache/k.partial".into(),
        written: Mutex::new(BTreeMap::new()),
        progress,
        cancel,
        shard: None,
    }
}

#[test]
fn tables_round_trip_across_row_groups_and_repeat_bit_for_bit() {
    let store = Store::open("memory://").unwrap();
    let (progress, cancel) = (MultiProgress::new(), AtomicBool::new(false));
    let ctx = context(&store, &progress, &cancel);
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
    let rows = ROW_GROUP_ROWS + 12_345;
    let batch =
        RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from_iter_values(0..rows as i64))]).unwrap();
    ctx.write_table("a", schema.clone(), std::slice::from_ref(&batch)).unwrap();
    ctx.write_table("b", schema, std::slice::from_ref(&batch)).unwrap();
    let written = ctx.written.lock().unwrap();
    assert_eq!(written["a"].digest, written["b"].digest);
    assert_eq!(written["a"].rows, Some(rows as u64));
    let bytes = store.get(&written["a"].path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
    assert_eq!(reader.metadata().num_row_groups(), 2);
    let back: Vec<RecordBatch> = reader.build().unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(arrow::compute::concat_batches(&back[0].schema(), &back).unwrap(), batch);
}

#[test]
fn the_bytes_of_a_table_do_not_depend_on_how_its_rows_are_batched() {
    let store = Store::open("memory://").unwrap();
    let (progress, cancel) = (MultiProgress::new(), AtomicBool::new(false));
    let ctx = context(&store, &progress, &cancel);
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
    let rows = 3 * ENCODE_ROWS + 777;
    let batch =
        RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from_iter_values(0..rows as i64))]).unwrap();
    ctx.write_table("a", schema.clone(), std::slice::from_ref(&batch)).unwrap();
    let pieces: Vec<RecordBatch> =
        [0, 1, 1000, ENCODE_ROWS + 5, rows].windows(2).map(|w| batch.slice(w[0], w[1] - w[0])).collect();
    ctx.write_table("b", schema, &pieces).unwrap();
    let written = ctx.written.lock().unwrap();
    assert_eq!(written["a"].digest, written["b"].digest);
}

#[test]
fn a_small_table_encoded_here_has_the_bytes_the_column_threads_give() {
    use arrow::array::StringArray;
    let store = Store::open("memory://").unwrap();
    let (progress, cancel) = (MultiProgress::new(), AtomicBool::new(false));
    let ctx = context(&store, &progress, &cancel);
    let schema =
        Arc::new(Schema::new(vec![Field::new("key", DataType::Utf8, false), Field::new("x", DataType::Int64, false)]));
    let rows = 777;
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values((0..rows).map(|i| format!("k{}", i / 100)))),
            Arc::new(Int64Array::from_iter_values(0..rows as i64)),
        ],
    )
    .unwrap();
    ctx.write_table("a", schema.clone(), std::slice::from_ref(&batch)).unwrap();
    // The same rows handed to the column threads, as a larger table's are.
    let mut threaded = ctx.table_writer("b", schema).unwrap();
    threaded.encode(&batch).unwrap();
    threaded.rows = rows as u64;
    threaded.finish().unwrap();
    let written = ctx.written.lock().unwrap();
    assert_eq!(written["a"].digest, written["b"].digest);
    assert_eq!(written["a"].rows, Some(rows as u64));
}

#[test]
fn a_dictionary_of_strings_is_written_as_the_strings() {
    use arrow::array::{Array, DictionaryArray, StringArray, UInt32Array};
    let store = Store::open("memory://").unwrap();
    let (progress, cancel) = (MultiProgress::new(), AtomicBool::new(false));
    let ctx = context(&store, &progress, &cancel);
    let schema = Arc::new(Schema::new(vec![Field::new("key", DataType::Utf8, false)]));
    let rows = 2 * ENCODE_ROWS + 321;
    let name = |i: usize| format!("ns/pod-{}/c", i / 1000);
    let plain = StringArray::from_iter_values((0..rows).map(name));
    let plain = RecordBatch::try_new(schema.clone(), vec![Arc::new(plain)]).unwrap();
    ctx.write_table("a", schema.clone(), &[plain]).unwrap();
    // In pieces, each with its own dictionary, as a stage hands them over batch by batch.
    let pieces: Vec<RecordBatch> = [0, 5000, ENCODE_ROWS + 7, rows]
        .windows(2)
        .map(|w| {
            let values = StringArray::from_iter_values((w[0] / 1000..=(w[1] - 1) / 1000).map(|p| name(p * 1000)));
            let keys = UInt32Array::from_iter_values((w[0]..w[1]).map(|i| (i / 1000 - w[0] / 1000) as u32));
            let column = DictionaryArray::new(keys, Arc::new(values));
            let field = Field::new("key", column.data_type().clone(), false);
            RecordBatch::try_new(Arc::new(Schema::new(vec![field])), vec![Arc::new(column)]).unwrap()
        })
        .collect();
    ctx.write_table("b", schema, &pieces).unwrap();
    let written = ctx.written.lock().unwrap();
    assert_eq!(written["a"].digest, written["b"].digest);
}

/// Strings keep their dictionaries; integers, times and floats are written without one.
#[test]
fn columns_are_encoded_by_type() {
    use arrow::array::{Float32Array, StringArray, TimestampMillisecondArray};
    use parquet::basic::Encoding;
    let store = Store::open("memory://").unwrap();
    let (progress, cancel) = (MultiProgress::new(), AtomicBool::new(false));
    let ctx = context(&store, &progress, &cancel);
    let fields = vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("time", DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None), false),
        Field::new("row", DataType::Int64, false),
        Field::new("cpu", DataType::Float32, false),
    ];
    let schema = Arc::new(Schema::new(fields));
    let n = 1000;
    let columns: Vec<arrow::array::ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values((0..n).map(|i| format!("pod-{}", i / 100)))),
        Arc::new(TimestampMillisecondArray::from_iter_values((0..n).map(|i| i * 60_000))),
        Arc::new(Int64Array::from_iter_values(0..n)),
        Arc::new(Float32Array::from_iter_values((0..n).map(|i| (i as f32).sin()))),
    ];
    ctx.write_table("a", schema.clone(), &[RecordBatch::try_new(schema, columns).unwrap()]).unwrap();
    let bytes = store.get(&ctx.written.lock().unwrap()["a"].path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
    let group = reader.metadata().row_group(0);
    let encodings = |c: usize| group.column(c).encodings().collect::<Vec<_>>();
    assert!(encodings(0).contains(&Encoding::RLE_DICTIONARY), "{:?}", encodings(0));
    for (c, expected) in
        [(1, Encoding::DELTA_BINARY_PACKED), (2, Encoding::DELTA_BINARY_PACKED), (3, Encoding::BYTE_STREAM_SPLIT)]
    {
        assert!(encodings(c).contains(&expected), "column {c}: {:?}", encodings(c));
        assert!(!encodings(c).contains(&Encoding::RLE_DICTIONARY), "column {c}: {:?}", encodings(c));
    }
}

#[test]
fn shards_split_series_by_id_the_same_way_every_time() {
    let ids: Vec<u64> = (0..3000).collect();
    let counts = ids.iter().fold([0; 3], |mut c, id| {
        c[shard_of(&id.to_be_bytes(), 3) as usize] += 1;
        c
    });
    assert!(counts.iter().all(|&c| c > 900), "{counts:?}");
    assert_eq!(shard_of(b"series", 7), shard_of(b"series", 7));
    assert_eq!(shard_of(b"series", 1), 0);
}
