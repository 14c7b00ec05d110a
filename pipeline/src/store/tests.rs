use super::*;

/// Read whole or a row group at a time by ranged reads, a table gives the same batches,
/// its schema's metadata kept; with columns named, only those.
#[test]
fn parquet_objects_read_whole_or_by_ranges_alike() {
    use arrow::array::{ArrayRef, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    let meta = [("lookback".to_string(), "3".to_string())].into_iter().collect();
    let fields = vec![Field::new("a", DataType::Int64, false), Field::new("b", DataType::Int64, false)];
    let schema = Arc::new(Schema::new(fields).with_metadata(meta));
    let column = |from: i64| Arc::new(Int64Array::from_iter_values(from..from + 5000)) as ArrayRef;
    let batch = RecordBatch::try_new(schema.clone(), vec![column(0), column(10_000)]).unwrap();
    let props = parquet::file::properties::WriterProperties::builder().set_max_row_group_row_count(Some(1000));
    let mut bytes = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut bytes, schema.clone(), Some(props.build())).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for store in [Store::open(dir.path().to_str().unwrap()).unwrap(), Store::open("memory://t").unwrap()] {
        let size = bytes.len() as u64;
        store.put("t.parquet", Bytes::from(bytes.clone())).unwrap();
        for columns in [None, Some(&["b"][..])] {
            let read = |ranged: bool| -> Vec<RecordBatch> {
                let batches = match ranged {
                    true => store.ranged_batches("t.parquet", size, columns, &[]),
                    false => store.parquet_batches("t.parquet", size, columns, &[]),
                };
                batches.unwrap().map(Result::unwrap).collect()
            };
            let (whole, ranged) = (read(false), read(true));
            // Batches may be cut differently (the ranged reader stops at row groups).
            let one = |b: &[RecordBatch]| arrow::compute::concat_batches(&b[0].schema(), b).unwrap();
            assert_eq!(one(&whole), one(&ranged));
            assert_eq!(one(&ranged).num_rows(), 5000);
            assert_eq!(ranged[0].num_columns(), if columns.is_some() { 1 } else { 2 });
            assert_eq!(ranged[0].schema().metadata().get("lookback").is_some(), columns.is_none());
        }
    }
}

/// String columns asked for as dictionaries come as dictionaries of the same strings,
/// read whole or by ranges; the others as they are.
#[test]
fn string_columns_read_as_dictionaries() {
    use arrow::array::{Array, AsArray, StringArray};
    use arrow::datatypes::{DataType, Field, Schema, UInt32Type};
    let fields = vec![Field::new("key", DataType::Utf8, false), Field::new("label", DataType::Utf8, false)];
    let schema = Arc::new(Schema::new(fields));
    let strings = StringArray::from_iter_values((0..3000).map(|i| format!("ns/pod-{}/c", i / 700)));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(strings.clone()), Arc::new(strings)]).unwrap();
    let mut bytes = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut bytes, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let store = Store::open("memory://t").unwrap();
    store.put("t.parquet", Bytes::from(bytes.clone())).unwrap();
    for ranged in [false, true] {
        let size = bytes.len() as u64;
        let batches = match ranged {
            true => store.ranged_batches("t.parquet", size, None, &["key"]),
            false => store.parquet_batches("t.parquet", size, None, &["key"]),
        };
        let read: Vec<RecordBatch> = batches.unwrap().map(Result::unwrap).collect();
        let key = arrow::compute::concat(&read.iter().map(|b| b.column(0).as_ref()).collect::<Vec<_>>()).unwrap();
        let dictionary = key.as_dictionary::<UInt32Type>();
        let decoded = arrow::compute::cast(dictionary, &DataType::Utf8).unwrap();
        assert_eq!(decoded.as_string::<i32>(), batch.column(0).as_string::<i32>());
        assert!(dictionary.values().len() <= 5, "each string once per dictionary");
        assert_eq!(read[0].column(1).data_type(), &DataType::Utf8);
    }
}

#[test]
fn local_store_round_trips_and_lists_below_its_root() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("runs").to_str().unwrap()).unwrap();
    store.put("a/b/x.json", Bytes::from_static(b"{}")).unwrap();
    store.put("a/y.json", Bytes::from_static(b"[]")).unwrap();
    assert_eq!(store.get("a/b/x.json").unwrap().as_ref(), b"{}");
    assert_eq!(store.list("a").unwrap(), vec!["a/b/x.json", "a/y.json"]);
    assert!(matches!(store.get("nope"), Err(PipelineError::NotFound { .. })));
    store.copy("a/y.json", "c/y.json").unwrap();
    assert_eq!(store.get("c/y.json").unwrap().as_ref(), b"[]");
    store.delete("c/y.json").unwrap();
    store.delete("c/y.json").unwrap();
    assert!(!store.exists("c/y.json").unwrap());
}

