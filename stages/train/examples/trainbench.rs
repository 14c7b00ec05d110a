use applearner_train::fit::{Blueprint, Build};
use applearner_train::head::{Head, LossSpec};
use applearner_train::model::{ModelSpec, RnnSpec, Shape};
use burn::backend::{Autodiff, Flex};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::{Tensor, TensorData};
use std::time::Instant;
type B = Autodiff<Flex>;
fn main() {
    let gru = std::env::args().nth(1).as_deref() == Some("gru");
    let rnn = RnnSpec { hidden: 64, layers: 2, dropout: 0.0 };
    let model = if gru { ModelSpec::Gru(rnn) } else { ModelSpec::Lstm(rnn) };
    let loss = LossSpec::Mse;
    let b = Blueprint {
        shape: Shape { lookback: 48, horizon: 12, inputs: 1, targets: 1, outputs: 1 },
        inputs: vec!["cpu".into()],
        targets: vec!["cpu".into()],
        model,
        loss,
    };
    let dev = burn::backend::flex::FlexDevice;
    let mut m = b.build::<B>(&dev);
    let mut opt = AdamConfig::new().init();
    let x: Vec<f32> = (0..256 * 48).map(|i| ((i as f32) * 0.37).sin()).collect();
    let y: Vec<f32> = (0..256 * 12).map(|i| ((i as f32) * 0.37).cos()).collect();
    let (mut tf, mut tb, mut to) = (0.0, 0.0, 0.0);
    let n = 40;
    for _ in 0..n {
        let t = Instant::now();
        let out = b.run(&m, x.clone(), 256, &dev);
        let yt = Tensor::<B, 3>::from_data(TensorData::new(y.clone(), [256, 12, 1]), &dev);
        let l = b.loss.loss(out, yt);
        tf += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let g = l.backward();
        let g = GradientsParams::from_grads(g, &m);
        tb += t.elapsed().as_secs_f64();
        let t = Instant::now();
        m = opt.step(1e-3, m, g);
        to += t.elapsed().as_secs_f64();
    }
    let total = tf + tb + to;
    println!(
        "forward {:.1} ms, backward {:.1} ms, optimizer {:.1} ms per batch: {:.0} samples/s",
        tf / n as f64 * 1e3,
        tb / n as f64 * 1e3,
        to / n as f64 * 1e3,
        256.0 * n as f64 / total
    );
}
