//! Model-level tests on the CPU backend; training on real data is tested end to end in
//! the workspace's integration tests.

use burn::backend::Flex;
use burn::backend::flex::FlexDevice;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::fit::{Blueprint, Build, load_weights, weights_bytes};
use crate::head::{Head, LossSpec};
use crate::model::{DlinearSpec, ModelSpec, NbeatsSpec, NhitsSpec, RnnSpec, Shape, TcnSpec};

type B = Flex;

/// flex's generator is process-wide: tests that seed it or draw from it take turns.
static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub(crate) fn seeded() -> std::sync::MutexGuard<'static, ()> {
    SEEDED.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn all_models() -> Vec<ModelSpec> {
    let rnn = RnnSpec { hidden: 8, layers: 2, dropout: 0.1 };
    vec![
        ModelSpec::Lstm(rnn.clone()),
        ModelSpec::Gru(rnn.clone()),
        ModelSpec::Tcn(TcnSpec { channels: 6, levels: 3, kernel: 3, dropout: 0.1 }),
        ModelSpec::Nbeats(NbeatsSpec { blocks: 2, layers: 2, hidden: 16 }),
        ModelSpec::Nhits(nhits(vec![])),
        // Stacks over the last 12, 6 and 3 steps: a coarse long context beside a fine recent one.
        ModelSpec::Nhits(nhits(vec![12, 6, 3])),
        ModelSpec::Dlinear(DlinearSpec { kernel: 5 }),
        ModelSpec::Deepar(rnn),
    ]
}

fn nhits(spans: Vec<usize>) -> NhitsSpec {
    NhitsSpec { pools: vec![4, 2, 1], spans, downsample: vec![2, 2, 1], layers: 2, hidden: 16 }
}

fn blueprint(model: ModelSpec, loss: LossSpec, inputs: usize, targets: usize) -> Blueprint {
    Blueprint {
        shape: Shape { lookback: 12, horizon: 4, inputs, targets, outputs: loss.outputs() },
        inputs: (0..inputs).map(|i| format!("in{i}")).collect(),
        targets: (0..targets).map(|i| format!("out{i}")).collect(),
        model,
        loss,
        skip: false,
    }
}

/// A deterministic window batch: a few sine waves with different phases.
fn windows(b: &Blueprint, batch: usize) -> Vec<f32> {
    let s = b.shape;
    (0..batch * s.lookback * s.inputs).map(|i| ((i as f32) * 0.37).sin()).collect()
}

#[test]
fn every_model_maps_windows_to_the_horizon_for_every_head() {
    let _turn = seeded(); // building a model draws from the generator
    let device = FlexDevice;
    let losses = [LossSpec::Mse, LossSpec::Quantile { quantiles: vec![0.1, 0.5, 0.9] }, LossSpec::Gaussian];
    for model in all_models() {
        for (inputs, targets) in [(1, 1), (5, 2)] {
            for loss in &losses {
                let b = blueprint(model.clone(), loss.clone(), inputs, targets);
                let m = b.build::<B>(&device);
                let out = b.run(&m, windows(&b, 3), 3, &device);
                assert_eq!(out.dims(), [3, 4, targets, loss.outputs()], "{} {loss:?}", model.name());
                let values: Vec<f32> = out.into_data().to_vec().unwrap();
                assert!(values.iter().all(|v| v.is_finite()), "{} {loss:?}", model.name());
            }
        }
    }
}

#[test]
fn quantiles_never_cross_and_gaussian_scales_are_positive() {
    let _turn = seeded();
    let device = FlexDevice;
    B::seed(&device, 3);
    // Raw outputs drawn wide on purpose: the head must order them anyway.
    let raw = Tensor::<B, 4>::random([64, 4, 2, 4], burn::tensor::Distribution::Normal(0.0, 10.0), &device);
    let q = LossSpec::Quantile { quantiles: vec![0.5, 0.9, 0.95, 0.99] }.decode(raw.clone());
    let v: Vec<f32> = q.into_data().to_vec().unwrap();
    for cell in v.chunks(4) {
        assert!(cell.windows(2).all(|w| w[0] <= w[1]), "{cell:?}");
    }
    let g = LossSpec::Gaussian.decode(raw.narrow(3, 0, 2));
    let quantiles = LossSpec::Gaussian.quantiles(g.clone()).unwrap();
    let v: Vec<f32> = quantiles.into_data().to_vec().unwrap();
    for cell in v.chunks(4) {
        assert!(cell.windows(2).all(|w| w[0] < w[1]), "{cell:?}");
    }
    let sigma: Vec<f32> = g.narrow(3, 1, 1).into_data().to_vec().unwrap();
    assert!(sigma.iter().all(|s| *s > 0.0));
}