#[test]
fn only_the_first_create_only_put_wins() {
    let dir = tempfile::tempdir().unwrap();
    for store in [Store::open(dir.path().to_str().unwrap()).unwrap(), Store::open("memory://b").unwrap()] {
        assert!(store.put_new("r/lock", Bytes::from_static(b"a")).unwrap());
        assert!(!store.put_new("r/lock", Bytes::from_static(b"b")).unwrap());
        assert_eq!(store.get("r/lock").unwrap().as_ref(), b"a");
    }
}

#[test]
fn streamed_objects_appear_whole_or_not_at_all() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap()).unwrap();
    // Larger than one upload part, so it goes through a multipart upload.
    let data: Vec<u8> = (0..UPLOAD_PART * 2 + 123).map(|i| (i % 251) as u8).collect();
    let mut w = store.writer("big.bin").unwrap();
    for chunk in data.chunks(777_777) {
        w.write_all(chunk).unwrap();
        assert!(!store.exists("big.bin").unwrap(), "visible before it is complete");
    }
    let (hash, bytes) = w.finish().unwrap();
    assert_eq!(bytes, data.len() as u64);
    assert_eq!(hash, digest(&data));
    assert_eq!(store.get("big.bin").unwrap().as_ref(), &data[..]);

    let mut w = store.writer("dropped.bin").unwrap();
    w.write_all(&data).unwrap();
    drop(w);
    assert!(!store.exists("dropped.bin").unwrap());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, ["big.bin"], "an aborted upload leaves no staging file");
}

#[test]
fn prefixed_memory_store_keeps_paths_relative() {
    let store = Store::open("memory://bucket/some/prefix").unwrap();
    store.put("runs/r1/manifest.json", Bytes::from_static(b"1")).unwrap();
    assert_eq!(store.list("runs").unwrap(), vec!["runs/r1/manifest.json"]);
    assert_eq!(store.list_dirs("").unwrap(), vec!["runs"]);
    assert_eq!(store.list_dirs("runs").unwrap(), vec!["runs/r1"]);
    let (inner, prefix) = store.object_store();
    let full: ObjectPath = prefix.parts().chain(ObjectPath::from("runs/r1/manifest.json").parts()).collect();
    assert_eq!(full.as_ref(), "some/prefix/runs/r1/manifest.json");
    assert!(store.block_on(inner.head(&full)).is_ok());
}

#[test]
fn paths_cannot_leave_the_store_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = Store::open(root.to_str().unwrap()).unwrap();
    std::fs::write(dir.path().join("outside"), b"secret").unwrap();
    for path in ["../outside", "a/../../outside", "/outside", "./../outside"] {
        store.put(path, Bytes::from_static(b"x")).unwrap();
        assert!(matches!(store.get(path), Ok(b) if b.as_ref() == b"x"), "{path}");
    }
    assert_eq!(std::fs::read(dir.path().join("outside")).unwrap(), b"secret", "a write escaped");
    let mut names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["outside", "store"]);
    assert!(matches!(store.get("../../outside"), Err(PipelineError::NotFound { .. })));

    // A link planted inside the store, to a folder outside it, is neither written nor read
    // through; the link's target keeps its content.
    let target = dir.path().join("elsewhere");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("manifest.json"), b"theirs").unwrap();
    std::os::unix::fs::symlink(&target, root.join("r1")).unwrap();
    let err = store.put("r1/manifest.json", Bytes::from_static(b"ours")).unwrap_err().to_string();
    assert!(err.contains("`r1/manifest.json` goes through the symbolic link") && err.contains("/store/r1`"), "{err}");
    assert!(store.writer("r1/report/index.html").is_err());
    assert!(store.put_new("r1/x", Bytes::from_static(b"ours")).is_err());
    assert!(matches!(store.get("r1/manifest.json"), Err(PipelineError::Symlink { .. })));
    assert_eq!(std::fs::read(target.join("manifest.json")).unwrap(), b"theirs");
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 1);
    // The store's root may itself be a link.
    std::os::unix::fs::symlink(&root, dir.path().join("alias")).unwrap();
    let alias = Store::open(dir.path().join("alias").to_str().unwrap()).unwrap();
    assert_eq!(alias.get("a/../../outside").unwrap().as_ref(), b"x");
}

#[test]
fn unknown_schemes_are_refused_with_the_supported_list() {
    let err = Store::open("ftp://host/x").unwrap_err().to_string();
    assert!(err.contains("unsupported scheme `ftp`") && err.contains("s3://"), "{err}");
}
