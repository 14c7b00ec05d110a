use std::time::Instant;
fn mm(m: usize, n: usize, k: usize, lrs: usize, drs: usize, reps: usize) {
    let a = vec![0.5f32; m * lrs.max(k)];
    let b = vec![0.25f32; k * n];
    let mut c = vec![0f32; m * drs.max(n)];
    let t = Instant::now();
    for _ in 0..reps {
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                drs as isize,
                true,
                a.as_ptr(),
                1,
                lrs as isize,
                b.as_ptr(),
                1,
                n as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    }
    let s = t.elapsed().as_secs_f64() / reps as f64;
    println!(
        "{m}x{n}x{k} lhs rs {lrs} dst rs {drs}: {:.1} us, {:.1} GFLOP/s",
        s * 1e6,
        2.0 * (m * n * k) as f64 / s / 1e9
    );
}
fn main() {
    for m in [32, 64, 128, 512] {
        mm(m, 256, 64, 64, 256, 20000 / m * 32);
        mm(m, 256, 64, 48 * 64, 48 * 256, 20000 / m * 32);
    }
}