#[test]
fn losses_match_their_definitions() {
    let device = FlexDevice;
    let t = |v: &[f32], shape: [usize; 4]| Tensor::<B, 4>::from_data(TensorData::new(v.to_vec(), shape), &device);
    let y = Tensor::<B, 3>::from_data(TensorData::new(vec![1.0f32, 2.0], [1, 2, 1]), &device);
    let point = t(&[0.0, 4.0], [1, 2, 1, 1]);
    let value = |l: Tensor<B, 1>| l.into_scalar() as f64;
    // Errors -1 and 2.
    assert!((value(LossSpec::Mse.loss(point.clone(), y.clone())) - 2.5).abs() < 1e-6);
    assert!((value(LossSpec::Mae.loss(point.clone(), y.clone())) - 1.5).abs() < 1e-6);
    // Huber δ=1: 0.5·1² and 1·(2 − 0.5) → mean (0.5 + 1.5) / 2.
    assert!((value(LossSpec::Huber { delta: 1.0 }.loss(point, y.clone())) - 1.0).abs() < 1e-6);
    // Pinball at τ=0.9 with forecasts 0 and 4 (truths 1 and 2): 0.9·1 and 0.1·2 → 0.55.
    let q = LossSpec::Quantile { quantiles: vec![0.9] };
    assert!((value(q.loss(t(&[0.0, 4.0], [1, 2, 1, 1]), y)) - 0.55).abs() < 1e-6);
}

#[test]
fn saved_weights_load_into_an_identical_model() {
    let _turn = seeded();
    let device = FlexDevice;
    for model in all_models() {
        let b = blueprint(model.clone(), LossSpec::Mse, 3, 2);
        B::seed(&device, 11);
        let m = b.build::<B>(&device);
        let before: Vec<f32> = b.run(&m, windows(&b, 5), 5, &device).into_data().to_vec().unwrap();
        let bytes = weights_bytes(m).unwrap();
        B::seed(&device, 99); // a fresh model would differ; the loaded one must not
        let loaded = load_weights::<B>(&b, &bytes, &device).unwrap();
        let after: Vec<f32> = b.run(&loaded, windows(&b, 5), 5, &device).into_data().to_vec().unwrap();
        assert_eq!(before, after, "{}", model.name());
        assert_eq!(weights_bytes(loaded).unwrap(), bytes, "{}", model.name());
    }
}

#[test]
fn a_window_over_a_missing_value_is_refused_naming_the_series_and_time() {
    use std::sync::Arc;

    use applearner_contracts::WindowSet;
    use applearner_contracts::tables::windows::{HORIZON_KEY, LOOKBACK_KEY, STRIDE_KEY};
    use applearner_pipeline::arrow::array::{
        Float32Array, Int64Array, RecordBatch, StringArray, UInt32Array, UInt64Array,
    };
    use applearner_pipeline::arrow::datatypes::{DataType, Field, Schema};

    let mut cpu: Vec<f32> = (0..10).map(|i| i as f32).collect();
    cpu[5] = f32::NAN;
    let features = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("timestamp", DataType::Int64, false),
            Field::new("cpu", DataType::Float32, true),
        ])),
        vec![
            Arc::new(StringArray::from(vec!["shop/web"; 10])),
            Arc::new(Int64Array::from_iter_values((0..10).map(|i| 1_700_000_000_000 + i * 60_000))),
            Arc::new(Float32Array::from(cpu)),
        ],
    )
    .unwrap();
    let metadata =
        [(LOOKBACK_KEY, "4"), (HORIZON_KEY, "2"), (STRIDE_KEY, "3")].map(|(k, v)| (k.to_string(), v.to_string()));
    let windows = RecordBatch::try_new(
        Arc::new(
            Schema::new(vec![
                Field::new("split", DataType::Utf8, false),
                Field::new("key", DataType::Utf8, false),
                Field::new("start", DataType::UInt64, false),
                Field::new("origin", DataType::Int64, false),
                Field::new("windows", DataType::UInt32, false),
            ])
            .with_metadata(metadata.into_iter().collect()),
        ),
        vec![
            // Two training windows, at rows 0 and 3.
            Arc::new(StringArray::from(vec!["train"])),
            Arc::new(StringArray::from(vec!["shop/web"])),
            Arc::new(UInt64Array::from(vec![0])),
            Arc::new(Int64Array::from(vec![0])),
            Arc::new(UInt32Array::from(vec![2])),
        ],
    )
    .unwrap();
    let error =
        WindowSet::from_batches(&[features], &[windows], &["cpu".into()], &["cpu".into()]).err().unwrap().to_string();
    assert!(error.contains("series `shop/web`") && error.contains("`cpu`"), "{error}");
    assert!(error.contains("2023-11-14T22:18:20+00:00"), "{error}");
}

#[test]
fn the_same_weights_save_as_the_same_bytes_in_every_process() {
    // Parameter ids are drawn at random; training renumbers them, so two identically
    // seeded models trained apart record identically.
    let _turn = seeded();
    let device = FlexDevice;
    let b = blueprint(all_models()[0].clone(), LossSpec::Mse, 2, 1);
    let record = || {
        B::seed(&device, 5);
        let m = b.build::<B>(&device).map(&mut crate::fit::Renumber(0));
        weights_bytes(m).unwrap()
    };
    assert_eq!(record(), record());
}

/// Every weight and bias at zero.
struct Zero;

impl<B: Backend> burn::module::ModuleMapper<B> for Zero {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<B, D>>,
    ) -> burn::module::Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        burn::module::Param::from_mapped_value(id, tensor.zeros_like(), mapper)
    }
}

#[test]
fn with_the_skip_connection_a_model_of_zeros_forecasts_the_last_value() {
    let _turn = seeded();
    let device = FlexDevice;
    // Targets are inputs 2 and 0; the median (first quantile) and the point are the last
    // value of each at every step.
    for model in all_models() {
        for loss in [LossSpec::Mse, LossSpec::Quantile { quantiles: vec![0.5, 0.9] }] {
            let mut b = blueprint(model.clone(), loss.clone(), 3, 2);
            b.targets = vec!["in2".into(), "in0".into()];
            b.skip = true;
            let m = b.build::<B>(&device).map(&mut Zero);
            let x = windows(&b, 2);
            let point: Vec<f32> = b.loss.point(b.run(&m, x.clone(), 2, &device)).into_data().to_vec().unwrap();
            let last = |w: usize, input: usize| x[(w * 12 + 11) * 3 + input];
            for w in 0..2 {
                for h in 0..4 {
                    assert_eq!(point[(w * 4 + h) * 2], last(w, 2), "{} {loss:?}", model.name());
                    assert_eq!(point[(w * 4 + h) * 2 + 1], last(w, 0), "{} {loss:?}", model.name());
                }
            }
        }
    }
}

#[test]
fn nhits_learns_a_daily_pattern_from_a_long_coarse_context() {
    use burn::optim::{AdamConfig, GradientsParams, Optimizer};
    type A = burn::backend::Autodiff<Flex>;
    let _turn = seeded();
    let device = FlexDevice;
    A::seed(&device, 1);
    // A "day" of 24 steps: a sharp daytime peak on a flat night, as a noiseless series.
    // The model reads 4 days, the first stack as 6-step means; it forecasts the next day.
    let day = |t: usize| if (t % 24) >= 9 && (t % 24) < 17 { 1.0f32 } else { 0.0 };
    let spec = NhitsSpec { pools: vec![6, 1], spans: vec![96, 24], downsample: vec![4, 1], layers: 2, hidden: 64 };
    let mut b = blueprint(ModelSpec::Nhits(spec), LossSpec::Mse, 1, 1);
    b.shape.lookback = 96;
    b.shape.horizon = 24;
    let batch = |from: usize| {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for start in from..from + 24 {
            x.extend((start..start + 96).map(day));
            y.extend((start + 96..start + 120).map(day));
        }
        (x, y)
    };
    let mut model = b.build::<A>(&device);
    let mut optim = AdamConfig::new().init();
    for _ in 0..150 {
        let (x, y) = batch(0);
        let y = Tensor::<A, 3>::from_data(TensorData::new(y, [24, 24, 1]), &device);
        let loss = b.loss.loss(b.run(&model, x, 24, &device), y);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(3e-3, model, grads);
    }
    // Windows starting at every phase of a later day: the error is a fraction of the
    // seasonal-naive's (0 here) and far below repeating the last value (0.33 on average).
    let (x, y) = batch(1000);
    let forecast: Vec<f32> = b.run(&model, x, 24, &device).into_data().to_vec().unwrap();
    let mae = forecast.iter().zip(&y).map(|(f, y)| (f - y).abs()).sum::<f32>() / y.len() as f32;
    assert!(mae < 0.05, "N-HiTS MAE {mae}");
}
